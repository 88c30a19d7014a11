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

instruments = sa.Table(
    "instruments", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("security_id", sa.String(32), primary_key=True,
              comment="the broker's id (Dhan's scrip master), else the chain's id or the contract key"),
    sa.Column("exchange_segment", sa.String(16), primary_key=True, comment="Dhan v2 segment: NSE_FNO, NSE_EQ, IDX_I"),
    sa.Column("symbol", sa.String(32), nullable=False, comment="the underlying"),
    sa.Column("instrument_type", sa.String(8), nullable=False, comment="OPTIDX, OPTSTK, FUTIDX, FUTSTK, INDEX, EQUITY"),
    sa.Column("expiry", sa.Date),
    sa.Column("strike", sa.Float),
    sa.Column("option_type", sa.String(2), comment="CE / PE; null for futures and underlyings"),
    sa.Column("lot_size", sa.Integer, nullable=False, comment="shares"),
    sa.Column("tick_size", sa.Float, comment="INR (Dhan's scrip master states paise); null for an index"),
    sa.Column("freeze_quantity", sa.Integer,
              comment="shares: every order stays strictly below it; null for underlyings"),
    sa.Column("trading_symbol", sa.String(64)),
    sa.Column("source", sa.String(16), nullable=False),
    sa.CheckConstraint("option_type in ('CE', 'PE')", name="ck_instruments_option_type"),
    sa.Index("ix_instruments_contract", "trade_date", "symbol", "expiry", "strike", "option_type"),
    comment="Tradable contracts per session (the broker's scrip master or the session's chain): security id, "
    "lot size, tick size and freeze quantity, what order validation and both brokers read",
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

session_provenance = sa.Table(
    "session_provenance", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("asset", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(16), nullable=False),  # the market-data provider: simulated, nse_files, dhan, ...
    sa.Column("written_at", UTCDateTime, nullable=False, default=_now),
    comment="The market-data source behind each asset's rows of a session (written in the asset's own "
    "transaction): every row from fno_universe to portfolio_allocation joins here on (trade_date, asset)",
)

sa.Index("ix_option_chain_data_symbol_date", option_chain_data.c.symbol, option_chain_data.c.trade_date)
sa.Index("ix_underlying_bars_date", underlying_bars.c.date)

# --- volatility --------------------------------------------------------------------------

option_greeks = sa.Table(
    "option_greeks", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("expiry", sa.Date, primary_key=True),
    sa.Column("strike", sa.Float, primary_key=True),
    sa.Column("option_type", sa.String(2), primary_key=True),
    sa.Column("iv", sa.Float, comment="forward convention (Black-76 on the forward), fraction"),
    sa.Column("iv_price", sa.Float, comment="price the IV was solved from"),
    sa.Column("iv_price_kind", sa.String(8), comment="mid or ltp"),
    sa.Column("iv_reason", sa.String(16), comment="why iv is null: no_price, expired, no_solution"),
    sa.Column("iv_nse", sa.Float, comment="NSE convention (BS on spot, r=10%) from the last price"),
    sa.Column("delta", sa.Float),
    sa.Column("gamma", sa.Float),
    sa.Column("vega", sa.Float, comment="per 1.00 of vol"),
    sa.Column("theta", sa.Float, comment="per calendar day"),
    sa.Column("forward", sa.Float),
    sa.Column("forward_method", sa.String(8), comment="futures, parity or carry"),
    sa.Column("t_years", sa.Float, comment="calendar days to 15:30 IST on expiry / 365"),
    sa.Column("df", sa.Float, comment="discount factor to expiry, exp(-rate * T) at the rate the IVs used"),
    comment="Implied volatility and greeks per contract and session",
)

historical_iv_summary = sa.Table(
    "historical_iv_summary", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("spot", sa.Float),
    sa.Column("atm_iv_30d", sa.Float, comment="30-calendar-day ATM IV, variance-time interpolated"),
    sa.Column("atm_iv_30d_method", sa.String(16)),
    sa.Column("atm_iv_near", sa.Float, comment="ATM IV of the nearest expiry at least 1.5 days out"),
    sa.Column("near_expiry", sa.Date),
    sa.Column("atm_iv_far", sa.Float),
    sa.Column("far_expiry", sa.Date),
    sa.Column("skew_25d", sa.Float, comment="25-delta put IV minus 25-delta call IV, expiry nearest 30 days"),
    sa.Column("term_slope", sa.Float, comment="(far ATM IV - near ATM IV) per year of maturity"),
    sa.Column("rv_20", sa.Float, comment="realized vol, 20 sessions, annualized"),
    sa.Column("rv_60", sa.Float),
    sa.Column("iv_minus_rv", sa.Float, comment="atm_iv_30d - rv_20"),
    sa.Column("pcr_oi", sa.Float),
    sa.Column("pcr_volume", sa.Float),
    sa.Column("india_vix", sa.Float),
    sa.Column("expiries", sa.Integer),
    sa.Column("contracts_with_iv", sa.Integer),
    comment="Daily IV summary per underlying (the IV history)",
)

iv_percentiles = sa.Table(
    "iv_percentiles", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("atm_iv_30d", sa.Float),
    sa.Column("iv_percentile", sa.Float, comment="0-100: share of the previous 252 sessions below today"),
    sa.Column("iv_rank", sa.Float, comment="0-100: (iv - min)/(max - min) over the window and today"),
    sa.Column("history_days", sa.Integer),
    sa.Column("window_min", sa.Float),
    sa.Column("window_max", sa.Float),
    sa.Column("iv_environment", sa.String(8), comment="LOW / NORMAL / HIGH"),
    sa.Column("reason", sa.Text, comment="why the values are null"),
    comment="IV percentile and IV rank per underlying and session",
)

sa.Index("ix_historical_iv_summary_symbol_date", historical_iv_summary.c.symbol, historical_iv_summary.c.trade_date)

# --- strategy creation -------------------------------------------------------------------

technical_signals = sa.Table(
    "technical_signals", metadata,
    sa.Column("trade_date", sa.Date, primary_key=True),
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("close", sa.Float),
    sa.Column("ema20", sa.Float),
    sa.Column("ema50", sa.Float),
    sa.Column("ema200", sa.Float),
    sa.Column("rsi14", sa.Float),
    sa.Column("macd", sa.Float),
    sa.Column("macd_signal", sa.Float),
    sa.Column("macd_hist", sa.Float),
    sa.Column("bb_width", sa.Float),
    sa.Column("atr14", sa.Float),
    sa.Column("atr_pct", sa.Float),
    sa.Column("volume_ratio", sa.Float),
    sa.Column("consolidation", sa.Boolean),
    sa.Column("breakout", sa.String(8), comment="UP / DOWN / null"),
    sa.Column("direction", sa.String(8), comment="BULLISH / NEUTRAL / BEARISH"),
    sa.Column("strength", sa.Float, comment="0..1"),
    sa.Column("iv_environment", sa.String(8)),
    sa.Column("market_state", sa.String(32), comment="direction x IV environment (nine states)"),
    sa.Column("volatility_bucket", sa.String(12)),
    sa.Column("liquidity_bucket", sa.String(8)),
    sa.Column("rv_20", sa.Float),
    sa.Column("notes", sa.Text),
    comment="Technical indicators, direction and market state per underlying and session",
)

def _per_candidate(name: str, *columns: sa.Column, comment: str) -> sa.Table:
    """A table with one row per strategy candidate: ``strategy_id`` (the key) and the session's
    ``trade_date`` (indexed), then ``columns``."""
    return sa.Table(
        name, metadata,
        sa.Column("strategy_id", sa.String(96), primary_key=True),
        sa.Column("trade_date", sa.Date, nullable=False, index=True),
        *columns,
        comment=comment,
    )


strategies = _per_candidate(
    "strategies",
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("strategy_name", sa.String(48), nullable=False),
    sa.Column("category", sa.String(24)),
    sa.Column("outlook", sa.String(16)),
    sa.Column("iv_preference", sa.String(8)),
    sa.Column("risk_tolerance", sa.String(16), nullable=False),
    sa.Column("market_state", sa.String(32)),
    sa.Column("total_score", sa.Float),
    sa.Column("conviction", sa.String(12)),
    sa.Column("rank", sa.Integer, comment="1 = best for the symbol"),
    sa.Column("unlimited_risk", sa.Boolean),
    sa.Column("lots", sa.Integer),
    sa.Column("lot_size", sa.Integer),
    sa.Column("created_at", UTCDateTime, nullable=False, default=_now),
    comment="Ranked strategy candidates per underlying and session",
)

strategy_details = sa.Table(
    "strategy_details", metadata,
    sa.Column("strategy_id", sa.String(96), primary_key=True),
    sa.Column("leg", sa.Integer, primary_key=True),
    sa.Column("trade_date", sa.Date, nullable=False, index=True),
    sa.Column("side", sa.String(4), nullable=False),  # BUY / SELL
    sa.Column("instrument", sa.String(3), nullable=False),  # CE / PE / FUT / EQ
    sa.Column("strike", sa.Float),
    sa.Column("expiry", sa.Date),
    sa.Column("quantity", sa.Integer, nullable=False, comment="shares (lots x lot size)"),
    sa.Column("price", sa.Float, comment="executable price per share: ask to buy, bid to sell, mid if one-sided"),
    sa.Column("price_kind", sa.String(8)),
    sa.Column("iv", sa.Float),
    sa.Column("delta", sa.Float),
    sa.Column("security_id", sa.String(32)),
    comment="Legs of each strategy candidate",
)

strategy_parameters = _per_candidate(
    "strategy_parameters",
    sa.Column("net_premium", sa.Float, comment="INR for the position; > 0 credit, < 0 debit"),
    sa.Column("max_profit", sa.Float, comment="INR; null = unbounded"),
    sa.Column("max_loss", sa.Float, comment="INR, positive; null = unbounded"),
    sa.Column("breakevens", sa.Text, comment="JSON list of underlying prices"),
    sa.Column("pop", sa.Float, comment="probability of profit at expiry, 0..1"),
    sa.Column("pop_forward", sa.Float),
    sa.Column("pop_sigma", sa.Float),
    sa.Column("pop_t_years", sa.Float),
    sa.Column("expected_value", sa.Float, comment="INR under the POP model"),
    sa.Column("reward_risk", sa.Float),
    sa.Column("delta", sa.Float, comment="position delta in shares of the underlying"),
    sa.Column("gamma", sa.Float),
    sa.Column("theta", sa.Float, comment="INR per calendar day"),
    sa.Column("vega", sa.Float, comment="INR per 1 vol point"),
    sa.Column("margin", sa.Float, comment="SPAN-like estimate, INR (debit for long-only)"),
    sa.Column("return_on_margin", sa.Float),
    sa.Column("score_components", sa.Text, comment="JSON of the scoring components 0..1"),
    sa.Column("details", sa.Text, comment="JSON: model inputs, strike-selection fallback levels"),
    comment="Metrics of each strategy candidate",
)

strategy_exit_levels = _per_candidate(
    "strategy_exit_levels",
    sa.Column("profit_target", sa.Float, comment="INR P&L at which to take profit (primary)"),
    sa.Column("profit_target_pct", sa.Float, comment="share of max profit (or of debit for unbounded)"),
    sa.Column("scale_out", sa.Text, comment="JSON: [{at_pct, pnl, close_fraction}] at 25/50/75%"),
    sa.Column("stop_loss", sa.Float, comment="INR loss that triggers the stop (positive)"),
    sa.Column("stop_loss_pct", sa.Float, comment="share of max loss (or of credit/debit where unbounded)"),
    sa.Column("time_exit_dte", sa.Integer),
    sa.Column("time_exit_date", sa.Date),
    sa.Column("trailing_activation", sa.Float, comment="INR profit at which a trailing stop arms"),
    sa.Column("trailing_distance", sa.Float, comment="INR give-back allowed once armed"),
    sa.Column("adjustments", sa.Text, comment="JSON: breakeven and short-strike delta triggers"),
    comment="Exit levels per strategy candidate",
)

# -- allocation -----------------------------------------------------------------------------------------------

industry_allocations_current = sa.Table(
    "industry_allocations_current", metadata,
    sa.Column("industry", sa.String(96), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False, comment="share of capital, the weights sum to 1"),
    sa.Column("position_type", sa.String(8), nullable=False, comment="LONG / SHORT / NEUTRAL"),
    sa.Column("source", sa.String(256), comment="default weighting or the imported file"),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="Current industry weights and views used by the allocator",
)

sector_allocations_current = sa.Table(
    "sector_allocations_current", metadata,
    sa.Column("sector", sa.String(64), primary_key=True),
    sa.Column("weight", sa.Float, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="Current sector weights (sum of their industries' weights)",
)

stock_industry_mapping = sa.Table(
    "stock_industry_mapping", metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("industry", sa.String(96), nullable=False),
    sa.Column("sector", sa.String(64), nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="Industry and sector of each F&O underlying",
)

portfolio_allocation = sa.Table(
    "portfolio_allocation", metadata,
    sa.Column("allocation_id", sa.String(64), sa.ForeignKey("portfolio_allocation_summary.allocation_id"),
              primary_key=True, comment="the snapshot (portfolio_allocation_summary)"),
    sa.Column("position_id", sa.String(128), primary_key=True, comment="the position within the snapshot"),
    sa.Column("trade_date", sa.Date, nullable=False, index=True),
    sa.Column("strategy_id", sa.String(96), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("strategy_name", sa.String(48), nullable=False),
    sa.Column("tier", sa.String(8), nullable=False),
    sa.Column("industry", sa.String(96)),
    sa.Column("sector", sa.String(64)),
    sa.Column("position_type", sa.String(8)),
    sa.Column("category", sa.String(24)),
    sa.Column("outlook", sa.String(16)),
    sa.Column("conviction", sa.String(12)),
    sa.Column("total_score", sa.Float),
    sa.Column("fallback_level", sa.Integer, comment="0 preferred strategy .. 3 any not opposing the view"),
    sa.Column("selection_reason", sa.Text,
              comment="why this strategy: market-state preference, category fallback, view match or any-strategy"),
    sa.Column("lots", sa.Integer, nullable=False),
    sa.Column("lot_size", sa.Integer),
    sa.Column("quantity", sa.Integer, comment="shares per leg unit (lots x lot size)"),
    sa.Column("margin_per_lot", sa.Float, comment="INR: margin for short premium, debit for long"),
    sa.Column("capital_used", sa.Float, nullable=False, comment="INR"),
    sa.Column("weight", sa.Float, comment="capital_used / capital"),
    sa.Column("kelly_fraction", sa.Float),
    sa.Column("pop", sa.Float),
    sa.Column("payoff_ratio", sa.Float),
    sa.Column("expected_value", sa.Float, comment="INR over the position's life"),
    sa.Column("expected_return", sa.Float, comment="INR per month"),
    sa.Column("max_loss", sa.Float, comment="INR; null = unbounded"),
    sa.Column("unlimited_risk", sa.Boolean),
    sa.Column("t_years", sa.Float),
    sa.Column("delta", sa.Float),
    sa.Column("gamma", sa.Float),
    sa.Column("theta", sa.Float),
    sa.Column("vega", sa.Float),
    sa.Column("capital", sa.Float, nullable=False, comment="INR allocated over"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=_now),
    comment="Positions of an allocation snapshot (append-only: a snapshot's rows are never changed; "
    "execution status lives in the trading tables)",
)

portfolio_allocation_summary = sa.Table(
    "portfolio_allocation_summary", metadata,
    sa.Column("allocation_id", sa.String(64), primary_key=True,
              comment="sha256 of the canonical JSON of session, capital, rules, industry views, risk "
              "tolerance and positions (allocation/snapshot.py)"),
    sa.Column("trade_date", sa.Date, nullable=False, index=True),
    sa.Column("capital", sa.Float, nullable=False),
    sa.Column("capital_used", sa.Float, nullable=False),
    sa.Column("deployment", sa.Float, nullable=False),
    sa.Column("positions", sa.Integer, nullable=False),
    sa.Column("expected_monthly_return", sa.Float, comment="fraction of capital"),
    sa.Column("target_monthly_return", sa.Float),
    sa.Column("market_state", sa.String(32)),
    sa.Column("risk_tolerance", sa.String(16), comment="of the strategy candidates allocated"),
    sa.Column("source", sa.String(16), comment="market-data source of the inputs (session_provenance)"),
    sa.Column("rules", sa.Text, nullable=False, comment="JSON: the resolved market_conditions.yaml rules used"),
    sa.Column("industry_views", sa.Text, nullable=False,
              comment="JSON: industry weights, LONG/SHORT views and symbol -> industry mapping used"),
    sa.Column("summary", sa.Text, comment="JSON: tiers, industries, limits, greeks, notes"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=_now),
    comment="One row per allocation snapshot (immutable, append-only): its inputs and totals",
)

portfolio_allocation_runs = sa.Table(
    "portfolio_allocation_runs", metadata,
    sa.Column("run_id", sa.String(64), primary_key=True, comment="the Dagster run"),
    sa.Column("materialized_at", UTCDateTime, primary_key=True, default=_now),
    sa.Column("trade_date", sa.Date, nullable=False, index=True),
    sa.Column("allocation_id", sa.String(64), sa.ForeignKey("portfolio_allocation_summary.allocation_id"),
              comment="the snapshot this materialization gave; null = no candidates to allocate"),
    comment="Append-only log of portfolio_allocation materializations: the latest row of a session names "
    "its latest snapshot",
)


# The trading and monitoring tables live in trading_schema.py and monitoring_schema.py (same metadata);
# re-exported here so ``schema.orders`` / ``schema.exit_intents`` work.
from .archive_schema import archived_sessions  # noqa: E402, F401  (registered on ``metadata`` by importing)
from .monitoring_schema import (  # noqa: E402, F401  (registered on ``metadata`` by importing)
    MONITORING_TABLES,
    audit_log,
    exit_intents,
    monitor_state,
    strategy_monitoring,
)
from .trading_schema import (  # noqa: E402, F401  (registered on ``metadata`` by importing)
    TRADING_TABLES,
    allocation_approvals,
    order_events,
    orders,
    positions,
    strategy_execution_status,
    trades,
)
