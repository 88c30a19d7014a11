"""Sensors of the day's automation.

- ``session_refresh_sensor``: an ``iv_collection`` run of one session succeeded (the 15:45 IST schedule's, or
  one launched by hand) -> a ``session_refresh`` run of that session (run key ``session_refresh:<run id>``:
  one refresh per collection). The new allocation it writes is what ``approved_allocations_sensor`` executes
  once approved. Runs of a backfill are left to the backfill.
- ``run_failure_alert_sensor``: every failed run of this code location -> an error line in the sensor's log
  and, with ``OPTIONS_V4_ALERT_WEBHOOK_URL`` set, a JSON POST (options_v4_dagster/alerts.py, retried).
"""

import dagster as dg

from options_v4_dagster.alerts import AlertDeliveryError, RunFailureAlert, send_run_failure, webhook_url
from options_v4_dagster.defs.automation.jobs import TAG_AFTER, TAG_TRIGGER, session_refresh
from options_v4_dagster.defs.volatility.schedules import iv_collection

REASON_LIMIT = 1000


@dg.run_status_sensor(
    name="session_refresh_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[iv_collection],
    request_job=session_refresh,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When an iv_collection run of one session succeeds: a session_refresh run of that session (strategy "
    "candidates and the portfolio allocation from the new chains). Run key session_refresh:<iv run id>; backfill "
    "runs are skipped.",
)
def session_refresh_sensor(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    partition = run.tags.get("dagster/partition")
    if run.tags.get("dagster/backfill"):
        return dg.SkipReason(f"run {run.run_id[:8]} is part of backfill {run.tags['dagster/backfill']}: "
                             "a backfill materializes the strategies of its sessions itself")
    if not partition:
        return dg.SkipReason(f"run {run.run_id[:8]} of iv_collection has no single session partition")
    return dg.RunRequest(run_key=f"session_refresh:{run.run_id}", partition_key=partition,
                         tags={TAG_TRIGGER: "session_refresh_sensor", TAG_AFTER: run.run_id})


def _root_cause(error) -> str:
    """The innermost error of a step failure ("ConfigError: ..."), not Dagster's "Error occurred while ..."
    wrapper."""
    while error.cause is not None:
        error = error.cause
    lines = error.message.strip().splitlines()
    return lines[0] if lines else error.cls_name or "error"


def failure_alert(context: dg.RunFailureSensorContext) -> RunFailureAlert:
    run = context.dagster_run
    steps, reason = [], None
    for ev in context.get_step_failure_events():
        steps.append(ev.step_key)
        data = ev.step_failure_data
        if reason is None:
            if data.user_failure_data is not None and data.user_failure_data.description:
                reason = data.user_failure_data.description
            elif data.error is not None:
                reason = _root_cause(data.error)
    reason = reason or context.failure_event.message or "failed"
    return RunFailureAlert(run_id=run.run_id, job_name=run.job_name, reason=reason[:REASON_LIMIT],
                           partition=run.tags.get("dagster/partition"), steps_failed=tuple(steps),
                           tags={k: v for k, v in run.tags.items() if not k.startswith(".dagster")})


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of this code location: an error line in this sensor's log and, when "
    "OPTIONS_V4_ALERT_WEBHOOK_URL is set, a JSON POST to it (run id, job, session, failed steps, reason), "
    "retried on connection errors, 429 and 5xx.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    alert = failure_alert(context)
    context.log.error(alert.line())
    url = webhook_url()
    if not url:
        return
    try:
        status = send_run_failure(alert, url)
    except AlertDeliveryError as exc:
        context.log.error(f"alert of run {alert.run_id[:8]} not delivered: {exc}")
        return
    context.log.info(f"alert of run {alert.run_id[:8]} posted to the webhook (HTTP {status})")
