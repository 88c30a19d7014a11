"""Fault injection on the real 2025-07-17 snapshots: one symbol's bad quotes never reach candidates or
the allocation (the symbol is excluded and recorded), and a broken feed fails option_chains before it
writes, keeping the stored session."""

from __future__ import annotations

import datetime as dt
import math

import polars as pl
import pytest

from options_v4_dagster.cli import run_pipeline
from options_v4_dagster.store import Warehouse
from options_v4_dagster_tests.faults import OC_2025_07_17, damage_oc_all_prices, damage_oc_quote, nse_copy

D = dt.date(2025, 7, 17)
REL = OC_2025_07_17 / "reliance_option_chain.json"
# a real near-the-money leg: 31-Jul-2025 1480 CE, bid 24.2 / ask 24.55, spot 1478.7
LEG = {"strike": 1480, "expiry": "31-Jul-2025", "option_type": "CE"}
ONLY = [OC_2025_07_17, "index_history", "stock_history", "reference"]

pytestmark = [pytest.mark.slow, pytest.mark.nse_data]


def _run(tmp_path, monkeypatch, root, db="wh.db"):
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = f"sqlite:///{tmp_path / db}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("OPTIONS_V4_NSE_DATA_DIR", str(root))
    result, _ = run_pipeline(D, "nse_files", str(root))
    return result, url


def _chain_rows(url: str) -> pl.DataFrame:
    wh = Warehouse(url)
    out = wh.read_partition("option_chain_data", D).drop("snapshot_ts", strict=False).sort(
        "symbol", "expiry", "strike", "option_type")
    wh.dispose()
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory, nse_data_dir):
    """A clean run of the session (its chain rows are the reference for every other symbol)."""
    tmp = tmp_path_factory.mktemp("clean")
    root = nse_copy(nse_data_dir, tmp / "nse", only=ONLY)
    with pytest.MonkeyPatch.context() as mp:
        result, url = _run(tmp, mp, root)
    assert result.success
    return _chain_rows(url)


def _assert_sane_downstream(url: str) -> None:
    wh = Warehouse(url)
    params = wh.read("select s.symbol, s.conviction, p.max_loss, p.max_profit, p.pop, p.expected_value "
                     "from strategies s join strategy_parameters p using (strategy_id) where s.trade_date = :d",
                     {"d": D})
    assert params.height > 0
    assert params.filter(pl.col("max_loss") < 0).height == 0, params.filter(pl.col("max_loss") < 0)
    assert params.filter(pl.col("symbol") == "RELIANCE").height == 0
    summary = wh.read_partition("portfolio_allocation_summary", D)
    if summary.height:
        r = summary.row(0, named=True)
        assert math.isfinite(r["expected_monthly_return"]) and abs(r["expected_monthly_return"]) <= 0.5, r
        assert r["capital_used"] <= r["capital"] + 1e-6
    wh.dispose()


@pytest.mark.parametrize(("damage", "rule"), [
    pytest.param(lambda p: damage_oc_quote(p, **LEG, bid=242.0), "crossed: 2025-07-31 1480 CE bid 242", id="bid_242"),
    pytest.param(lambda p: damage_oc_quote(p, **LEG, bid=999_999_999.0), "upper: 2025-07-31 1480 CE bid", id="bid_huge"),
    pytest.param(lambda p: damage_oc_all_prices(p, factor=10.0), "upper: ", id="all_prices_x10"),
    pytest.param(lambda p: damage_oc_quote(p, **LEG, bid=30.0, ask=20.0), "crossed: 2025-07-31 1480 CE bid 30",
                 id="crossed"),
    pytest.param(lambda p: damage_oc_quote(p, **LEG, bid=0.0, ask=0.0, ltp=0.0), "traded_unpriced: 2025-07-31 1480 CE",
                 id="zero_price"),
])
def test_bad_reliance_quotes_exclude_reliance_only(damage, rule, clean, tmp_path, monkeypatch, nse_data_dir):
    root = nse_copy(nse_data_dir, tmp_path / "nse", only=ONLY)
    damage(root / REL)
    result, url = _run(tmp_path, monkeypatch, root)
    assert result.success
    rows = _chain_rows(url)
    assert "RELIANCE" not in set(rows.get_column("symbol"))
    others = clean.filter(pl.col("symbol") != "RELIANCE")
    assert rows.equals(others)
    wh = Warehouse(url)
    fails = wh.read_partition("pipeline_failures", D).filter(
        (pl.col("asset") == "option_chains") & (pl.col("symbol") == "RELIANCE"))
    wh.dispose()
    assert fails.height == 1 and fails.item(0, "kind") == "error", fails
    assert fails.item(0, "stage") == "chain_sanity" and rule in fails.item(0, "reason"), fails.item(0, "reason")
    _assert_sane_downstream(url)


def test_bad_symbol_keeps_its_stored_rows(clean, tmp_path, monkeypatch, nse_data_dir):
    """A session stored from good files, re-run with RELIANCE damaged: RELIANCE keeps its stored rows."""
    good = nse_copy(nse_data_dir, tmp_path / "good", only=ONLY)
    assert _run(tmp_path, monkeypatch, good)[0].success
    bad = nse_copy(nse_data_dir, tmp_path / "bad", only=ONLY)
    damage_oc_quote(bad / REL, **LEG, bid=242.0)
    result, url = _run(tmp_path, monkeypatch, bad)
    assert result.success
    assert _chain_rows(url).equals(clean)
    wh = Warehouse(url)
    fails = wh.read_partition("pipeline_failures", D).filter(pl.col("asset") == "option_chains")
    wh.dispose()
    assert fails.height == 1 and "kept the" in fails.item(0, "reason"), fails
    _assert_rel_params_sane(url)


def _assert_rel_params_sane(url: str) -> None:
    wh = Warehouse(url)
    p = wh.read("select p.max_loss, p.pop from strategies s join strategy_parameters p using (strategy_id) "
                "where s.trade_date = :d and s.symbol = 'RELIANCE'", {"d": D})
    wh.dispose()
    assert p.height > 0 and p.filter((pl.col("max_loss") < 0) | (pl.col("pop") >= 1.0)).height == 0, p


def test_broken_feed_fails_option_chains_and_keeps_the_session(clean, tmp_path, monkeypatch, nse_data_dir):
    good = nse_copy(nse_data_dir, tmp_path / "good", only=ONLY)
    result, url = _run(tmp_path, monkeypatch, good)
    assert result.success
    wh = Warehouse(url)
    tables = ("option_chain_data", "option_greeks", "strategies", "strategy_parameters", "portfolio_allocation")
    before = {t: wh.count(t, D) for t in tables}
    bad = nse_copy(nse_data_dir, tmp_path / "bad", only=ONLY)
    for f in sorted((bad / OC_2025_07_17).glob("*.json"))[:6]:  # 6 of 10 symbols: every price x10
        damage_oc_all_prices(f, factor=10.0)
    result, _ = _run(tmp_path, monkeypatch, bad)
    assert not result.success
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failed] == ["option_chains"]
    assert "broken feed" in failed[0].event_specific_data.error.message
    assert {t: wh.count(t, D) for t in tables} == before
    assert _chain_rows(url).equals(clean)
    fails = wh.read_partition("pipeline_failures", D).filter(pl.col("asset") == "option_chains")
    wh.dispose()
    assert fails.height == 6 and set(fails.get_column("kind")) == {"error"}
