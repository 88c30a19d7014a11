import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.ddl import postgres_ddl

ROOT = Path(__file__).resolve().parents[1]
D = dt.date(2025, 7, 17)


def _chain(session, n=3, price=10.0):
    ts = dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC)
    return pl.DataFrame({
        "trade_date": [session] * n, "symbol": ["NIFTY"] * n, "expiry": [dt.date(2025, 7, 24)] * n,
        "strike": [25000.0 + 50 * i for i in range(n)], "option_type": ["CE"] * n,
        "bid": [price] * n, "ask": [price + 0.5] * n, "ltp": [float("nan")] + [price] * (n - 1),
        "underlying_price": [25111.45] * n, "lot_size": [75] * n, "snapshot_ts": [ts] * n, "source": ["t"] * n,
    })


@pytest.fixture(params=["sqlite", "postgres"])
def wh(request, tmp_path):
    if request.param == "sqlite":
        w = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    else:
        w = Warehouse(request.getfixturevalue("pg_url"))
    yield w
    w.dispose()


def test_replace_partition_is_idempotent(wh):
    other = dt.date(2025, 7, 18)
    wh.replace_partition("option_chain_data", other, _chain(other, 2))
    r1 = wh.replace_partition("option_chain_data", D, _chain(D, 3))
    r2 = wh.replace_partition("option_chain_data", D, _chain(D, 3, price=11.0))
    assert (r1.inserted, r2.deleted, r2.inserted) == (3, 3, 3)
    assert wh.count("option_chain_data", D) == 3
    assert wh.count("option_chain_data", other) == 2  # other sessions untouched
    back = wh.read_partition("option_chain_data", D).sort("strike")
    assert back.get_column("bid").to_list() == [11.0, 11.0, 11.0]
    assert back.get_column("ltp")[0] is None  # NaN stored as NULL
    ts = back.get_column("snapshot_ts")[0]
    assert ts == dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC) and ts.tzinfo is not None


def test_replace_partition_rejects_rows_of_another_session(wh):
    with pytest.raises(ValueError, match="outside session"):
        wh.replace_partition("option_chain_data", D, _chain(dt.date(2025, 7, 18)))


def test_failed_insert_rolls_back_the_delete(wh):
    wh.replace_partition("option_chain_data", D, _chain(D, 3))
    bad = _chain(D, 3).with_columns(pl.lit("XX").alias("option_type"))  # violates the CHECK constraint
    with pytest.raises(sa.exc.IntegrityError):
        wh.replace_partition("option_chain_data", D, bad)
    assert wh.count("option_chain_data", D) == 3


def test_replace_window_upserts_bars(wh):
    def bars(days, close):
        return pl.DataFrame({"symbol": ["RELIANCE"] * len(days), "date": days, "close": [close] * len(days),
                             "source": ["t"] * len(days)})
    d = [dt.date(2025, 7, 14) + dt.timedelta(days=i) for i in range(4)]
    wh.replace_window("underlying_bars", bars(d[:3], 1.0))
    wh.replace_window("underlying_bars", bars(d[1:], 2.0))
    back = wh.read("select date, close from underlying_bars order by date")
    assert back.get_column("close").to_list() == [1.0, 2.0, 2.0, 2.0]


def test_naive_timestamp_is_refused(wh):
    frame = _chain(D, 1).with_columns(pl.col("snapshot_ts").dt.replace_time_zone(None))
    with pytest.raises(ValueError, match="naive timestamp"):
        wh.replace_partition("option_chain_data", D, frame)


def test_sql_schema_file_is_generated_from_the_schema():
    assert (ROOT / "sql" / "schema.sql").read_text() == postgres_ddl(), \
        "sql/schema.sql is stale: run `python scripts/generate_ddl.py`"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_ddl.py"), "--check"], check=True)


def test_sql_files_apply_to_postgres(pg_url):
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        # Supabase's roles: the extras' row-level security requires them (roles are per cluster)
        from options_v4_dagster_tests.test_rls import ensure_supabase_roles

        ensure_supabase_roles(c)
        for name in ("schema.sql", "postgres_extras.sql", "postgres_extras.sql"):  # extras twice: idempotent
            c.connection.driver_connection.execute((ROOT / "sql" / name).read_text())
        tables = set(sa.inspect(c).get_table_names())
        policies = c.exec_driver_sql("select count(*) from pg_policies where policyname = 'read_market_data'").scalar()
    eng.dispose()
    import re

    listed = re.findall(r"'(\w+)'", (ROOT / "sql" / "postgres_extras.sql").read_text().split("tables text[] := ARRAY[")[1]
                        .split("]")[0])
    assert policies == len(listed) and set(listed) <= tables
    assert {"option_chain_data", "nifty_historical_data", "india_vix_data", "market_conditions"} <= tables
    # the schema in code and the DDL agree: create_all on top is a no-op and the warehouse works
    w = Warehouse(pg_url)
    w.replace_partition("option_chain_data", D, _chain(D, 2))
    assert w.count("option_chain_data") == 2
    w.dispose()
