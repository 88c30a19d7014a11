"""Supabase as the warehouse: its PostgreSQL, reached with ``OPTIONS_V4_WAREHOUSE=supabase``.

- the URL derivation (``SUPABASE_DB_URL``, or ``SUPABASE_URL`` + ``SUPABASE_DB_PASSWORD``) and its errors;
- the warehouse interface (:class:`WarehouseLike`) the assets and query modules use, and that
  :class:`Warehouse` implements it;
- the daily pipeline end to end on a fresh PostgreSQL database with Supabase's roles, default grants
  and ``sql/postgres_extras.sql`` (a local stand-in: no Supabase project is reachable from here).
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.store import Warehouse, WarehouseLike
from options_v4_dagster_tests.test_rls import _supabase_like

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "options_v4_dagster"
PASSWORD = "s3cr:et/p@ss word"  # characters that need escaping in a URL
REF = "abcdefghijklmnopqrst"


@pytest.fixture()
def supabase(monkeypatch):
    monkeypatch.setenv("OPTIONS_V4_WAREHOUSE", "supabase")
    return monkeypatch


# --- URL derivation ---------------------------------------------------------------------------------

def test_url_from_project_url_and_password(supabase):
    supabase.setenv("SUPABASE_URL", f"https://{REF}.supabase.co")
    supabase.setenv("SUPABASE_DB_PASSWORD", PASSWORD)
    supabase.setenv("DATABASE_URL", "sqlite:////nowhere.db")  # not used with OPTIONS_V4_WAREHOUSE=supabase
    u = make_url(config.database_url())
    assert (u.drivername, u.username, u.password, u.host, u.port, u.database) == \
        ("postgresql+psycopg", "postgres", PASSWORD, f"db.{REF}.supabase.co", 5432, "postgres")
    assert u.query["sslmode"] == "require" and u.query["connect_timeout"] == str(config.DEFAULT_DB_CONNECT_TIMEOUT)
    assert config.database_url_variable() == "SUPABASE_URL"


def test_url_from_connection_string_wins_and_keeps_its_sslmode(supabase):
    supabase.setenv("SUPABASE_URL", f"https://{REF}.supabase.co")
    pooler = f"postgresql://postgres.{REF}:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres"
    supabase.setenv("SUPABASE_DB_URL", pooler)
    u = make_url(config.database_url())
    assert (u.drivername, u.username, u.host, u.port) == \
        ("postgresql+psycopg", f"postgres.{REF}", "aws-0-eu-central-1.pooler.supabase.com", 6543)
    assert u.query["sslmode"] == "require"
    assert config.database_url_variable() == "SUPABASE_DB_URL"
    supabase.setenv("SUPABASE_DB_URL", "postgres://postgres:pw@db.x.supabase.co:5432/postgres?sslmode=verify-full")
    assert make_url(config.database_url()).query["sslmode"] == "verify-full"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_local_stand_in_gets_no_sslmode(supabase, host):
    supabase.setenv("SUPABASE_DB_URL", f"postgresql://postgres@{host}:5432/scratch")
    assert "sslmode" not in make_url(config.database_url()).query


@pytest.mark.parametrize("env, names", [
    ({"SUPABASE_URL": f"https://{REF}.supabase.co"}, ["SUPABASE_DB_PASSWORD"]),
    ({"SUPABASE_URL": f"https://{REF}.supabase.co", "SUPABASE_DB_PASSWORD": "  "}, ["SUPABASE_DB_PASSWORD"]),
    ({}, ["SUPABASE_DB_URL", "SUPABASE_URL", "SUPABASE_DB_PASSWORD"]),
    ({"SUPABASE_URL": "https://example.com", "SUPABASE_DB_PASSWORD": PASSWORD}, ["SUPABASE_URL", "SUPABASE_DB_URL"]),
    ({"SUPABASE_DB_URL": f"sqlite:////tmp/{PASSWORD}.db"}, ["SUPABASE_DB_URL", "postgresql"]),
    ({"SUPABASE_DB_URL": f"mysql://u:{PASSWORD}@h/db"}, ["SUPABASE_DB_URL", "mysql"]),
    ({"SUPABASE_DB_URL": "::not a url::"}, ["SUPABASE_DB_URL", "not a database URL"]),
])
def test_missing_or_bad_pieces_name_the_variable_never_the_password(supabase, env, names):
    for var, value in env.items():
        supabase.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        config.database_url()
    for name in names:
        assert name in str(err.value), str(err.value)
    assert PASSWORD not in str(err.value)


def test_unknown_warehouse_kind_is_a_config_error(monkeypatch):
    monkeypatch.setenv("OPTIONS_V4_WAREHOUSE", "postgrest")
    with pytest.raises(ConfigError, match=r"OPTIONS_V4_WAREHOUSE='postgrest'.*sqlalchemy, supabase"):
        config.database_url()


def test_default_and_explicit_sqlalchemy_are_unchanged(monkeypatch, tmp_path):
    assert config.database_url().startswith("sqlite:///")
    monkeypatch.setenv("OPTIONS_V4_WAREHOUSE", "SQLAlchemy")
    monkeypatch.setenv("SUPABASE_DB_URL", "postgresql://ignored@db.x.supabase.co/postgres")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'w.db'}")
    assert config.database_url() == f"sqlite:///{tmp_path / 'w.db'}"
    assert config.database_url_variable() == "DATABASE_URL"


def test_cli_prints_one_line_naming_the_variable(supabase, capsys):
    from options_v4_dagster.cli import main

    supabase.setenv("SUPABASE_URL", f"https://{REF}.supabase.co")
    assert main(["db", "current"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SUPABASE_DB_PASSWORD" in err[0], err


def test_resource_takes_the_secrets_it_was_given_not_the_environment(supabase):
    from options_v4_dagster.defs.resources import WarehouseResource

    supabase.setenv("SUPABASE_URL", f"https://{REF}.supabase.co")
    given = make_url(WarehouseResource(supabase_db_password=PASSWORD).resolved_url())
    assert (given.host, given.password) == (f"db.{REF}.supabase.co", PASSWORD)
    supabase.setenv("SUPABASE_DB_PASSWORD", "from-the-environment")
    with pytest.raises(ConfigError, match="SUPABASE_DB_PASSWORD"):  # a run passes it in; it never reads os.environ
        WarehouseResource().resolved_url()


# --- the interface ---------------------------------------------------------------------------------

def _protocol_members() -> set[str]:
    return {n for n, v in vars(WarehouseLike).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}


def test_warehouse_implements_the_protocol_with_the_same_signatures(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        assert isinstance(wh, WarehouseLike)
    finally:
        wh.dispose()
    assert not isinstance(object(), WarehouseLike)
    for name in _protocol_members() - {"engine", "dialect"}:  # properties (attributes on Warehouse)
        assert not isinstance(getattr(Warehouse, name), property), name
        want = inspect.signature(getattr(WarehouseLike, name))
        got = inspect.signature(getattr(Warehouse, name))
        assert [(p.name, p.kind, p.default) for p in got.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in want.parameters.values()], name
    assert isinstance(Warehouse.dialect, property) and isinstance(WarehouseLike.dialect, property)


def test_protocol_lists_exactly_what_assets_and_queries_use():
    files = [*(PACKAGE / "defs").rglob("*.py"), PACKAGE / "allocation" / "session.py",
             *(p for p in (PACKAGE / "store").glob("*.py") if p.name not in ("warehouse.py", "protocol.py", "migrate.py"))]
    used = {m for p in files for m in re.findall(r"\bwh\.(\w+)", p.read_text())}
    assert used == _protocol_members()


# --- end to end on a local stand-in -----------------------------------------------------------------

@pytest.mark.slow
def test_daily_pipeline_end_to_end_on_supabase_postgres(pg_url, tmp_path, supabase):
    from options_v4_dagster.cli import main, run_pipeline

    conn = _supabase_like(pg_url)  # Supabase's anon/authenticated/service_role and default grants
    db_url = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    supabase.setenv("SUPABASE_DB_URL", db_url)  # as the dashboard gives it: postgresql://postgres@host:5432/db
    supabase.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'not_used.db'}")
    supabase.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    session = dt.date(2025, 7, 17)
    try:
        assert main(["db", "upgrade"]) == 0  # the documented setup: migrations, then the RLS extras
        conn.execute((ROOT / "sql" / "postgres_extras.sql").read_text())
        result, _ = run_pipeline(session, "simulated")
        assert result.success
        wh = Warehouse(pg_url, create=False)
        try:
            counts = {t: wh.count(t, session) for t in ("fno_universe", "option_chain_data", "option_greeks",
                                                        "strategies", "portfolio_allocation")}
        finally:
            wh.dispose()
        assert all(n > 0 for n in counts.values()), counts
        assert counts["option_chain_data"] > 10_000
        # the pipeline's rows are readable by Supabase's authenticated role, not by anon
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL ROLE authenticated")
            seen = conn.execute("select count(*) from option_chain_data where trade_date = %s", [session]).fetchone()[0]
        assert seen == counts["option_chain_data"]
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL ROLE anon")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("select count(*) from option_chain_data")
    finally:
        conn.close()
    assert not (tmp_path / "not_used.db").exists()
    assert make_url(config.database_url()).database == make_url(pg_url).database
