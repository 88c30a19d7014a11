"""Reads of the stored market data: daily bars (underlying_bars, nifty_historical_data,
india_vix_data) and the market-data source of a session's rows (fno_universe, option_chain_data)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from . import archive
from .protocol import WarehouseLike
from .schema import india_vix_data, nifty_historical_data, underlying_bars


def closes_between(wh: WarehouseLike, first: dt.date, last: dt.date) -> pl.DataFrame:
    """Underlying closes (symbol, date, close) with ``first <= date <= last``, by symbol and date."""
    t = underlying_bars
    return wh.read(sa.select(t.c.symbol, t.c.date, t.c.close).where(t.c.date.between(first, last))
                   .order_by(t.c.symbol, t.c.date))


def nifty_closes_until(wh: WarehouseLike, session: dt.date) -> pl.DataFrame:
    """NIFTY 50 closes (date, close) on or before the session, oldest first."""
    t = nifty_historical_data
    return wh.read(sa.select(t.c.date, t.c.close).where(t.c.date <= session).order_by(t.c.date))


def vix_on(wh: WarehouseLike, session: dt.date) -> float | None:
    """India VIX close of the session itself, or None when none is stored."""
    t = india_vix_data
    rows = wh.read(sa.select(t.c.close).where(t.c.date == session))
    return float(rows.item()) if rows.height else None


def latest_vix(wh: WarehouseLike, session: dt.date) -> pl.DataFrame:
    """The newest India VIX row (date, close) on or before the session: zero or one row."""
    t = india_vix_data
    return wh.read(sa.select(t.c.date, t.c.close).where(t.c.date <= session).order_by(t.c.date.desc()).limit(1))


def stored_sources(wh: WarehouseLike, table: str, session: dt.date) -> list[str]:
    """The distinct market-data sources of ``table``'s rows for the session (a table with a
    ``trade_date`` and a ``source`` column), sorted; empty when nothing is stored."""
    t = wh.table(table)
    rows = wh.read(sa.select(t.c.source).distinct().where(t.c.trade_date == session))
    if rows.height == 0:  # an archived session's chain (store/archive.py)
        return archive.archived_sources(wh, table, session)
    return sorted(str(x) for x in rows.get_column("source").to_list())


def universe_sources_between(wh: WarehouseLike, first: dt.date, last: dt.date) -> dict[dt.date, str]:
    """``{session: source}`` of the fno_universe rows of each session in ``first..last`` (the
    source's name, or ``"mixed"`` when a session holds rows of two sources)."""
    t = wh.table("fno_universe")
    rows = wh.read(sa.select(t.c.trade_date, sa.func.min(t.c.source).label("source"),
                             sa.func.count(sa.distinct(t.c.source)).label("n"))
                   .where(t.c.trade_date.between(first, last)).group_by(t.c.trade_date))
    return {r["trade_date"]: (r["source"] if r["n"] == 1 else "mixed") for r in rows.iter_rows(named=True)}
