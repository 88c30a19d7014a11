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
import json
import math
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from options_v4_dagster import calendar, config
from options_v4_dagster import universe as fno
from options_v4_dagster.errors import ConfigError, DataError, OptionsV4Error

# Tables stay readable when the output goes to a pipe or a file (rich would assume 80 columns).
console = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 100))


#: The instance config the CLI writes (only into a dagster.yaml it wrote itself, recognised by this line).
DAGSTER_YAML_MARK = "# Dagster instance written by options-v4"
DAGSTER_YAML = f"""{DAGSTER_YAML_MARK} (delete this line to keep your own edits)
# SQLite storage in this folder (Dagster's defaults).
telemetry:
  enabled: false
# Runs launched by the daemon (`make dev`, schedules, the UI): a run whose worker process dies is
# marked FAILURE by the daemon's run monitor. Runs of the options-v4 CLI execute in its own process;
# the CLI marks its own abandoned runs failed at its next start (README: "A killed run").
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""


def _ensure_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        base = config.PROJECT_ROOT if config.PROJECT_ROOT is not None else Path.home() / ".options_v4"
        home = str(base / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    yaml_path = path / "dagster.yaml"
    if path != config.PROJECT_ROOT:
        old = yaml_path.read_text() if yaml_path.exists() else None
        ours = old is None or old.startswith(DAGSTER_YAML_MARK) or old.startswith(
            "# Dagster instance: SQLite storage in this folder (Dagster's defaults)")  # written by earlier versions
        if ours and old != DAGSTER_YAML:
            yaml_path.write_text(DAGSTER_YAML)
    return path


# --- argument validators (argparse ``type=``): a bad value is one line naming the argument, status 2


def last_partition(now: dt.datetime | None = None) -> dt.date:
    """The last daily partition: today's session in IST (the partitions def has ``end_offset=1``), or the
    latest session before today on a weekend or holiday. Later dates are in the future and have no data."""
    today = (now or dt.datetime.now(calendar.IST)).astimezone(calendar.IST).date()
    return calendar.previous_session(today, inclusive=True)


def date_arg(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a calendar date in YYYY-MM-DD form") from None


def session_arg(value: str) -> dt.date:
    """A session the pipeline has a partition for: a trading day from the first partition to the last."""
    d = date_arg(value)
    last = last_partition()
    if d > last:
        raise argparse.ArgumentTypeError(f"{d} is after the last partition {last} (today's session at the latest): "
                                         "a future session has no market data")
    if not calendar.is_session(d):
        before, after = calendar.previous_session(d), calendar.next_session(d)
        raise argparse.ArgumentTypeError(f"{d} ({d:%A}) is not an NSE trading session; the sessions around it are "
                                         f"{before} and {after}")
    start = config.partition_start()
    if d < dt.date.fromisoformat(start):
        raise argparse.ArgumentTypeError(f"{d} is before the first partition {start} "
                                         "(set OPTIONS_V4_PARTITION_START to go further back)")
    return d


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def capital_arg(value: str) -> float:
    try:
        x = float(value.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"capital {value!r} is not a number of rupees") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"capital {value!r} must be a positive number of rupees")
    return x


def symbol_arg(value: str) -> str:
    sym = value.strip().upper()
    try:
        fno.get(sym)
    except DataError:
        raise argparse.ArgumentTypeError(f"{sym or value!r} is not an underlying in the F&O universe "
                                         "(options_v4_dagster/reference/fno_universe.csv)") from None
    return sym


def symbols_arg(value: str) -> list[str]:
    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise argparse.ArgumentTypeError(f"{value!r} names no symbol")
    unknown = [s for s in syms if s not in set(fno.symbols())]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the "
                                         "F&O universe (options_v4_dagster/reference/fno_universe.csv)")
    return list(dict.fromkeys(syms))


def existing_dir(value: str) -> str:
    if not Path(value).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a folder")
    return value


def existing_file(value: str) -> str:
    if not Path(value).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"{value} is not a file")
    return value


def parse_session(value: str | dt.date | None) -> dt.date:
    """A session date from the command line; ``None`` is the latest completed session."""
    if value is None:
        return calendar.latest_session()
    if isinstance(value, dt.date):
        return value
    try:
        return session_arg(value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--date: {exc}") from None


def check_database() -> str:
    """Connect once to the warehouse named by ``DATABASE_URL``: a clear :class:`ConfigError` naming the
    variable and host:port (never the password) instead of SQLAlchemy's traceback. Returns the location."""
    import sqlalchemy as sa

    url = config.database_url()
    where = config.database_location(url)
    engine = sa.create_engine(url)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as exc:
        lines = str(exc.orig if exc.orig is not None else exc).strip().splitlines() or [type(exc).__name__]
        reason = lines[0]
        password = engine.url.password
        if password:
            reason = reason.replace(str(password), "***")
        raise ConfigError(f"DATABASE_URL: cannot connect to the warehouse at {where}: {reason}") from None
    finally:
        engine.dispose()
    return where


