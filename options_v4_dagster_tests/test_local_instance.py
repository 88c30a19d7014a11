"""The top-level dagster.yaml is the local instance (issue 13 item 6): a bare `dg dev` in the checkout and
`make dev` (DAGSTER_HOME=$PWD) get SQLite storage under .dagster_home/, the queued run coordinator, run
monitoring and pool limit 1, with no warning; options-v4's own instance takes the same settings."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from options_v4_dagster.cli import instance as cli_instance

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PROBE = r"""
import json, logging, os, sys, warnings
records = []
class Keep(logging.Handler):
    def emit(self, r):
        if r.levelno >= logging.WARNING:
            records.append(r.getMessage())
logging.getLogger().addHandler(Keep())
logging.getLogger("dagster").addHandler(Keep())
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    from dagster._cli.utils import get_possibly_temporary_instance_for_cli
    with get_possibly_temporary_instance_for_cli("dg dev") as inst:
        storage = inst.run_storage
        out = {
            "run_storage": type(storage).__name__,
            "runs_db": os.path.realpath(storage._conn_string.split("sqlite:///")[-1]),
            "compute_logs": os.path.realpath(inst.compute_log_manager._base_dir),
            "coordinator": type(inst.run_coordinator).__name__,
            "run_monitoring": inst.run_monitoring_enabled,
            "pool_limit": inst.get_concurrency_config().pool_config.default_pool_limit,
            "max_runs": inst.get_concurrency_config().run_queue_config.max_concurrent_runs,
            "telemetry": inst.telemetry_enabled,
        }
out["warnings"] = records + [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)]
print(json.dumps(out))
"""


def _probe(cwd: Path, dagster_home: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    p = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("how", ["bare dg dev", "make dev"])
def test_top_level_dagster_yaml_is_a_sqlite_instance_under_dagster_home(tmp_path, how):
    """A copy of the checkout's dagster.yaml in an empty folder: what `dg dev` (no DAGSTER_HOME: Dagster reads
    the working directory's dagster.yaml) and `make dev` (DAGSTER_HOME=$PWD) start with."""
    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    got = _probe(tmp_path, None if how == "bare dg dev" else tmp_path)
    home = tmp_path.resolve() / ".dagster_home"
    assert got["run_storage"] == "SqliteRunStorage"
    assert Path(got["runs_db"]).parent == home / "history"
    assert Path(got["compute_logs"]) == home / "storage"
    assert got["coordinator"] == "QueuedRunCoordinator" and got["run_monitoring"] is True
    assert got["pool_limit"] == 1 and got["max_runs"] == 4 and got["telemetry"] is False
    assert got["warnings"] == []
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp_dagster_home")]


def test_the_cli_instance_takes_the_checkout_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    cli_instance.ensure_dagster_home()
    written = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    top = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert written == {k: v for k, v in top.items() if k not in ("storage", "local_artifact_storage", "compute_logs")}
    # outside a checkout the CLI writes the same settings
    assert yaml.safe_load(cli_instance.DAGSTER_YAML) == written
    import dagster as dg

    with dg.DagsterInstance.get() as inst:
        assert type(inst.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert inst.get_concurrency_config().pool_config.default_pool_limit == 1
        assert Path(inst.root_directory).resolve() == tmp_path.resolve()
        # with DAGSTER_HOME=<checkout>/.dagster_home (the CLI's default) this is the file `make dev` uses
        runs_db = Path(inst.run_storage._conn_string.split("sqlite:///")[-1]).resolve()
        assert runs_db == tmp_path.resolve() / "history" / "runs.db"


def test_the_deployment_picks_the_executor():
    from options_v4_dagster.defs.executor import DEFAULT_BROKER, celery_config, job_executor
    from options_v4_dagster.errors import ConfigError

    assert job_executor(env={}) is None
    marker = object()
    assert job_executor(marker, env={"OPTIONS_V4_EXECUTOR": "default"}) is marker
    celery = job_executor(env={"OPTIONS_V4_EXECUTOR": "Celery", "OPTIONS_V4_CELERY_QUEUE": "q1"})
    assert celery.name == "celery" and not celery.config_schema.as_field().is_required  # configured: no run config
    assert celery_config({"OPTIONS_V4_CELERY_QUEUE": "q1"}) == {
        "broker": DEFAULT_BROKER, "backend": "rpc://", "config_source": {"task_default_queue": "q1"}}
    with pytest.raises(ConfigError, match="OPTIONS_V4_EXECUTOR='dask'"):
        job_executor(env={"OPTIONS_V4_EXECUTOR": "dask"})


def test_deployments_keep_the_local_settings():
    top = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    pg = yaml.safe_load((ROOT / "deploy" / "postgres" / "dagster.yaml").read_text())
    assert set(pg["storage"]) == {"postgres"}
    for key in ("run_coordinator", "concurrency", "run_monitoring", "telemetry"):
        assert pg[key] == top[key], key


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.slow
def test_dg_dev_starts_without_a_warning(tmp_path):
    """`dg dev` in a project folder holding the checkout's dagster.yaml and no DAGSTER_HOME: webserver and
    daemon come up on the SQLite instance under .dagster_home/ and print no warning."""
    for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "options_v4_dagster").symlink_to(ROOT / "options_v4_dagster")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update(VIRTUAL_ENV=sys.prefix, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               OPTIONS_V4_HOME=str(tmp_path / "data"), DATABASE_URL=f"sqlite:///{tmp_path / 'wh.db'}")
    log = tmp_path / "dg.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([str(BIN / "dg"), "dev", "-p", str(port), "--host", "127.0.0.1"], cwd=tmp_path,
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        up = False
        for _ in range(600):  # polls, not a timing assertion: the webserver must come up at some point
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5) as r:
                    up = r.status == 200
            except OSError:
                pass
            if up and "SensorDaemon" in log.read_text():
                break
            time.sleep(1)
        text = log.read_text()
        assert up and proc.poll() is None, text[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert "WARNING" not in text and "Warning" not in text and "warning" not in text.lower(), text[-3000:]
    assert "Using temporary directory" in text  # dg dev's own note: storage is still the yaml's
    assert (tmp_path / ".dagster_home" / "history" / "runs.db").exists()
