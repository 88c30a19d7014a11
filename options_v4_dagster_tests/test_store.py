import datetime as dt
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Replace, Warehouse
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


def _failures(session, asset, n):
    return pl.DataFrame({"trade_date": [session] * n, "asset": [asset] * n, "symbol": [f"S{i}" for i in range(n)],
                         "stage": ["x"] * n, "kind": ["error"] * n, "reason": ["because"] * n})


def test_replace_together_writes_every_table_in_one_transaction(wh):
    res = wh.replace_together([Replace.partition("option_chain_data", D, _chain(D, 3)),
                               Replace.partition("pipeline_failures", D, _failures(D, "option_chains", 2),
                                                 where={"asset": "option_chains"})])
    assert [(r.table, r.inserted) for r in res] == [("option_chain_data", 3), ("pipeline_failures", 2)]
    # a database error in the second table (duplicate key) rolls back the first table's replace too
    bad = pl.concat([_failures(D, "option_chains", 1)] * 2)
    with pytest.raises(sa.exc.IntegrityError):
        wh.replace_together([Replace.partition("option_chain_data", D, _chain(D, 5, price=99.0)),
                             Replace.partition("pipeline_failures", D, bad, where={"asset": "option_chains"})])
    assert wh.count("option_chain_data", D) == 3
    assert wh.read("select max(bid) b from option_chain_data").item() == 10.0
    assert wh.count("pipeline_failures", D) == 2


def test_replace_together_validates_every_frame_before_writing(wh):
    wh.replace_partition("option_chain_data", D, _chain(D, 3))
    with pytest.raises(ValueError, match="strategies: frame lacks required columns"):
        wh.replace_together([Replace.partition("option_chain_data", D, _chain(D, 5)),
                             Replace.partition("strategies", D, pl.DataFrame({"trade_date": [D]}))])
    assert wh.count("option_chain_data", D) == 3


def test_replace_together_mixes_partition_window_and_whole_table(wh):
    bars = pl.DataFrame({"symbol": ["NIFTY"] * 2, "date": [D - dt.timedelta(days=1), D], "close": [1.0, 2.0],
                         "source": ["t"] * 2})
    ind = pl.DataFrame({"industry": ["Banks"], "weight": [1.0], "position_type": ["LONG"], "source": ["t"],
                        "updated_at": [dt.datetime(2025, 7, 17, tzinfo=dt.UTC)]})
    wh.replace_together([Replace.window("underlying_bars", bars), Replace.whole_table("industry_allocations_current", ind),
                         Replace.partition("option_chain_data", D, _chain(D, 2))])
    wh.replace_together([Replace.window("underlying_bars", bars.tail(1)),
                         Replace.whole_table("industry_allocations_current", ind)])
    assert wh.count("underlying_bars") == 2 and wh.count("industry_allocations_current") == 1
    assert wh.count("option_chain_data", D) == 2


@pytest.mark.postgres
def test_concurrent_replaces_of_one_session_wait_for_each_other_on_postgres(pg_url):
    """Two writers replacing the same session at once (delete+insert under READ COMMITTED) used to
    fail with UniqueViolation; the advisory lock on (table, session) makes the second wait."""
    writers = [Warehouse(pg_url), Warehouse(pg_url)]
    frame = _chain(D, 400)
    errors: list[BaseException] = []
    for _ in range(6):
        barrier = threading.Barrier(2)

        def write(w, barrier=barrier):
            barrier.wait()
            try:
                w.replace_together([Replace.partition("option_chain_data", D, frame),
                                    Replace.partition("pipeline_failures", D, _failures(D, "option_chains", 3),
                                                      where={"asset": "option_chains"})])
            except sa.exc.DBAPIError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert writers[0].count("option_chain_data", D) == 400 and writers[0].count("pipeline_failures", D) == 3
    for w in writers:
        w.dispose()


def test_sqlite_writer_waits_for_another_writer(tmp_path):
    """A second SQLite writer waits for the first one's transaction (busy timeout) instead of
    failing with 'database is locked'."""
    import sqlite3

    path = tmp_path / "w.db"
    wh = Warehouse(f"sqlite:///{path}")
    wh.replace_partition("option_chain_data", D, _chain(D, 3))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("DELETE FROM option_chain_data")
    outcome: list = []

    def write():
        try:
            outcome.append(wh.replace_together([Replace.partition("option_chain_data", D, _chain(D, 4))]))
        except sa.exc.OperationalError as exc:
            outcome.append(exc)

    t = threading.Thread(target=write)
    t.start()
    t.join(1.0)
    assert t.is_alive() and outcome == []  # waiting for the lock, not failed
    holder.execute("COMMIT")
    holder.close()
    t.join()
    assert not isinstance(outcome[0], Exception), outcome
    assert wh.count("option_chain_data", D) == 4
    wh.dispose()


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
    # the schema in code and the DDL agree: the warehouse stamps it at the baseline and works
    w = Warehouse(pg_url)
    w.replace_partition("option_chain_data", D, _chain(D, 2))
    assert w.count("option_chain_data") == 2
    w.dispose()
