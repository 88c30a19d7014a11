"""`options-v4 strategies` and `options-v4 analyze`: the catalogue and the candidates as a trader sees them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.strategies import CATALOGUE
from options_v4_dagster.strategies.scoring import CONVICTIONS

LEG_KEYS = {"side", "instrument", "strike", "expiry", "quantity", "price"}
KEYS = {"symbol", "strategy_name", "category", "legs", "net_premium", "max_profit", "max_loss", "breakevens", "pop",
        "pop_inputs", "expected_value", "greeks", "margin", "total_score", "conviction", "exit_levels"}


def _json(capsys, argv):
    assert cli_main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_strategies_json_lists_the_catalogue(capsys):
    rows = _json(capsys, ["strategies", "--json"])
    assert len(rows) == len(CATALOGUE) >= 25
    names = {r["name"] for r in rows}
    assert {"iron_condor", "jade_lizard", "call_backspread", "put_diagonal", "covered_call"} <= names
    for r in rows:
        assert {"name", "category", "outlook", "iv_preference", "legs"} <= set(r)
        assert r["legs"] and all(leg["side"] in ("BUY", "SELL") and leg["instrument"] in ("CE", "PE", "FUT", "EQ")
                                 for leg in r["legs"])


def _check_candidate(c: dict) -> None:
    assert KEYS <= set(c), KEYS - set(c)
    assert c["legs"] and all(LEG_KEYS <= set(leg) for leg in c["legs"])
    for leg in c["legs"]:
        assert leg["side"] in ("BUY", "SELL") and leg["quantity"] > 0 and leg["price"] >= 0
    assert 0.0 <= c["pop"] <= 1.0
    pi = c["pop_inputs"]
    assert pi["forward"] > 0 and pi["sigma"] > 0 and pi["t_years"] > 0
    assert 0.0 <= c["total_score"] <= 100.0
    assert c["conviction"] in ("VERY_HIGH", "HIGH", "MEDIUM", "LOW", "VERY_LOW")
    assert c["max_loss"] is None or c["max_loss"] >= 0
    assert c["margin"] > 0 and math.isfinite(c["expected_value"])
    assert c["exit_levels"]


def test_analyze_json_on_the_simulated_market(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    rows = _json(capsys, ["analyze", "--symbol", "NIFTY,RELIANCE", "--date", "2025-07-17", "--source", "simulated",
                          "--json", "--top", "3"])
    assert {r["symbol"] for r in rows} == {"NIFTY", "RELIANCE"}
    for sym in ("NIFTY", "RELIANCE"):
        mine = [r for r in rows if r["symbol"] == sym]
        assert 1 <= len(mine) <= 3
        keys = [(CONVICTIONS.index(r["conviction"]), -r["total_score"]) for r in mine]
        assert keys == sorted(keys)  # ranked best first: conviction, then score
    for r in rows:
        _check_candidate(r)


def test_analyze_all_returns_every_buildable_strategy_and_risk_changes_filters(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    base = ["analyze", "--symbol", "RELIANCE", "--date", "2025-07-17", "--source", "simulated", "--json"]
    every = _json(capsys, [*base, "--all"])
    assert len({r["strategy_name"] for r in every}) >= len(CATALOGUE) - 2
    conservative = _json(capsys, [*base, "--risk", "conservative", "--top", "50"])
    aggressive = _json(capsys, [*base, "--risk", "aggressive", "--top", "50"])
    # conservative keeps only bounded-risk candidates with POP >= 50%; aggressive admits unlimited risk
    assert all(r["max_loss"] is not None and r["pop"] >= 0.5 for r in conservative)
    assert len(aggressive) > len(conservative)
    assert any(r["max_loss"] is None for r in aggressive)


@pytest.mark.nse_data
def test_analyze_real_nifty_chain_from_nse_files(capsys, tmp_path, monkeypatch, nse_data_dir):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    rows = _json(capsys, ["analyze", "--symbol", "NIFTY", "--date", "2025-07-17", "--source", "nse_files",
                          "--nse-dir", str(nse_data_dir), "--json", "--all"])
    assert len({r["strategy_name"] for r in rows}) >= len(CATALOGUE) - 2
    for r in rows:
        _check_candidate(r)
        # the forward of a real chain is near NSE's spot of that day
        assert r["pop_inputs"]["forward"] == pytest.approx(25111.45, rel=0.03)
    single = [r for r in rows if len({leg["expiry"] for leg in r["legs"] if leg["expiry"]}) == 1
              and all(leg["instrument"] in ("CE", "PE") for leg in r["legs"])]
    assert single
    for r in single:  # payoff at each breakeven is zero (expiry payoff from the legs as printed)
        for be in r["breakevens"]:
            pnl = 0.0
            for leg in r["legs"]:
                intrinsic = max(be - leg["strike"], 0) if leg["instrument"] == "CE" else max(leg["strike"] - be, 0)
                sign = 1 if leg["side"] == "BUY" else -1
                pnl += sign * leg["quantity"] * (intrinsic - leg["price"])
            scale = sum(leg["quantity"] * leg["price"] for leg in r["legs"]) + 1.0
            assert abs(pnl) <= 1e-6 * scale + 1e-6, (r["strategy_name"], be, pnl)


def test_analyze_text_table_and_unknown_symbol(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert cli_main(["analyze", "--symbol", "TCS", "--date", "2025-07-17", "--source", "simulated"]) == 0
    out = capsys.readouterr().out
    assert "TCS" in out and "conviction" in out
    assert "market data: simulated" in out  # the source of what is shown (issue 9 item 12)
    # an unknown symbol is a bad argument (status 2, one line on stderr), not "could not be built"
    assert cli_main(["analyze", "--symbol", "NIFTY,NOSUCH", "--date", "2025-07-17", "--source", "simulated"]) == 2
    out, err = capsys.readouterr()
    assert "NOSUCH" in err and "--symbol" in err and "could not be built" not in out + err


def test_breakevens_are_sorted_and_finite(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    rows = _json(capsys, ["analyze", "--symbol", "SBIN", "--date", "2025-07-17", "--source", "simulated", "--json",
                          "--all"])
    for r in rows:
        b = np.asarray(r["breakevens"], dtype=float)
        assert np.all(np.isfinite(b)) and np.all(np.diff(b) > 0)


# --- what a trader sees after `make run`, and the source and gaps of `iv show` (issue 9 items 12, 16)


@pytest.mark.slow
def test_run_ends_with_the_proposed_positions_and_the_source(capsys, tmp_path, monkeypatch):
    import polars as pl

    from options_v4_dagster.store import Warehouse

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert cli_main(["run", "--date", "2025-07-17", "--source", "simulated"]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())  # table cells as plain words
    wh = Warehouse(url)
    pos = wh.read("select symbol, strategy_name, lots, capital_used from portfolio_allocation "
                  "where trade_date = '2025-07-17'")
    s = wh.read("select * from portfolio_allocation_summary").row(0, named=True)
    assert pos.height > 0
    assert "proposed positions 2025-07-17" in out and "market data simulated" in out
    for r in pos.head(3).iter_rows(named=True):  # the positions as stored, with lots and capital
        assert f"{r['symbol']} {r['strategy_name']} {r['lots']} {r['capital_used']:,.0f}" in out
    assert f"{s['positions']} positions; deployed INR {s['capital_used']:,.0f} = {s['deployment']:.1%}" in out
    assert f"expected monthly return {s['expected_monthly_return']:.2%} vs target 4%" in out
    assert "market data: simulated" in out and "`make dev`" in out and "`options-v4 allocate" in out
    assert pos.get_column("lots").dtype in (pl.Int64, pl.Int32)

    assert cli_main(["allocate", "1500000", "--date", "2025-07-17"]) == 0
    assert "market data: simulated" in capsys.readouterr().out
    assert cli_main(["allocate", "1500000", "--date", "2025-07-17", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["market_data_source"] == "simulated"


def test_iv_show_marks_gaps_and_the_source(capsys, tmp_path, monkeypatch):
    import datetime as dt

    import polars as pl

    from options_v4_dagster import calendar
    from options_v4_dagster.reports import iv_chart
    from options_v4_dagster.store import Warehouse

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    wh = Warehouse(url)
    # 10 sessions in June, nothing in July and August, 10 in September: one gap
    days = calendar.sessions_between(dt.date(2025, 6, 2), dt.date(2025, 6, 13)) + \
        calendar.sessions_between(dt.date(2025, 9, 1), dt.date(2025, 9, 12))
    n = len(days)
    wh.replace_table("historical_iv_summary", pl.DataFrame({
        "trade_date": days, "symbol": ["NIFTY"] * n, "spot": np.linspace(24000, 25000, n),
        "atm_iv_30d": np.linspace(0.11, 0.14, n), "rv_20": np.linspace(0.10, 0.12, n)}))
    wh.replace_table("fno_universe", pl.DataFrame({
        "trade_date": days, "symbol": ["NIFTY"] * n, "instrument": ["INDEX"] * n, "lot_size": [75] * n,
        "source": ["nse_files"] * n}))
    chart = tmp_path / "iv.html"
    assert cli_main(["iv", "show", "NIFTY", "--days", "20", "--out", str(chart)]) == 0
    out = " ".join(capsys.readouterr().out.replace("│", " ").split())
    gap_sessions = len(calendar.sessions_between(dt.date(2025, 6, 13), dt.date(2025, 9, 1))) - 2
    assert f"gap: {gap_sessions} sessions without data (2025-06-13 .. 2025-09-01)" in out
    assert "market data: nse_files" in out and out.count("nse_files") >= n

    # the chart's lines break inside the gap (a None point), nowhere else
    assert iv_chart.gap_starts(days).tolist() == [10]
    x, ys = iv_chart.break_gaps(np.asarray(days, dtype="datetime64[D]"), {"iv": np.arange(n, dtype=float)})
    assert len(x) == n + 1 and np.isnan(ys["iv"][10])
    assert np.datetime64("2025-06-13") < x[10] < np.datetime64("2025-09-01")
    assert [y for y in ys["iv"] if np.isfinite(y)] == list(range(n))
    assert "30-day ATM implied volatility" in chart.read_text()  # the HTML is drawn from break_gaps' NaN-broken data
    assert iv_chart.gap_starts(calendar.sessions_between(dt.date(2025, 12, 22), dt.date(2026, 1, 9))).size == 0