# --- runs of this CLI: tagged with the process that executes them, so an abandoned one can be found

TAG_CLI, TAG_PID, TAG_HOST, TAG_TOKEN = "options_v4/cli", "options_v4/pid", "options_v4/host", "options_v4/start_token"


def _process_start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/PID/stat`` field 22): with the pid
    it names one process, even after the pid is reused. None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc on this system: fall back to "the pid exists"
        return "?" if _pid_exists(pid) else None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cli_run_tags(command: str) -> dict[str, str]:
    pid = os.getpid()
    return {TAG_CLI: command, TAG_PID: str(pid), TAG_HOST: socket.gethostname(),
            TAG_TOKEN: _process_start_token(pid) or "?"}


def _process_alive(pid: int, token: str) -> bool:
    now = _process_start_token(pid)
    if now is None:
        return False
    return token in ("?", "") or now in ("?", token)


def fail_abandoned_runs(instance) -> list[str]:
    """Mark FAILURE this host's CLI runs still STARTING/STARTED whose process is gone (killed, crashed,
    machine rebooted). Returns the ids marked. Runs of other hosts and live processes are left alone."""
    import dagster as dg

    host = socket.gethostname()
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                             dg.DagsterRunStatus.STARTING],
                                                   tags={TAG_HOST: host}))
    marked = []
    for run in runs:
        tags = run.tags
        try:
            pid = int(tags.get(TAG_PID, ""))
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid, tags.get(TAG_TOKEN, "")):
            continue
        instance.report_run_failed(run, message=f"abandoned: the options-v4 process (pid {pid} on {host}) that ran "
                                                f"it is gone (killed or crashed); marked failed by options-v4 "
                                                f"pid {os.getpid()} at its start")
        marked.append(run.run_id)
    return marked


def _instance():
    """The Dagster instance of DAGSTER_HOME, after marking this CLI's abandoned runs failed (one line)."""
    import dagster as dg

    _ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    marked = fail_abandoned_runs(instance)
    if marked:
        console.print(f"marked {len(marked)} abandoned run(s) of a killed options-v4 process failed: "
                      + ", ".join(r[:8] for r in marked))
    return instance


