"""The track record's statistics and calibration against hand-computed values (issue 14)."""

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from options_v4_dagster.track_record.calibration import (
    brier,
    ev_calibration,
    exit_rule_stats,
    reliability,
    wilson_interval,
)
from options_v4_dagster.track_record.stats import (
    breakdown,
    drawdowns,
    equity_stats,
    monthly_returns,
    trade_stats,
)
from options_v4_dagster.track_record.trades import TRADE_SCHEMA, delta_bucket, dte_bucket


def _equity(values, start=dt.date(2025, 1, 1)):
    days = [start + dt.timedelta(days=i) for i in range(len(values))]
    return pl.DataFrame({"session": days, "equity": [float(v) for v in values]})


def test_equity_stats_match_the_definitions_by_hand():
    # daily returns +1%, -1%, +2% on an initial 100
    eq = _equity([101.0, 101.0 * 0.99, 101.0 * 0.99 * 1.02])
    s = equity_stats(eq, 100.0)
    r = np.array([0.01, -0.01, 0.02])
    mean = r.mean()  # 0.0066667
    std = math.sqrt(((0.01 - mean) ** 2 + (-0.01 - mean) ** 2 + (0.02 - mean) ** 2) / 2)  # sample std
    assert s["sharpe"] == pytest.approx(mean / std * math.sqrt(252), rel=1e-9)  # 6.9282
    assert s["sharpe"] == pytest.approx(6.928203, rel=1e-6)
    downside = math.sqrt(0.01 ** 2 / 3)  # only the -1% day is below 0
    assert s["sortino"] == pytest.approx(mean / downside * math.sqrt(252), rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(-0.01)
    assert s["max_drawdown_peak"] == "2025-01-01" and s["max_drawdown_valley"] == "2025-01-02"
    assert s["max_drawdown_recovery"] == "2025-01-03" and s["max_drawdown_duration_sessions"] == 2
    total = 1.01 * 0.99 * 1.02
    assert s["total_return"] == pytest.approx(total - 1)
    assert s["cagr"] == pytest.approx(total ** (252 / 3) - 1, rel=1e-9)
    assert s["calmar"] == pytest.approx(s["cagr"] / 0.01, rel=1e-9)


def test_drawdown_not_recovered_and_longest_spell():
    # 100 -> 110 -> 99 -> 105 -> 120 -> 90: worst 90/120 - 1 = -25% from the 5th value, not recovered
    d = drawdowns(np.array([110, 99, 105, 120, 90]), 100.0)
    assert d["max_drawdown"] == pytest.approx(-0.25)
    assert (d["peak"], d["valley"], d["recovery"]) == (3, 4, None)
    assert d["duration_sessions"] == 1
    assert d["longest_drawdown_sessions"] == 2  # 99 and 105 under the 110 peak
    flat = drawdowns(np.array([100.0, 101.0, 102.0]), 100.0)
    assert flat["max_drawdown"] == 0.0 and flat["duration_sessions"] == 0
    assert (flat["peak"], flat["valley"], flat["recovery"]) == (None, None, None)
    assert equity_stats(_equity([100.0, 101.0]), 100.0)["calmar"] is None  # no drawdown: no Calmar


def test_monthly_returns_chain_month_ends_from_the_initial_capital():
    eq = pl.DataFrame({"session": [dt.date(2025, 1, 30), dt.date(2025, 1, 31), dt.date(2025, 2, 3),
                                   dt.date(2025, 2, 28)],
                       "equity": [103.0, 105.0, 100.0, 110.25]})
    m = monthly_returns(eq, 100.0)
    assert [r["month"] for r in m] == ["2025-01", "2025-02"]
    assert m[0]["return"] == pytest.approx(0.05) and m[0]["meets_target"]
    assert m[1]["return"] == pytest.approx(0.05) and m[1]["sessions"] == 2
    assert not monthly_returns(eq, 110.0)[0]["meets_target"]  # 105 / 110 - 1 < 4%


def _trades(rows):
    base = {k: None for k in TRADE_SCHEMA}
    return pl.DataFrame([{**base, **r} for r in rows], schema=TRADE_SCHEMA)


TRADES = [
    {"trade": "a", "status": "closed", "pnl": 100.0, "fees": 10.0, "traded_value": 1000.0, "days_in_trade": 5,
     "strategy_name": "x", "pop": 0.85, "expected_value": 50.0, "exit_rule": "profit_target"},
    {"trade": "b", "status": "closed", "pnl": -50.0, "fees": 10.0, "traded_value": 1000.0, "days_in_trade": 3,
     "strategy_name": "x", "pop": 0.82, "expected_value": 40.0, "exit_rule": "stop_loss"},
    {"trade": "c", "status": "closed", "pnl": 30.0, "fees": 5.0, "traded_value": 500.0, "days_in_trade": 10,
     "strategy_name": "y", "pop": 0.35, "expected_value": -20.0, "exit_rule": "time_exit"},
    {"trade": "d", "status": "closed", "pnl": -20.0, "fees": 5.0, "traded_value": 500.0, "days_in_trade": 2,
     "strategy_name": "y", "pop": 0.31, "expected_value": 10.0, "exit_rule": "stop_loss"},
    {"trade": "e", "status": "closed", "pnl": 0.0, "fees": 5.0, "traded_value": 500.0, "days_in_trade": 0,
     "strategy_name": "y", "pop": 0.99, "expected_value": 0.0, "exit_rule": "settlement"},
    {"trade": "f", "status": "open", "pnl": 70.0, "fees": 3.0, "traded_value": 300.0, "days_in_trade": 4,
     "strategy_name": "x", "pop": 0.5, "expected_value": 5.0},
]


def test_trade_stats_by_hand():
    s = trade_stats(_trades(TRADES), 10_000.0)
    assert (s["trades"], s["closed"], s["open"], s["unwound"]) == (6, 5, 1, 0)
    assert s["win_rate"] == pytest.approx(2 / 5)  # a zero P&L is not a win
    assert s["profit_factor"] == pytest.approx(130 / 70)
    assert s["average_win"] == pytest.approx(65.0)
    assert s["average_loss"] == pytest.approx(-70 / 3)
    assert s["average_days_in_trade"] == pytest.approx(4.0)
    assert s["fees_paid"] == pytest.approx(38.0)
    assert s["turnover"] == pytest.approx(3800 / 10_000)
    assert s["open_pnl"] == pytest.approx(70.0)
    only_wins = trade_stats(_trades(TRADES[:1]), 1.0)
    assert only_wins["profit_factor"] is None and only_wins["average_loss"] is None


def test_breakdown_by_strategy():
    rows = {r["strategy_name"]: r for r in breakdown(_trades(TRADES), "strategy_name")}
    assert rows["x"]["trades"] == 2 and rows["x"]["open"] == 1 and rows["x"]["pnl"] == pytest.approx(50.0)
    assert rows["x"]["open_pnl"] == pytest.approx(70.0) and rows["x"]["profit_factor"] == pytest.approx(2.0)
    assert rows["y"]["win_rate"] == pytest.approx(1 / 3) and rows["y"]["average_days"] == pytest.approx(4.0)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(0, 0) == (None, None)


def test_reliability_brier_and_ev_by_hand():
    t = _trades(TRADES)
    table = {r["pop_bucket"]: r for r in reliability(t)}
    assert set(table) == {"0.3-0.4", "0.8-0.9", "0.9-1.0"}  # the open trade is not counted
    assert table["0.8-0.9"]["n"] == 2 and table["0.8-0.9"]["realized"] == 0.5
    assert table["0.8-0.9"]["predicted"] == pytest.approx(0.835)
    assert (table["0.8-0.9"]["ci_low"], table["0.8-0.9"]["ci_high"]) == pytest.approx(wilson_interval(1, 2))
    assert table["0.9-1.0"]["realized"] == 0.0
    b = brier(t)
    want = ((0.85 - 1) ** 2 + 0.82 ** 2 + (0.35 - 1) ** 2 + 0.31 ** 2 + 0.99 ** 2) / 5
    assert b["brier"] == pytest.approx(want)
    assert b["base_rate"] == pytest.approx(0.4) and b["reference"] == pytest.approx(0.24)
    assert b["skill"] == pytest.approx(1 - want / 0.24)
    ev = ev_calibration(t, bins=5)
    assert ev["n"] == 5 and ev["predicted_total"] == pytest.approx(80.0) and ev["realized_total"] == pytest.approx(60.0)
    assert [q["predicted"] for q in ev["buckets"]] == pytest.approx([-20.0, 0.0, 10.0, 40.0, 50.0])
    assert ev["correlation"] == pytest.approx(np.corrcoef([50, 40, -20, 10, 0], [100, -50, 30, -20, 0])[0, 1])


def test_exit_rule_stats_count_intents_and_closing_trades():
    intents = pl.DataFrame({"rule": ["stop_loss", "stop_loss", "scale_out", "profit_target", "settlement", "time_exit"],
                            "state": ["FILLED", "PARTIAL", "FILLED", "FILLED", "FILLED", "FILLED"]})
    rows = {r["rule"]: r for r in exit_rule_stats(_trades(TRADES), intents)}
    assert rows["stop_loss"]["fired"] == 2 and rows["stop_loss"]["states"] == {"FILLED": 1, "PARTIAL": 1}
    assert rows["stop_loss"]["trades_closed"] == 2 and rows["stop_loss"]["average_pnl"] == pytest.approx(-35.0)
    assert rows["stop_loss"]["win_rate"] == 0.0
    assert rows["scale_out"]["fired"] == 1 and rows["scale_out"]["trades_closed"] == 0
    assert rows["profit_target"]["win_rate"] == 1.0


def test_buckets():
    assert [dte_bucket(d) for d in (0, 6, 7, 29, 30, 59, 60, 90, None)] == [
        "0-7", "0-7", "7-14", "21-30", "30-45", "45-60", "60+", "60+", None]
    assert [delta_bucket(d) for d in (None, 0.05, -0.1, 0.349, 0.95, 1.0)] == [
        "none", "0.0-0.1", "0.1-0.2", "0.3-0.4", "0.9-1.0", "0.9-1.0"]
