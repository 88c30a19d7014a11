"""The Dagster instance of the CLI (``DAGSTER_HOME``, its ``dagster.yaml``) and its runs: each is tagged
with the process that executes it, so a run abandoned by a killed ``options-v4`` is found and marked
failed at the next start. :func:`run_pipeline` executes a job for one session in-process."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path

from options_v4_dagster import config

from .output import console

#: The instance config the CLI writes (only into a dagster.yaml it wrote itself, recognised by this line).
DAGSTER_YAML_MARK = "# Dagster instance written by options-v4"
#: Written when the checkout's top-level dagster.yaml is not there (an installed package): the same settings.
DAGSTER_YAML = f"""{DAGSTER_YAML_MARK} (delete this line to keep your own edits)
# SQLite storage in this folder (Dagster's defaults).
run_coordinator:
  module: dagster._core.run_coordinator
  class: QueuedRunCoordinator
concurrency:
  runs:
    max_concurrent_runs: 4
  # Concurrency pools: one op of a pool at a time across runs (broker_account: one trade execution per
  # broker account at a time).
  pools:
    default_limit: 1
telemetry:
  enabled: false
# Runs launched by the daemon (`make dev`, schedules, the UI): a run whose worker process dies is
# marked FAILURE by the daemon's run monitor. Runs of the options-v4 CLI execute in its own process;
# the CLI marks its own abandoned runs failed at its next start (README: "A killed run").
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 60
"""
#: Keys of the checkout's dagster.yaml that place files relative to the checkout; the CLI's instance keeps
#: Dagster's defaults for them (everything in DAGSTER_HOME, which is .dagster_home/ by default: the same place).
_PATH_KEYS = ("storage", "local_artifact_storage", "compute_logs")


def local_instance_yaml() -> str:
    """The CLI's instance config: the checkout's top-level dagster.yaml (the local instance of ``make dev``
    and ``dg dev``) without its storage paths, or :data:`DAGSTER_YAML` outside a checkout."""
    top = config.PROJECT_ROOT / "dagster.yaml" if config.PROJECT_ROOT is not None else None
    if top is None or not top.exists():
        return DAGSTER_YAML
    import yaml

    settings = {k: v for k, v in (yaml.safe_load(top.read_text()) or {}).items() if k not in _PATH_KEYS}
    return (f"{DAGSTER_YAML_MARK} from {top} (delete this line to keep your own edits)\n"
            "# SQLite storage in this folder (Dagster's defaults); the other settings are the checkout's.\n"
            + yaml.safe_dump(settings, sort_keys=False))


def ensure_dagster_home() -> Path:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        base = config.PROJECT_ROOT if config.PROJECT_ROOT is not None else Path.home() / ".options_v4"
        home = str(base / ".dagster_home")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    yaml_path = path / "dagster.yaml"
    if path != config.PROJECT_ROOT:
        old = yaml_path.read_text() if yaml_path.exists() else None
        ours = old is None or old.startswith(DAGSTER_YAML_MARK) or old.startswith(
            "# Dagster instance: SQLite storage in this folder (Dagster's defaults)")  # written by earlier versions
        want = local_instance_yaml()
        if ours and old != want:
            yaml_path.write_text(want)
    return path


# --- runs of this CLI: tagged with the process that executes them, so an abandoned one can be found

TAG_CLI, TAG_PID, TAG_HOST, TAG_TOKEN = "options_v4/cli", "options_v4/pid", "options_v4/host", "options_v4/start_token"


def _process_start_token(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux ``/proc/PID/stat`` field 22): with the pid
    it names one process, even after the pid is reused. None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc on this system: fall back to "the pid exists"
        return "?" if _pid_exists(pid) else None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cli_run_tags(command: str) -> dict[str, str]:
    pid = os.getpid()
    return {TAG_CLI: command, TAG_PID: str(pid), TAG_HOST: socket.gethostname(),
            TAG_TOKEN: _process_start_token(pid) or "?"}


def _process_alive(pid: int, token: str) -> bool:
    now = _process_start_token(pid)
    if now is None:
        return False
    return token in ("?", "") or now in ("?", token)


def fail_abandoned_runs(instance) -> list[str]:
    """Mark FAILURE this host's CLI runs still STARTING/STARTED whose process is gone (killed, crashed,
    machine rebooted). Returns the ids marked. Runs of other hosts and live processes are left alone."""
    import dagster as dg

    host = socket.gethostname()
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                             dg.DagsterRunStatus.STARTING],
                                                   tags={TAG_HOST: host}))
    marked = []
    for run in runs:
        tags = run.tags
        try:
            pid = int(tags.get(TAG_PID, ""))
        except ValueError:
            continue
        if pid == os.getpid() or _process_alive(pid, tags.get(TAG_TOKEN, "")):
            continue
        instance.report_run_failed(run, message=f"abandoned: the options-v4 process (pid {pid} on {host}) that ran "
                                                f"it is gone (killed or crashed); marked failed by options-v4 "
                                                f"pid {os.getpid()} at its start")
        marked.append(run.run_id)
    return marked


def cli_instance():
    """The Dagster instance of DAGSTER_HOME, after marking this CLI's abandoned runs failed (one line)."""
    import dagster as dg

    ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    marked = fail_abandoned_runs(instance)
    if marked:
        console.print(f"marked {len(marked)} abandoned run(s) of a killed options-v4 process failed: "
                      + ", ".join(r[:8] for r in marked))
    return instance


#: Dagster's run tags of a run over a range of partitions (a backfill's range run)
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def market_run_config(source: str | None, nse_dir: str | None = None, log_level: str | None = None) -> dict:
    """The run config that picks the market-data source (and the console log level)."""
    market_cfg: dict = {"source": config.market_source(source)}
    if nse_dir:
        market_cfg["nse_data_dir"] = str(Path(nse_dir).expanduser().resolve())
    cfg: dict = {"resources": {"market_data": {"config": market_cfg}}}
    if log_level:
        cfg["loggers"] = {"console": {"config": {"log_level": log_level}}}
    return cfg


def run_pipeline(session: dt.date, source: str | None = None, nse_dir: str | None = None,
                 job_name: str = "daily_pipeline", raise_on_error: bool = False, log_level: str = "INFO",
                 instance=None, end: dt.date | None = None, command: str = "run"):
    """Execute a job in-process against the configured instance for one session, or with ``end`` for the
    range of sessions ``session .. end`` in one run (the assets process the range in session order, as a
    backfill's range run does)."""
    from options_v4_dagster.definitions import build_defs

    instance = instance or cli_instance()
    src = config.market_source(source)
    job = build_defs().resolve_job_def(job_name)
    tags = {**cli_run_tags(command), "options_v4/source": src}
    key = {"partition_key": session.isoformat()}
    if end is not None and end != session:
        key = {}
        tags.update({RANGE_START_TAG: session.isoformat(), RANGE_END_TAG: end.isoformat()})
    return job.execute_in_process(
        **key,
        instance=instance,
        run_config=market_run_config(src, nse_dir, log_level),
        tags=tags,
        raise_on_error=raise_on_error,
    ), instance
