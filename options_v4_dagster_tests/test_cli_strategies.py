"""`options-v4 strategies` and `options-v4 analyze`: the catalogue and the candidates as a trader sees them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.strategies import CATALOGUE

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
        scores = [r["total_score"] for r in mine]
        assert scores == sorted(scores, reverse=True)  # ranked best first
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
