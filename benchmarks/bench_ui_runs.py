"""UI-launched runs against the CLI's, and a year's backfill of the IV-collection assets through the daemon.

    .venv/bin/python benchmarks/bench_ui_runs.py [--date 2025-07-17] [--sessions 250] [--no-backfill]

Every step runs in fresh scratch places (DAGSTER_HOME, SQLite warehouse, OPTIONS_V4_HOME), simulated
market, and prints wall time and the CPU time of the processes it started (the machine is shared:
CPU time is the steadier figure).

1. Import cost: ``python -c "import options_v4_dagster.definitions"`` and the code location's load
   (``build_defs()``), best of 3.
2. ``options-v4 run --date D`` (the CLI: one in-process run of daily_pipeline).
3. The same session launched the way the UI launches it: ``dagster job execute -m
   options_v4_dagster.definitions -j daily_pipeline`` with the partition tag (the run executes with the
   job's executor, as a run launched from the UI does); the ratio to the CLI's time (target <= 1.5).
4. An asset backfill of the IV-collection assets (iv_collection's seven) for the N sessions ending at D,
   submitted with ``options-v4 backfill --submit --wait`` to an instance (SQLite, queued run
   coordinator, 4 runs at once as in the deployment) while ``dagster-daemon run`` runs: wall time
   from submission to the backfill's end (target <= 10 min for 250 sessions), its runs.
5. Rows against day-by-day runs (``iv_collection`` one session per run, in session order): the first 3
   sessions of the range into a fresh warehouse, and the last session into a warehouse holding what the
   earlier sessions' runs leave (the backfill's IV history and bars before it): every IV-collection
   table's rows of those sessions must be identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
INSTANCE_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 4
"""
#: tables of the IV-collection assets, by their date column; columns holding the time of writing are left out
SESSION_TABLES = {"fno_universe": "trade_date", "option_chain_data": "trade_date", "market_conditions": "trade_date",
                  "option_greeks": "trade_date", "historical_iv_summary": "trade_date",
                  "iv_percentiles": "trade_date", "pipeline_failures": "trade_date", "session_provenance": "trade_date"}
BAR_TABLES = {"underlying_bars": ("symbol", "date"), "nifty_historical_data": ("date",), "india_vix_data": ("date",)}
WRITE_TIME = ("recorded_at", "written_at")


def scratch(base: Path, name: str) -> dict[str, str]:
    home = base / name
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(INSTANCE_YAML)
    return {**os.environ, "DAGSTER_HOME": str(home / "dagster_home"), "DATABASE_URL": f"sqlite:///{home / 'wh.db'}",
            "OPTIONS_V4_HOME": str(home / "home"), "OPTIONS_V4_MARKET_DATA": "simulated"}


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd: list[str], env: dict, label: str, log: Path | None = None) -> tuple[float, float]:
    """Run ``cmd``; (wall seconds, CPU seconds of it and its children). Exits on failure."""
    cpu0, t0 = _child_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _child_cpu() - cpu0
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"{label} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        sys.exit(1)
    return wall, cpu


def import_costs(env: dict) -> None:
    py = str(BIN / "python")
    for label, code in (("import options_v4_dagster.definitions", "import options_v4_dagster.definitions"),
                        ("code location load (import + build_defs)",
                         "import options_v4_dagster.definitions as d; d.build_defs()")):
        runs = [timed([py, "-c", code], env, label) for _ in range(3)]
        wall, cpu = min(runs)
        print(f"{label:45s} {wall:6.2f} s wall {cpu:6.2f} s CPU (best of 3)")


def ui_vs_cli(base: Path, date: str) -> None:
    cli_wall, cli_cpu = timed([str(BIN / "options-v4"), "run", "--date", date], scratch(base, "cli"), "options-v4 run")
    ui_cmd = [str(BIN / "dagster"), "job", "execute", "-m", "options_v4_dagster.definitions", "-j", "daily_pipeline",
              "--tags", json.dumps({"dagster/partition": date})]
    ui_wall, ui_cpu = timed(ui_cmd, scratch(base, "ui"), "dagster job execute")
    print(f"CLI run (options-v4 run --date {date})           {cli_wall:6.1f} s wall {cli_cpu:6.1f} s CPU")
    print(f"UI-style run (dagster job execute daily_pipeline) {ui_wall:6.1f} s wall {ui_cpu:6.1f} s CPU")
    print(f"UI-style / CLI: {ui_wall / cli_wall:.2f} wall, {ui_cpu / cli_cpu:.2f} CPU (target <= 1.5)")


