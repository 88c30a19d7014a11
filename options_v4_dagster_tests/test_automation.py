"""Automation for the whole day (issue 13 item 3) on a real Dagster instance (SQLite) and warehouse: the 15:45
IV-collection schedule's request, the refresh that follows a successful collection, the 17:30 catch-up
schedule (holidays skipped by name), the execution sensor seeing the new allocation, the chain freshness
check and the failed-run alert."""

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.test_utils import create_run_for_test

from options_v4_dagster import calendar
from options_v4_dagster.definitions import build_defs
from options_v4_dagster.defs.automation.jobs import chain_freshness_config
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.allocations import latest_allocation_id
from options_v4_dagster_tests.pipeline_run import cli_call
from options_v4_dagster_tests.webhook_server import webhook

D = dt.date(2025, 7, 17)
IST = calendar.IST


def _at(day: dt.date, hh: int, mm: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=IST)


def _schedule_tick(defs, name, instance, when):
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                   repository_def=defs.get_repository_def()) as ctx:
        return defs.resolve_schedule_def(name).evaluate_tick(ctx)


def _sensor_tick(defs, name, instance, cursor=None):
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources,
                                 cursor=cursor) as ctx:
        return defs.resolve_sensor_def(name).evaluate_tick(ctx)


@pytest.fixture
def defs():
    return build_defs()


