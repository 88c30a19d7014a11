"""Reads and writes of the execution entry point (``trading/service.py``), the ``execute_allocation``
job and its sensors: the approvals of an allocation, the session of an approval, the open positions
of a broker account, and failed executions recorded in ``pipeline_failures`` (asset
``execute_allocation``: one row per failed run, never replaced by an asset's materialization)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from ..calendar import IST
from .schema import (
    allocation_approvals,
    orders,
    pipeline_failures,
    portfolio_allocation_summary,
    positions,
    strategy_execution_status,
)
from .trading import insert_ignore
from .trading_queries import Approval, get_approval
from .warehouse import Warehouse

#: the ``asset`` of a failed execution's pipeline_failures row
EXECUTION_FAILURE_ASSET = "execute_allocation"


def approvals_of(wh: Warehouse, allocation_id: str) -> list[Approval]:
    """Every approval of the allocation, oldest first."""
    t = allocation_approvals
    ids = wh.read(sa.select(t.c.approval_id).where(t.c.allocation_id == allocation_id)
                  .order_by(t.c.approved_at, t.c.approval_id)).get_column("approval_id").to_list()
    return [a for a in (get_approval(wh, i) for i in ids) if a is not None]


def approval_session(wh: Warehouse, approval_id: str) -> dt.date | None:
    """The session (trade_date) of the approved allocation; None when the approval is unknown."""
    t, s = allocation_approvals, portfolio_allocation_summary
    rows = wh.read(sa.select(s.c.trade_date).select_from(t.join(s, s.c.allocation_id == t.c.allocation_id))
                   .where(t.c.approval_id == approval_id))
    return rows.item(0, "trade_date") if rows.height else None


def open_account_positions(wh: Warehouse, broker: str) -> pl.DataFrame:
    """The open legs (quantity != 0) of every strategy executed on ``broker``: security_id, symbol,
    expiry, strike, option_type, lot_size (of the leg's orders), quantity (signed shares) and
    average_price. A fresh paper broker carries these so its funds and margin count them."""
    p, e, o = positions, strategy_execution_status, orders
    lot = (sa.select(sa.func.max(o.c.lot_size)).where(o.c.allocation_id == p.c.allocation_id,
                                                      o.c.position_id == p.c.position_id, o.c.leg == p.c.leg)
           .scalar_subquery())
    q = (sa.select(p.c.allocation_id, p.c.position_id, p.c.leg, p.c.security_id, p.c.symbol, p.c.expiry, p.c.strike,
                   p.c.option_type, lot.label("lot_size"), p.c.quantity, p.c.average_price)
         .select_from(p.join(e, (e.c.allocation_id == p.c.allocation_id) & (e.c.position_id == p.c.position_id)))
         .where(e.c.broker == broker, p.c.quantity != 0)
         .order_by(p.c.allocation_id, p.c.position_id, p.c.leg))
    return wh.read(q)


def record_execution_failure(wh: Warehouse, *, run_id: str, approval_id: str | None, reason: str,
                             session: dt.date | None = None, at: dt.datetime | None = None) -> bool:
    """A failed ``execute_allocation`` run as a pipeline_failures row (asset ``execute_allocation``,
    symbol the approval id, stage ``run <run_id>``, kind ``error``) of the allocation's session (else
    today in IST). Idempotent per run: True when the row was written, False when it was already."""
    at = at or dt.datetime.now(dt.UTC)
    values = dict(trade_date=session or at.astimezone(IST).date(), asset=EXECUTION_FAILURE_ASSET,
                  symbol=(approval_id or "unknown")[:32], stage=f"run {run_id}"[:64], kind="error",
                  reason=(reason or "failed")[:2000], recorded_at=at)
    with wh.engine.begin() as conn:
        return insert_ignore(conn, pipeline_failures, values, ["trade_date", "asset", "symbol", "stage"]) == 1


def execution_failures(wh: Warehouse, approval_id: str | None = None) -> pl.DataFrame:
    """Recorded failed executions (newest first), optionally of one approval."""
    t = pipeline_failures
    q = sa.select(t).where(t.c.asset == EXECUTION_FAILURE_ASSET)
    if approval_id is not None:
        q = q.where(t.c.symbol == approval_id[:32])
    return wh.read(q.order_by(t.c.recorded_at.desc()))
