"""Portfolio allocation end to end: `options-v4 run` on the simulated market, then the
portfolio_allocation asset's stored rows and `options-v4 allocate` / `options-v4 industries`."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.allocations import latest_snapshot
from options_v4_dagster.store.schema import portfolio_allocation_summary

from .pipeline_run import run_session

D = dt.date(2025, 7, 17)
CAPITAL = 1_500_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def day(tmp_path_factory):
    """One simulated session materialized through Dagster (the README's `options-v4 run`)."""
    env = run_session(tmp_path_factory.mktemp("alloc"), D)
    assert env.pop("exit_code") == 0
    return env


@pytest.fixture()
def env(day, monkeypatch):
    for k, v in day.items():
        monkeypatch.setenv(k, v)
    return day


def _allocate_json(capsys, *extra) -> dict:
    assert cli_main(["allocate", str(CAPITAL), "--date", D.isoformat(), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_allocate_meets_the_issue_targets(env, capsys):
    out = _allocate_json(capsys)
    pos, lim = out["positions"], out["limits"]
    assert 20 <= len(pos) <= 30
    assert out["deployment"] >= 0.95
    used = sum(p["capital_used"] for p in pos)
    assert used == pytest.approx(out["capital_used"]) and used <= CAPITAL
    for p in pos:
        assert {"symbol", "strategy_name", "tier", "industry", "lots", "capital_used", "expected_return"} <= set(p)
        assert isinstance(p["lots"], int) and p["lots"] >= 1
        assert p["capital_used"] == pytest.approx(p["lots"] * p["margin_per_lot"], rel=1e-9, abs=0.01)
        assert p["capital_used"] <= lim["max_position_capital"] + 1e-6
    frame = pl.DataFrame(pos)
    for r in frame.group_by("industry").agg(pl.col("capital_used").sum()).iter_rows(named=True):
        assert r["capital_used"] <= lim["max_industry_capital"] + 1e-6, r
    for r in frame.group_by("symbol").agg(pl.col("capital_used").sum()).iter_rows(named=True):
        assert r["capital_used"] <= lim["max_symbol_capital"] + 1e-6, r
    assert frame.get_column("symbol").n_unique() == frame.height  # one strategy per symbol
    for tier, target in out["tier_targets"].items():
        assert abs(out["tier_shares"][tier] - target) <= 0.05, (tier, out["tier_shares"])
    # the expected monthly return is the sum of the positions' monthly expected returns over the capital
    assert out["expected_monthly_return"] == pytest.approx(sum(p["expected_return"] for p in pos) / CAPITAL)
    assert math.isfinite(out["expected_monthly_return"]) and out["target_monthly_return"] == 0.04
    # the packaged rules take only candidates with a positive expected value
    assert all(p["expected_value"] > 0 for p in pos)


def test_allocate_is_deterministic(env, capsys):
    a, b = _allocate_json(capsys), _allocate_json(capsys)
    key = [(p["symbol"], p["strategy_name"], p["lots"], p["capital_used"]) for p in a["positions"]]
    assert key == [(p["symbol"], p["strategy_name"], p["lots"], p["capital_used"]) for p in b["positions"]]


def test_positions_come_from_the_stored_candidates_and_match_industry_views(env, capsys):
    out = _allocate_json(capsys)
    wh = Warehouse(env["DATABASE_URL"])
    strat = wh.read_partition("strategies", D)
    by_id = {r["strategy_id"]: r for r in strat.iter_rows(named=True)}
    for p in out["positions"]:
        s = by_id[p["strategy_id"]]
        assert (s["symbol"], s["strategy_name"]) == (p["symbol"], p["strategy_name"])
        if p["position_type"] == "LONG":
            assert s["outlook"] not in ("BEARISH", "NEUTRAL_BEARISH"), p
        if p["position_type"] == "SHORT":
            assert s["outlook"] not in ("BULLISH", "NEUTRAL_BULLISH"), p
    wh.dispose()


def test_the_asset_stored_the_default_capital_allocation(env, capsys):
    wh = Warehouse(env["DATABASE_URL"])
    snap = latest_snapshot(wh, D)
    summary, stored = snap.summary, snap.positions
    assert summary["capital"] == CAPITAL and summary["positions"] == stored.height
    assert "status" not in stored.columns  # execution status lives in the trading tables
    assert summary["source"] == "simulated" and json.loads(summary["industry_views"])["weights"]
    out = _allocate_json(capsys)  # the command computes the same allocation from the same tables
    assert out["allocation_id"] == snap.allocation_id  # same inputs, same content hash
    assert sorted(stored.get_column("position_id")) == sorted(p["position_id"] for p in out["positions"])
    assert json.loads(summary["summary"])["deployment"] == pytest.approx(out["deployment"])
    wh.dispose()


def _save(capital, capsys) -> None:
    assert cli_main(["allocate", str(capital), "--date", D.isoformat(), "--save"]) == 0
    capsys.readouterr()


def _snapshot_rows(wh, aid) -> tuple[list, list]:
    """The snapshot's stored rows as the database returns them (every column, ordered)."""
    summ = wh.read(sa.text("select * from portfolio_allocation_summary where allocation_id = :a"), {"a": aid})
    pos = wh.read(sa.text("select * from portfolio_allocation where allocation_id = :a order by position_id"),
                  {"a": aid})
    return summ.rows(), pos.rows()


def test_rematerializing_with_other_inputs_appends_a_snapshot_and_never_alters_one(env, capsys, tmp_path):
    """Capital A, then B, then A again (the portfolio_allocation asset alone, through `allocate --save`):
    two snapshots; A's rows unchanged by B; A again gives A's id and stores nothing new; other
    industry views give a third snapshot."""
    wh = Warehouse(env["DATABASE_URL"])
    a_cap, b_cap = 2_000_000, 3_000_000
    _save(a_cap, capsys)
    a_id = latest_snapshot(wh, D).allocation_id
    a_rows = _snapshot_rows(wh, a_id)
    counts = {t: wh.count(t) for t in ("portfolio_allocation_summary", "portfolio_allocation")}
    _save(b_cap, capsys)
    b = latest_snapshot(wh, D)
    assert b.allocation_id != a_id and b.summary["capital"] == b_cap
    assert set(b.positions.get_column("capital")) == {float(b_cap)} and b.summary["deployment"] >= 0.95
    assert wh.count("portfolio_allocation_summary") == counts["portfolio_allocation_summary"] + 1
    assert _snapshot_rows(wh, a_id) == a_rows  # the first snapshot's rows, column by column
    counts = {t: wh.count(t) for t in ("portfolio_allocation_summary", "portfolio_allocation")}
    _save(a_cap, capsys)
    assert latest_snapshot(wh, D).allocation_id == a_id  # the latest materialization gave A again
    assert {t: wh.count(t) for t in counts} == counts  # and stored nothing new
    assert _snapshot_rows(wh, a_id) == a_rows
    runs = wh.read(sa.text("select allocation_id from portfolio_allocation_runs where trade_date = :d "
                           "order by materialized_at"), {"d": D}).get_column("allocation_id").to_list()
    assert runs[-3:] == [a_id, b.allocation_id, a_id]
    # other industry views: a new snapshot, A's rows still unchanged
    shown = json.loads(a_rows[0][0][[c.name for c in portfolio_allocation_summary.columns]
                                    .index("industry_views")])
    first = sorted(shown["weights"])[0]
    f = tmp_path / "views.csv"
    f.write_text("industry,weight,position_type\n" + "".join(
        f"{k},{w},{'SHORT' if k == first and shown['position_types'][k] != 'SHORT' else 'LONG' if k == first else shown['position_types'][k]}\n"
        for k, w in shown["weights"].items()))
    assert cli_main(["industries", "import", str(f)]) == 0
    capsys.readouterr()
    try:
        _save(a_cap, capsys)
        c = latest_snapshot(wh, D)
        assert c.allocation_id not in (a_id, b.allocation_id)
        assert json.loads(c.summary["industry_views"])["position_types"][first] != shown["position_types"][first]
        assert _snapshot_rows(wh, a_id) == a_rows
    finally:
        assert cli_main(["industries", "reset"]) == 0
        _save(CAPITAL, capsys)  # back to the default for the other tests
        capsys.readouterr()
    wh.dispose()


def test_small_capital_and_missing_candidates_exit_non_zero(env, capsys):
    assert cli_main(["allocate", "1000", "--date", D.isoformat()]) != 0
    out = capsys.readouterr().err.lower()  # errors: one line on stderr (issue 9 item 10)
    assert "capital" in out and ("lot" in out or "margin" in out)
    assert cli_main(["allocate", "1000"]) != 0  # latest session with candidates
    capsys.readouterr()
    assert cli_main(["allocate", str(CAPITAL), "--date", "2025-07-18"]) != 0
    out = capsys.readouterr().err
    assert "no strategy candidates" in out and "2025-07-18" in out


def test_text_table(env, capsys):
    assert cli_main(["allocate", str(CAPITAL), "--date", D.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "expected monthly return" in out and "deployed" in out and "tier1" in out


def test_industry_import_changes_the_allocation(env, capsys, tmp_path):
    # default tables are seeded on first use
    assert cli_main(["industries", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sum(r["weight"] for r in shown["industries"]) == pytest.approx(1.0)
    before = _allocate_json(capsys)
    held = sorted({p["industry"] for p in before["positions"]})
    assert len(held) >= 2
    # an imported file that gives the first held industry weight 0 keeps it out
    rows = ["industry,weight,position_type"] + [
        f"{r['industry']},{0 if r['industry'] == held[0] else r['weight']},{r['position_type']}"
        for r in shown["industries"]]
    f = tmp_path / "industries.csv"
    f.write_text("\n".join(rows) + "\n")
    assert cli_main(["industries", "import", str(f)]) == 0
    capsys.readouterr()
    wh = Warehouse(env["DATABASE_URL"])
    ind = wh.read("select * from industry_allocations_current")
    assert ind.filter(pl.col("industry") == held[0]).get_column("weight").item() == 0.0
    assert wh.read("select count(*) from stock_industry_mapping").item() >= 200
    after = _allocate_json(capsys)
    assert held[0] not in {p["industry"] for p in after["positions"]}
    # a bad file is refused with its row named, and the tables keep their rows
    bad = tmp_path / "bad.csv"
    bad.write_text("industry,weight,position_type\nPower,lots,LONG\n")
    assert cli_main(["industries", "import", str(bad)]) != 0
    assert "row 2" in capsys.readouterr().err
    assert wh.read("select count(*) from industry_allocations_current").item() == ind.height
    assert cli_main(["industries", "reset"]) == 0
    capsys.readouterr()
    wh.dispose()


def test_a_symbol_missing_from_the_stored_mapping_keeps_its_universe_industry(env, capsys):
    """A stock added to F&O after the mapping was imported is not filed under its own name."""
    import sqlalchemy as sa

    before = _allocate_json(capsys)
    p = before["positions"][0]
    wh = Warehouse(env["DATABASE_URL"])
    with wh.engine.begin() as c:
        c.execute(sa.text("delete from stock_industry_mapping where symbol = :s"), {"s": p["symbol"]})
    after = _allocate_json(capsys)
    # the same allocation: the symbol is still held, under the same industry
    assert [(q["symbol"], q["industry"], q["lots"]) for q in after["positions"]] == \
        [(q["symbol"], q["industry"], q["lots"]) for q in before["positions"]]
    assert p["industry"] != p["symbol"]
    assert cli_main(["industries", "reset"]) == 0
    capsys.readouterr()
    wh.dispose()
