"""The ``archive_contract_rows`` job: one op calling the same entry point as ``options-v4 archive --before D``
(:func:`~options_v4_dagster.store.archive.archive_before`), and ``archive_schedule`` (daily at 20:00 IST,
STOPPED until turned on in the UI) archiving the sessions older than ``keep_days`` calendar days."""

import datetime as dt

import dagster as dg

from options_v4_dagster import calendar
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.store import archive

OP = "archive_old_sessions"
#: calendar days of contract-level rows the schedule keeps in the warehouse (the original archived after 30)
KEEP_DAYS = 30


class ArchiveConfig(dg.Config):
    before: str | None = None  # YYYY-MM-DD: sessions before it; None = keep_days before today (IST)
    keep_days: int = KEEP_DAYS


def run_config(before: dt.date) -> dict:
    return {"ops": {OP: {"config": {"before": before.isoformat()}}}}


def _table(results: list[archive.ArchiveResult]) -> str:
    lines = ["| table | session | status | rows | MB |", "|---|---|---|---:|---:|"]
    lines += [f"| {r.table} | {r.session} | {r.status} | {r.rows:,} | {r.file_bytes / 1e6:,.2f} |" for r in results]
    return "\n".join(lines)


@dg.op(
    name=OP,
    description="Move the contract-level rows (option_chain_data, option_greeks) of every session before `before` "
    "to Parquet files (one per table and session, hive-style session=YYYY-MM-DD folders under the archive root), "
    "verified by row count and checksum before the rows are deleted in one transaction; reads fall back to the "
    "files. Re-running is a no-op for archived sessions.",
    tags={"options_v4/area": "retention"},
)
def archive_old_sessions(context: dg.OpExecutionContext, config: ArchiveConfig,
                         warehouse: WarehouseResource) -> dg.Output[dict]:
    before = dt.date.fromisoformat(config.before) if config.before else \
        dt.datetime.now(calendar.IST).date() - dt.timedelta(days=config.keep_days)
    results = archive.archive_before(
        warehouse.get(), before,
        on_result=lambda r: context.log.info(f"{r.table} {r.session}: {r.status}, {r.rows:,} rows"))
    moved = [r for r in results if r.status == "archived"]
    summary = {"before": before.isoformat(), "sessions_archived": len(moved), "rows_moved": sum(r.rows for r in moved)}
    return dg.Output(summary, metadata={
        "before": before.isoformat(),
        "sessions_archived": dg.MetadataValue.int(len(moved)),
        "already_archived": dg.MetadataValue.int(sum(r.status == "already" for r in results)),
        "rows_moved": dg.MetadataValue.int(summary["rows_moved"]),
        "parquet_mb": dg.MetadataValue.float(round(sum(r.file_bytes for r in moved) / 1e6, 2)),
        "sessions": dg.MetadataValue.md(_table(results) if results else "_nothing to archive_"),
    })


@dg.job(tags={"options_v4/area": "retention"},
        description="Archive old sessions' option_chain_data and option_greeks rows to Parquet (options-v4 archive).")
def archive_contract_rows():
    archive_old_sessions()


@dg.schedule(
    job=archive_contract_rows,
    cron_schedule="0 20 * * *",
    execution_timezone=calendar.TZ_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description=f"20:00 IST daily: archive the sessions older than {KEEP_DAYS} days. Off by default.",
)
def archive_schedule(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    day = tick.astimezone(calendar.IST).date() if tick else dt.datetime.now(calendar.IST).date()
    before = day - dt.timedelta(days=KEEP_DAYS)
    return dg.RunRequest(run_key=f"archive:{before.isoformat()}", run_config=run_config(before),
                         tags={"options_v4/trigger": "archive_schedule"})
