"""Helpers of the deployment tests: scratch PostgreSQL databases, the deployment's environment, background
processes (the Dagster daemon, Celery workers) ended by their process group, and polling with a hang guard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKSPACE = ROOT / "workspace.yaml"
#: a hang guard for polls (the test fails with the process logs past it), not a timing assertion
HANG_GUARD_SECONDS = 1800


@contextmanager
def scratch_databases(server_url: str, n: int) -> Iterator[list[str]]:
    """``n`` fresh databases on the test PostgreSQL server (URLs for SQLAlchemy), dropped afterwards."""
    import sqlalchemy as sa

    names = [f"ov4_deploy_{uuid.uuid4().hex[:10]}" for _ in range(n)]
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield [sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
               for name in names]
    finally:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def dagster_pg_env(url: str) -> dict[str, str]:
    """The ``DAGSTER_PG_*`` variables of deploy/postgres/dagster.yaml for a database URL."""
    import sqlalchemy as sa

    u = sa.engine.make_url(url)
    return {"DAGSTER_PG_USERNAME": u.username or "", "DAGSTER_PG_PASSWORD": u.password or "",
            "DAGSTER_PG_HOST": u.host or "127.0.0.1", "DAGSTER_PG_PORT": str(u.port or 5432),
            "DAGSTER_PG_DB": u.database or ""}


#: the machine's variables a deployment process never inherits (live trading, other instances, services)
CLEARED_PREFIXES = ("DAGSTER_", "OPTIONS_V4_", "DHAN_", "SUPABASE_", "DATABASE_URL")


def deployment_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED_PREFIXES)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@contextmanager
def patched_env(env: Mapping[str, str]) -> Iterator[None]:
    """This process's environment set to ``env``'s project variables for the block."""
    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith(CLEARED_PREFIXES):
                mp.delenv(k)
        for k, v in env.items():
            if k.startswith(CLEARED_PREFIXES):
                mp.setenv(k, v)
        yield


@contextmanager
def background(argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> Iterator[subprocess.Popen]:
    """``argv`` in its own process group (its children with it), logging to ``log``; ended on exit:
    SIGTERM to the group, SIGKILL if it is still there after a minute."""
    with log.open("w") as fh:
        proc = subprocess.Popen(argv, env=dict(env), cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        _end_group(proc)


def _end_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:  # children the group leader left behind
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def wait_for(predicate: Callable[[], object], what: str, logs: tuple[Path, ...] = (), every: float = 2.0):
    """Poll ``predicate`` until it returns something truthy (returned); past the hang guard the test fails
    showing the end of ``logs``."""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in logs if p.exists())
            pytest.fail(f"never happened: {what}\n{tails}")
        time.sleep(every)
