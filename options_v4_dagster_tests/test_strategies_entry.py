"""Strategy creation defects found by the walk-forward track record (regression tests).

1. Margin of high-IV underlyings: the SPAN extreme scenario (-2 x the price scan range) moved the
   forward below zero for an ATM IV above ~94% (HDFCLIFE on the simulated 2025-01-02 session, IV
   ~115%), Black-76 gave NaN and the margin was null, failing ``strategy_candidates``.
2. Missing inputs (lot size, spot) and any non-finite analytics become per-symbol failures naming
   the symbol, the session and the field, never a crash or a null.
3. Entries at or inside the time-exit window: a candidate whose entry DTE is at or below its
   time-exit DTE would be closed at the next session; the front expiry must be one whose time
   exit falls after the entry session.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from options_v4_dagster import calendar
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.quant.black import black76_price
from options_v4_dagster.strategies import analytics as analytics_mod
from options_v4_dagster.strategies import pipeline
from options_v4_dagster.strategies.analytics import analyze
from options_v4_dagster.strategies.build import BuildConfig, build_candidates
from options_v4_dagster.strategies.exits import ExitConfig
from options_v4_dagster.strategies.leg_arrays import KIND_CALL, LegArrays
from options_v4_dagster.strategies.margin import MarginParams, span_margin

HIGH_IV_SESSION = dt.date(2025, 1, 2)
NO_SIGNALS = pl.DataFrame(schema={"symbol": pl.Utf8, "direction": pl.Utf8})


def _backspread_legs() -> LegArrays:
    """HDFCLIFE call_backspread on the simulated 2025-01-02 chain (captured from the pipeline):
    sell 1 x 860 CE, buy 2 x 1060 CE, 30 Jan 2025, lot 1100, ATM IV ~115%."""
    two = lambda x, y: np.array([[x, y]], dtype=float)  # noqa: E731
    return LegArrays(
        kind=np.array([[KIND_CALL, KIND_CALL]], dtype=np.int8), K=two(860.0, 1060.0), q=two(-1100.0, 2200.0),
        price=two(103.4, 47.15), iv=two(1.1410459798021297, 1.1490968839337592),
        t=two(0.07671232876712329, 0.07671232876712329), F=two(858.0, 858.0),
        df=two(0.9950261095939752, 0.9950261095939752), back=np.zeros((1, 2), dtype=bool),
        delta=two(0.5598693132648563, 0.3067217984255363), gamma=two(0.00146, 0.00129), vega=two(0.93, 0.83),
        theta=two(-1.97, -1.74), spot=np.array([853.74]), F0=np.array([858.0]), sig=np.array([1.1516]),
        T0=np.array([0.07671232876712329]), df0=np.array([0.9950261095939752]), single=np.array([True]),
        is_index=np.array([False]), cash_secured=np.array([False]))


def test_span_margin_is_finite_when_the_extreme_scenario_exceeds_a_100pct_fall():
    a = _backspread_legs()
    p = MarginParams()
    net_premium = -(a.q * a.price).sum(axis=1)
    margin, md = span_margin(a, net_premium, p)
    psr = 6 * 1.1516 / math.sqrt(252) * math.sqrt(2)
    assert 2 * psr > 1.0  # the extreme down move is more than the whole price
    assert np.isfinite(margin).all() and margin[0] > 0, margin
    # by hand: the underlying cannot fall below zero, so a move is floored at -100%
    vsr = 0.25 * 1.1516
    worst = 0.0
    for m, v, w in [(m, v, 1.0) for m in (0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1, -1) for v in (1, -1)] + \
            [(2, 0, 0.35), (-2, 0, 0.35)]:
        pnl = 0.0
        for j in range(2):
            v0 = black76_price(858.0, a.K[0, j], a.t[0, j], a.iv[0, j], True, a.df[0, j])
            v1 = black76_price(858.0 * max(1 + m * psr, 0.0), a.K[0, j], a.t[0, j], max(a.iv[0, j] + v * vsr, 0.01),
                               True, a.df[0, j])
            pnl += a.q[0, j] * (v1 - v0)
        worst = max(worst, -pnl * w)
    assert md["scan_risk"][0] == pytest.approx(worst, rel=1e-9)


@pytest.fixture(scope="module")
def high_iv_chain() -> pl.DataFrame:
    chains, failures = SimulatedMarket().option_chains(["HDFCLIFE", "RELIANCE"], HIGH_IV_SESSION)
    assert not failures
    return surface.chain_iv(chains)


def test_high_iv_symbol_gets_finite_margins_on_the_simulated_session(high_iv_chain):
    cands, _ = build_candidates(high_iv_chain.filter(pl.col("symbol") == "HDFCLIFE"))
    analyze(cands)
    assert cands and max(c.atm_iv for c in cands) > 0.94  # the session that failed: IV ~115%
    bad = [(c.name, c.analytics.margin) for c in cands if not (math.isfinite(c.analytics.margin)
                                                               and c.analytics.margin > 0)]
    assert not bad, bad
    res = pipeline.create_candidates(high_iv_chain, NO_SIGNALS, HIGH_IV_SESSION, keep_all=True)
    tables = pipeline.to_tables(res.ranked, HIGH_IV_SESSION, "moderate")
    assert tables["strategy_parameters"].get_column("margin").null_count() == 0


def test_a_missing_lot_size_is_a_failure_for_that_symbol_naming_session_and_field(high_iv_chain):
    iv = high_iv_chain.with_columns(
        pl.when(pl.col("symbol") == "HDFCLIFE").then(None).otherwise(pl.col("lot_size")).alias("lot_size"))
    res = pipeline.create_candidates(iv, NO_SIGNALS, HIGH_IV_SESSION, keep_all=True)
    assert {rc.candidate.symbol for rc in res.ranked} == {"RELIANCE"}
    hdfc = [f for f in res.failures if f.symbol == "HDFCLIFE"]
    assert hdfc and all("lot_size" in f.reason and "2025-01-02" in f.reason for f in hdfc if f.stage.startswith("build:"))
    assert any(f.stage.startswith("build:") for f in hdfc)


def test_a_missing_spot_is_a_failure_for_that_symbol(high_iv_chain):
    iv = high_iv_chain.with_columns(
        pl.when(pl.col("symbol") == "HDFCLIFE").then(None).otherwise(pl.col("underlying_price"))
        .alias("underlying_price"))
    res = pipeline.create_candidates(iv, NO_SIGNALS, HIGH_IV_SESSION, keep_all=True)
    assert {rc.candidate.symbol for rc in res.ranked} == {"RELIANCE"}
    reasons = [f.reason for f in res.failures if f.symbol == "HDFCLIFE" and f.stage.startswith("build:")]
    assert reasons and all("underlying_price" in r and "2025-01-02" in r for r in reasons)


def test_non_finite_analytics_drop_the_candidate_with_a_recorded_failure(high_iv_chain, monkeypatch):
    real = analytics_mod.span_margin

    def one_nan(a, net_premium, p):
        m, md = real(a, net_premium, p)
        m = m.copy()
        m[0] = np.nan
        return m, md

    monkeypatch.setattr(analytics_mod, "span_margin", one_nan)
    iv = high_iv_chain.filter(pl.col("symbol") == "RELIANCE")
    res = pipeline.create_candidates(iv, NO_SIGNALS, HIGH_IV_SESSION, keep_all=True)
    assert all(math.isfinite(rc.candidate.analytics.margin) for rc in res.ranked)
    f = [f for f in res.failures if f.stage.startswith("analytics:")]
    assert len(f) == 1 and f[0].symbol == "RELIANCE" and "margin" in f[0].reason and "2025-01-02" in f[0].reason


# --- entry DTE against the time exit ------------------------------------------------------------------

NEAR_EXPIRY_SESSION = dt.date(2025, 1, 27)  # Monday; the January monthly expires on Thursday 30th


@pytest.fixture(scope="module")
def near_expiry():
    chains, failures = SimulatedMarket().option_chains(["NIFTY", "RELIANCE", "HDFCLIFE"], NEAR_EXPIRY_SESSION)
    assert not failures
    iv = surface.chain_iv(chains)
    return iv, pipeline.create_candidates(iv, NO_SIGNALS, NEAR_EXPIRY_SESSION, keep_all=True)


def test_no_candidate_is_entered_inside_its_time_exit_window(near_expiry):
    iv, res = near_expiry
    dte = ExitConfig.load().time_exit_dte
    front = iv.filter(pl.col("expiry") > NEAR_EXPIRY_SESSION).get_column("expiry").min()
    assert (front - NEAR_EXPIRY_SESSION).days <= dte  # the chain does list an expiry inside the window
    assert res.ranked
    for rc in res.ranked:
        c, lv = rc.candidate, rc.exits
        entry_dte = (c.expiry - NEAR_EXPIRY_SESSION).days
        assert entry_dte > dte and entry_dte > lv.time_exit_dte, (c.symbol, c.name, c.expiry, lv.time_exit_dte)
        assert lv.time_exit_date > NEAR_EXPIRY_SESSION
        assert lv.time_exit_date == calendar.previous_session(c.expiry - dt.timedelta(days=dte), inclusive=True)
    # every catalogue strategy that needs two expiries still builds on the next two
    names = {(rc.candidate.symbol, rc.candidate.name) for rc in res.ranked}
    assert ("RELIANCE", "call_calendar") in names


def test_expiries_inside_the_time_exit_window_are_skipped_by_the_builder(near_expiry):
    iv, _ = near_expiry
    cands, failures = build_candidates(iv, cfg=BuildConfig(time_exit_dte=7))
    assert cands
    assert all((c.expiry - NEAR_EXPIRY_SESSION).days > 7 for c in cands)
    # without the rule the front expiry inside the window is used (the old behaviour)
    old, _ = build_candidates(iv, cfg=BuildConfig())
    assert any((c.expiry - NEAR_EXPIRY_SESSION).days <= 7 for c in old)
    # too few expiries left: a recorded reason naming the time exit, not a silent drop
    late = iv.filter(pl.col("expiry") <= pl.col("expiry").filter(pl.col("symbol") == "RELIANCE").unique().sort()
                     .get(1)).filter(pl.col("symbol") == "RELIANCE")
    _, f = build_candidates(late, cfg=BuildConfig(time_exit_dte=7))
    cal = [x for x in f if x.strategy == "call_calendar"]
    assert cal and cal[0].field == "expiry" and "time exit" in cal[0].reason
