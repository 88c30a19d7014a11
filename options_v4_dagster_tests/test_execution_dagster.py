"""The Done-when through Dagster on a real (SQLite) instance, the CLI's own: a stored 2025-07-17 session
and allocation, approved; ``approved_allocations_sensor`` evaluated twice (``build_sensor_context``)
gives one run key, and the daemon's sensor iteration twice launches one run; the job's run with the
sensor's config fills every position on paper, its re-execution places nothing; the live switches
refuse in the job and the sensor; ``execution_failure_sensor`` records a failed execution."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import dagster as dg
import pytest
import yaml

from options_v4_dagster.definitions import build_defs
from options_v4_dagster.defs.execution.jobs import OP, POOL, TAG_APPROVAL, run_config
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.execution_queries import execution_failures
from options_v4_dagster.store.trading_queries import pending_approvals

from .pipeline_run import CLEARED, cli_call, run_session

D = dt.date(2025, 7, 17)
ROOT = Path(__file__).resolve().parents[1]
SENSOR = "approved_allocations_sensor"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    env = run_session(tmp_path_factory.mktemp("execution_dagster"), D)
    assert env["exit_code"] == 0
    code, out, err = cli_call(env, ["allocate", "1500000", "--date", D.isoformat(), "--save", "--json"])
    assert code == 0, err
    env["allocation_id"] = json.loads(out)["allocation_id"]
    code, out, err = cli_call(env, ["approve", env["allocation_id"], "--json"])
    assert code == 0, err
    env["approval_id"] = json.loads(out)["approval_id"]
    return env


@pytest.fixture
def scratch_env(session, monkeypatch):
    for k in CLEARED:
        monkeypatch.delenv(k, raising=False)
    for k in ("DAGSTER_HOME", "DATABASE_URL", "OPTIONS_V4_HOME"):
        monkeypatch.setenv(k, session[k])
    return session


@pytest.fixture
def instance(scratch_env):
    with dg.DagsterInstance.from_config(scratch_env["DAGSTER_HOME"]) as inst:
        yield inst


def _tick(sensor, instance, defs):
    """One evaluation of ``sensor`` with the definitions' resources (as the daemon gives them)."""
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as ctx:
        return sensor.evaluate_tick(ctx)


def _op_output(result: dg.ExecuteInProcessResult) -> dict:
    mats = result.get_step_success_events()
    assert mats
    (out,) = [e for e in result.events_for_node(OP) if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: getattr(v, "value", v) for k, v in out.step_output_data.metadata.items()}


def test_execute_allocation_job_is_in_the_broker_account_pool_with_limit_1(instance):
    job = build_defs().resolve_job_def("execute_allocation")
    assert [n.definition.pool for n in job.nodes] == [POOL]
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1  # the CLI's instance
    deployed = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert deployed["concurrency"]["pools"]["default_limit"] == 1


def test_live_switches_refuse_in_the_job_and_the_sensor(scratch_env, instance, monkeypatch):
    defs = build_defs()
    job = defs.resolve_job_def("execute_allocation")
    apid = scratch_env["approval_id"]
    cases = [("dhan", False, {}, ("DHAN_CLIENT_ID", "OPTIONS_V4_LIVE=1", "live: true in the run config")),
             ("dhan", True, {"OPTIONS_V4_LIVE": "1"}, ("DHAN_CLIENT_ID",)),
             ("paper", True, {}, ("needs broker dhan",))]
    for broker, live, env, named in cases:
        with monkeypatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            res = job.execute_in_process(run_config=run_config(apid, broker, live), instance=instance,
                                         raise_on_error=False)
        assert not res.success
        failure = res.failure_data_for_node(OP).user_failure_data
        assert failure is not None and all(n in failure.description for n in named), (broker, live, failure)
    # nothing was executed: the approval is still pending. The sensor of a dhan deployment
    # (OPTIONS_V4_BROKER=dhan) without the other switches launches nothing and names what is missing
    wh = Warehouse(scratch_env["DATABASE_URL"], create=False)
    assert [a.approval_id for a in pending_approvals(wh)] == [apid]
    wh.dispose()
    monkeypatch.setenv("OPTIONS_V4_BROKER", "dhan")
    data = _tick(defs.resolve_sensor_def(SENSOR), instance, defs)
    assert not data.run_requests
    assert "OPTIONS_V4_LIVE=1" in data.skip_message and "DHAN_CLIENT_ID" in data.skip_message


