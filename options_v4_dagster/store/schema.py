"""The warehouse schema, defined once (SQLAlchemy Core). ``sql/schema.sql`` is generated from it
(``python scripts/generate_ddl.py``) and a test keeps the two equal.

Table names follow the original Options V4 system where it had one (option_chain_data,
nifty_historical_data, india_vix_data, ...). Quantities: ``volume``/``oi`` in contracts (lots);
prices in INR per share; IV as a fraction.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator):
    """A tz-aware timestamp: ``timestamptz`` on PostgreSQL; UTC text on SQLite, read back aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive timestamp {value!r}: the warehouse stores tz-aware timestamps only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


fno_universe = sa.Table(
    "fno_universe", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128)),
    sa.Column("instrument", sa.String(8), nullable=False),  # INDEX / STOCK
    sa.Column("lot_size", sa.Integer, nullable=False),
    sa.Column("strike_step", sa.Float),
    sa.Column("industry", sa.String(96)),
    sa.Column("dhan_security_id", sa.String(16)),
    sa.Column("dhan_segment", sa.String(16)),
    sa.Column("source", sa.String(16), nullable=False),
    comment="F&O underlyings served on each session, with the lot size in force that day",
)

option_chain_data = sa.Table(
    "option_chain_data", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("expiry", sa.Date, primary_key=True),
    sa.Column("strike", sa.Float, primary_key=True),
    sa.Column("option_type", sa.String(2), primary_key=True),
    sa.Column("bid", sa.Float),
    sa.Column("ask", sa.Float),
    sa.Column("bid_qty", sa.Float),
    sa.Column("ask_qty", sa.Float),
    sa.Column("ltp", sa.Float),
    sa.Column("close", sa.Float),
    sa.Column("volume", sa.Float, comment="contracts"),
    sa.Column("oi", sa.Float, comment="open interest in contracts"),
    sa.Column("oi_change", sa.Float),
    sa.Column("exchange_iv", sa.Float, comment="the source's own IV, fraction"),
    sa.Column("underlying_price", sa.Float, nullable=False),
    sa.Column("futures_price", sa.Float),
    sa.Column("lot_size", sa.Integer, nullable=False),
    sa.Column("security_id", sa.String(32)),
    sa.Column("snapshot_ts", UTCDateTime),
    sa.Column("source", sa.String(16), nullable=False),
    sa.CheckConstraint("option_type in ('CE', 'PE')", name="ck_option_chain_data_option_type"),
    comment="Option chains per session: every listed contract within ~90 days",
)

underlying_bars = sa.Table(
    "underlying_bars", metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("date", sa.Date, primary_key=True),
    sa.Column("open", sa.Float),
    sa.Column("high", sa.Float),
    sa.Column("low", sa.Float),
    sa.Column("close", sa.Float, nullable=False),
    sa.Column("volume", sa.Float),
    sa.Column("source", sa.String(16), nullable=False),
    comment="Daily OHLCV of every underlying (a year back from each materialized session)",
)


def _index_bars(name: str, comment: str) -> sa.Table:
    return sa.Table(
        name, metadata,
        sa.Column("date", sa.Date, primary_key=True),
        sa.Column("open", sa.Float),
        sa.Column("high", sa.Float),
        sa.Column("low", sa.Float),
        sa.Column("close", sa.Float, nullable=False),
        sa.Column("volume", sa.Float),
        sa.Column("source", sa.String(16), nullable=False),
        comment=comment,
    )


nifty_historical_data = _index_bars("nifty_historical_data", "NIFTY 50 daily bars")
india_vix_data = _index_bars("india_vix_data", "India VIX daily values")

market_conditions = sa.Table(
    "market_conditions", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("nifty_close", sa.Float),
    sa.Column("nifty_ema20", sa.Float),
    sa.Column("nifty_ema50", sa.Float),
    sa.Column("nifty_return_20d", sa.Float),
    sa.Column("nifty_trend", sa.String(16)),  # BULLISH / NEUTRAL / BEARISH
    sa.Column("trend_strength", sa.Float),
    sa.Column("india_vix", sa.Float),
    sa.Column("vix_band", sa.String(16)),  # VERY_LOW / LOW / NORMAL / HIGH / VERY_HIGH
    sa.Column("pcr_oi", sa.Float),
    sa.Column("pcr_volume", sa.Float),
    sa.Column("pcr_sentiment", sa.String(16)),  # BULLISH / NEUTRAL / BEARISH
    sa.Column("market_state", sa.String(48)),
    sa.Column("notes", sa.Text),
    sa.Column("source", sa.String(16), nullable=False),
    comment="NIFTY trend, India VIX band and put-call-ratio sentiment per session",
)

pipeline_failures = sa.Table(
    "pipeline_failures", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("asset", sa.String(64), primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("stage", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # error / missing
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False, default=_now),
    comment="Per-symbol failures of a partition (the partition itself succeeded)",
)

sa.Index("ix_option_chain_data_symbol_date", option_chain_data.c.symbol, option_chain_data.c.trade_date)
sa.Index("ix_underlying_bars_date", underlying_bars.c.date)

#: Tables written per session (delete the session's rows, insert) and their date column.
PARTITIONED_TABLES = {
    "fno_universe": "trade_date",
    "option_chain_data": "trade_date",
    "market_conditions": "trade_date",
}
