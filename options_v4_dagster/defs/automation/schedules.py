"""Schedules of the day's automation (Asia/Kolkata, NSE sessions; a weekend or holiday tick is skipped
with its reason, the holiday named from the calendar module):

- ``daily_pipeline_schedule``, 17:30 IST: the catch-up. A session that has no portfolio allocation by then
  (its 15:45 IV collection failed, or the daemon was down) gets a whole ``daily_pipeline`` run. Skipped,
  saying why, when the session already has its allocation or a run of it is still going (the refresh
  follows that run).
- ``chain_freshness_schedule``, 16:30 IST: the session's ``chains_fresh`` check.
"""

import datetime as dt

import dagster as dg

from options_v4_dagster import calendar
from options_v4_dagster.defs.automation.jobs import TAG_TRIGGER, chain_freshness, chain_freshness_config
from options_v4_dagster.defs.jobs import daily_pipeline

ALLOCATION = dg.AssetKey("portfolio_allocation")
IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
               dg.DagsterRunStatus.STARTED]


def tick_session(context: dg.ScheduleEvaluationContext) -> dt.date:
    tick = context.scheduled_execution_time
    return (tick or dt.datetime.now(calendar.IST)).astimezone(calendar.IST).date()


def allocation_run(instance: dg.DagsterInstance, partition: str) -> str | None:
    """Where the session's portfolio allocation was materialized ("run 1a2b3c4d"), None if it never was."""
    res = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=ALLOCATION, asset_partitions=[partition]),
                                          limit=1)
    if not res.records:
        return None
    run_id = res.records[0].run_id
    return f"run {run_id[:8]}" if run_id else "reported without a run"


def runs_in_progress(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS, tags={"dagster/partition": partition})))


@dg.schedule(
    job=daily_pipeline,
    cron_schedule="30 17 * * 1-5",
    execution_timezone=calendar.TZ_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="17:30 IST catch-up: a session without a portfolio allocation by then (its IV collection failed or "
    "never ran) gets a whole daily_pipeline run. Skips weekends and NSE holidays (named), sessions that have their "
    "allocation, and sessions with a run still going.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext):
    session = tick_session(context)
    reason = calendar.non_session_reason(session)
    if reason:
        return dg.SkipReason(f"{reason}: nothing to run")
    key = session.isoformat()
    done = allocation_run(context.instance, key)
    if done:
        return dg.SkipReason(f"session {key} already has its portfolio allocation ({done})")
    going = runs_in_progress(context.instance, key)
    if going:
        return dg.SkipReason(f"session {key}: run {going[0].run_id[:8]} of {going[0].job_name} is still "
                             f"{going[0].status.value}; session_refresh_sensor follows a successful IV collection")
    return dg.RunRequest(run_key=f"daily_pipeline:{key}", partition_key=key,
                         tags={TAG_TRIGGER: "daily_pipeline_schedule"})


@dg.schedule(
    job=chain_freshness,
    cron_schedule="30 16 * * 1-5",
    execution_timezone=calendar.TZ_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="16:30 IST on NSE sessions: the session's chains_fresh check (WARN when its chains are missing or "
    "older than expected). Skips weekends and NSE holidays (named).",
)
def chain_freshness_schedule(context: dg.ScheduleEvaluationContext):
    session = tick_session(context)
    reason = calendar.non_session_reason(session)
    if reason:
        return dg.SkipReason(f"{reason}: no chains expected")
    key = session.isoformat()
    return dg.RunRequest(run_key=f"chains_fresh:{key}", run_config=chain_freshness_config(key),
                         tags={TAG_TRIGGER: "chain_freshness_schedule", "options_v4/session": key})