def test_sensor_gives_one_run_key_per_approval_and_the_job_executes_it_once(scratch_env, instance):
    defs = build_defs()
    sensor = defs.resolve_sensor_def(SENSOR)
    aid, apid = scratch_env["allocation_id"], scratch_env["approval_id"]
    requests = []
    for _ in range(2):
        requests += _tick(sensor, instance, defs).run_requests
    assert {r.run_key for r in requests} == {apid} and len(requests) == 2
    req = requests[0]
    assert req.run_config == run_config(apid, "paper", False) and req.tags[TAG_APPROVAL] == apid
    assert req.tags["options_v4/allocation_id"] == aid

    # the daemon's sensor iteration, twice (the second after the 30 s interval): one run for the key
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    target = ModuleTarget(module_name="options_v4_dagster.definitions", attribute="defs", working_directory=str(ROOT),
                          location_name="options_v4_dagster")
    now = dt.datetime.now(dt.UTC)
    with create_test_daemon_workspace_context(target, instance) as ctx:
        for k in range(2):
            with freeze_time(now + dt.timedelta(seconds=40 * k)):
                list(execute_sensor_iteration(ctx, logging.getLogger("test_sensor"), None, None))
    keyed = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": apid}))
    assert len(keyed) == 1 and keyed[0].job_name == "execute_allocation"
    assert keyed[0].status == dg.DagsterRunStatus.QUEUED  # no queue daemon here: it waits in the queue

    # the run, with the sensor's config and tags: every position filled on paper
    job = defs.resolve_job_def("execute_allocation")
    first = job.execute_in_process(run_config=req.run_config, instance=instance, tags=req.tags)
    assert first.success
    md = _op_output(first)
    assert md["orders_placed"] > 0 and md["nothing_to_do"] is False
    assert set(md["states"]) == {"OPEN"}
    assert "| 1 |" in md["strategies"] and "TRADED" in md["strategies"]
    wh = Warehouse(scratch_env["DATABASE_URL"], create=False)
    assert pending_approvals(wh) == []
    # re-executed as from the UI (same config, a new run): nothing placed
    again = job.execute_in_process(run_config=req.run_config, instance=instance, tags=req.tags)
    assert again.success
    md2 = _op_output(again)
    assert md2["orders_placed"] == 0 and md2["nothing_to_do"] is True
    # and the sensor has nothing left to launch
    assert _tick(sensor, instance, defs).skip_message == "no pending approvals"
    wh.dispose()


def test_failure_sensor_records_a_failed_execution(scratch_env, instance):
    defs = build_defs()
    job = defs.resolve_job_def("execute_allocation")
    res = job.execute_in_process(run_config=run_config("ap-does-not-exist"), instance=instance,
                                 tags={TAG_APPROVAL: "ap-does-not-exist"}, raise_on_error=False)
    assert not res.success
    run = instance.get_run_by_id(res.run_id)
    event = res.get_run_failure_event()
    sensor = defs.resolve_sensor_def("execution_failure_sensor")
    resources = {"warehouse": WarehouseResource(database_url=scratch_env["DATABASE_URL"])}
    for _ in range(2):  # evaluated twice (a daemon restart): recorded once
        with dg.build_run_status_sensor_context(sensor_name="execution_failure_sensor", dagster_instance=instance,
                                                dagster_run=run, dagster_event=event,
                                                resources=resources).for_run_failure() as ctx:
            sensor(ctx)
    wh = Warehouse(scratch_env["DATABASE_URL"], create=False)
    rows = execution_failures(wh, "ap-does-not-exist")
    assert rows.height == 1
    row = rows.row(0, named=True)
    assert row["stage"] == f"run {res.run_id}" and row["kind"] == "error"
    assert "ap-does-not-exist does not exist" in row["reason"]
    wh.dispose()
