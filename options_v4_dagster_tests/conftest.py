"""Shared fixtures.

- ``nse_data_dir``: the real NSE files (``OPTIONS_V4_NSE_DATA_DIR`` or ../shared/data/nse).
- ``pg_url``: a scratch database on the PostgreSQL server (``OPTIONS_V4_TEST_PG`` or
  127.0.0.1:5432 with trust auth), created for the test session and dropped after.

Under CI (CI=true) a missing data folder or an unreachable PostgreSQL fails these tests
instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from options_v4_dagster import config

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(msg: str):
    if IN_CI:
        pytest.fail(msg + " (CI=true: required)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def nse_data_dir() -> Path:
    path = config.nse_data_dir()
    if not (path / "option_chain").is_dir():
        _unavailable(f"NSE data folder not found at {path} (set OPTIONS_V4_NSE_DATA_DIR)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own warehouse and state folder unless it sets DATABASE_URL itself."""
    monkeypatch.setenv("OPTIONS_V4_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("OPTIONS_V4_MARKET_DATA", raising=False)
    for var in ("OPTIONS_V4_WAREHOUSE", "SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_DB_PASSWORD"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    base = os.environ.get("OPTIONS_V4_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        import sqlalchemy as sa

        eng = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with eng.connect() as c:
            c.execute(sa.text("select 1"))
        eng.dispose()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"PostgreSQL not reachable at {base}: {exc.__class__.__name__}: {exc}")
    return base


@pytest.fixture()
def pg_url(pg_server_url):
    """A fresh, empty database for one test; dropped afterwards."""
    import sqlalchemy as sa

    name = f"ov4_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
