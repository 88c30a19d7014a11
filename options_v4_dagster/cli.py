"""``options-v4``: the command line, mirroring the original Options V4 scripts.

    options-v4 run [--date YYYY-MM-DD] [--source simulated|nse_files|dhan] [--nse-dir DIR]
    options-v4 sessions [--start D] [--end D]

``run`` materializes the daily pipeline for one NSE session through Dagster, against the
instance in ``DAGSTER_HOME`` (default: ``.dagster_home`` in the checkout), so every run shows
in the Dagster UI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from options_v4_dagster import calendar, config
from options_v4_dagster.errors import ConfigError, OptionsV4Error

console = Console(highlight=False)


def _ensure_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        base = config.PROJECT_ROOT if config.PROJECT_ROOT is not None else Path.home() / ".options_v4"
        home = str(base / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def parse_session(value: str | None) -> dt.date:
    """A session date from the command line; ``None`` is the latest completed session."""
    if value is None:
        return calendar.latest_session()
    try:
        d = dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"--date {value!r} is not a date in YYYY-MM-DD form") from None
    if not calendar.is_session(d):
        before, after = calendar.previous_session(d), calendar.next_session(d)
        raise ConfigError(f"{d} ({d:%A}) is not an NSE trading session; the sessions around it are "
                          f"{before} and {after}")
    if d < dt.date.fromisoformat(config.partition_start()):
        raise ConfigError(f"{d} is before the first partition {config.partition_start()} "
                          "(set OPTIONS_V4_PARTITION_START to go further back)")
    return d


def run_pipeline(session: dt.date, source: str | None = None, nse_dir: str | None = None,
                 job_name: str = "daily_pipeline", raise_on_error: bool = False, log_level: str = "INFO"):
    """Execute the daily job for one session in-process against the configured instance."""
    import dagster as dg

    from options_v4_dagster.definitions import build_defs

    _ensure_dagster_home()
    src = config.market_source(source)
    market_cfg: dict = {"source": src}
    if nse_dir:
        market_cfg["nse_data_dir"] = str(Path(nse_dir).expanduser().resolve())
    job = build_defs().resolve_job_def(job_name)
    instance = dg.DagsterInstance.get()
    return job.execute_in_process(
        partition_key=session.isoformat(),
        instance=instance,
        run_config={"resources": {"market_data": {"config": market_cfg}},
                    "loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={"options_v4/cli": "run", "options_v4/source": src},
        raise_on_error=raise_on_error,
    ), instance


def _summarize(result, instance, elapsed: float) -> int:
    import dagster as dg

    run_id = result.run_id
    records = instance.get_records_for_run(run_id).records
    starts: dict[str, float] = {}
    table = Table(title=f"run {run_id[:8]}  ({'success' if result.success else 'FAILED'}, {elapsed:.1f}s)")
    for col in ("step", "status", "seconds", "rows", "notes"):
        table.add_column(col, justify="right" if col in ("seconds", "rows") else "left")
    for rec in records:
        ev = rec.event_log_entry.dagster_event
        if ev is None:
            continue
        key = ev.step_key or ""
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[key] = rec.event_log_entry.timestamp
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = ev.event_specific_data.materialization
            md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            rows = md.get("dagster/row_count", "")
            notes = []
            for k in ("symbols_served", "failed_symbols", "missing_symbols", "market_state", "source"):
                if k in md:
                    notes.append(f"{k}={md[k]}")
            secs = rec.event_log_entry.timestamp - starts.get(key, rec.event_log_entry.timestamp)
            table.add_row(mat.asset_key.to_user_string(), "materialized", f"{secs:.2f}", str(rows), ", ".join(notes))
        elif ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.event_specific_data
            table.add_row(f"  check {data.check_name}", "passed" if data.passed else "FAILED", "", "",
                          (data.description or "")[:90])
        elif ev.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = ev.event_specific_data.error
            msg = err.message.strip().splitlines()[-1] if err else ""
            table.add_row(key, "FAILED", "", "", msg[:120])
    console.print(table)
    return 0 if result.success else 1


def cmd_run(args) -> int:
    session = parse_session(args.date)
    src = config.market_source(args.source)
    home = _ensure_dagster_home()
    from options_v4_dagster.store import Warehouse

    console.print(f"options-v4 run: session [bold]{session}[/], source [bold]{src}[/], "
                  f"warehouse {Warehouse.from_env().describe()}, DAGSTER_HOME {home}")
    t0 = time.perf_counter()
    result, instance = run_pipeline(session, src, args.nse_dir)
    return _summarize(result, instance, time.perf_counter() - t0)


def cmd_sessions(args) -> int:
    end = dt.date.fromisoformat(args.end) if args.end else calendar.latest_session()
    start = dt.date.fromisoformat(args.start) if args.start else end - dt.timedelta(days=14)
    for d in calendar.sessions_between(start, end):
        console.print(d.isoformat())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="options-v4", description="Options V4 on Dagster (NSE F&O options).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="materialize the daily pipeline for one session through Dagster")
    r.add_argument("--date", help="session YYYY-MM-DD (default: the latest completed session)")
    r.add_argument("--source", choices=config.MARKET_SOURCES[:3],
                   help="market data (default: OPTIONS_V4_MARKET_DATA or simulated)")
    r.add_argument("--nse-dir", help="folder of NSE files for --source nse_files (OPTIONS_V4_NSE_DATA_DIR)")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("sessions", help="list NSE trading sessions")
    s.add_argument("--start")
    s.add_argument("--end")
    s.set_defaults(func=cmd_sessions)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OptionsV4Error as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
