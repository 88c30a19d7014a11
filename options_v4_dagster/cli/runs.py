"""``options-v4 run``, ``backfill``, ``runs`` and ``sessions``: materializing sessions through Dagster,
listing its runs, and the NSE calendar."""

from __future__ import annotations

import datetime as dt
import os
import time

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError

from .args import last_partition, parse_session
from .instance import TAG_CLI, TAG_PID, cli_instance, ensure_dagster_home, run_pipeline
from .output import console, new_table, summarize_run, trader_summary


def cmd_run(args) -> int:
    session = parse_session(args.date)
    src = config.market_source(args.source)
    home = ensure_dagster_home()
    from options_v4_dagster.store import Warehouse

    wh = Warehouse.from_env()
    console.print(f"options-v4 run: session [bold]{session}[/], source [bold]{src}[/], "
                  f"warehouse {wh.describe()}, DAGSTER_HOME {home}")
    t0 = time.perf_counter()
    result, instance = run_pipeline(session, src, args.nse_dir)
    code = summarize_run(result, instance, time.perf_counter() - t0)
    trader_summary(wh, session)
    return code


def cmd_backfill(args) -> int:
    from options_v4_dagster import calendar

    start, end = args.start, args.end
    if start > end:
        raise ConfigError(f"--start {start} is after --end {end}")
    if end > last_partition():
        raise ConfigError(f"--end {end} is after the last partition {last_partition()}: "
                          "a future session has no market data")
    sessions = calendar.sessions_between(max(start, dt.date.fromisoformat(config.partition_start())), end)
    if not sessions:
        raise ConfigError(f"no NSE sessions between {start} and {end}")
    job = args.job
    console.print(f"options-v4 backfill: {len(sessions)} sessions {sessions[0]} .. {sessions[-1]}, job {job}, "
                  f"source {config.market_source(args.source)} (in order, one Dagster run per session)")
    t0 = time.perf_counter()
    failed, missing = [], []
    instance = cli_instance()
    for i, d in enumerate(sessions, 1):
        t = time.perf_counter()
        result, instance = run_pipeline(d, args.source, args.nse_dir, job_name=job, log_level="WARNING",
                                        instance=instance)
        ok = result.success
        if not ok:
            failed.append(d)
        summary = _missing_summary(d)
        if summary:
            missing.append((d, summary))
        console.print(f"[{i}/{len(sessions)}] {d} {'ok' if ok else 'FAILED'} in {time.perf_counter() - t:.1f}s"
                      + (f"  ({summary})" if summary else ""))
    total = time.perf_counter() - t0
    console.print(f"backfill done: {len(sessions)} sessions in {total:.1f}s "
                  f"({total / len(sessions):.1f}s per session); failed: {[str(d) for d in failed] or 'none'}")
    return 1 if failed else 0


def _missing_summary(session: dt.date) -> str:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.failures import failure_counts

    wh = Warehouse.from_env()
    rows = failure_counts(wh, session, ("universe", "option_chains"))
    parts = []
    for r in rows.iter_rows(named=True):
        if r["asset"] == "universe":
            parts.append("session missing from the source")
        else:
            parts.append(f"{r['n']} symbols {r['kind']}")
    return ", ".join(parts)


def cmd_runs(args) -> int:
    """The latest Dagster runs of the instance, after marking this CLI's abandoned runs failed."""
    instance = cli_instance()
    records = instance.get_run_records(limit=args.limit)
    table = new_table(f"latest {len(records)} runs in {os.environ['DAGSTER_HOME']}",
                      ("run", "job", "partition", "status", "started (UTC)", "by"))
    for rec in records:
        run = rec.dagster_run
        start = dt.datetime.fromtimestamp(rec.start_time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if rec.start_time else ""
        by = run.tags.get(TAG_CLI)
        table.add_row(run.run_id[:8], run.job_name, run.tags.get("dagster/partition", ""), run.status.value, start,
                      f"options-v4 {by} (pid {run.tags.get(TAG_PID)})" if by else "Dagster UI / daemon")
    console.print(table)
    return 0


def cmd_sessions(args) -> int:
    from options_v4_dagster import calendar

    end = args.end or calendar.latest_session()
    start = args.start or end - dt.timedelta(days=14)
    if start > end:
        raise ConfigError(f"--start {start} is after --end {end}")
    for d in calendar.sessions_between(start, end):
        console.print(d.isoformat())
    return 0
