"""``options-v4 backfill``: materialize a range of sessions through the assets' own range code.

Two ways, the same asset code (``defs/ranges.py``: a run over a range of sessions processes them in
order, one transaction per session and asset):

- default: in this process, in runs of ``--sessions-per-run`` sessions (the assets' backfill policy,
  50), oldest range first; no daemon needed; each run shows in the Dagster UI.
- ``--submit``: a Dagster asset backfill of the job's assets in the instance of ``DAGSTER_HOME``, as
  the UI's "Launch backfill" makes it; the daemon (``make dev`` or ``dagster-daemon run``) launches
  its runs: ranges of up to 50 sessions, several at once, iv_percentiles after the sessions before it.
  ``--wait`` follows it to the end.
"""

from __future__ import annotations

import datetime as dt
import time

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError

from .args import last_partition
from .instance import cli_instance, market_run_config, run_pipeline
from .output import console

#: seconds without a backfill-daemon heartbeat after which ``--wait`` says no daemon is running
DAEMON_STALE_S = 120


def _sessions(args) -> list[dt.date]:
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
    return sessions


def cmd_backfill(args) -> int:
    sessions = _sessions(args)
    if args.submit:
        return _submit(args, sessions)
    if args.wait:
        raise ConfigError("--wait follows a backfill submitted with --submit")
    return _in_process(args, sessions)


def _chunks(sessions: list[dt.date], size: int) -> list[list[dt.date]]:
    return [sessions[i:i + size] for i in range(0, len(sessions), size)]


def _in_process(args, sessions: list[dt.date]) -> int:
    chunks = _chunks(sessions, args.sessions_per_run)
    console.print(f"options-v4 backfill: {len(sessions)} sessions {sessions[0]} .. {sessions[-1]}, job {args.job}, "
                  f"source {config.market_source(args.source)} (in this process: {len(chunks)} run(s) of up to "
                  f"{args.sessions_per_run} sessions, in order)")
    t0 = time.perf_counter()
    failed = []
    instance = cli_instance()
    for i, chunk in enumerate(chunks, 1):
        t = time.perf_counter()
        result, instance = run_pipeline(chunk[0], args.source, args.nse_dir, job_name=args.job, log_level="WARNING",
                                        instance=instance, end=chunk[-1], command="backfill")
        if not result.success:
            failed.append(chunk)
        label = f"{chunk[0]}" if len(chunk) == 1 else f"{chunk[0]} .. {chunk[-1]}"
        console.print(f"[{i}/{len(chunks)}] {label} ({len(chunk)} sessions) {'ok' if result.success else 'FAILED'} "
                      f"in {time.perf_counter() - t:.1f}s, run {result.run_id[:8]}"
                      + (f": {_failed_steps(result)}" if not result.success else ""))
        for d in chunk:
            summary = _missing_summary(d)
            if summary:
                console.print(f"    {d}: {summary}")
    total = time.perf_counter() - t0
    names = [f"{c[0]}..{c[-1]}" if len(c) > 1 else str(c[0]) for c in failed]
    console.print(f"backfill done: {len(sessions)} sessions in {total:.1f}s "
                  f"({total / len(sessions):.1f}s per session); failed: {names or 'none'}")
    return 1 if failed else 0


def _failed_steps(result) -> str:
    out = []
    for ev in result.all_events:
        if ev.is_step_failure:
            err = ev.event_specific_data.error
            msg = (err.message.strip().splitlines() or [""])[-1] if err else ""
            out.append(f"{ev.step_key}: {msg[:160]}")
    return "; ".join(out[:3])


def _missing_summary(session: dt.date) -> str:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.failures import failure_counts

    wh = Warehouse.from_env()
    try:
        rows = failure_counts(wh, session, ("universe", "option_chains"))
    finally:
        wh.dispose()
    parts = []
    for r in rows.iter_rows(named=True):
        if r["asset"] == "universe":
            parts.append("session missing from the source")
        else:
            parts.append(f"{r['n']} symbols {r['kind']}")
    return ", ".join(parts)


def submit_backfill(instance, job_name: str, sessions: list[dt.date], run_config: dict, tags: dict) -> str:
    """Add an asset backfill of ``job_name``'s assets for ``sessions`` to ``instance`` (the daemon runs it);
    its id."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    from options_v4_dagster.definitions import build_defs

    defs = build_defs()
    job = defs.resolve_job_def(job_name)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=[d.isoformat() for d in sessions],
        asset_selection=sorted(job.asset_layer.selected_asset_keys),
        backfill_timestamp=time.time(),
        tags=tags,
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"options-v4 backfill {job_name} {sessions[0]} .. {sessions[-1]}",
        description=None,
        run_config=run_config,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _submit(args, sessions: list[dt.date]) -> int:
    instance = cli_instance()
    src = config.market_source(args.source)
    tags = {"options_v4/source": src, "options_v4/submitted_by": "options-v4 backfill"}
    backfill_id = submit_backfill(instance, args.job, sessions, market_run_config(src, args.nse_dir), tags)
    console.print(f"options-v4 backfill: submitted backfill [bold]{backfill_id}[/] of {args.job}'s assets for "
                  f"{len(sessions)} sessions {sessions[0]} .. {sessions[-1]}, source {src}, to the instance in "
                  f"DAGSTER_HOME; the Dagster daemon runs it (`make dev` or `dagster-daemon run`); "
                  f"UI: Overview -> Backfills")
    if not args.wait:
        return 0
    return wait_for_backfill(instance, backfill_id)


def _daemon_alive(instance) -> bool:
    beat = instance.get_daemon_heartbeats().get("BACKFILL")
    return beat is not None and time.time() - beat.timestamp < DAEMON_STALE_S


def wait_for_backfill(instance, backfill_id: str, poll_s: float = 5.0) -> int:
    """Follow a backfill until it ends, one line per change; 0 when every run succeeded."""
    import dagster as dg
    from dagster._core.execution.backfill import BulkActionStatus
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    t0, last, warned = time.perf_counter(), None, False
    while True:
        status = instance.get_backfill(backfill_id).status
        runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))
        counts: dict[str, int] = {}
        for r in runs:
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        line = f"{status.value}: {len(runs)} run(s) " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if line != last:
            console.print(f"  {time.perf_counter() - t0:6.0f}s {line}")
            last = line
        if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING):
            ok = status in (BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED) and \
                all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            console.print(f"backfill {backfill_id} {status.value} in {time.perf_counter() - t0:.1f}s")
            return 0 if ok else 1
        if not warned and not runs and time.perf_counter() - t0 > 10 and not _daemon_alive(instance):
            console.print("  no Dagster daemon heartbeat in this instance: start one (`make dev` or "
                          "`dagster-daemon run`) to run the backfill")
            warned = True
        time.sleep(poll_s)
