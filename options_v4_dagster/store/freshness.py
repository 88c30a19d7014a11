"""Reads of the chain freshness check (:mod:`..market.freshness`)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from .schema import option_chain_data
from .warehouse import Warehouse


def chain_snapshot_times(wh: Warehouse, session: dt.date) -> dict[str, dt.datetime | None]:
    """Each symbol's newest ``snapshot_ts`` among the session's stored chain rows (tz-aware UTC)."""
    c = option_chain_data
    q = sa.select(c.c.symbol, sa.func.max(c.c.snapshot_ts)).where(c.c.trade_date == session).group_by(c.c.symbol)
    with wh.engine.connect() as conn:
        rows = conn.execute(q).all()
    return {sym: (ts if ts is None or ts.tzinfo else ts.replace(tzinfo=dt.UTC)) for sym, ts in rows}
