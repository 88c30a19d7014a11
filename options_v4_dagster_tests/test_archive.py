"""Retention (issue 13, item 7): old sessions' option_chain_data and option_greeks rows moved to Parquet
(store/archive.py), exactly once, and read back through the same read functions, on SQLite and on the
real PostgreSQL. The fault tests come first: a failure inside the delete's transaction and a process
killed between the file and the delete must leave a state that a re-run completes without loss or
duplication."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.store import Replace, Warehouse, archive
from options_v4_dagster.store.market_queries import stored_sources
from options_v4_dagster.store.monitoring import latest_chain_session, session_quotes, underlying_closes
from options_v4_dagster.store.strategies_queries import session_inputs
from options_v4_dagster.store.trading_queries import session_quote_book
from options_v4_dagster_tests.pipeline_run import cli_call

D1, D2 = dt.date(2025, 7, 16), dt.date(2025, 7, 17)
SYMS = ["NIFTY", "BANKNIFTY", "RELIANCE"]
KEYS = ("symbol", "expiry", "strike", "option_type", "contract_key", "security_id")


def seed(wh: Warehouse, session: dt.date, scale: float = 1.0) -> None:
    chain, failures = SimulatedMarket().option_chains(SYMS, session)
    assert not failures
    # Dhan-like gaps: no futures price at all (a column without a value), closes missing on some strikes
    chain = chain.with_columns(pl.lit(None, dtype=pl.Float64).alias("futures_price"),
                               pl.when(pl.col("strike") % 200 == 0).then(None).otherwise(pl.col("close") * scale)
                               .alias("close"))
    greeks = surface.chain_iv(chain, surface.IVConfig())
    wh.replace_together([Replace.partition("option_chain_data", session, chain),
                         Replace.partition("option_greeks", session, greeks)])


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request, tmp_path, monkeypatch):
    """A warehouse with two sessions (SQLite file or a scratch PostgreSQL database) and the CLI's env."""
    url = f"sqlite:///{tmp_path / 'wh.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    monkeypatch.setenv("DATABASE_URL", url)
    wh = Warehouse(url)
    seed(wh, D1)
    seed(wh, D2)
    yield {"wh": wh, "url": url, "DATABASE_URL": url, "OPTIONS_V4_HOME": str(tmp_path / "home"),
           "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    wh.dispose()


def reads(wh: Warehouse, session: dt.date) -> dict:
    """What the project's read functions give for the session (frames, counts, dicts)."""
    out: dict = {}
    for t in archive.ARCHIVED_TABLES:
        out[t] = wh.read_partition(t, session)
        out[f"{t} columns, NIFTY"] = wh.read_partition(t, session, ["symbol", "expiry", "strike", "option_type",
                                                                    t == "option_greeks" and "iv" or "bid"],
                                                       symbols=["NIFTY"])
        out[f"{t} unknown symbol"] = wh.read_partition(t, session, symbols=["NOSUCH"])
        out[f"{t} count"] = wh.count(t, session)
    out["session_inputs"] = session_inputs(wh, session).iv
    out["quote book"] = session_quote_book(wh, session, ["NIFTY", "RELIANCE"]).frame
    sq = session_quotes(wh, session, SYMS)
    out["session quotes"], out["spot"] = sq.quotes, sq.spot
    out["closes"] = underlying_closes(wh, [(s, session) for s in SYMS])
    out["sources"] = stored_sources(wh, "option_chain_data", session)
    return out


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for k, a in before.items():
        b = after[k]
        if isinstance(a, pl.DataFrame):
            keys = [c for c in KEYS if c in a.columns]
            assert a.height and a.schema == b.schema or a.height == 0, k
            assert_frame_equal(a.sort(keys) if keys else a, b.sort(keys) if keys else b, check_exact=True), k
        else:
            assert a == b, k


def warehouse_rows(wh: Warehouse, table: str, session: dt.date) -> int:
    t = wh.table(table)
    with wh.engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(t).where(t.c.trade_date == session)).scalar_one()


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_failure_inside_the_delete_transaction_leaves_a_state_a_rerun_completes(env, monkeypatch):
    wh, root = env["wh"], Path(env["OPTIONS_V4_HOME"]) / "archive"
    monkeypatch.setenv("OPTIONS_V4_HOME", env["OPTIONS_V4_HOME"])
    before = reads(wh, D1)
    n = {t: warehouse_rows(wh, t, D1) for t in archive.ARCHIVED_TABLES}

    def crash(conn, entry):  # the rows are already deleted in this transaction: it must roll back
        raise RuntimeError("injected: failed after DELETE, before the manifest row")

    monkeypatch.setattr(archive, "_record", crash)
    with pytest.raises(RuntimeError, match="injected"):
        archive.archive_before(wh, D2)
    # nothing lost: the rows are still in the warehouse, no manifest row, the file is complete but unused
    assert {t: warehouse_rows(wh, t, D1) for t in archive.ARCHIVED_TABLES}["option_chain_data"] == n["option_chain_data"]
    assert archive.manifest(wh).height == 0
    assert files(root) == [f for f in files(root) if f.startswith("option_chain_data/session=2025-07-16/part-")]
    assert_same(before, reads(wh, D1))

    monkeypatch.undo()
    monkeypatch.setenv("OPTIONS_V4_HOME", env["OPTIONS_V4_HOME"])
    results = archive.archive_before(wh, D2)
    assert [(r.table, r.session, r.status) for r in results] == [("option_chain_data", D1, "archived"),
                                                                  ("option_greeks", D1, "archived")]
    assert {t: warehouse_rows(wh, t, D1) for t in archive.ARCHIVED_TABLES} == {t: 0 for t in n}
    m = archive.manifest(wh)
    assert dict(zip(m.get_column("table_name"), m.get_column("row_count"), strict=True)) == n
    # no duplicate: one file per table, holding exactly the rows, each once
    assert len(files(root)) == 2
    for t in archive.ARCHIVED_TABLES:
        f = pl.read_parquet(next((root / t / "session=2025-07-16").glob("*.parquet")))
        assert f.height == n[t] and f.select("symbol", "expiry", "strike", "option_type").is_unique().all()
    assert_same(before, reads(wh, D1))
    assert warehouse_rows(wh, "option_chain_data", D2) > 0  # the later session stays


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from options_v4_dagster.store import archive

    def kill():
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "renamed":  # SIGKILL as soon as the first Parquet file has its final name
        replace = os.replace

        def replaced(src, dst, *a, **kw):
            replace(src, dst, *a, **kw)
            if str(dst).endswith(".parquet"):
                kill()

        os.replace = replaced
    else:  # "delete": after the file is written and verified, as the delete's transaction starts
        archive._delete_rows = lambda *a, **kw: kill()
    from options_v4_dagster.cli import main
    sys.exit(main(["archive", "--before", sys.argv[1]]))
