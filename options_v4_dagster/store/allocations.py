"""Queries of the allocation snapshots: portfolio_allocation_summary (one row per snapshot),
portfolio_allocation (its positions) and portfolio_allocation_runs (which snapshot each
materialization gave). Snapshots are append-only: written once, never changed or deleted."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from .protocol import WarehouseLike
from .schema import portfolio_allocation, portfolio_allocation_runs, portfolio_allocation_summary
from .warehouse import Append

SUMMARY, POSITIONS, RUNS = "portfolio_allocation_summary", "portfolio_allocation", "portfolio_allocation_runs"


@dataclass(frozen=True)
class StoredSnapshot:
    """One stored allocation snapshot: its summary row and its positions."""

    allocation_id: str
    summary: dict
    positions: pl.DataFrame


def snapshot_appends(run_id: str, session: dt.date, allocation_id: str, summary: pl.DataFrame,
                     positions: pl.DataFrame) -> list[Append]:
    """The writes of one materialization, for one transaction: the snapshot (summary first, the
    positions refer to it) inserted only if absent, then the run row. The first result's
    ``inserted`` says whether the snapshot is new."""
    return [Append(SUMMARY, summary, unless={"allocation_id": allocation_id}),
            Append(POSITIONS, positions, unless={"allocation_id": allocation_id}),
            run_append(run_id, session, allocation_id)]


def run_append(run_id: str, session: dt.date, allocation_id: str | None) -> Append:
    """The portfolio_allocation_runs row of one materialization (``allocation_id`` None: nothing to allocate)."""
    frame = pl.DataFrame([{"run_id": run_id, "trade_date": session, "allocation_id": allocation_id,
                           "materialized_at": dt.datetime.now(dt.UTC)}],
                         schema={"run_id": pl.Utf8, "trade_date": pl.Date, "allocation_id": pl.Utf8,
                                 "materialized_at": pl.Datetime("us", "UTC")})
    return Append(RUNS, frame)


def snapshot_exists(wh: WarehouseLike, allocation_id: str) -> bool:
    t = portfolio_allocation_summary
    return wh.read(sa.select(t.c.allocation_id).where(t.c.allocation_id == allocation_id)).height > 0


def latest_allocation_id(wh: WarehouseLike, session: dt.date) -> str | None:
    """The snapshot the session's latest portfolio_allocation materialization gave (None when it had
    nothing to allocate); without a recorded run, the session's most recently created snapshot."""
    r = portfolio_allocation_runs
    runs = wh.read(sa.select(r.c.allocation_id).where(r.c.trade_date == session)
                   .order_by(r.c.materialized_at.desc()).limit(1))
    if runs.height:
        return runs.item()
    t = portfolio_allocation_summary
    snaps = wh.read(sa.select(t.c.allocation_id).where(t.c.trade_date == session)
                    .order_by(t.c.created_at.desc(), t.c.allocation_id).limit(1))
    return snaps.item() if snaps.height else None


def read_snapshot(wh: WarehouseLike, allocation_id: str) -> StoredSnapshot | None:
    """A snapshot by id (positions by capital used, largest first), or None."""
    t, p = portfolio_allocation_summary, portfolio_allocation
    summ = wh.read(sa.select(t).where(t.c.allocation_id == allocation_id))
    if summ.height == 0:
        return None
    pos = wh.read(sa.select(p).where(p.c.allocation_id == allocation_id)
                  .order_by(p.c.capital_used.desc(), p.c.symbol, p.c.position_id))
    return StoredSnapshot(allocation_id, summ.row(0, named=True), pos)


def latest_snapshot(wh: WarehouseLike, session: dt.date) -> StoredSnapshot | None:
    """The session's latest allocation snapshot (see :func:`latest_allocation_id`), or None."""
    aid = latest_allocation_id(wh, session)
    return read_snapshot(wh, aid) if aid else None


def session_snapshots(wh: WarehouseLike, session: dt.date) -> pl.DataFrame:
    """The session's snapshots (allocation_id, capital, positions, created_at), oldest first."""
    t = portfolio_allocation_summary
    return wh.read(sa.select(t.c.allocation_id, t.c.capital, t.c.positions, t.c.market_state, t.c.created_at)
                   .where(t.c.trade_date == session).order_by(t.c.created_at, t.c.allocation_id))