def run_pipeline(session: dt.date, source: str | None = None, nse_dir: str | None = None,
                 job_name: str = "daily_pipeline", raise_on_error: bool = False, log_level: str = "INFO",
                 instance=None):
    """Execute the daily job for one session in-process against the configured instance."""
    from options_v4_dagster.definitions import build_defs

    instance = instance or _instance()
    src = config.market_source(source)
    market_cfg: dict = {"source": src}
    if nse_dir:
        market_cfg["nse_data_dir"] = str(Path(nse_dir).expanduser().resolve())
    job = build_defs().resolve_job_def(job_name)
    return job.execute_in_process(
        partition_key=session.isoformat(),
        instance=instance,
        run_config={"resources": {"market_data": {"config": market_cfg}},
                    "loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={**cli_run_tags("run"), "options_v4/source": src},
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
            for k in ("symbols_served", "failed_symbols", "missing_symbols", "market_state", "source",
                      "symbols_with_candidates", "candidates_built", "build_failures", "market_rules"):
                if k in md:
                    notes.append(f"{k}={md[k]}")
            for k in ("deployment", "expected_monthly_return"):
                if k in md:
                    notes.append(f"{k}={md[k]:.1%}")
            secs = rec.event_log_entry.timestamp - starts.get(key, rec.event_log_entry.timestamp)
            table.add_row(mat.asset_key.to_user_string(), "materialized", f"{secs:.2f}", str(rows), ", ".join(notes))
        elif ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.event_specific_data
            table.add_row(f"  check {data.check_name}", "passed" if data.passed else "FAILED", "", "",
                          (data.description or "")[:90])
        elif ev.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = ev.event_specific_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            msg = err.message.strip().splitlines()[-1] if err else ""
            table.add_row(key, "FAILED", "", "", msg[:120])
    console.print(table)
    return 0 if result.success else 1


def cmd_run(args) -> int:
    session = parse_session(args.date)
    src = config.market_source(args.source)
    home = _ensure_dagster_home()
    from options_v4_dagster.store import Warehouse

    wh = Warehouse.from_env()
    console.print(f"options-v4 run: session [bold]{session}[/], source [bold]{src}[/], "
                  f"warehouse {wh.describe()}, DAGSTER_HOME {home}")
    t0 = time.perf_counter()
    result, instance = run_pipeline(session, src, args.nse_dir)
    code = _summarize(result, instance, time.perf_counter() - t0)
    trader_summary(wh, session)
    return code


def session_source(wh, session: dt.date) -> str:
    """The market-data source of a stored session (fno_universe, else option_chain_data): one name,
    ``"mixed: a, b"`` if rows of two sources are stored, or ``"unknown (...)"`` when nothing is stored."""
    from options_v4_dagster.store.market_queries import stored_sources

    for table in ("fno_universe", "option_chain_data"):
        names = stored_sources(wh, table, session)
        if names:
            return names[0] if len(names) == 1 else "mixed: " + ", ".join(names)
    return "unknown (no market data stored for the session)"


def trader_summary(wh, session: dt.date) -> None:
    """What a trader wants after `options-v4 run`: the proposed positions, deployment, the expected monthly
    return against the target, the data source and where to look next (read back from the warehouse)."""
    from options_v4_dagster.store.allocations import latest_snapshot

    source = session_source(wh, session)
    snap = latest_snapshot(wh, session)
    if snap is None:
        console.print(f"no allocation is stored for {session} (market data: {source}): see the failed steps above; "
                      f"`make dev` shows the run in the Dagster UI")
        return
    s, pos = snap.summary, snap.positions
    table = Table(title=f"proposed positions {session} (allocation {snap.allocation_id[:12]}): capital INR "
                        f"{s['capital']:,.0f}, market data {source}, market state {s['market_state'] or 'n/a'}")
    for col in ("symbol", "strategy", "lots", "capital ₹", "POP", "EV ₹", "exp. return ₹/mo"):
        table.add_column(col, justify="left" if col in ("symbol", "strategy") else "right")
    for r in pos.iter_rows(named=True):
        table.add_row(r["symbol"], r["strategy_name"], str(r["lots"]), f"{r['capital_used']:,.0f}",
                      "" if r["pop"] is None else f"{r['pop']:.0%}",
                      "" if r["expected_value"] is None else f"{r['expected_value']:,.0f}",
                      "" if r["expected_return"] is None else f"{r['expected_return']:,.0f}")
    console.print(table)
    emr, target = s["expected_monthly_return"], s["target_monthly_return"]
    verdict = ""
    if emr is not None and target is not None:
        verdict = " (meets the target)" if emr >= target else " (below the target)"
    console.print(f"{s['positions']} positions; deployed INR {s['capital_used']:,.0f} = {s['deployment']:.1%} of "
                  f"INR {s['capital']:,.0f}; expected monthly return "
                  f"{'n/a' if emr is None else f'{emr:.2%}'} vs target "
                  f"{'n/a' if target is None else f'{target:.0%}'}{verdict}; market data: {source}")
    console.print(f"next: `make dev` (Dagster UI, http://127.0.0.1:3000: asset pages, charts, checks); "
                  f"`options-v4 allocate <capital> --date {session}` (another capital); "
                  f"`options-v4 analyze --symbol NIFTY --date {session}`")


def cmd_iv(args) -> int:
    if args.iv_command == "show":
        return _iv_show(args)
    session = parse_session(args.date)
    job = "iv_collection" if args.iv_command == "collect" else "iv_analysis"
    console.print(f"options-v4 iv {args.iv_command}: session [bold]{session}[/] (job {job})")
    t0 = time.perf_counter()
    result, instance = run_pipeline(session, getattr(args, "source", None), getattr(args, "nse_dir", None),
                                    job_name=job)
    return _summarize(result, instance, time.perf_counter() - t0)


def _iv_show(args) -> int:
    import polars as pl

    from options_v4_dagster.reports import iv_chart
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.market_queries import universe_sources_between
    from options_v4_dagster.store.volatility_queries import symbol_iv_history

    wh = Warehouse.from_env()
    sym = args.symbol.upper()
    hist = symbol_iv_history(wh, sym)
    if hist.height == 0:
        console.print(f"[red]error:[/] no IV history for {sym} in {wh.describe()}; run `options-v4 iv collect` "
                      "or a backfill first")
        return 2
    shown = hist.tail(args.days)
    first, last = shown.get_column("trade_date").min(), shown.get_column("trade_date").max()
    sources = universe_sources_between(wh, first, last)
    dates = shown.get_column("trade_date").to_list()
    gaps = {int(i) for i in iv_chart.gap_starts(dates)}
    used = sorted({v for v in sources.values()}) or ["unknown"]
    table = Table(title=f"{sym}: 30-day ATM IV (last {shown.height} of {hist.height} sessions), "
                        f"market data: {', '.join(used)}")
    for col in ("session", "spot", "IV30 %", "near %", "skew25 pts", "RV20 %", "IV pct", "IV rank", "hist", "env",
                "source"):
        table.add_column(col, justify="left" if col in ("session", "env", "source") else "right")

    def pct(v, scale=100.0, nd=2):
        return "" if v is None else f"{v * scale:.{nd}f}"

    for i, r in enumerate(shown.iter_rows(named=True)):
        if i in gaps:
            missing = len(calendar.sessions_between(dates[i - 1], dates[i])) - 2
            table.add_row(f"[yellow]gap: {missing} sessions without data ({dates[i - 1]} .. {dates[i]})[/]",
                          *[""] * 10)
        table.add_row(str(r["trade_date"]), pct(r["spot"], 1.0), pct(r["atm_iv_30d"]), pct(r["atm_iv_near"]),
                      pct(r["skew_25d"]), pct(r["rv_20"]), pct(r["iv_percentile"], 1.0, 1),
                      pct(r["iv_rank"], 1.0, 1), "" if r["history_days"] is None else str(r["history_days"]),
                      r["iv_environment"] or (r["reason"] or "")[:40], sources.get(r["trade_date"], "unknown"))
    console.print(table)
    if gaps:
        console.print(f"{len(gaps)} gap(s) of more than {iv_chart.MAX_GAP_SESSIONS} sessions in the table; the chart "
                      "breaks its lines there")
    path = iv_chart.write_iv_chart(sym, hist.with_columns(pl.col("trade_date").cast(pl.Date)), args.out)
    console.print(f"chart: {path}")
    if hist.get_column("atm_iv_30d").is_not_null().sum() >= 2:  # static PNG beside the HTML
        png_path = path.with_suffix(".png")
        png_path.write_bytes(iv_chart.iv_png(sym, hist.with_columns(pl.col("trade_date").cast(pl.Date))))
        console.print(f"chart: {png_path}")
    return 0


def cmd_backfill(args) -> int:
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
    instance = _instance()
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


def cmd_strategies(args) -> int:
    from options_v4_dagster.strategies import CATALOGUE

    rows = []
    for d in CATALOGUE:
        rows.append({
            "name": d.name, "display_name": d.display_name, "category": d.category.value,
            "outlook": d.outlook.value, "iv_preference": d.iv_preference.value, "complexity": d.complexity,
            "unlimited_risk": d.unlimited_risk,
            "legs": [{"side": leg.side.value, "instrument": leg.instrument.value, "ratio": leg.ratio,
                      "strike": leg.strike.describe() if hasattr(leg.strike, "describe") else str(leg.strike),
                      "expiry": leg.expiry.value if hasattr(leg.expiry, "value") else str(leg.expiry)}
                     for leg in d.legs],
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{len(rows)} strategies")
    for col in ("name", "category", "outlook", "IV pref", "legs"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["category"], r["outlook"], r["iv_preference"],
                      ", ".join(f"{leg['side']} {leg['ratio']}x{leg['instrument']} {leg['strike']}" for leg in r["legs"]))
    console.print(table)
    return 0


def analysis_inputs(symbols: list[str] | None, session: dt.date, source: str | None, nse_dir: str | None = None):
    """The session's strategy inputs: the stored ones when the warehouse holds the session (universe,
    chains, option greeks and technical signals) from the requested source, else computed on the fly
    from the provider through the same functions the assets use. Returns (inputs, why)."""
    from options_v4_dagster.market import get_provider
    from options_v4_dagster.store import Warehouse, strategies_queries
    from options_v4_dagster.strategies.inputs import computed_inputs

    src = config.market_source(source)
    wh = Warehouse.from_env()
    stored = strategies_queries.stored_source(wh, session)
    why = f"the warehouse holds {session} from {stored}, not {src}" if stored else \
        f"the warehouse ({wh.describe()}) does not hold {session} completely"
    if stored == src:
        try:
            return strategies_queries.session_inputs(wh, session, src), f"stored session ({wh.describe()})"
        except DataError as exc:  # stored rows this release cannot use: computed instead, and said so
            why = f"the stored session cannot be used: {exc}"
    provider = get_provider(src, **({"data_dir": nse_dir} if nse_dir and src == "nse_files" else {}))
    inputs, _ = computed_inputs(provider, session, symbols)
    return inputs, why


def analysis_rows(symbols: list[str] | None, session: dt.date, source: str | None, risk: str, show_all: bool,
                  nse_dir: str | None = None, top: int = 3) -> tuple[list[dict], list, dict]:
    """Candidates for symbols on a session through :func:`strategies.pipeline.create_for_session`, from the
    stored inputs of the session or inputs computed from the provider (see :func:`analysis_inputs`), the
    failures, and which inputs (stored / computed, and why) and market-data source were used."""
    from options_v4_dagster.strategies import pipeline

    inputs, why = analysis_inputs(symbols, session, source, nse_dir)
    result = pipeline.create_for_session(inputs, risk=risk, top_per_symbol=top, keep_all=show_all, symbols=symbols)
    failures = list(inputs.failures)
    if symbols is not None:
        served = set(inputs.iv.get_column("symbol").unique().to_list()) if inputs.iv.height else set()
        failures += [pipeline.Failure(s, "analyze", f"no {inputs.origin} chain for {s} on {session}", kind="missing")
                     for s in symbols if s not in served]
    rows = []
    for rc in result.ranked:
        c, a = rc.candidate, rc.candidate.analytics
        rows.append({
            "symbol": c.symbol, "strategy_name": c.name, "category": c.strategy.category.value,
            "rank": rc.rank, "passed_filters": rc.scored.passed,
            "legs": [{"side": leg.side.value, "instrument": leg.instrument.value, "strike": leg.strike,
                      "expiry": leg.expiry.isoformat() if leg.expiry else None, "quantity": leg.quantity,
                      "price": leg.price} for leg in c.legs],
            "net_premium": a.net_premium, "max_profit": a.max_profit, "max_loss": a.max_loss,
            "breakevens": list(a.breakevens), "pop": a.pop,
            "pop_inputs": {"forward": a.pop_inputs.forward, "sigma": a.pop_inputs.sigma,
                           "t_years": a.pop_inputs.t_years},
            "expected_value": a.expected_value,
            "greeks": {"delta": a.greeks.delta, "gamma": a.greeks.gamma, "theta": a.greeks.theta,
                       "vega": a.greeks.vega},
            "margin": a.margin, "total_score": rc.scored.total_score, "conviction": rc.scored.conviction,
            "exit_levels": rc.exits.to_dict() if hasattr(rc.exits, "to_dict") else rc.exits.to_row(),
            "inputs": inputs.origin, "market_data_source": inputs.source,
        })
    return rows, failures + result.failures, {"inputs": inputs.origin, "source": inputs.source, "why": why}


def cmd_analyze(args) -> int:
    session = parse_session(args.date)
    symbols = args.symbol
    if symbols is None and not args.universe:
        symbols = ["NIFTY"]
    src = config.market_source(args.source)
    rows, failures, used = analysis_rows(symbols, session, src, args.risk, args.all, args.nse_dir, args.top)
    said = f"market data: {used['source']}, {used['inputs']} inputs ({used['why']})"
    if args.json:
        print(f"options-v4 analyze {session}: {said}", file=sys.stderr)
        print(json.dumps(rows, indent=2, default=str))
        return 0 if rows else 1
    console.print(f"options-v4 analyze {session}: {said}")
    table = Table(title=f"strategy candidates {session} ({args.risk}), market data: {used['source']}, "
                        f"{used['inputs']} inputs")
    for col in ("symbol", "#", "strategy", "net prem ₹", "max profit ₹", "max loss ₹", "breakevens", "POP",
                "EV ₹", "margin ₹", "score", "conviction"):
        table.add_column(col, justify="left" if col in ("symbol", "strategy", "breakevens", "conviction") else "right")

    def money(v):
        return "unlimited" if v is None else f"{v:,.0f}"

    for r in rows:
        table.add_row(r["symbol"], str(r["rank"]), r["strategy_name"], money(r["net_premium"]),
                      money(r["max_profit"]), money(r["max_loss"]), ", ".join(f"{b:,.1f}" for b in r["breakevens"]),
                      f"{r['pop']:.1%}", money(r["expected_value"]), money(r["margin"]), f"{r['total_score']:.1f}",
                      r["conviction"])
    console.print(table)
    errs = [f for f in failures if getattr(f, "kind", "error") == "error"]
    if errs:
        console.print(f"{len(errs)} strategies could not be built, e.g. "
                      + "; ".join(f"{f.symbol} {f.stage}: {f.reason[:60]}" for f in errs[:3]))
    return 0 if rows else 1


def _save_allocation(session: dt.date, capital: float, risk: str | None, rules: str | None) -> bool:
    """Materialize portfolio_allocation for the session through Dagster with this capital."""
    import dagster as dg

    from options_v4_dagster.definitions import build_defs

    instance = _instance()
    job = build_defs().resolve_job_def("daily_pipeline")
    op_cfg = {"capital": float(capital), "risk_tolerance": risk or "", "market_conditions_file": rules or ""}
    result = job.execute_in_process(
        partition_key=session.isoformat(), instance=instance,
        asset_selection=[dg.AssetKey("portfolio_allocation")],
        run_config={"ops": {"portfolio_allocation": {"config": op_cfg}}},
        tags=cli_run_tags("allocate"), raise_on_error=False)
    return result.success


def cmd_allocate(args) -> int:
    from options_v4_dagster.allocation.engine import NoCandidates
    from options_v4_dagster.allocation.session import allocate_session, industry_allocations
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.allocations import latest_allocation_id
    from options_v4_dagster.store.strategies_queries import latest_candidates_session

    wh = Warehouse.from_env()
    if args.date:
        session = parse_session(args.date)
    else:
        session = latest_candidates_session(wh)
        if session is None:
            raise NoCandidates(f"no strategy candidates in the warehouse ({wh.describe()}): run `options-v4 run` first")
    sa = allocate_session(wh, session, args.capital, industry_allocations(wh), risk_tolerance=args.risk,
                          rules_path=args.rules)
    out = sa.to_dict()
    if args.save:
        if not _save_allocation(session, args.capital, args.risk, args.rules):
            console.print("[red]error:[/] materializing portfolio_allocation failed (see the run in the Dagster UI)")
            return 1
        out["allocation_id"] = latest_allocation_id(wh, session)  # the snapshot stored (the same id unless the
        # industry tables were empty and the asset seeded them)
    if args.json:
        out["market_data_source"] = session_source(wh, session)
        keep = ("allocation_id", "trade_date", "market_data_source", "capital", "capital_used", "cash_left", "deployment", "deployment_target",
                "position_count", "positions", "tier_shares", "tier_targets", "industry_shares", "limits",
                "expected_monthly_return", "expected_monthly_return_inr", "target_monthly_return",
                "meets_return_target", "meets_deployment_target", "greeks", "market_state", "notes", "excluded")
        print(json.dumps({k: out[k] for k in keep if k in out}, indent=2, default=str))
        return 0
    s, pos = sa.result.summary, sa.result.positions
    source = session_source(wh, session)
    table = Table(title=f"allocation {session}: INR {args.capital:,.0f}, rules {sa.rules.state}, "
                        f"market data {source}")
    for col in ("symbol", "strategy", "tier", "industry", "view", "lots", "capital ₹", "weight", "Kelly",
                "POP", "exp. return ₹/mo", "conviction"):
        table.add_column(col, justify="right" if col in ("lots", "capital ₹", "weight", "Kelly", "POP",
                                                         "exp. return ₹/mo") else "left")
    for r in pos.iter_rows(named=True):
        table.add_row(r["symbol"], r["strategy_name"], r["tier"], (r["industry"] or "")[:28], r["position_type"],
                      str(r["lots"]), f"{r['capital_used']:,.0f}", f"{r['weight']:.1%}", f"{r['kelly_fraction']:.3f}",
                      "" if r["pop"] is None else f"{r['pop']:.0%}", f"{r['expected_return']:,.0f}", r["conviction"])
    console.print(table)
    tiers = ", ".join(f"{t} {s['tier_shares'][t]:.1%} (target {s['tier_targets'][t]:.0%})" for t in s["tier_shares"])
    console.print(f"{s['positions']} positions, {s['lots']} lots; deployed INR {s['capital_used']:,.0f} = "
                  f"{s['deployment']:.1%} (target {s['deployment_target']:.0%}); tiers: {tiers}")
    console.print(f"expected monthly return {s['expected_monthly_return']:.2%} (INR "
                  f"{s['expected_monthly_return_inr']:,.0f}) vs target {s['target_monthly_return']:.0%}; "
                  f"net delta {s['greeks']['delta']:,.0f}, theta {s['greeks']['theta']:,.0f}/day, "
                  f"vega {s['greeks']['vega']:,.0f}")
    console.print(f"market data: {source} (the candidates of {session} were built from it; another source or "
                  "session gives other positions)")
    console.print(f"allocation {out['allocation_id']}" + (" (stored)" if args.save else
                                                          " (not stored: --save materializes it)"))
    for note in s["notes"]:
        console.print(f"  note: {note}")
    return 0


def cmd_industries(args) -> int:
    from options_v4_dagster.allocation.industries import load_industry_allocations
    from options_v4_dagster.allocation.session import industry_allocations, write_industry_tables
    from options_v4_dagster.store import Warehouse

    wh = Warehouse.from_env()
    if args.action == "import":
        if not args.file:
            raise ConfigError("industries import needs a CSV or YAML file")
        allocations = load_industry_allocations(args.file)
        counts = write_industry_tables(wh, allocations)
        console.print(f"imported {args.file}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    elif args.action == "reset":
        from options_v4_dagster.allocation.industries import default_industry_allocations

        counts = write_industry_tables(wh, default_industry_allocations())
        console.print("reset to the packaged defaults: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    allocations = industry_allocations(wh)
    frame = allocations.frame()
    if args.json:
        print(json.dumps({"source": allocations.source, "industries": frame.to_dicts()}, indent=2))
        return 0
    table = Table(title=f"industry allocations ({allocations.source})")
    for col in ("industry", "weight", "view"):
        table.add_column(col, justify="right" if col == "weight" else "left")
    for r in frame.iter_rows(named=True):
        table.add_row(r["industry"], f"{r['weight']:.1%}", r["position_type"])
    console.print(table)
    return 0


def cmd_runs(args) -> int:
    """The latest Dagster runs of the instance, after marking this CLI's abandoned runs failed."""
    instance = _instance()
    records = instance.get_run_records(limit=args.limit)
    table = Table(title=f"latest {len(records)} runs in {os.environ['DAGSTER_HOME']}")
    for col in ("run", "job", "partition", "status", "started (UTC)", "by"):
        table.add_column(col)
    for rec in records:
        run = rec.dagster_run
        start = dt.datetime.fromtimestamp(rec.start_time, dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if rec.start_time else ""
        by = run.tags.get(TAG_CLI)
        table.add_row(run.run_id[:8], run.job_name, run.tags.get("dagster/partition", ""), run.status.value, start,
                      f"options-v4 {by} (pid {run.tags.get(TAG_PID)})" if by else "Dagster UI / daemon")
    console.print(table)
    return 0


def cmd_sessions(args) -> int:
    end = args.end or calendar.latest_session()
    start = args.start or end - dt.timedelta(days=14)
    if start > end:
        raise ConfigError(f"--start {start} is after --end {end}")
    for d in calendar.sessions_between(start, end):
        console.print(d.isoformat())
    return 0


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line on stderr (no usage block), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


DATE_HELP = "session YYYY-MM-DD (default: the latest completed session)"


def cmd_db(args) -> int:
    """The warehouse schema: ``upgrade`` to the newest migration, ``current`` revision, ``history``."""
    from options_v4_dagster.store import Warehouse, migrate

    wh = Warehouse(config.database_url(), create=False)
    try:
        if args.db_command == "upgrade":
            res = wh.migrate()
            before = f"{res.stamped} (stamped: tables without a schema version)" if res.stamped \
                else res.before or "empty"
            console.print(f"warehouse {wh.describe()}: {before} -> {res.after}" if res.changed
                          else f"warehouse {wh.describe()}: already at {res.after} (head)")
        elif args.db_command == "current":
            console.print(f"warehouse {wh.describe()}: {migrate.describe_current(wh.engine)}")
        else:
            for rev, down, doc in migrate.history():
                console.print(f"{down or '<base>'} -> {rev}  {doc.splitlines()[0] if doc else ''}")
    finally:
        wh.dispose()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="options-v4", description="Options V4 on Dagster (NSE F&O options).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="materialize the daily pipeline for one session through Dagster")
    r.add_argument("--date", type=session_arg, help=DATE_HELP)
    r.add_argument("--source", choices=config.MARKET_SOURCES[:3],
                   help="market data (default: OPTIONS_V4_MARKET_DATA or simulated)")
    r.add_argument("--nse-dir", type=existing_dir,
                   help="folder of NSE files for --source nse_files (OPTIONS_V4_NSE_DATA_DIR)")
    r.set_defaults(func=cmd_run)

    iv = sub.add_parser("iv", help="implied-volatility collection, analysis and history")
    ivs = iv.add_subparsers(dest="iv_command", required=True)
    for name, text in (("collect", "collect the session's chains and compute IVs through iv_percentiles"),
                       ("analyze", "recompute option_greeks, iv_history and iv_percentiles from stored chains")):
        c = ivs.add_parser(name, help=text)
        c.add_argument("--date", type=session_arg, help=DATE_HELP)
        if name == "collect":
            c.add_argument("--source", choices=config.MARKET_SOURCES[:3])
            c.add_argument("--nse-dir", type=existing_dir)
    show = ivs.add_parser("show", help="a symbol's IV history as a table and a chart file")
    show.add_argument("symbol", type=symbol_arg)
    show.add_argument("--days", type=positive_int, default=30, help="sessions shown in the table (default 30)")
    show.add_argument("--out", help="chart file (.html); default .data/charts/iv_SYMBOL.html")
    iv.set_defaults(func=cmd_iv)

    b = sub.add_parser("backfill", help="materialize a range of sessions in order, one Dagster run each")
    b.add_argument("--start", required=True, type=date_arg)
    b.add_argument("--end", required=True, type=date_arg)
    b.add_argument("--job", default="daily_pipeline", choices=("daily_pipeline", "iv_collection"))
    b.add_argument("--source", choices=config.MARKET_SOURCES[:3])
    b.add_argument("--nse-dir", type=existing_dir)
    b.set_defaults(func=cmd_backfill)

    st = sub.add_parser("strategies", help="list the strategy catalogue")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_strategies)

    an = sub.add_parser("analyze", help="best strategy candidates per symbol (from the market-data source)")
    an.add_argument("--symbol", type=symbols_arg, help="one symbol or a comma-separated list (default NIFTY)")
    an.add_argument("--universe", action="store_true", help="every underlying the source serves that day")
    an.add_argument("--date", type=session_arg, help=DATE_HELP + "; the same sessions as `run`")
    an.add_argument("--risk", default="moderate", choices=("conservative", "moderate", "aggressive"))
    an.add_argument("--source", choices=config.MARKET_SOURCES[:3])
    an.add_argument("--nse-dir", type=existing_dir)
    an.add_argument("--all", action="store_true", help="every catalogue strategy that can be built")
    an.add_argument("--top", type=positive_int, default=3, help="candidates per symbol (default 3)")
    an.add_argument("--json", action="store_true")
    an.set_defaults(func=cmd_analyze)

    al = sub.add_parser("allocate", help="allocate capital over a session's stored strategy candidates")
    al.add_argument("capital", type=capital_arg, help="INR, e.g. 1500000")
    al.add_argument("--date", type=session_arg, help="session YYYY-MM-DD (default: the latest session with candidates)")
    al.add_argument("--risk", choices=("conservative", "moderate", "aggressive"),
                    help="which stored candidates (default: those of the session's run)")
    al.add_argument("--rules", type=existing_file, help="a market_conditions.yaml (default: the packaged one)")
    al.add_argument("--save", action="store_true", help="also materialize portfolio_allocation with this capital")
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_allocate)

    ind = sub.add_parser("industries", help="show, import (CSV/YAML) or reset the industry weights and views")
    ind.add_argument("action", nargs="?", default="show", choices=("show", "import", "reset"))
    ind.add_argument("file", nargs="?", type=existing_file)
    ind.add_argument("--json", action="store_true")
    ind.set_defaults(func=cmd_industries)

    rn = sub.add_parser("runs", help="the latest Dagster runs; marks runs of killed options-v4 processes failed")
    rn.add_argument("--limit", type=positive_int, default=10)
    rn.set_defaults(func=cmd_runs)

    db = sub.add_parser("db", help="warehouse schema migrations: upgrade, current revision, history")
    db.add_argument("db_command", choices=("upgrade", "current", "history"))
    db.set_defaults(func=cmd_db)

    s = sub.add_parser("sessions", help="list NSE trading sessions")
    s.add_argument("--start", type=date_arg)
    s.add_argument("--end", type=date_arg)
    s.set_defaults(func=cmd_sessions)
    return p


#: Commands that read or write the warehouse: DATABASE_URL is checked (one connection) before they start.
USES_WAREHOUSE = frozenset({"run", "iv", "backfill", "analyze", "allocate", "industries", "db"})
#: Commands that read market data: OPTIONS_V4_MARKET_DATA is checked when --source is not given.
USES_MARKET = frozenset({"run", "iv", "backfill", "analyze"})


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 success, 1 a run or analysis that failed, 2 a bad argument or setting (one line on stderr).

    Only the project's typed errors are turned into that line; anything else is a bug and keeps its traceback."""
    prog = "options-v4"
    try:
        args = build_parser().parse_args(argv)
        prog = f"options-v4 {args.command}"
        config.partition_start()
        if args.command in USES_MARKET and getattr(args, "iv_command", None) != "show":
            config.market_source(getattr(args, "source", None))
        if args.command in USES_WAREHOUSE:
            check_database()
        return int(args.func(args) or 0)
    except SystemExit as exc:  # argparse: --help (0) or a bad argument (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except OptionsV4Error as exc:
        return _fail(prog, str(exc))


if __name__ == "__main__":
    sys.exit(main())
