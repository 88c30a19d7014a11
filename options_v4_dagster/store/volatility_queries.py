"""Reads of the stored implied-volatility history: historical_iv_summary (with its provenance)
and iv_percentiles."""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from .protocol import WarehouseLike
from .schema import historical_iv_summary, iv_percentiles, session_provenance


def atm_iv_history(wh: WarehouseLike, first: dt.date, last: dt.date, source: str) -> pl.DataFrame:
    """30-day ATM IVs (trade_date, symbol, atm_iv_30d) of the sessions ``first..last``, by symbol and
    date, from the market-data ``source`` only: sessions whose iv_history provenance names another
    source are left out, sessions without provenance (written before it was recorded) are kept."""
    h, p = historical_iv_summary, session_provenance
    join = sa.and_(p.c.trade_date == h.c.trade_date, p.c.asset == "iv_history")
    stmt = (sa.select(h.c.trade_date, h.c.symbol, h.c.atm_iv_30d)
            .select_from(h.outerjoin(p, join))
            .where(h.c.trade_date.between(first, last), sa.or_(p.c.source.is_(None), p.c.source == source))
            .order_by(h.c.symbol, h.c.trade_date))
    return wh.read(stmt, schema_overrides={"trade_date": pl.Date, "symbol": pl.Utf8, "atm_iv_30d": pl.Float64})


_FLOATS = ("spot", "atm_iv_30d", "atm_iv_near", "skew_25d", "rv_20", "india_vix", "window_min", "window_max",
           "iv_percentile", "iv_rank")


def symbol_iv_history(wh: WarehouseLike, symbol: str, first: dt.date | None = None,
                      last: dt.date | None = None) -> pl.DataFrame:
    """One symbol's stored IV summary sessions (trade_date, spot, atm_iv_30d, atm_iv_near, skew_25d,
    rv_20, india_vix), within ``first..last`` when given, each with its iv_percentiles row where one
    exists (window_min, window_max, iv_percentile, iv_rank, history_days, iv_environment, reason),
    oldest first. Float columns are Float64 even when all null."""
    h, p = historical_iv_summary, iv_percentiles
    stmt = (sa.select(h.c.trade_date, h.c.spot, h.c.atm_iv_30d, h.c.atm_iv_near, h.c.skew_25d, h.c.rv_20,
                      h.c.india_vix, p.c.window_min, p.c.window_max, p.c.iv_percentile, p.c.iv_rank,
                      p.c.history_days, p.c.iv_environment, p.c.reason)
            .select_from(h.outerjoin(p, sa.and_(p.c.trade_date == h.c.trade_date, p.c.symbol == h.c.symbol)))
            .where(h.c.symbol == symbol).order_by(h.c.trade_date))
    if first is not None:
        stmt = stmt.where(h.c.trade_date >= first)
    if last is not None:
        stmt = stmt.where(h.c.trade_date <= last)
    return wh.read(stmt, schema_overrides={"trade_date": pl.Date, **{c: pl.Float64 for c in _FLOATS}})
