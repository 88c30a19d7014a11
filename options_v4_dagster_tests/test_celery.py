"""Scale-out on Celery (issue 13 item 6): daily_pipeline for one session with OPTIONS_V4_EXECUTOR=celery, its
steps executed by two `dagster-celery worker start` processes (deploy/celery/worker) over the local RabbitMQ,
the instance in PostgreSQL (deploy/postgres/dagster.yaml): every warehouse table holds the same rows as the
in-process run of the same session."""

import datetime as dt
import os
import shutil
import socket
import subprocess
import uuid

import dagster as dg
import polars as pl
import pytest

from options_v4_dagster.cli.instance import run_pipeline
from options_v4_dagster.defs.executor import DEFAULT_BROKER
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.schema import metadata
from options_v4_dagster_tests.conftest import IN_CI
from options_v4_dagster_tests.deployment import (
    BIN,
    ROOT,
    background,
    dagster_pg_env,
    deployment_env,
    patched_env,
    scratch_databases,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

D = dt.date(2025, 7, 17)
#: written at write time or naming the Dagster run: they differ between any two runs by construction
VOLATILE = {"created_at", "updated_at", "recorded_at", "written_at", "materialized_at", "run_id"}


@pytest.fixture(scope="module")
def broker() -> str:
    url = os.environ.get("OPTIONS_V4_CELERY_BROKER", DEFAULT_BROKER)
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=5).close()
    except OSError as exc:
        if shutil.which("rabbitmq-server") is None and not IN_CI:
            pytest.skip(f"RabbitMQ is not installed (no rabbitmq-server) and nothing listens on 127.0.0.1:5672: {exc}")
        pytest.fail(f"RabbitMQ is installed but not reachable on 127.0.0.1:5672 ({exc}): start it with "
                    "`rabbitmq-server -detached` (.ci/run does)")
    return url


def _table_rows(url: str) -> dict[str, pl.DataFrame]:
    wh = Warehouse(url, create=False)
    out = {}
    for t in metadata.sorted_tables:
        cols = [c.name for c in t.columns if c.name not in VOLATILE]
        frame = wh.read(f"select {', '.join(cols)} from {t.name}")
        if frame.height:
            out[t.name] = frame.sort(cols, nulls_last=True)
    wh.dispose()
    return out


def _celery_workers(instance, run_id: str) -> set[str]:
    names = set()
    for rec in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        md = rec.dagster_event.event_specific_data.metadata or {}
        if "Celery worker" in md:
            names.add(md["Celery worker"].value)
    return names


def _delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker) as conn:
        conn.default_channel.queue_delete(queue)


def test_daily_pipeline_on_two_celery_workers_gives_the_in_process_rows(tmp_path, pg_server_url, broker):
    with scratch_databases(pg_server_url, 3) as (instance_url, celery_url, in_process_url):
        # the reference: the same session in one process (options-v4 run)
        (tmp_path / "dh").mkdir()
        with patched_env({"DAGSTER_HOME": str(tmp_path / "dh"), "DATABASE_URL": in_process_url,
                          "OPTIONS_V4_HOME": str(tmp_path / "data1")}):
            result, instance = run_pipeline(D, "simulated", log_level="WARNING")
            assert result.success
            instance.dispose()

        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", home / "dagster.yaml")
        queue = f"ov4_test_{uuid.uuid4().hex[:8]}"
        env = deployment_env(DAGSTER_HOME=str(home), DATABASE_URL=celery_url, OPTIONS_V4_HOME=str(tmp_path / "data2"),
                             OPTIONS_V4_MARKET_DATA="simulated", OPTIONS_V4_EXECUTOR="celery",
                             OPTIONS_V4_CELERY_BROKER=broker, OPTIONS_V4_CELERY_QUEUE=queue,
                             **dagster_pg_env(instance_url))
        Warehouse(celery_url).dispose()
        logs = (tmp_path / "w1.log", tmp_path / "w2.log")
        worker = str(ROOT / "deploy" / "celery" / "worker")
        try:
            with background([worker, f"w1-{queue}", "--", "--concurrency=1"], env, logs[0], tmp_path), \
                    background([worker, f"w2-{queue}", "--", "--concurrency=1"], env, logs[1], tmp_path):
                wait_for(lambda: all(" ready." in p.read_text() for p in logs), "both Celery workers ready", logs)
                run_log = tmp_path / "run.log"
                p = subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "options_v4_dagster.definitions",
                                    "-a", "defs", "-j", "daily_pipeline", "--tags",
                                    f'{{"dagster/partition": "{D.isoformat()}"}}'],
                                   env=env, cwd=tmp_path, capture_output=True, text=True, timeout=3600)
                run_log.write_text(p.stdout + p.stderr)
                assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
        finally:
            _delete_queue(broker, queue)

        with patched_env(env), dg.DagsterInstance.get() as inst:
            (run,) = inst.get_runs(filters=dg.RunsFilter(job_name="daily_pipeline"))
            assert run.status == dg.DagsterRunStatus.SUCCESS
            # every step ran in a worker, and both workers took steps
            assert _celery_workers(inst, run.run_id) == {f"w1-{queue}@{socket.gethostname()}",
                                                         f"w2-{queue}@{socket.gethostname()}"}
            steps = {r.step_key for r in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
            assert {"universe", "option_chains", "option_greeks", "strategy_candidates", "portfolio_allocation"} <= steps

        celery_rows, in_process_rows = _table_rows(celery_url), _table_rows(in_process_url)
        assert set(celery_rows) == set(in_process_rows)
        assert {"option_chain_data", "option_greeks", "strategies", "portfolio_allocation"} <= set(celery_rows)
        differ = [t for t in celery_rows if not celery_rows[t].equals(in_process_rows[t])]
        assert differ == [], {t: (celery_rows[t].height, in_process_rows[t].height) for t in differ}
