"""Fault injection on the warehouse writes: a run killed between (or inside) writes, and two runs of
one session at once. Each asset's tables (and its pipeline_failures rows) change in one transaction.

The pipeline runs in subprocesses whose own script patches the warehouse's insert path to
``os._exit(9)`` right after the k-th table insert (before the transaction commits) and narrows
the simulated universe to a few symbols to keep the runs short.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from options_v4_dagster import universe as fno
from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.store import Warehouse

D = dt.date(2025, 7, 17)
SYMBOLS = ["NIFTY", "BANKNIFTY", *[s for s in fno.symbols() if s not in ("NIFTY", "BANKNIFTY")][:14]]
SESSION_TABLES = ("fno_universe", "option_chain_data", "market_conditions", "option_greeks", "historical_iv_summary",
                  "iv_percentiles", "technical_signals", "strategies", "strategy_details", "strategy_parameters",
                  "strategy_exit_levels", "portfolio_allocation", "portfolio_allocation_summary", "pipeline_failures")
WINDOW_TABLES = ("underlying_bars", "nifty_historical_data", "india_vix_data")
STRATEGY_TABLES = ("strategies", "strategy_details", "strategy_parameters", "strategy_exit_levels")

SCRIPT = r'''
import datetime as dt, json, os, sys
from options_v4_dagster.store import warehouse as W
from options_v4_dagster.market.simulated import SimulatedMarket

kill_at, log, symbols, session = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
_insert, done = W.Warehouse._bulk_insert, []

def insert_then_maybe_die(self, conn, t, sub):
    _insert(self, conn, t, sub)
    done.append(t.name)
    with open(log, "a") as f:
        f.write(t.name + "\n")
    if len(done) == kill_at:
        os._exit(9)  # killed after this insert, before its transaction commits

W.Warehouse._bulk_insert = insert_then_maybe_die
SimulatedMarket.symbols_for = lambda self, s, universe_symbols: [x for x in universe_symbols if x in symbols]

from options_v4_dagster.cli import run_pipeline
result, _ = run_pipeline(dt.date.fromisoformat(session), "simulated")
sys.exit(0 if result.success else 1)
'''


def _run(tmp_path: Path, url: str, name: str, kill_at: int = 0, start: bool = False):
    """Run the daily pipeline for D in a subprocess; ``kill_at`` > 0 kills it after that insert."""
    script = tmp_path / "run_killable.py"
    script.write_text(SCRIPT)
    home = tmp_path / f"dagster_{name}"
    home.mkdir(exist_ok=True)
    log = tmp_path / f"inserts_{name}.log"
    env = {**os.environ, "DATABASE_URL": url, "DAGSTER_HOME": str(home), "OPTIONS_V4_HOME": str(tmp_path / "home"),
           "OPTIONS_V4_PARTITION_START": "2025-01-01", "OPTIONS_V4_MARKET_DATA": "simulated"}
    cmd = [sys.executable, str(script), str(kill_at), str(log), json.dumps(SYMBOLS), D.isoformat()]
    kw = {"env": env, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    if start:
        return subprocess.Popen(cmd, **kw), log
    return subprocess.run(cmd, timeout=600, **kw), log


def _counts(url: str) -> dict[str, int]:
    wh = Warehouse(url)
    out = {t: wh.count(t, D) for t in SESSION_TABLES}
    out |= {t: wh.count(t) for t in WINDOW_TABLES}
    wh.dispose()
    return out


def _assert_all_or_nothing(url: str) -> None:
    """Each asset's tables were replaced together: never strategies without their details,
    parameters and exit levels, an allocation without its summary, or bars without NIFTY/VIX."""
    wh = Warehouse(url)
    ids = {t: set(wh.read_partition(t, D, ["strategy_id"]).get_column("strategy_id").to_list())
           for t in STRATEGY_TABLES}
    assert all(ids[t] == ids["strategies"] for t in STRATEGY_TABLES), {t: len(v) for t, v in ids.items()}
    alloc = {t: wh.count(t, D) for t in ("portfolio_allocation", "portfolio_allocation_summary")}
    assert (alloc["portfolio_allocation"] > 0) == (alloc["portfolio_allocation_summary"] > 0), alloc
    bars = {t: wh.count(t) > 0 for t in WINDOW_TABLES}
    assert len(set(bars.values())) == 1, bars
    # the assets' failure rows changed with their data: none recorded for an asset that wrote nothing
    fails = set(wh.read("select distinct asset from pipeline_failures where trade_date = :d", {"d": D})
                .get_column("asset").to_list()) if wh.count("pipeline_failures", D) else set()
    if not ids["strategies"]:
        assert "strategy_candidates" not in fails
    wh.dispose()


def _duplicates(url: str, table: str, keys: list[str]) -> int:
    wh = Warehouse(url)
    n = wh.read(f"select count(*) n from (select {', '.join(keys)} from {table} group by {', '.join(keys)} "
                "having count(*) > 1) d").item()
    wh.dispose()
    return int(n)


@pytest.mark.slow
def test_killed_between_writes_then_rerun_equals_a_clean_run(tmp_path, capsys):
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    proc, log = _run(tmp_path, clean_url, "clean")
    assert proc.returncode == 0, proc.stdout[-3000:]
    clean = _counts(clean_url)
    assert clean["strategies"] > 0 and clean["portfolio_allocation"] > 0 and clean["strategy_details"] > 0
    order = log.read_text().split()
    # kill points (each after that table's insert, before its asset's last write): inside the bars
    # writes, inside the four strategy writes, inside the allocation writes
    kills = [order.index("nifty_historical_data") + 1, order.index("strategy_details") + 1,
             order.index("portfolio_allocation_summary") + 1]

    url = f"sqlite:///{tmp_path / 'killed.db'}"
    for i, k in enumerate(kills):
        proc, _ = _run(tmp_path, url, f"kill{k}", kill_at=k)
        assert proc.returncode == 9, proc.stdout[-3000:]
        _assert_all_or_nothing(url)
        if i == 1:  # nothing of strategy_candidates is stored yet: allocate says so in one line
            os.environ["DATABASE_URL"] = url
            try:
                rc = cli_main(["allocate", "1500000", "--date", D.isoformat()])
            finally:
                del os.environ["DATABASE_URL"]
            cap = capsys.readouterr()
            out = cap.out + cap.err  # errors are one line on stderr
            assert rc == 2 and "no strategy candidates stored for 2025-07-17" in out and "Traceback" not in out
    proc, _ = _run(tmp_path, url, "rerun")
    assert proc.returncode == 0, proc.stdout[-3000:]
    _assert_all_or_nothing(url)
    assert _counts(url) == clean


@pytest.mark.slow
@pytest.mark.postgres
def test_two_concurrent_runs_of_one_session_on_postgres(tmp_path, pg_url):
    # the database is empty: both runs also create the schema at once
    runs = [_run(tmp_path, pg_url, f"run{i}", start=True)[0] for i in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in runs]
    for p, out in zip(runs, outs, strict=True):
        assert p.returncode == 0, out[-4000:]
    once = _counts(pg_url)
    assert once["option_chain_data"] > 0 and once["strategies"] > 0 and once["portfolio_allocation"] > 0
    assert _duplicates(pg_url, "option_chain_data", ["trade_date", "symbol", "expiry", "strike", "option_type"]) == 0
    _assert_all_or_nothing(pg_url)
    # the same rows as one run on its own
    proc, _ = _run(tmp_path, pg_url, "again")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert _counts(pg_url) == once


def test_allocate_names_what_is_missing_when_a_session_was_written_partly(tmp_path, monkeypatch, capsys):
    """A warehouse written before the strategy tables were atomic may hold strategies without
    their parameters: allocate says so in one line (it used to end in a polars SchemaError)."""
    url = f"sqlite:///{tmp_path / 'w.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    wh = Warehouse(url)
    wh.replace_partition("strategies", D, pl.DataFrame({
        "strategy_id": ["a", "b"], "trade_date": [D, D], "symbol": ["NIFTY", "TCS"],
        "strategy_name": ["iron_condor", "long_call"], "risk_tolerance": ["moderate"] * 2}))
    wh.dispose()
    rc = cli_main(["allocate", "1500000", "--date", D.isoformat()])
    cap = capsys.readouterr()
    out = cap.out + cap.err  # errors are one line on stderr
    assert rc == 2, out
    assert "strategy_parameters" in out and "2025-07-17" in out and "options-v4 run --date 2025-07-17" in out
