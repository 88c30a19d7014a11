"""Tick-to-decision latency of the real-time monitor: the stand-in feed at ``--rate`` ticks/s over the
open legs of a small paper portfolio (``--strategies`` spreads, 2 legs each, entered on paper in a
fresh warehouse) -> MarketFeedClient -> RealtimeMonitor (its cached fast path, ``--slow``: one
monitor_cycle(source="realtime") per evaluation, as before the cache) -> a persisted exit intent.

    .venv/bin/python benchmarks/bench_realtime_latency.py [--rate 1000] [--strategies 25] [--every 0.25]
                                                          [--interval 0.0] [--mode alert_only|simulation]
                                                          [--db URL | --pg] [--slow]

Every ``--every`` seconds the stand-in is told (``set_price``) to make one strategy's long leg crash
through its stop on its next tick. Latency = the monitor's ``time.perf_counter()`` when the stop
intent's row was committed (``RealtimeStats.intent_at``, before any exit order) minus the stand-in's
``perf_counter()`` just before it sent the forced packet (one process, one clock); also printed: to
the end of the cycle that wrote it (``cycle_done_at``: in simulation its exit orders placed and
filled on paper). Printed: p50 / p99 / max over the crossings, cycles and their duration, ticks
received, and ``uptime`` (the machine is shared). Target: p99 <= 50 ms (the original monitor: 0.5 s
cycles). ``--db``: a PostgreSQL URL of an empty database; ``--pg``: a scratch database created on
``OPTIONS_V4_TEST_PG`` (default the local server, trust auth) and dropped afterwards (default: a
SQLite file in a temporary directory).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from options_v4_dagster.store import Warehouse, schema  # noqa: E402
from options_v4_dagster.store.monitoring import strategy_key  # noqa: E402
from options_v4_dagster.store.trading import TradingStore  # noqa: E402
from options_v4_dagster.store.trading_queries import allocation_plan, session_quote_book  # noqa: E402
from options_v4_dagster.trading.execution import execute_allocation  # noqa: E402
from options_v4_dagster.trading.feed import MarketFeedClient  # noqa: E402
from options_v4_dagster.trading.feed.standin import StandInFeed  # noqa: E402
from options_v4_dagster.trading.realtime import RealtimeMonitor  # noqa: E402
from options_v4_dagster.trading.replay import paper_execution  # noqa: E402
from options_v4_dagster_tests.trading_seed import NOW, D, seed_allocation  # noqa: E402

AID = "c" * 64
T0 = dt.datetime(2025, 7, 18, 5, 0, tzinfo=dt.UTC)


def seed(wh: Warehouse, n: int) -> tuple[dict[str, float], dict[str, str]]:
    """n spreads on NIFTY-like symbols; (security id -> entry price, strategy key -> long leg id)."""
    positions, prices, longs = {}, {}, {}
    for i in range(n):
        sym = f"SYM{i:03d}"
        lo, hi = str(70_000 + 2 * i), str(70_001 + 2 * i)
        positions[f"AL-{i}"] = (sym, 1, 75, [("BUY", "CE", 1000.0, 120.0, lo), ("SELL", "CE", 1100.0, 60.0, hi)])
        prices[lo], prices[hi] = 120.0, 60.0
        longs[strategy_key(f"20250717-{sym}-Spread-moderate", AID)] = lo
    seed_allocation(wh, AID, positions)
    with wh.engine.begin() as c:
        for _, (sym, *_r) in positions.items():
            sid = f"20250717-{sym}-Spread-moderate"
            c.execute(schema.strategy_exit_levels.insert().values(
                strategy_id=sid, trade_date=D, profit_target=4000.0, stop_loss=1500.0, time_exit_dte=3,
                scale_out=json.dumps([]), adjustments=json.dumps([])))
            c.execute(schema.strategy_parameters.insert().values(
                strategy_id=sid, trade_date=D, max_loss=4500.0, max_profit=10500.0, breakevens=json.dumps([])))
    plan = allocation_plan(wh, AID)
    px = paper_execution(session_quote_book(wh, D, plan.symbols), capital=1e7, start=NOW)
    execute_allocation(plan, px.broker, TradingStore(wh), px.config)
    return prices, longs


def _scratch_pg() -> tuple[str, object]:
    """(URL of a new empty database on the test server, a function that drops it)."""
    import sqlalchemy as sa

    base = os.environ.get("OPTIONS_V4_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"ov4_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False), drop


def _pct(xs: list[float]) -> str:
    a = np.array(xs) * 1e3
    if a.size == 0:
        return "no samples"
    return f"p50 {np.percentile(a, 50):.1f} ms, p99 {np.percentile(a, 99):.1f} ms, max {a.max():.1f} ms"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--strategies", type=int, default=25)
    ap.add_argument("--every", type=float, default=0.25)
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--mode", choices=("alert_only", "simulation"), default="alert_only")
    ap.add_argument("--db", default=None)
    ap.add_argument("--pg", action="store_true", help="a scratch PostgreSQL database (module docstring)")
    ap.add_argument("--slow", action="store_true", help="monitor_cycle per evaluation (no cache)")
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    drop = None
    if args.pg:
        args.db, drop = _scratch_pg()
    try:
        run(args, Warehouse(args.db or f"sqlite:///{Path(tmp.name) / 'bench.db'}"))
    finally:
        if drop is not None:
            drop()


def run(args, wh: Warehouse) -> None:
    prices, longs = seed(wh, args.strategies)
    start = time.monotonic()

    def clock():
        return T0 + dt.timedelta(seconds=time.monotonic() - start)

    with StandInFeed(prices, seed=7, rate=args.rate, sigma=0.05, record_sends=True) as feed:
        def factory(**cb):
            return MarketFeedClient("1000", "bench", base_url=feed.url, **cb)

        mon = RealtimeMonitor(wh, factory, mode=args.mode, interval=args.interval, clock=clock,
                              poll_positions_every=60.0, fast=not args.slow)
        durations: list[float] = []
        mon.on_event = lambda kind, p: durations.append(p["seconds"]) if kind == "cycle" else None
        import threading

        t = threading.Thread(target=mon.run, kwargs={"until": time.monotonic() + 600}, daemon=True)
        t.start()
        time.sleep(1.5)  # connect, subscribe, first cycles (warm-up)
        ticks0 = mon.stats.ticks
        forced: list[tuple[str, str, float]] = []
        for key, sid in longs.items():
            t_set = time.perf_counter()
            feed.set_price(sid, 60.0)  # (60 - 120) x 75 = -4,500: through the 1,500 stop
            forced.append((key, sid, t_set))
            time.sleep(args.every)
        time.sleep(1.0)
        mon.stop()
        t.join(10)
        sent = {}
        for (sid, _vol), ts in list(feed.sent_at.items()):
            sent.setdefault(sid, []).append(ts)
    lat, done, missed = [], [], 0
    for key, sid, t_set in forced:
        after = [ts for ts in sent.get(sid, []) if ts >= t_set]
        got = mon.stats.intent_at.get(f"{key}:stop_loss:stop")
        if not after or got is None:
            missed += 1
            continue
        lat.append(got - min(after))
        end = mon.stats.cycle_done_at.get(f"{key}:stop_loss:stop")
        if end is not None:
            done.append(end - min(after))
    dur_ms = np.array(durations) * 1e3
    seconds = len(forced) * args.every + 1.0
    print(f"real-time monitor ({args.mode}, {wh.dialect}, {'monitor_cycle' if args.slow else 'cached fast path'}): "
          f"{args.strategies} strategies / {len(prices)} legs, stand-in {args.rate:g} ticks/s, interval {args.interval:g} s")
    print(f"  tick -> persisted intent over {len(lat)} stop crossings ({missed} missed): {_pct(lat)} "
          f"(target p99 <= 50 ms; the original: 0.5 s cycles)")
    print(f"  tick -> end of the cycle that wrote it{' (exit orders placed and filled)' if args.mode == 'simulation' else ''}: "
          f"{_pct(done)}")
    print(f"  cycles {mon.stats.cycles} ({mon.stats.slow_cycles} by monitor_cycle): duration "
          f"p50 {np.percentile(dur_ms, 50):.1f} ms, p99 {np.percentile(dur_ms, 99):.1f} ms; cache loads "
          f"{mon.stats.position_refreshes}, snapshot flushes {mon.stats.snapshot_flushes}; ticks received "
          f"{mon.stats.ticks - ticks0} in ~{seconds:.0f} s ({(mon.stats.ticks - ticks0) / seconds:.0f}/s)")
    print("  uptime:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    wh.dispose()


if __name__ == "__main__":
    main()
