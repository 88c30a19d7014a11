"""Monitoring through Dagster on the CLI's instance, after a paper execution of 2025-07-17:
``open_positions_sensor`` (``build_sensor_context``) yields ``monitor_positions`` with one run key per
session and interval slot, ``exit_positions`` for an intent left FAILED (run key intent_key:attempt),
skips live outside market hours and with nothing open; the ``monitor_positions`` run with the sensor's
config records snapshots and its metadata; the op is in the broker_account pool."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from options_v4_dagster.definitions import build_defs
from options_v4_dagster.defs.execution.jobs import POOL
from options_v4_dagster.defs.monitoring import sensors as msensors
from options_v4_dagster.defs.monitoring.jobs import OP, run_config
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.monitoring import intents, reserve_intent, snapshot_count

from .monitor_session import D, executed_session
from .pipeline_run import CLEARED

SENSOR = "open_positions_sensor"
NOW = dt.datetime(2026, 1, 3, 6, 1, 7, tzinfo=dt.UTC)  # a Saturday: no NSE session

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return executed_session(tmp_path_factory.mktemp("monitoring_dagster"))


@pytest.fixture
def env(session, monkeypatch):
    for k in (*CLEARED, msensors.MODE_ENV):
        monkeypatch.delenv(k, raising=False)
    for k in ("DAGSTER_HOME", "DATABASE_URL", "OPTIONS_V4_HOME"):
        monkeypatch.setenv(k, session[k])
    monkeypatch.setattr(msensors, "_now", lambda: NOW)
    return session


@pytest.fixture
def instance(env):
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as inst:
        yield inst


def _tick(defs, instance):
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as ctx:
        return defs.resolve_sensor_def(SENSOR).evaluate_tick(ctx)


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (out,) = [e for e in result.events_for_node(OP) if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    return {k: getattr(v, "value", v) for k, v in out.step_output_data.metadata.items()}


def test_jobs_are_in_the_broker_account_pool_and_the_interval_is_configurable():
    defs = build_defs()
    for name in ("monitor_positions", "exit_positions"):
        assert [n.definition.pool for n in defs.resolve_job_def(name).nodes] == [POOL]
    assert defs.resolve_sensor_def(SENSOR).minimum_interval_seconds == msensors.DEFAULT_INTERVAL
    assert msensors.monitor_interval({msensors.INTERVAL_ENV: "60"}) == 60
    assert msensors.monitor_mode({}) == "simulation"
    assert msensors.monitor_mode({"OPTIONS_V4_BROKER": "dhan"}) == "live"
    assert msensors.monitor_mode({msensors.MODE_ENV: "alert_only", "OPTIONS_V4_BROKER": "dhan"}) == "alert_only"


def test_sensor_launches_monitor_positions_once_per_slot_and_the_run_records_snapshots(env, instance):
    defs = build_defs()
    first, second = _tick(defs, instance), _tick(defs, instance)
    (req,) = first.run_requests
    assert req.job_name == "monitor_positions"
    assert req.run_key == msensors.slot_key(D, NOW, msensors.INTERVAL) and req.run_key.startswith(f"monitor:{D}:")
    assert [r.run_key for r in second.run_requests] == [req.run_key]  # the same slot: the same key
    assert req.run_config == run_config(D, "simulation", False)

    wh = Warehouse(env["DATABASE_URL"], create=False)
    before = snapshot_count(wh, source="sensor")
    res = defs.resolve_job_def("monitor_positions").execute_in_process(run_config=req.run_config, instance=instance,
                                                                       tags=req.tags)
    assert res.success
    md = _metadata(res)
    n = len(env["executed"]["strategies"])
    assert snapshot_count(wh, trade_date=D, source="sensor") == before + n
    assert md["session"] == D.isoformat() and md["positions"].count("@") == n
    assert 0 < md["open_positions"] <= n
    assert isinstance(md["alerts_by_urgency"], dict) and md["exits_placed"] >= 0
    assert "| strategy | symbol |" in md["positions"] and "% of max loss" in md["positions"]
    again = defs.resolve_job_def("monitor_positions").execute_in_process(run_config=req.run_config,
                                                                         instance=instance, tags=req.tags)
    assert again.success and _metadata(again)["exits_placed"] == 0
    wh.dispose()


def test_sensor_launches_exit_positions_for_a_failed_intent_and_live_waits_for_market_hours(env, instance,
                                                                                           monkeypatch):
    defs = build_defs()
    wh = Warehouse(env["DATABASE_URL"], create=False)
    from options_v4_dagster.store.monitoring import monitor_inputs

    s = monitor_inputs(wh, NOW).strategies.row(0, named=True)
    key = f"{s['strategy_key']}:stop_loss:100"
    reserve_intent(wh, dict(intent_key=key, strategy_key=s["strategy_key"], strategy_id=s["strategy_id"],
                            allocation_id=s["allocation_id"], position_id=s["position_id"], trade_date=D,
                            rule="stop_loss", level="100", action="EXIT_ALL", urgency="HIGH", quantities=[],
                            reason="test: rejected exit", mode="simulation", source="sensor", broker="paper",
                            state="FAILED", attempt=2))
    reqs = _tick(defs, instance).run_requests
    exits = [r for r in reqs if r.job_name == "exit_positions"]
    assert [r.run_key for r in exits] == [f"{key}:2"]
    assert exits[0].run_config == run_config(D, "simulation", False, [s["strategy_key"]])
    res = defs.resolve_job_def("exit_positions").execute_in_process(run_config=exits[0].run_config,
                                                                    instance=instance, tags=exits[0].tags)
    assert res.success
    md = _metadata(res)  # only the intent's strategy was monitored
    assert md["positions"].count("@") == 1 and s["strategy_key"] in md["positions"]
    # its stop does not fire at these prices: the intent stays FAILED at attempt 2, so the sensor's next
    # request has the same run key (Dagster does not launch it twice)
    (row,) = [i for i in intents(wh, strategy_keys=[s["strategy_key"]]) if i["intent_key"] == key]
    assert (row["state"], row["attempt"]) == ("FAILED", 2)
    assert [r.run_key for r in _tick(defs, instance).run_requests if r.job_name == "exit_positions"] == [f"{key}:2"]

    monkeypatch.setenv(msensors.MODE_ENV, "live")
    data = _tick(defs, instance)
    assert not data.run_requests and "market is closed" in data.skip_message
    monkeypatch.setenv(msensors.MODE_ENV, "alert_only")
    assert [r.job_name for r in _tick(defs, instance).run_requests] == ["monitor_positions"]
    wh.dispose()
