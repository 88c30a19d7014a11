"""Row-level security of sql/postgres_extras.sql on the real PostgreSQL, with Supabase's roles.

Supabase creates ``anon``, ``authenticated`` and ``service_role`` (BYPASSRLS) and grants ALL on
new tables in ``public`` to them. These tests recreate that (roles are cluster-wide: created
idempotently, never dropped), apply sql/schema.sql and the extras, and check what each role can do.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
ROLES = {"anon": "NOLOGIN", "authenticated": "NOLOGIN", "service_role": "NOLOGIN BYPASSRLS"}
VIEWS = ("option_chain_latest", "put_call_ratio_daily")


def ensure_supabase_roles(conn) -> None:
    """Create Supabase's three roles if absent (a concurrent creation elsewhere is fine)."""
    for role, opts in ROLES.items():
        conn.exec_driver_sql(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} {opts}; END IF; "
            f"EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")


def _libpq(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _supabase_like(pg_url: str) -> psycopg.Connection:
    """An autocommit connection to the scratch database, with Supabase's roles and default grants."""
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        ensure_supabase_roles(c)
    eng.dispose()
    conn = psycopg.connect(_libpq(pg_url), autocommit=True)
    # Supabase's default: every table or view created in public is granted to the three roles
    conn.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role")
    return conn


@pytest.fixture()
def db(pg_url):
    """A scratch database with the schema, Supabase's default grants, one chain row and the extras."""
    conn = _supabase_like(pg_url)
    conn.execute((ROOT / "sql" / "schema.sql").read_text())
    cols = [r[0] for r in conn.execute(
        "select column_name from information_schema.columns where table_name = 'option_chain_data' "
        "and is_nullable = 'NO' and column_default is null order by ordinal_position")]
    values = {"trade_date": dt.date(2025, 7, 17), "symbol": "NIFTY", "expiry": dt.date(2025, 7, 24),
              "strike": 25150.0, "option_type": "CE", "underlying_price": 25111.45, "lot_size": 75, "source": "nse_files"}
    present = {r[0] for r in conn.execute("select column_name from information_schema.columns "
                                          "where table_name = 'option_chain_data'")}
    values = {k: v for k, v in values.items() if k in present}
    unknown = [c for c in cols if c not in values]
    assert not unknown, f"test row lacks NOT NULL columns {unknown}"
    conn.execute(f"insert into option_chain_data ({', '.join(values)}) values ({', '.join(['%s'] * len(values))})",
                 list(values.values()))
    extras = (ROOT / "sql" / "postgres_extras.sql").read_text()
    conn.execute(extras)
    conn.execute(extras)  # idempotent
    yield conn
    conn.close()


def _as(conn, role: str, sql: str):
    """Run ``sql`` as ``role`` in a transaction rolled back afterwards; return rows or the error."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"SET LOCAL ROLE {role}")
        try:
            with conn.transaction():
                cur = conn.execute(sql)
                return cur.fetchall() if cur.description else cur.rowcount
        except psycopg.errors.InsufficientPrivilege as exc:
            return exc


def test_views_run_with_the_callers_rights(db):
    opts = dict(db.execute("select relname, array_to_string(reloptions, ',') from pg_class "
                           "where relname = any(%s)", [list(VIEWS)]).fetchall())
    assert all("security_invoker=true" in (opts.get(v) or "") for v in VIEWS), opts


@pytest.mark.parametrize("view", VIEWS)
def test_anon_cannot_read_the_views(db, view):
    res = _as(db, "anon", f"select * from {view}")
    assert isinstance(res, psycopg.errors.InsufficientPrivilege) or res == [], res
    assert len(_as(db, "postgres", f"select * from {view}")) == 1  # the row is there


@pytest.mark.parametrize("table", ["option_chain_data", "portfolio_allocation", "strategies"])
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_anon_and_authenticated_cannot_truncate_or_write(db, role, table):
    assert isinstance(_as(db, role, f"truncate {table}"), psycopg.errors.InsufficientPrivilege)
    assert isinstance(_as(db, role, f"delete from {table}"), psycopg.errors.InsufficientPrivilege)
    privs = db.execute("select privilege_type from information_schema.role_table_grants "
                       "where grantee = %s and table_name = %s", [role, table]).fetchall()
    assert {p[0] for p in privs} <= {"SELECT"}, privs
    assert len(_as(db, "postgres", "select * from option_chain_data")) == 1


def test_anon_reads_nothing_authenticated_reads_market_data(db):
    assert isinstance(_as(db, "anon", "select * from option_chain_data"), psycopg.errors.InsufficientPrivilege)
    assert len(_as(db, "authenticated", "select * from option_chain_data")) == 1
    assert len(_as(db, "authenticated", "select * from option_chain_latest")) == 1


def test_service_role_reads_and_writes(db):
    assert len(_as(db, "service_role", "select * from option_chain_latest")) == 1
    assert _as(db, "service_role", "delete from option_chain_data where symbol = 'NIFTY'") == 1
    assert _as(db, "service_role", "truncate option_chain_data") is not None
    assert not isinstance(_as(db, "service_role", "truncate portfolio_allocation"), Exception)


def test_missing_roles_fail_loudly_instead_of_skipping(db):
    """The guard, with a role-name override naming a role that does not exist (the real roles,
    which other tests use, are left alone); the script's transaction is rolled back."""
    extras = (ROOT / "sql" / "postgres_extras.sql").read_text()
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL options_v4.rls_roles = 'anon,no_such_role_ov4,service_role'")
        with pytest.raises(psycopg.errors.RaiseException, match="no_such_role_ov4 do not exist"):
            with db.transaction():
                db.execute(extras)
    # an explicit opt-out skips with a warning instead
    with db.transaction(force_rollback=True):
        db.execute("SET LOCAL options_v4.rls_roles = 'anon,no_such_role_ov4,service_role'")
        db.execute("SET LOCAL options_v4.skip_rls = 'on'")
        db.execute(extras)


def test_migrated_database_protects_the_schema_version_table(pg_url):
    """A database built by the migrations (options-v4 db upgrade) has the version table too: the
    extras give anon nothing on it and authenticated read-only, like every other table."""
    from options_v4_dagster.store import Warehouse

    conn = _supabase_like(pg_url)
    Warehouse(pg_url).dispose()  # upgrade to head
    conn.execute((ROOT / "sql" / "postgres_extras.sql").read_text())
    try:
        assert isinstance(_as(conn, "anon", "select * from options_v4_alembic_version"),
                          psycopg.errors.InsufficientPrivilege)
        assert len(_as(conn, "authenticated", "select * from options_v4_alembic_version")) == 1
        assert isinstance(_as(conn, "authenticated", "delete from options_v4_alembic_version"),
                          psycopg.errors.InsufficientPrivilege)
    finally:
        conn.close()


def test_every_table_of_the_schema_has_row_level_security(db):
    """A table added to store/schema.py must also be listed in sql/postgres_extras.sql."""
    from options_v4_dagster.store import metadata

    rls = dict(db.execute("select relname, relrowsecurity from pg_class where relname = any(%s) and relkind = 'r'",
                          [list(metadata.tables)]).fetchall())
    assert {t for t in metadata.tables if not rls.get(t)} == set()
