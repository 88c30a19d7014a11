"""``options-v4 run``, ``runs`` and ``sessions``: materializing a session through Dagster, listing its
runs, and the NSE calendar (``backfill``: :mod:`.backfill`)."""

from __future__ import annotations

import datetime as dt
import os
import time

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError

from .args import parse_session
from .instance import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TAG_CLI,
    TAG_PID,
    cli_instance,
    ensure_dagster_home,
    run_pipeline,
)
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
        part = run.tags.get("dagster/partition") or (f"{run.tags[RANGE_START_TAG]} .. {run.tags.get(RANGE_END_TAG)}"
                                                      if RANGE_START_TAG in run.tags else "")
        table.add_row(run.run_id[:8], run.job_name, part, run.status.value, start,
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
