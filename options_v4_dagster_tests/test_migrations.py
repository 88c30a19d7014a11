"""Schema migrations (store/migrate.py, store/migrations): the migrated schema equals sql/schema.sql
on PostgreSQL and the metadata on SQLite; a database of the release before migrations is stamped
and keeps its rows; one that differs is refused untouched; two processes on an empty database."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from options_v4_dagster.cli import main
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.store import Warehouse, metadata, migrate

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
D = dt.date(2025, 7, 17)


@contextlib.contextmanager
def scratch_database(pg_server_url: str):
    """A second empty PostgreSQL database (``pg_url`` gives one per test)."""
    name = f"ov4_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _pg_catalog(url: str) -> dict[str, list]:
    """Columns (type, length, precision, nullability, default), constraints, indexes and comments
    of the public schema, without the migrations' version table."""
    queries = {
        "columns": """select table_name, column_name, ordinal_position, data_type, character_maximum_length,
                             numeric_precision, datetime_precision, is_nullable, column_default
                      from information_schema.columns where table_schema = 'public'""",
        "constraints": """select c.conrelid::regclass::text, c.conname, c.contype, pg_get_constraintdef(c.oid)
                          from pg_constraint c join pg_namespace n on n.oid = c.connamespace
                          where n.nspname = 'public'""",
        "indexes": "select tablename, indexname, indexdef from pg_indexes where schemaname = 'public'",
        "comments": """select c.relname, a.attname, d.description from pg_description d
                       join pg_class c on c.oid = d.objoid join pg_namespace n on n.oid = c.relnamespace
                       left join pg_attribute a on a.attrelid = c.oid and a.attnum = d.objsubid and d.objsubid > 0
                       where n.nspname = 'public'""",
        "tables": "select table_name, table_type from information_schema.tables where table_schema = 'public'",
    }
    eng = sa.create_engine(url)
    with eng.connect() as c:
        out = {k: sorted(tuple(map(str, r)) for r in c.exec_driver_sql(q).all()
                         if migrate.VERSION_TABLE not in str(r[0]))
               for k, q in queries.items()}
    eng.dispose()
    return out


def _no_autogenerate_diff(engine: sa.Engine) -> list:
    with engine.connect() as c:
        ctx = MigrationContext.configure(c, opts={"compare_type": True, "include_name": migrate.include_name,
                                                  "version_table": migrate.VERSION_TABLE})
        return compare_metadata(ctx, metadata)


def test_migrated_postgres_schema_equals_sql_schema_file(pg_url, pg_server_url):
    wh = Warehouse(pg_url)  # an empty database: upgraded to head
    with wh.engine.connect() as c:
        assert migrate.current(c) == migrate.head()
    assert _no_autogenerate_diff(wh.engine) == []
    wh.dispose()
    with scratch_database(pg_server_url) as other:
        eng = sa.create_engine(other)
        with eng.begin() as c:
            c.connection.driver_connection.execute((ROOT / "sql" / "schema.sql").read_text())
        eng.dispose()
        migrated, from_file = _pg_catalog(pg_url), _pg_catalog(other)
    assert {t for t, _ in migrated["tables"]} == set(metadata.tables)
    for part in migrated:
        assert migrated[part] == from_file[part], part
    # the comparison sees differences: a column comment only on one side
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.exec_driver_sql("COMMENT ON COLUMN strategies.rank IS 'changed'")
    eng.dispose()
    assert _pg_catalog(pg_url)["comments"] != from_file["comments"]


def _sqlite_master(url: str) -> list[tuple]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        rows = c.exec_driver_sql("select type, name, tbl_name, sql from sqlite_master "
                                 f"where name not like '%{migrate.VERSION_TABLE}%' order by name").all()
    eng.dispose()
    # the same DDL up to layout: ALTER TABLE ADD COLUMN appends ", col TYPE" to the stored CREATE text,
    # a batch rebuild quotes the table name
    return [(t, n, tbl, None if sql is None else re.sub(r'[\s"]+', "", sql)) for t, n, tbl, sql in rows]


def test_migrated_sqlite_schema_equals_metadata(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'migrated.db'}")
    assert _no_autogenerate_diff(wh.engine) == []
    wh.dispose()
    created = sa.create_engine(f"sqlite:///{tmp_path / 'created.db'}")
    metadata.create_all(created)
    created.dispose()
    migrated = _sqlite_master(f"sqlite:///{tmp_path / 'migrated.db'}")
    assert {r[1] for r in migrated if r[0] == "table"} == set(metadata.tables)
    assert migrated == _sqlite_master(f"sqlite:///{tmp_path / 'created.db'}")


# --- a database of the release before migrations -------------------------------------------------

ROWS = {  # rows as the release before migrations (commit eeb1b05) wrote them
    "option_chain_data": dict(trade_date=D, symbol="NIFTY", expiry=dt.date(2025, 7, 31), strike=25000.0,
                              option_type="CE", bid=101.0, ask=103.0, underlying_price=25100.0, lot_size=75,
                              source="nse_files"),
    "portfolio_allocation": dict(allocation_id="AL-s1", trade_date=D, strategy_id="s1", symbol="NIFTY",
                                 strategy_name="Bull Call Spread", tier="TIER1", lots=1, capital_used=5000.0,
                                 capital=1e6, status="proposed",
                                 created_at=dt.datetime(2025, 7, 17, 12, tzinfo=dt.UTC)),
    "portfolio_allocation_summary": dict(trade_date=D, capital=1e6, capital_used=5000.0, deployment=0.005,
                                         positions=1, market_state="DEFAULT",
                                         created_at=dt.datetime(2025, 7, 17, 12, tzinfo=dt.UTC)),
}


