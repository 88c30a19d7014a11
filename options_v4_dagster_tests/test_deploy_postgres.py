"""The PostgreSQL deployment end to end (issue 13 item 6): deploy/postgres/dagster.yaml as the instance
(runs, events, ticks in PostgreSQL), the PostgreSQL warehouse, and `dagster-daemon run` as its own process
running the day: the 15:45 schedule's request queued for 2025-07-17 -> the daemon launches the IV collection
-> session_refresh_sensor launches the refresh -> the new allocation, once approved, is executed by
approved_allocations_sensor's run -> a failed run is reported by run_failure_alert_sensor to a webhook."""

import datetime as dt
import json
import shutil
import subprocess

import dagster as dg
import pytest

from options_v4_dagster import calendar
from options_v4_dagster.definitions import build_defs
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.allocations import latest_allocation_id
from options_v4_dagster_tests.deployment import (
    BIN,
    ROOT,
    WORKSPACE,
    background,
    dagster_pg_env,
    deployment_env,
    patched_env,
    scratch_databases,
    wait_for,
)
from options_v4_dagster_tests.pipeline_run import cli_call
from options_v4_dagster_tests.webhook_server import webhook

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

D = dt.date(2025, 7, 17)


def _launch(env, cwd, job: str, tags: dict, config: dict | None = None) -> str:
    """Submit a run to the instance's queue as the daemon does with a run request (`dagster job launch`)."""
    argv = [str(BIN / "dagster"), "job", "launch", "-w", str(WORKSPACE), "-j", job, "--tags", json.dumps(tags)]
    if config:
        argv += ["--config-json", json.dumps(config)]
    p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p.stdout


def _runs(instance, job: str, **tags) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job, tags=tags or None)))


def _finished(instance, job: str, **tags) -> dg.DagsterRun | None:
    runs = [r for r in _runs(instance, job, **tags) if r.is_finished]
    return runs[0] if runs else None


def test_postgres_deployment_runs_the_day_with_the_daemon(tmp_path, pg_server_url):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
    with scratch_databases(pg_server_url, 2) as (instance_url, warehouse_url), webhook() as hook:
        Warehouse(warehouse_url).dispose()  # the schema, before the daemon's runs start writing
        env = deployment_env(DAGSTER_HOME=str(home), DATABASE_URL=warehouse_url, OPTIONS_V4_HOME=str(tmp_path / "data"),
                             OPTIONS_V4_MARKET_DATA="simulated", OPTIONS_V4_MONITOR_INTERVAL_SECONDS="3600",
                             OPTIONS_V4_ALERT_WEBHOOK_URL=hook.url, **dagster_pg_env(instance_url))
        daemon_log = tmp_path / "daemon.log"
        with patched_env(env), dg.DagsterInstance.get() as instance, \
                background([str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE)], env, daemon_log, tmp_path):
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
            logs = (daemon_log,)
            wait_for(lambda: "SensorDaemon" in daemon_log.read_text(), "the daemon's sensor loop started", logs)
            defs = build_defs()

            # the 15:45 IST tick of the IV schedule for the session, queued as the scheduler queues it
            when = dt.datetime.combine(D, dt.time(15, 45), tzinfo=calendar.IST)
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                           repository_def=defs.get_repository_def()) as ctx:
                (req,) = defs.resolve_schedule_def("daily_iv_schedule").evaluate_tick(ctx).run_requests
            _launch(env, tmp_path, "iv_collection", {**req.tags, "dagster/partition": req.partition_key,
                                                     "dagster/schedule_name": "daily_iv_schedule"})
            # a run that fails (no NSE files where it looks): the alert sensor reports it
            _launch(env, tmp_path, "iv_collection", {"dagster/partition": "2025-07-18"},
                    {"resources": {"market_data": {"config": {"source": "nse_files",
                                                              "nse_data_dir": str(tmp_path / "no_files")}}}})

            iv = wait_for(lambda: _finished(instance, "iv_collection", **{"dagster/partition": "2025-07-17"}),
                          "the daemon ran the IV collection", logs)
            assert iv.status == dg.DagsterRunStatus.SUCCESS

            refresh = wait_for(lambda: _finished(instance, "session_refresh", **{"options_v4/after_run": iv.run_id}),
                               "session_refresh_sensor launched the refresh and it finished", logs, every=5)
            assert refresh.status == dg.DagsterRunStatus.SUCCESS
            assert refresh.tags["dagster/partition"] == "2025-07-17"
            assert refresh.tags["dagster/sensor_name"] == "session_refresh_sensor"

            # the catch-up schedule has nothing to do for the session
            when = dt.datetime.combine(D, dt.time(17, 30), tzinfo=calendar.IST)
            with dg.build_schedule_context(instance=instance, scheduled_execution_time=when,
                                           repository_def=defs.get_repository_def()) as ctx:
                catch_up = defs.resolve_schedule_def("daily_pipeline_schedule").evaluate_tick(ctx)
            assert not catch_up.run_requests and refresh.run_id[:8] in catch_up.skip_message

            # the new allocation, approved, is executed by the execution sensor's run
            wh = Warehouse(warehouse_url, create=False)
            allocation_id = latest_allocation_id(wh, D)
            assert allocation_id
            code, out, err = cli_call(env, ["approve", allocation_id, "--json"])
            assert code == 0, err
            approval_id = json.loads(out)["approval_id"]
            execution = wait_for(lambda: _finished(instance, "execute_allocation",
                                                   **{"options_v4/approval_id": approval_id}),
                                 "approved_allocations_sensor launched the execution and it finished", logs, every=5)
            assert execution.status == dg.DagsterRunStatus.SUCCESS, execution.run_id
            assert execution.tags["options_v4/allocation_id"] == allocation_id
            assert execution.tags["dagster/sensor_name"] == "approved_allocations_sensor"
            assert wh.count("orders") > 0

            failed = wait_for(lambda: _finished(instance, "iv_collection", **{"dagster/partition": "2025-07-18"}),
                              "the failing run finished", logs)
            assert failed.status == dg.DagsterRunStatus.FAILURE
            alert = wait_for(lambda: [b for _, b in hook.requests if b["run_id"] == failed.run_id],
                             "run_failure_alert_sensor posted the failed run", logs)
            assert alert[0]["job_name"] == "iv_collection" and alert[0]["partition"] == "2025-07-18"
            assert alert[0]["steps_failed"] and alert[0]["reason"]
            assert f"run {failed.run_id} of iv_collection for session 2025-07-18 failed" in daemon_log.read_text()

            # everything above is in the deployment's PostgreSQL: the runs, and the rows of the session
            assert {r.run_id for r in instance.get_runs()} >= {iv.run_id, refresh.run_id, execution.run_id, failed.run_id}
            for table in ("option_chain_data", "option_greeks", "strategies", "portfolio_allocation"):
                assert wh.count(table, D) > 0, table
            wh.dispose()
