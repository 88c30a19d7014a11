"""Paper execution of a 25-position allocation end to end (the issue's target: <= 2 s; the original
executor took 4.2 s *per strategy*).

    .venv/bin/python benchmarks/bench_execution.py [--warehouse PATH.db] [--date 2025-07-17] [--repeat 3]

Prepared beforehand, not timed: a SQLite warehouse holding a session run on the simulated source
(``--warehouse``, e.g. one `options-v4 run --date 2025-07-17 --source simulated` wrote; without it
that run is made in a scratch folder, ~1-2 min). Its stored allocation snapshot (21 positions at the
default capital) is topped up to 25 positions with the session's best other candidates (rank 1,
limited risk, one per symbol not yet in it, their own lots) as a new snapshot, and approved.

Timed, per repetition on a fresh copy of that warehouse: the plan from the store
(``allocation_plan``), the session's stored quotes (``session_quote_book``), the paper broker on a
simulated clock (``paper_execution``) and ``execute_allocation`` with the TradingStore; then a second
execution (a new paper broker, as a re-run would have), which must place nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.allocations import latest_snapshot
from options_v4_dagster.store.schema import portfolio_allocation, portfolio_allocation_summary, strategies
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, approve, session_quote_book
from options_v4_dagster.trading.execution import execute_allocation
from options_v4_dagster.trading.replay import paper_execution

POSITIONS = 25
PAPER_CAPITAL = 3_000_000.0  # the top-up positions come on top of the snapshot's 1.5M


def run_pipeline(folder: Path, date: str) -> Path:
    db = folder / "warehouse.db"
    env = {**os.environ, "DAGSTER_HOME": str(folder / "dagster_home"), "DATABASE_URL": f"sqlite:///{db}",
           "OPTIONS_V4_HOME": str(folder / "home"), "OPTIONS_V4_MARKET_DATA": "simulated"}
    (folder / "dagster_home").mkdir(exist_ok=True)
    exe = Path(sys.executable).parent / "options-v4"
    print(f"preparing: options-v4 run --date {date} --source simulated (not timed) ...", flush=True)
    proc = subprocess.run([str(exe), "run", "--date", date, "--source", "simulated"], env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"the pipeline run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return db


def snapshot_of(wh: Warehouse, session: dt.date, n: int) -> str:
    """A snapshot of ``n`` positions: the session's stored one topped up with other candidates."""
    snap = latest_snapshot(wh, session)
    if snap is None:
        sys.exit(f"no allocation snapshot stored for {session}")
    rows = snap.positions.to_dicts()[:n]
    s = strategies
    extra = wh.read(sa.select(s.c.strategy_id, s.c.symbol, s.c.strategy_name, s.c.lots, s.c.lot_size)
                    .where(s.c.trade_date == session, s.c.rank == 1, s.c.unlimited_risk.is_not(True),
                           s.c.symbol.not_in([r["symbol"] for r in rows]))
                    .order_by(s.c.total_score.desc(), s.c.symbol)).unique("symbol", keep="first", maintain_order=True)
    for r in extra.head(n - len(rows)).to_dicts():
        rows.append({"position_id": f"AL-{r['strategy_id']}", "strategy_id": r["strategy_id"], "symbol": r["symbol"],
                     "strategy_name": r["strategy_name"], "tier": "TIER3", "lots": int(r["lots"] or 1),
                     "lot_size": r["lot_size"], "capital_used": 0.0})
    aid = hashlib.sha256(("bench\n" + "\n".join(sorted(r["position_id"] for r in rows))).encode()).hexdigest()
    now = dt.datetime.now(dt.UTC)
    summary = {k: v for k, v in snap.summary.items() if k in portfolio_allocation_summary.c}
    with wh.engine.begin() as c:
        c.execute(portfolio_allocation_summary.insert().values(
            **{**summary, "allocation_id": aid, "positions": len(rows), "capital": PAPER_CAPITAL, "created_at": now}))
        keep = set(portfolio_allocation.c.keys())
        c.execute(portfolio_allocation.insert(), [
            {**dict.fromkeys(keep), **{k: v for k, v in r.items() if k in keep}, "allocation_id": aid,
             "trade_date": session, "capital": PAPER_CAPITAL, "created_at": now} for r in rows])
    return aid


def execute_once(db: Path, aid: str, session: dt.date) -> tuple[float, int, int, dict[str, int], float, int]:
    wh = Warehouse(f"sqlite:///{db}", create=False)
    approval, _ = approve(wh, aid, approved_by="bench")
    t0 = time.perf_counter()
    store = TradingStore(wh)
    plan = allocation_plan(wh, aid, approval.position_ids, approval_id=approval.approval_id)
    px = paper_execution(session_quote_book(wh, session, plan.symbols), capital=plan.capital)
    report = execute_allocation(plan, px.broker, store, px.config)
    seconds = time.perf_counter() - t0
    twice = sum(1 for n in px.broker.placements.values() if n > 1)
    states: dict[str, int] = {}
    for s in report.strategies:
        states[s.state] = states.get(s.state, 0) + 1
    t1 = time.perf_counter()
    again_px = paper_execution(session_quote_book(wh, session, plan.symbols), capital=plan.capital)
    again = execute_allocation(plan, again_px.broker, store, again_px.config)
    again_seconds = time.perf_counter() - t1
    wh.dispose()
    return seconds, report.orders_placed, twice, states, again_seconds, again.orders_placed + len(again_px.broker.events)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", type=Path, help="a prepared SQLite warehouse (default: run the pipeline)")
    ap.add_argument("--date", default="2025-07-17")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    session = dt.date.fromisoformat(args.date)
    with tempfile.TemporaryDirectory(prefix="ov4bench_exec_") as tmp:
        folder = Path(tmp)
        src = args.warehouse or run_pipeline(folder, args.date)
        base = folder / "prepared.db"
        shutil.copy(src, base)
        wh = Warehouse(f"sqlite:///{base}", create=False)
        aid = snapshot_of(wh, session, POSITIONS)
        wh.dispose()
        best = None
        for i in range(1, args.repeat + 1):
            db = folder / f"run{i}.db"
            shutil.copy(base, db)  # a fresh warehouse per repetition (not timed)
            seconds, orders, twice, states, again_s, again_sent = execute_once(db, aid, session)
            best = seconds if best is None else min(best, seconds)
            print(f"run {i}: {POSITIONS} positions, {orders} orders placed in {seconds:.2f} s "
                  f"({seconds / POSITIONS * 1000:.0f} ms per position); states {states}; "
                  f"keys placed twice: {twice}; second execute: {again_sent} sent in {again_s:.2f} s")
        print(f"best {best:.2f} s for {POSITIONS} positions (target <= 2 s; original 4.2 s per strategy)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