def _previous_release(url: str, *, alter: str | None = None) -> None:
    """The database the last release before migrations left: its DDL (frozen fixture), some rows,
    inserted through the tables as that release defined them (reflected from the fixture's DDL)."""
    eng = sa.create_engine(url)
    ddl = (FIXTURES / f"release_0_1_{eng.dialect.name}.sql").read_text()
    with eng.begin() as c:
        if eng.dialect.name == "postgresql":
            c.connection.driver_connection.execute(ddl)
        else:
            c.connection.driver_connection.executescript(ddl)
        old = sa.MetaData()
        old.reflect(c, only=list(ROWS))
        for table, row in ROWS.items():
            c.execute(old.tables[table].insert(), row)
        if alter:
            c.exec_driver_sql(alter)
    eng.dispose()


def _url(request, tmp_path, backend: str) -> str:
    return f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_previous_release_database_is_stamped_and_keeps_its_rows(request, tmp_path, backend):
    url = _url(request, tmp_path, backend)
    _previous_release(url)
    wh = Warehouse(url, create=False)
    with wh.engine.connect() as c:
        assert migrate.current(c) is None and migrate.legacy_mismatch(c) == []
    result = wh.migrate()
    assert result.stamped == migrate.BASELINE and result.before is None and result.after == migrate.head()
    with wh.engine.connect() as c:
        assert c.exec_driver_sql(f"select version_num from {migrate.VERSION_TABLE}").scalars().all() \
            == [migrate.head()]
    chain = wh.read_partition("option_chain_data", D)
    assert {k: chain.get_column(k)[0] for k in ROWS["option_chain_data"]} == ROWS["option_chain_data"]
    # the session's allocation became one snapshot holding its position unchanged (0003)
    summary = wh.read_partition("portfolio_allocation_summary", D)
    assert summary.get_column("allocation_id").to_list() == ["legacy-2025-07-17"]
    assert summary.get_column("capital_used")[0] == 5000.0 and "unknown" in summary.get_column("rules")[0]
    pos = wh.read_partition("portfolio_allocation", D)
    old = {k: v for k, v in ROWS["portfolio_allocation"].items() if k not in ("allocation_id", "status")}
    assert pos.height == 1 and pos.get_column("position_id")[0] == "AL-s1"
    assert pos.get_column("allocation_id")[0] == "legacy-2025-07-17"
    assert {k: pos.get_column(k)[0] for k in old} == old
    assert "status" not in pos.columns
    from options_v4_dagster.store.allocations import latest_allocation_id
    assert latest_allocation_id(wh, D) == "legacy-2025-07-17"
    assert _no_autogenerate_diff(wh.engine) == []
    assert not Warehouse(url).migrate().changed  # a second start finds it at head
    wh.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_previous_release_database_that_differs_is_refused_untouched(request, tmp_path, backend):
    url = _url(request, tmp_path, backend)
    _previous_release(url, alter="DROP TABLE strategy_exit_levels")
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.exec_driver_sql("ALTER TABLE portfolio_allocation DROP COLUMN tier")
        c.exec_driver_sql("ALTER TABLE strategies ADD COLUMN legacy_note TEXT")
    with pytest.raises(ConfigError) as err:
        Warehouse(url)
    msg = str(err.value)
    assert "missing tables strategy_exit_levels" in msg
    assert "portfolio_allocation lacks columns tier" in msg
    assert "strategies has columns not in the baseline: legacy_note" in msg
    with eng.connect() as c:
        assert migrate.VERSION_TABLE not in sa.inspect(c).get_table_names()
        assert c.exec_driver_sql("select count(*) from option_chain_data").scalar() == 1
    eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_processes_starting_on_an_empty_database(request, tmp_path, backend):
    url = _url(request, tmp_path, backend)
    code = "import sys; from options_v4_dagster.store import Warehouse; Warehouse(sys.argv[1]).dispose()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    eng = sa.create_engine(url)
    with eng.connect() as c:
        assert migrate.current(c) == migrate.head()
        assert set(metadata.tables) <= set(sa.inspect(c).get_table_names())
    eng.dispose()


def test_cli_db_upgrade_current_history(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    _previous_release(url)
    assert main(["db", "current"]) == 0
    assert "tables of a release before migrations" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    out = capsys.readouterr().out
    assert f"{migrate.BASELINE} (stamped: tables without a schema version) -> {migrate.head()}" \
        in " ".join(out.split())
    assert main(["db", "upgrade"]) == 0
    assert f"already at {migrate.head()} (head)" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert f"{migrate.head()} (head)" in capsys.readouterr().out
    assert main(["db", "history"]) == 0
    assert f"<base> -> {migrate.BASELINE}" in capsys.readouterr().out


@pytest.mark.postgres
def test_sql_schema_file_of_this_release_applied_by_hand_is_stamped_at_head(pg_url, monkeypatch):
    """Supabase users apply sql/schema.sql in the SQL editor: that is the head schema, even once it
    differs from the baseline (simulated here by a baseline without portfolio_allocation.selection_reason)."""
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.connection.driver_connection.execute((ROOT / "sql" / "schema.sql").read_text())
    eng.dispose()
    baseline = dict(migrate.BASELINE_TABLES)
    baseline["portfolio_allocation"] = tuple(c for c in baseline["portfolio_allocation"] if c != "selection_reason")
    monkeypatch.setattr(migrate, "BASELINE_TABLES", baseline)
    wh = Warehouse(pg_url, create=False)
    result = wh.migrate()
    assert result.stamped == migrate.head() and result.after == migrate.head()
    assert _no_autogenerate_diff(wh.engine) == []
    wh.dispose()
