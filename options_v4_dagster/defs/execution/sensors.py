"""Sensors of trade execution: ``approved_allocations_sensor`` launches ``execute_allocation`` once per
pending approval (``run_key`` = the approval id: Dagster never launches a key twice for this sensor,
and the execution itself places each order once whatever runs), ``execution_failure_sensor`` records
and reports failed executions."""

import dagster as dg

from options_v4_dagster.defs.execution.jobs import (
    OP,
    TAG_ALLOCATION,
    TAG_APPROVAL,
    TAG_BROKER,
    execute_allocation,
    run_config,
)
from options_v4_dagster.defs.execution.resources import BrokerResource
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.store.execution_queries import approval_session, record_execution_failure
from options_v4_dagster.store.trading_queries import pending_approvals
from options_v4_dagster.trading.service import LiveTradingRefused, check_live, default_broker


@dg.sensor(
    job=execute_allocation,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 30 s: one execute_allocation run per pending approval (run_key = approval id). Broker: "
    "OPTIONS_V4_BROKER (default paper); dhan launches live runs only with its credentials and OPTIONS_V4_LIVE=1, "
    "else it skips, naming what is missing.",
)
def approved_allocations_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                                broker: BrokerResource):
    pending = pending_approvals(warehouse.get())
    if not pending:
        return dg.SkipReason("no pending approvals")
    name = default_broker()
    live = name == "dhan"
    try:
        check_live(name, live=live, credentials=broker.credentials(), live_flag="OPTIONS_V4_BROKER=dhan")
    except LiveTradingRefused as exc:
        return dg.SkipReason(f"{len(pending)} approval(s) pending, none launched: {exc}")
    return dg.SensorResult(run_requests=[
        dg.RunRequest(run_key=a.approval_id, run_config=run_config(a.approval_id, name, live),
                      tags={TAG_ALLOCATION: a.allocation_id, TAG_APPROVAL: a.approval_id, TAG_BROKER: name})
        for a in pending])


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    for ev in context.get_step_failure_events():
        data = ev.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        if data.error is not None:
            return data.error.message.strip().splitlines()[-1]
    return context.failure_event.message or "failed"


def _approval_of(run: dg.DagsterRun) -> str | None:
    cfg = (run.run_config or {}).get("ops", {}).get(OP, {}).get("config", {})
    return run.tags.get(TAG_APPROVAL) or cfg.get("approval_id")


@dg.run_failure_sensor(
    name="execution_failure_sensor",
    monitored_jobs=[execute_allocation],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed execute_allocation run: recorded in pipeline_failures (asset execute_allocation, the "
    "approval id, the run id and the reason) and logged as an error.",
)
def execution_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    run = context.dagster_run
    approval_id = _approval_of(run)
    reason = _failure_reason(context)
    wh = warehouse.get()
    session = approval_session(wh, approval_id) if approval_id else None
    created = record_execution_failure(wh, run_id=run.run_id, approval_id=approval_id, reason=reason,
                                       session=session)
    context.log.error(f"execute_allocation run {run.run_id[:8]} for approval {approval_id or '?'} failed: {reason}"
                      + ("" if created else " (already recorded)"))