def _start_daemon(env: dict, log: Path) -> subprocess.Popen:
    # create the instance's storage first: the daemon and `liveness-check` creating a new SQLite storage at
    # the same time can collide
    subprocess.run([str(BIN / "python"), "-c", "import dagster as dg; dg.DagsterInstance.get().get_runs(limit=1)"],
                   env=env, cwd=ROOT, check=True, capture_output=True)
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")], env=env,
                              cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ok = subprocess.run([str(BIN / "dagster-daemon"), "liveness-check"], env=env, cwd=ROOT,
                            capture_output=True).returncode == 0
        if ok:
            return daemon
        if daemon.poll() is not None:
            sys.exit(f"dagster-daemon exited ({daemon.returncode}):\n" + log.read_text()[-4000:])
        time.sleep(2)
    sys.exit("dagster-daemon: no heartbeat after 300 s")


def backfill(base: Path, sessions: list[dt.date]) -> dict[str, str]:
    env = scratch(base, "backfill")
    daemon = _start_daemon(env, base / "daemon.log")
    try:
        wall, cpu = timed([str(BIN / "options-v4"), "backfill", "--start", str(sessions[0]), "--end",
                           str(sessions[-1]), "--job", "iv_collection", "--submit", "--wait"], env,
                          "options-v4 backfill --submit --wait", log=base / "backfill.log")
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
    runs = _runs(env)
    cpu_runs = sum(r[3] for r in runs)
    print(f"backfill of {len(sessions)} sessions {sessions[0]} .. {sessions[-1]} (IV-collection assets, daemon): "
          f"{wall:6.1f} s wall ({wall / 60:.1f} min; target <= 10 min), {len(runs)} runs, "
          f"{cpu_runs:.0f} s of run time")
    for start, end, assets, secs in runs:
        print(f"    run {start} .. {end} {secs:6.1f} s  {assets}")
    return env


def _runs(env: dict) -> list[tuple]:
    code = ("import dagster as dg, json\n"
            "i = dg.DagsterInstance.get()\n"
            "out = []\n"
            "for rec in reversed(i.get_run_records()):\n"
            "    r = rec.dagster_run\n"
            "    t = r.tags\n"
            "    out.append((t.get('dagster/asset_partition_range_start', t.get('dagster/partition')),"
            " t.get('dagster/asset_partition_range_end', t.get('dagster/partition')),"
            " ','.join(sorted(k.to_user_string() for k in (r.asset_selection or []))),"
            " (rec.end_time or 0) - (rec.start_time or 0), r.status.value))\n"
            "print(json.dumps(out))\n")
    proc = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, check=True)
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = [r for r in rows if r[4] != "SUCCESS"]
    if bad:
        sys.exit(f"backfill runs not successful: {bad}")
    return [tuple(r[:4]) for r in rows]


# --- rows against day-by-day runs -----------------------------------------------------------------

def _day_by_day(env: dict, sessions: list[dt.date]) -> None:
    for d in sessions:
        timed([str(BIN / "options-v4"), "iv", "collect", "--date", str(d)], env, f"iv collect {d}")


def _frame(url: str, sql: str, params: dict):
    from options_v4_dagster.store import Warehouse

    wh = Warehouse(url, create=False)
    try:
        f = wh.read(sql, params)
    finally:
        wh.dispose()
    f = f.drop([c for c in f.columns if c in WRITE_TIME])
    return f.sort(f.columns, nulls_last=True) if f.height else f


