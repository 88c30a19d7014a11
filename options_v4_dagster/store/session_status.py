"""Queries of ``options-v4 status``: one session's health from the warehouse (provenance, failures,
allocations with their approvals, execution states, open positions, the latest monitoring alerts)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from .monitoring import MONITORED_STATES
from .schema import (
    allocation_approvals,
    pipeline_failures,
    portfolio_allocation_summary,
    session_provenance,
    strategy_execution_status,
    strategy_monitoring,
)
from .warehouse import Warehouse

__all__ = ["SessionStatus", "session_status"]


@dataclass
class SessionStatus:
    session: dt.date
    provenance: dict[str, str]  # asset -> market-data source
    failures: list[dict]  # {asset, stage, kind, n}
    allocations: list[dict]  # {allocation_id, capital, positions, created_at, approvals: [...]}
    executions: dict[str, int]  # state -> strategies of the session's allocations
    open_positions: int  # monitored strategies over every session
    alerts: dict[str, int] = field(default_factory=dict)  # urgency -> strategies (latest snapshot of each)
    snapshots_at: dt.datetime | None = None


def session_status(wh: Warehouse, session: dt.date) -> SessionStatus:
    sp, pf = session_provenance, pipeline_failures
    prov = wh.read(sa.select(sp.c.asset, sp.c.source).where(sp.c.trade_date == session).order_by(sp.c.asset))
    fails = wh.read(sa.select(pf.c.asset, pf.c.stage, pf.c.kind, sa.func.count().label("n"))
                    .where(pf.c.trade_date == session).group_by(pf.c.asset, pf.c.stage, pf.c.kind)
                    .order_by(pf.c.asset, pf.c.stage))
    s, ap = portfolio_allocation_summary, allocation_approvals
    allocs = wh.read(sa.select(s.c.allocation_id, s.c.capital, s.c.positions, s.c.created_at)
                     .where(s.c.trade_date == session).order_by(s.c.created_at))
    aids = allocs.get_column("allocation_id").to_list() if allocs.height else []
    apps = wh.read(sa.select(ap.c.approval_id, ap.c.allocation_id, ap.c.position_set, ap.c.approved_by,
                             ap.c.approved_at).where(ap.c.allocation_id.in_(aids))) if aids else pl.DataFrame()
    allocations = []
    for a in allocs.iter_rows(named=True):
        mine = [r for r in apps.iter_rows(named=True) if r["allocation_id"] == a["allocation_id"]] if apps.height else []
        allocations.append({**a, "approvals": mine})
    e = strategy_execution_status
    states = wh.read(sa.select(e.c.state, sa.func.count().label("n")).where(e.c.allocation_id.in_(aids))
                     .group_by(e.c.state)) if aids else pl.DataFrame()
    with wh.engine.connect() as conn:
        n_open = int(conn.execute(sa.select(sa.func.count()).select_from(e)
                                  .where(e.c.state.in_(MONITORED_STATES))).scalar_one())
    m = strategy_monitoring
    snaps = wh.read(sa.select(m.c.strategy_key, m.c.as_of, m.c.urgency, m.c.action).where(m.c.trade_date == session))
    alerts: dict[str, int] = {}
    at = None
    if snaps.height:
        latest = snaps.sort("as_of").group_by("strategy_key").last()
        at = latest.get_column("as_of").max()
        for u, n in latest.filter(pl.col("action").is_not_null() & (pl.col("action") != "HOLD"))\
                .group_by("urgency").len().iter_rows():
            alerts[str(u)] = int(n)
    return SessionStatus(session, dict(prov.iter_rows()) if prov.height else {}, fails.to_dicts(), allocations,
                         dict(states.iter_rows()) if states.height else {}, n_open, alerts, at)