@pytest.fixture
def env(tmp_path, monkeypatch):
    e = {"DAGSTER_HOME": str(tmp_path / "dh"), "DATABASE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
         "OPTIONS_V4_HOME": str(tmp_path / "home")}
    (tmp_path / "dh").mkdir()
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    for k in ("OPTIONS_V4_BROKER", "OPTIONS_V4_LIVE", "OPTIONS_V4_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(k, raising=False)
    return e


@pytest.fixture
def instance(env):
    from options_v4_dagster.cli.instance import ensure_dagster_home

    ensure_dagster_home()
    with dg.DagsterInstance.get() as inst:
        yield inst


def test_holidays_and_weekends_are_named():
    assert calendar.non_session_reason(D) is None
    assert calendar.non_session_reason(dt.date(2025, 10, 21)) == \
        "2025-10-21 (Tuesday) is an NSE trading holiday: Diwali Laxmi Pujan"
    assert calendar.non_session_reason(dt.date(2025, 7, 19)) == "2025-07-19 is a Saturday (weekend)"
    # every named holiday is a weekday the exchange calendar has closed, and the calendar's 2024-2025
    # holidays all have a name
    names = calendar._holiday_names()
    assert set(names) == set(calendar.weekday_holidays(dt.date(2024, 1, 1), dt.date(2025, 12, 31)))
    assert calendar.latest_session(_at(D, 16, 0), cutoff=dt.time(16, 30)) == dt.date(2025, 7, 16)
    assert calendar.latest_session(_at(D, 16, 30), cutoff=dt.time(16, 30)) == D


def test_schedules_skip_holidays_by_name_and_the_catch_up_only_runs_a_session_without_allocation(defs, instance):
    holiday = _schedule_tick(defs, "daily_pipeline_schedule", instance, _at(dt.date(2025, 10, 21), 17, 30))
    assert not holiday.run_requests and "Diwali Laxmi Pujan" in holiday.skip_message
    fresh = _schedule_tick(defs, "chain_freshness_schedule", instance, _at(dt.date(2025, 8, 15), 16, 30))
    assert not fresh.run_requests and "Independence Day" in fresh.skip_message
    iv = _schedule_tick(defs, "daily_iv_schedule", instance, _at(dt.date(2025, 10, 22), 15, 45))
    assert not iv.run_requests and "2025-10-22" in iv.skip_message

    (req,) = _schedule_tick(defs, "daily_pipeline_schedule", instance, _at(D, 17, 30)).run_requests
    assert req.partition_key == "2025-07-17" and req.run_key == "daily_pipeline:2025-07-17"
    (req,) = _schedule_tick(defs, "chain_freshness_schedule", instance, _at(D, 16, 30)).run_requests
    assert req.run_config == chain_freshness_config("2025-07-17") and req.run_key == "chains_fresh:2025-07-17"

    # a run of the session still going: the catch-up waits for it (the refresh sensor follows it)
    run = create_run_for_test(instance, job_name="iv_collection", status=dg.DagsterRunStatus.STARTED,
                              tags={"dagster/partition": "2025-07-17"})
    going = _schedule_tick(defs, "daily_pipeline_schedule", instance, _at(D, 17, 30))
    assert not going.run_requests and run.run_id[:8] in going.skip_message and "STARTED" in going.skip_message
    instance.report_run_failed(run)
    # the session has its allocation: nothing to catch up
    instance.report_runless_asset_event(dg.AssetMaterialization("portfolio_allocation", partition="2025-07-17"))
    done = _schedule_tick(defs, "daily_pipeline_schedule", instance, _at(D, 17, 30))
    assert not done.run_requests and "already has its portfolio allocation" in done.skip_message


def test_session_refresh_job_is_the_rest_of_daily_pipeline(defs):
    def keys(job):
        return {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}

    assert keys("session_refresh") == keys("daily_pipeline") - keys("iv_collection")
    assert {"instruments", "strategy_candidates", "portfolio_allocation"} <= keys("session_refresh")


@pytest.mark.slow
def test_the_whole_day_without_a_click(defs, env, instance, monkeypatch):
    """15:45 IV collection -> refresh request -> refresh run -> new allocation -> (approval) -> execution
    request; the catch-up skips; the chains are fresh, then flagged once a symbol's snapshot is stale."""
    assert _sensor_tick(defs, "session_refresh_sensor", instance).run_requests == []  # initialises the cursor
    cursor = _sensor_tick(defs, "session_refresh_sensor", instance).cursor

    (iv_req,) = _schedule_tick(defs, "daily_iv_schedule", instance, _at(D, 15, 45)).run_requests
    iv = defs.resolve_job_def("iv_collection").execute_in_process(
        partition_key=iv_req.partition_key, tags=iv_req.tags, instance=instance)
    assert iv.success
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in iv.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["chains_fresh"] is True

    tick = _sensor_tick(defs, "session_refresh_sensor", instance, cursor)
    (req,) = tick.run_requests
    assert defs.resolve_sensor_def("session_refresh_sensor").job_name == "session_refresh"
    assert req.partition_key == "2025-07-17"
    assert req.run_key == f"session_refresh:{iv.run_id}" and req.tags["options_v4/after_run"] == iv.run_id

    refresh = defs.resolve_job_def("session_refresh").execute_in_process(
        partition_key=req.partition_key, tags=req.tags, instance=instance)
    assert refresh.success
    mats = {e.asset_key.to_user_string() for e in refresh.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert {"instruments", "technical_signals", "strategy_candidates", "portfolio_allocation"} <= mats
    assert not mats & {"option_chains", "iv_history", "iv_percentiles"}

    done = _schedule_tick(defs, "daily_pipeline_schedule", instance, _at(D, 17, 30))
    assert not done.run_requests and refresh.run_id[:8] in done.skip_message

    # the execution sensor sees the new allocation once it is approved
    wh = Warehouse(env["DATABASE_URL"], create=False)
    allocation_id = latest_allocation_id(wh, D)
    assert allocation_id
    assert _sensor_tick(defs, "approved_allocations_sensor", instance).run_requests == []
    code, out, err = cli_call(env, ["approve", allocation_id, "--json"])
    assert code == 0, err
    approval_id = json.loads(out)["approval_id"]
    (ex,) = _sensor_tick(defs, "approved_allocations_sensor", instance).run_requests
    assert ex.run_key == approval_id and ex.tags["options_v4/allocation_id"] == allocation_id

    # freshness: one symbol's chain re-stamped 11:00 IST (an intraday snapshot) is flagged by name
    with wh.engine.begin() as conn:
        conn.execute(sa.text("update option_chain_data set snapshot_ts = :ts where trade_date = :d and symbol = 'NIFTY'"),
                     {"ts": _at(D, 11, 0).astimezone(dt.UTC), "d": D})
    wh.dispose()
    stale = defs.resolve_job_def("chain_freshness").execute_in_process(run_config=chain_freshness_config("2025-07-17"),
                                                                       instance=instance)
    assert stale.success  # a WARN check does not fail the run
    (ev,) = [e.event_specific_data for e in stale.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.WARN
    assert "1 of" in ev.description and "NIFTY 2025-07-17 11:00 IST" in ev.description
    missing = defs.resolve_job_def("chain_freshness").execute_in_process(
        run_config=chain_freshness_config("2025-07-16"), instance=instance)
    (ev,) = [e.event_specific_data for e in missing.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert not ev.passed and "no option chains stored for 2025-07-16" in ev.description


@dg.op
def _boom():
    raise dg.Failure(description="option_chains 2025-07-17: 180 of 200 symbols failed")


@dg.job(tags={"dagster/partition": "2025-07-17"})
def _failing_job():
    _boom()


@dg.op
def _crash():
    raise ValueError("no option chains stored for 2025-07-17")


@dg.job
def _crashing_job():
    _crash()


def test_the_alert_names_the_error_not_dagsters_wrapper(defs, instance):
    from options_v4_dagster.defs.automation.sensors import failure_alert

    result = _crashing_job.execute_in_process(instance=instance, raise_on_error=False)
    (record,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    ctx = dg.build_run_status_sensor_context(sensor_name="run_failure_alert_sensor", dagster_event=record.dagster_event,
                                             dagster_instance=instance,
                                             dagster_run=instance.get_run_by_id(result.run_id)).for_run_failure()
    alert = failure_alert(ctx)
    assert alert.reason == "ValueError: no option chains stored for 2025-07-17"
    assert alert.partition is None and alert.steps_failed == ("_crash",)


def test_a_failed_run_is_logged_and_posted_to_the_webhook(defs, instance, monkeypatch, capfd):
    result = _failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    run = instance.get_run_by_id(result.run_id)
    (record,) = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    failure = record.dagster_event
    sensor = defs.resolve_sensor_def("run_failure_alert_sensor")
    with webhook([503]) as hook:
        monkeypatch.setenv("OPTIONS_V4_ALERT_WEBHOOK_URL", hook.url)
        ctx = dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=failure,
                                                 dagster_instance=instance, dagster_run=run)
        capfd.readouterr()
        sensor(ctx.for_run_failure())
    assert len(hook.requests) == 2  # a 503, then taken
    body = hook.requests[-1][1]
    assert body["run_id"] == result.run_id and body["job_name"] == "_failing_job"
    assert body["partition"] == "2025-07-17" and body["steps_failed"] == ["_boom"]
    assert body["reason"] == "option_chains 2025-07-17: 180 of 200 symbols failed"
    logged = capfd.readouterr().err
    assert f"ERROR - run {result.run_id} of _failing_job for session 2025-07-17 failed" in logged

    # a webhook that refuses: logged, the sensor does not raise (no retry storm on the next tick)
    with webhook([404]) as hook:
        monkeypatch.setenv("OPTIONS_V4_ALERT_WEBHOOK_URL", hook.url)
        sensor(dg.build_run_status_sensor_context(sensor_name=sensor.name, dagster_event=failure,
                                                  dagster_instance=instance, dagster_run=run).for_run_failure())
    logged = capfd.readouterr().err
    assert len(hook.requests) == 1 and "not delivered" in logged and "HTTP 404" in logged
