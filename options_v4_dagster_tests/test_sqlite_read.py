"""The SQLite read path (store/sqlite_read.py) gives the frames SQLAlchemy's result processing gives."""

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from options_v4_dagster.store import Warehouse, sqlite_read
from options_v4_dagster.store.schema import metadata
from options_v4_dagster_tests.pipeline_run import run_session


def _generic(wh: Warehouse, stmt, monkeypatch) -> pl.DataFrame:
    with monkeypatch.context() as mp:
        mp.setattr(sqlite_read, "column_kinds", lambda *_: None)
        return wh.read(stmt)


def _same(fast: pl.DataFrame, generic: pl.DataFrame) -> None:
    # a column of nulls is Null on the generic path and its declared type on the fast one
    nulls = {c: fast.schema[c] for c, d in generic.schema.items() if d == pl.Null}
    assert_frame_equal(fast, generic.cast(nulls) if nulls else generic, check_exact=True)


@pytest.mark.slow
def test_every_table_of_a_session_reads_the_same_on_both_paths(tmp_path, monkeypatch):
    env = run_session(tmp_path, dt.date(2025, 7, 17))
    assert env["exit_code"] == 0
    wh = Warehouse(env["DATABASE_URL"])
    read = 0
    for name, table in metadata.tables.items():
        stmt = sa.select(table)
        fast = wh.read(stmt)
        if fast.height == 0:
            continue
        read += 1
        assert sqlite_read.column_kinds(stmt, fast.columns) is not None, name
        _same(fast, _generic(wh, stmt, monkeypatch))
    assert read >= 15  # chains, greeks, IV history, candidates, allocations, failures, provenance ...
    chain = wh.read_partition("option_chain_data", dt.date(2025, 7, 17), ["trade_date", "expiry", "snapshot_ts"])
    assert chain.schema == {"trade_date": pl.Date, "expiry": pl.Date, "snapshot_ts": pl.Datetime("us", "UTC")}
    wh.dispose()


def test_values_off_their_declared_type_and_other_statements_take_the_generic_path(tmp_path, monkeypatch):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    t = metadata.tables["fno_universe"]
    with wh.engine.begin() as conn:  # SQLite keeps 12.5 in an INTEGER column: not an Int64
        conn.execute(sa.text("INSERT INTO fno_universe (trade_date, symbol, instrument, lot_size, source) "
                             "VALUES ('2025-07-17', 'ODD', 'STOCK', 12.5, 'simulated'), "
                             "('2025-07-17', 'EVEN', 'STOCK', 75, 'simulated')"))
    stmt = sa.select(t.c.symbol, t.c.lot_size, t.c.trade_date).order_by(t.c.symbol)
    assert sqlite_read.frame_from_rows([("ODD", 12.5, "2025-07-17")], ["symbol", "lot_size", "trade_date"],
                                       ["str", "int", "date"]) is None
    out = wh.read(stmt)
    assert out.get_column("lot_size").to_list() == [75, 12.5] and out.schema["trade_date"] == pl.Date
    assert sqlite_read.column_kinds(sa.text("select 1"), ["x"]) is None
    assert sqlite_read.column_kinds(sa.select(sa.func.json_object("a", t.c.symbol)), ["x"]) is None
    ok = wh.read(sa.select(t.c.symbol, t.c.trade_date).where(t.c.symbol == "EVEN"))
    assert ok.rows() == [("EVEN", dt.date(2025, 7, 17))]
    assert wh.read(sa.select(t.c.symbol).where(t.c.symbol == "NONE")).height == 0
    wh.dispose()


def test_columns_of_nulls_get_their_declared_types():
    out = sqlite_read.frame_from_rows([(None, None, None, None), (None, None, None, None)],
                                      ["d", "ts", "flag", "x"], ["date", "utc", "bool", "float"])
    assert out.schema == {"d": pl.Date, "ts": pl.Datetime("us", "UTC"), "flag": pl.Boolean, "x": pl.Float64}
    mixed = sqlite_read.frame_from_rows([("2025-07-17", "2025-07-17 10:00:00.5", 1, 1.5), (None, None, 0, None)],
                                        ["d", "ts", "flag", "x"], ["date", "utc", "bool", "float"])
    assert mixed.row(0) == (dt.date(2025, 7, 17), dt.datetime(2025, 7, 17, 10, 0, 0, 500000, tzinfo=dt.UTC),
                            True, 1.5)
    assert sqlite_read.frame_from_rows([("17/07/2025",)], ["d"], ["date"]) is None