def compare(url_backfill: str, url_day: str, sessions: list[dt.date]) -> int:
    """Rows of ``sessions`` in every IV-collection table (bars: the dates and symbols the day-by-day runs
    wrote) equal in both warehouses; the rows compared."""
    from polars.testing import assert_frame_equal

    n = 0
    days = {f"d{i}": d.isoformat() for i, d in enumerate(sessions)}
    inlist = ", ".join(f":{k}" for k in days)
    for table, col in SESSION_TABLES.items():
        sql = f'SELECT * FROM "{table}" WHERE {col} IN ({inlist})'
        if table == "session_provenance":
            sql += " AND asset NOT IN ('technical_signals', 'strategy_candidates', 'portfolio_allocation')"
        a, b = _frame(url_backfill, sql, days), _frame(url_day, sql, days)
        assert_frame_equal(a, b, check_dtypes=False, check_exact=True)
        n += a.height
    for table, key in BAR_TABLES.items():
        b = _frame(url_day, f'SELECT * FROM "{table}"', {})
        lo, hi = b.get_column("date").min(), b.get_column("date").max()
        a = _frame(url_backfill, f'SELECT * FROM "{table}" WHERE date BETWEEN :lo AND :hi', {"lo": lo, "hi": hi})
        a = a.join(b.select(list(key)).unique(), on=list(key), how="semi").sort(a.columns, nulls_last=True)
        assert_frame_equal(a, b, check_dtypes=False, check_exact=True)
        n += a.height
    return n


def _seed_history(url_from: str, url_to: str, before: dt.date) -> None:
    """What day-by-day runs of the sessions before ``before`` leave for it to read: the backfill's IV
    history (with its provenance: iv_percentiles looks back 252 sessions) and daily bars (market_conditions
    reads every stored NIFTY close) before ``before``."""
    import sqlalchemy as sa

    from options_v4_dagster.store import Replace, Warehouse
    from options_v4_dagster.store.schema import metadata

    src, dst = Warehouse(url_from, create=False), Warehouse(url_to)
    try:
        t = metadata.tables
        h, p = t["historical_iv_summary"], t["session_provenance"]
        writes = [Replace.window("historical_iv_summary", src.read(sa.select(h).where(h.c.trade_date < before)),
                                 date_column="trade_date", key_column=None),
                  Replace.window("session_provenance", src.read(sa.select(p).where(
                      p.c.trade_date < before, p.c.asset == "iv_history")), date_column="trade_date", key_column="asset")]
        for table, key in (("underlying_bars", "symbol"), ("nifty_historical_data", None), ("india_vix_data", None)):
            writes.append(Replace.window(table, src.read(sa.select(t[table]).where(t[table].c.date < before)),
                                         key_column=key))
        dst.replace_together(writes)
    finally:
        src.dispose()
        dst.dispose()


def rows_check(base: Path, env_backfill: dict, sessions: list[dt.date]) -> None:
    first = sessions[:3]
    env = scratch(base, "day_by_day")
    t0 = time.perf_counter()
    _day_by_day(env, first)
    n = compare(env_backfill["DATABASE_URL"], env["DATABASE_URL"], first)
    checked = [*first]
    if len(sessions) > 3:
        last = sessions[-1]
        env2 = scratch(base, "day_by_day_last")
        _seed_history(env_backfill["DATABASE_URL"], env2["DATABASE_URL"], last)
        _day_by_day(env2, [last])
        n += compare(env_backfill["DATABASE_URL"], env2["DATABASE_URL"], [last])
        checked.append(last)
    print(f"rows identical to day-by-day runs on sessions {', '.join(map(str, checked))}: True "
          f"({n:,} rows compared; {time.perf_counter() - t0:.0f} s)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--date", default="2025-07-17")
    ap.add_argument("--sessions", type=int, default=250, help="sessions of the backfill, ending at --date")
    ap.add_argument("--no-backfill", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from options_v4_dagster import calendar

    with tempfile.TemporaryDirectory(prefix="ov4bench_ui_") as tmp:
        base = Path(tmp)
        import_costs(scratch(base, "imports"))
        ui_vs_cli(base, args.date)
        if not args.no_backfill:
            sessions = calendar.sessions_back(dt.date.fromisoformat(args.date), args.sessions)
            env = backfill(base, sessions)
            rows_check(base, env, sessions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