""")


@pytest.mark.parametrize("point", ["renamed", "delete"])
def test_a_process_killed_between_the_file_and_the_delete_is_completed_by_a_rerun(env, tmp_path, point):
    wh, root = env["wh"], Path(env["OPTIONS_V4_HOME"]) / "archive"
    before = reads(wh, D1)
    n = warehouse_rows(wh, "option_chain_data", D1)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    child_env = {**os.environ, "DATABASE_URL": env["url"], "OPTIONS_V4_HOME": env["OPTIONS_V4_HOME"]}
    p = subprocess.run([sys.executable, str(script), D2.isoformat(), point], env=child_env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == -9, p.stderr
    # the rows all in the warehouse, no manifest row, one complete file at most (no temporary one left)
    assert warehouse_rows(wh, "option_chain_data", D1) == n and archive.manifest(wh).height == 0
    assert [f.split("/")[0] for f in files(root)] == ["option_chain_data"]
    assert_same(before, reads(wh, D1))

    code, out, err = cli_call(env, ["archive", "--before", D2.isoformat(), "--json"])
    assert code == 0, err
    res = json.loads(out)["results"]
    assert [(r["table"], r["status"]) for r in res] == [("option_chain_data", "archived"), ("option_greeks", "archived")]
    assert res[0]["rows"] == n and warehouse_rows(wh, "option_chain_data", D1) == 0
    assert len(files(root)) == 2  # the killed run's file was rewritten in place, not duplicated
    assert_same(before, reads(wh, D1))


def test_archived_sessions_read_identically_and_rearchiving_is_a_no_op(env, monkeypatch):
    wh, root = env["wh"], Path(env["OPTIONS_V4_HOME"]) / "archive"
    monkeypatch.setenv("OPTIONS_V4_HOME", env["OPTIONS_V4_HOME"])
    before, later = reads(wh, D1), reads(wh, D2)
    # a column without a value, as the warehouse reads it: SQLite's typed reader gives it its declared type
    # (store/sqlite_read.py), the generic path (PostgreSQL) no type
    assert before["option_chain_data"].schema["futures_price"] == (pl.Float64 if wh.dialect == "sqlite" else pl.Null)
    results = archive.archive_before(wh, D2)
    assert {r.status for r in results} == {"archived"}
    assert files(root) == sorted(f"{r.path}" for r in results)
    assert all(f.split("/")[1] == "session=2025-07-16" for f in files(root))  # hive-style folders
    assert_same(before, reads(wh, D1))
    assert_same(later, reads(wh, D2))
    assert latest_chain_session(wh) == D2 and latest_chain_session(wh, until=D1) == D1
    # the whole archive reads as one hive-partitioned dataset
    ds = pl.scan_parquet(root / "option_chain_data" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert ds.height == before["option_chain_data count"] and ds.get_column("session").unique().to_list() == [D1]

    stamps = {f: (root / f).stat().st_mtime_ns for f in files(root)}
    again = archive.archive_before(wh, D2)
    assert again == [] and archive.archive_session(wh, "option_greeks", D1).status == "already"
    assert {f: (root / f).stat().st_mtime_ns for f in files(root)} == stamps
    code, out, err = cli_call(env, ["archive", "--before", D2.isoformat()], OPTIONS_V4_HOME=env["OPTIONS_V4_HOME"])
    assert code == 0 and "nothing to archive" in out, err
    assert_same(before, reads(wh, D1))


def test_writing_an_archived_session_again_makes_the_warehouse_rows_its_rows(env, monkeypatch):
    wh, root = env["wh"], Path(env["OPTIONS_V4_HOME"]) / "archive"
    monkeypatch.setenv("OPTIONS_V4_HOME", env["OPTIONS_V4_HOME"])
    archive.archive_before(wh, D2)
    old_files = files(root)
    seed(wh, D1, scale=2.0)  # a re-materialization of both assets: other closes
    assert archive.manifest(wh).height == 0
    fresh = reads(wh, D1)
    assert fresh["option_chain_data count"] == warehouse_rows(wh, "option_chain_data", D1)
    # no mix: reads give the new rows only, even for a symbol filter the warehouse answers empty
    assert fresh["option_chain_data unknown symbol"].height == 0
    archive.archive_before(wh, D2)
    assert len(files(root)) == 2 and files(root) != old_files  # the stale files are gone
    assert_same(fresh, reads(wh, D1))


def test_archive_command_checks_its_arguments_and_dry_run_changes_nothing(env):
    code, out, err = cli_call(env, ["archive", "--before", "2025-13-01"])
    assert code == 2 and "--before" in err
    code, out, err = cli_call(env, ["archive", "--before", D2.isoformat(), "--dry-run", "--json"])
    assert code == 0, err
    assert json.loads(out)["sessions"] == {"option_chain_data": ["2025-07-16"], "option_greeks": ["2025-07-16"]}
    assert archive.manifest(env["wh"]).height == 0 and warehouse_rows(env["wh"], "option_greeks", D1) > 0
    from options_v4_dagster.cli.archive import TABLES

    assert TABLES == archive.ARCHIVED_TABLES


def test_iv_analysis_of_an_archived_session_gives_the_same_iv_history(tmp_path):
    """The same code path end to end: `iv collect` stores a session; after `archive` its chains and greeks
    are files only; `iv analyze` (option_greeks from the archived chain, iv_history from greeks and chain)
    then writes the same historical_iv_summary and option_greeks rows as before."""
    base = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "DATABASE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
            "OPTIONS_V4_HOME": str(tmp_path / "home")}
    Path(base["DAGSTER_HOME"]).mkdir()
    code, out, err = cli_call(base, ["iv", "collect", "--date", D1.isoformat(), "--source", "simulated"])
    assert code == 0, out + err
    wh = Warehouse(base["DATABASE_URL"])
    summary = wh.read_partition("historical_iv_summary", D1)
    greeks = wh.read_partition("option_greeks", D1)
    assert summary.height > 200 and greeks.height > 50_000
    code, out, err = cli_call(base, ["archive", "--before", D2.isoformat(), "--json"])
    assert code == 0, err
    assert {r["status"] for r in json.loads(out)["results"]} == {"archived"}
    assert warehouse_rows(wh, "option_chain_data", D1) == warehouse_rows(wh, "option_greeks", D1) == 0
    code, out, err = cli_call(base, ["iv", "analyze", "--date", D1.isoformat()])
    assert code == 0, out + err
    keys = ["symbol"]
    assert_frame_equal(wh.read_partition("historical_iv_summary", D1).sort(keys), summary.sort(keys), check_exact=True)
    # option_greeks was written again from the archived chain: the warehouse holds it, the same rows
    assert warehouse_rows(wh, "option_greeks", D1) == greeks.height
    assert archive.manifest(wh).get_column("table_name").to_list() == ["option_chain_data"]
    k = ["symbol", "expiry", "strike", "option_type"]
    assert_frame_equal(wh.read_partition("option_greeks", D1).sort(k), greeks.sort(k), check_exact=True)
    wh.dispose()


def test_the_archive_job_and_its_schedule_off_by_default(tmp_path):
    import dagster as dg

    from options_v4_dagster.definitions import defs
    from options_v4_dagster.defs.resources import WarehouseResource
    from options_v4_dagster.defs.retention.jobs import archive_contract_rows, archive_schedule, run_config

    assert archive_schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert defs().get_schedule_def("archive_schedule").job_name == "archive_contract_rows"
    from options_v4_dagster import calendar

    ctx = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2025, 8, 16, 20, 0, tzinfo=calendar.IST))
    req = archive_schedule(ctx)
    assert req.run_config == run_config(dt.date(2025, 7, 17))  # 30 days before the tick's IST date

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse(url)
    seed(wh, D1)
    seed(wh, D2)
    n = {t: warehouse_rows(wh, t, D1) for t in archive.ARCHIVED_TABLES}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIONS_V4_ARCHIVE_DIR", str(tmp_path / "elsewhere"))
        res = archive_contract_rows.execute_in_process(run_config=req.run_config,
                                                       resources={"warehouse": WarehouseResource(database_url=url)})
        assert res.success
        out = res.output_for_node("archive_old_sessions")
        assert out == {"before": "2025-07-17", "sessions_archived": 2,
                       "rows_moved": sum(n.values())}
        assert sorted(p.parent.name for p in (tmp_path / "elsewhere").rglob("*.parquet")) == ["session=2025-07-16"] * 2
        assert warehouse_rows(wh, "option_greeks", D1) == 0 and wh.count("option_greeks", D1) == n["option_greeks"]
    wh.dispose()
