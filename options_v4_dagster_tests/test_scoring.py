"""Scoring, conviction, risk filters, ranking and exit levels of strategy candidates.

Candidates are real: simulated NIFTY and RELIANCE chains of 2025-07-17 through the IV engine,
the builder and the analytics. Reward/risk inputs are checked against a Monte-Carlo simulation
of the POP law, breakeven triggers against the payoff, rows against the warehouse schema.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster import calendar
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.store import schema
from options_v4_dagster.strategies import CATALOGUE, analyze, build_candidates, pnl_at_front_expiry
from options_v4_dagster.strategies.catalogue import Instrument, IVPreference, Outlook, Side
from options_v4_dagster.strategies.exits import ExitConfig, ExitLevels, exit_levels, exit_levels_all
from options_v4_dagster.strategies.scoring import (
    COMPONENTS,
    CONVICTIONS,
    RISK_TOLERANCES,
    MarketView,
    Scored,
    ScoringConfig,
    conviction,
    rank,
    score_candidates,
    views_from_signals,
)

SESSION = dt.date(2025, 7, 17)
SYMBOLS = ("NIFTY", "RELIANCE")
PACKAGED_YAML = Path(__file__).resolve().parents[1] / "options_v4_dagster" / "config" / "scoring.yaml"


@pytest.fixture(scope="module")
def cands():
    chains, failures = SimulatedMarket().option_chains(list(SYMBOLS), SESSION)
    assert not failures
    out, build_failures = build_candidates(surface.chain_iv(chains))
    analyze(out)
    return out


@pytest.fixture(scope="module")
def views():
    return {
        "NIFTY": MarketView("NEUTRAL", 0.1, "HIGH", None, 0.1),
        "RELIANCE": MarketView("BULLISH", 0.6, "LOW", None, 0.4),
    }


def by(cands, symbol, name):
    (c,) = [c for c in cands if c.symbol == symbol and c.strategy.name == name]
    return c


def component(cands, name, view, comp, symbol="NIFTY", **kw):
    (s,) = score_candidates([by(cands, symbol, name)], {symbol: view}, **kw)
    return s.components[comp]


# --- configuration ------------------------------------------------------------------------------

def test_packaged_yaml_equals_the_documented_defaults():
    assert PACKAGED_YAML.is_file()
    cfg = ScoringConfig.load()
    assert cfg == ScoringConfig()
    assert ScoringConfig.load(PACKAGED_YAML) == cfg
    assert ExitConfig.load() == cfg.exits == ExitConfig.load(PACKAGED_YAML)
    assert cfg.weights.as_dict().keys() == set(COMPONENTS)
    assert (cfg.conviction.VERY_HIGH, cfg.conviction.HIGH, cfg.conviction.MEDIUM, cfg.conviction.LOW) == (80, 65, 45, 30)
    assert set(RISK_TOLERANCES) == set(type(cfg.risk_tolerances).model_fields)


@pytest.mark.parametrize("text, key", [
    ("weights:\n  probability: high\n", "weights.probability"),
    ("weights:\n  probability: [1, 2]\n", "weights.probability"),
    ("weights:\n  probabilty: 0.3\n", "weights.probabilty"),
    ("weights:\n  momentum: -0.1\n", "weights.momentum"),
    ("colour: blue\n", "colour"),
    ("conviction:\n  HIGH: 90\n", "conviction"),
    ("risk_tolerances:\n  conservative:\n    min_pop: 1.5\n", "risk_tolerances.conservative.min_pop"),
    ("risk_tolerances:\n  reckless:\n    min_pop: 0.1\n", "risk_tolerances.reckless"),
    ("risk_tolerances:\n  moderate:\n    max_fallback_level: 9\n", "risk_tolerances.moderate.max_fallback_level"),
    ("risk_tolerances:\n  moderate:\n    excluded_categories: [lottery]\n",
     "risk_tolerances.moderate.excluded_categories.0"),
    ("components:\n  iv_fit:\n    HIGH: {LOW: 0, NORMAL: 0.5}\n", "components.iv_fit.HIGH.HIGH"),
    ("exits:\n  time_exit_dte: soon\n", "exits.time_exit_dte"),
    ("exits:\n  scale_out: [{at_pct: 0.5, close_fraction: 0.5}, {at_pct: 0.25, close_fraction: 0.5}]\n",
     "exits.scale_out"),
    ("exits:\n  stop_everything: true\n", "exits.stop_everything"),
])
def test_a_bad_yaml_names_the_key(tmp_path, text, key):
    p = tmp_path / "scoring.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        ScoringConfig.load(p)
    assert key in str(exc.value)
    assert str(p) in str(exc.value)


def test_all_zero_weights_unreadable_yaml_and_missing_file_are_errors(tmp_path):
    zero = tmp_path / "zero.yaml"
    zero.write_text("weights: {" + ", ".join(f"{k}: 0" for k in COMPONENTS) + "}\n")
    with pytest.raises(ConfigError, match="weights"):
        ScoringConfig.load(zero)
    broken = tmp_path / "broken.yaml"
    broken.write_text("weights: [probability: 1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ScoringConfig.load(broken)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        ScoringConfig.load(listy)
    with pytest.raises(ConfigError, match="cannot read"):
        ScoringConfig.load(tmp_path / "absent.yaml")
    exits_bad = tmp_path / "exits.yaml"
    exits_bad.write_text("exits:\n  credit_profit_pct: 2\n")
    with pytest.raises(ConfigError, match="exits.credit_profit_pct"):
        ExitConfig.load(exits_bad)


def test_a_partial_yaml_overrides_only_its_keys(tmp_path, cands, views):
    p = tmp_path / "s.yaml"
    p.write_text("weights:\n  probability: 1.0\nrisk_tolerances:\n  moderate:\n    min_pop: 0.9\n")
    cfg = ScoringConfig.load(p)
    assert cfg.weights.probability == 1.0 and cfg.weights.iv_fit == ScoringConfig().weights.iv_fit
    assert cfg.risk_tolerances.moderate.min_pop == 0.9
    assert cfg.risk_tolerances.conservative == ScoringConfig().risk_tolerances.conservative
    c = by(cands, "NIFTY", "iron_condor")
    (base,) = score_candidates([c], views)
    (heavy,) = score_candidates([c], views, config=cfg)
    w = cfg.weights.as_dict()
    assert heavy.total_score == pytest.approx(100 * sum(w[k] * heavy.components[k] for k in w) / sum(w.values()))
    assert heavy.total_score != pytest.approx(base.total_score)
    assert not heavy.passed and any("POP" in r for r in heavy.rejections)


def test_an_unknown_risk_tolerance_is_rejected(cands, views):
    with pytest.raises(ConfigError, match="conservative, moderate, aggressive"):
        score_candidates(cands[:1], views, risk="yolo")


# --- conviction -----------------------------------------------------------------------------------

@pytest.mark.parametrize("score, level", [
    (100, "VERY_HIGH"), (80, "VERY_HIGH"), (79.999, "HIGH"), (65, "HIGH"), (64.999, "MEDIUM"), (45, "MEDIUM"),
    (44.999, "LOW"), (30, "LOW"), (29.999, "VERY_LOW"), (0, "VERY_LOW"), (float("nan"), "VERY_LOW"),
])
def test_conviction_thresholds_at_the_edges(score, level):
    assert conviction(score, ScoringConfig()) == level
    assert conviction(score) == level


def test_conviction_follows_configured_thresholds(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("conviction: {VERY_HIGH: 90, HIGH: 70, MEDIUM: 50, LOW: 10}\n")
    cfg = ScoringConfig.load(p)
    assert [conviction(s, cfg) for s in (90, 89.9, 70, 50, 49, 10, 9.9)] == [
        "VERY_HIGH", "HIGH", "HIGH", "MEDIUM", "LOW", "LOW", "VERY_LOW"]


def test_negative_expected_value_caps_conviction():
    cfg = ScoringConfig()
    assert cfg.conviction.negative_ev_cap == "MEDIUM"
    assert [conviction(s, cfg, ev) for s, ev in ((90, -1.0), (70, -0.01), (70, 0.0), (90, None), (50, -5.0),
                                                 (20, -5.0))] == ["MEDIUM", "MEDIUM", "HIGH", "VERY_HIGH", "MEDIUM",
                                                                  "VERY_LOW"]


def test_negative_ev_cap_is_configurable_and_validated(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("conviction: {negative_ev_cap: LOW}\n")
    assert conviction(90, ScoringConfig.load(p), -1.0) == "LOW"
    p.write_text("conviction: {negative_ev_cap: SUPER}\n")
    with pytest.raises(ConfigError, match="negative_ev_cap"):
        ScoringConfig.load(p)


@pytest.mark.parametrize("risk", RISK_TOLERANCES)
@pytest.mark.parametrize("view", VIEW_SET_EV := [
    MarketView("BULLISH", 0.6, "LOW", None, 0.4), MarketView("BULLISH", 0.9, "LOW", None, 0.8),
    MarketView("NEUTRAL", 0.1, "HIGH", None, 0.1), MarketView("BEARISH", 0.5, "HIGH", None, -0.6)],
    ids=lambda v: f"{v.direction}-{v.iv_environment}")
def test_a_candidate_losing_on_average_is_never_high_conviction(cands, risk, view):
    scored = score_candidates(cands, {"NIFTY": view, "RELIANCE": view}, risk=risk)
    neg = [s for s in scored if s.candidate.analytics.expected_value < 0]
    assert neg, "the simulated session has negative-EV candidates"
    for s in neg:
        assert s.conviction not in ("HIGH", "VERY_HIGH"), (s.symbol, s.strategy_name, s.total_score)
        if conviction(s.total_score) in ("HIGH", "VERY_HIGH"):
            assert any("conviction capped" in n for n in s.notes)
    for s in scored:  # a non-negative EV keeps the level of its score
        if s.candidate.analytics.expected_value >= 0:
            assert s.conviction == conviction(s.total_score)


def test_reliance_long_call_with_negative_ev_is_not_high(cands):
    """The case seen: RELIANCE long_call on simulated 2025-07-17, EV about -433, scored HIGH."""
    c = by(cands, "RELIANCE", "long_call")
    assert c.analytics.expected_value < 0
    (s,) = score_candidates([c], {"RELIANCE": MarketView("BULLISH", 0.6, "LOW", None, 0.4)})
    assert conviction(s.total_score) == "HIGH"  # what the score alone says
    assert s.conviction == "MEDIUM"


@pytest.mark.parametrize("view", [MarketView("BULLISH", 0.6, "LOW", None, 0.4),
                                  MarketView("BULLISH", 0.9, "NORMAL", None, 0.8),
                                  MarketView("NEUTRAL", 0.1, "HIGH", None, 0.1)],
                         ids=lambda v: f"{v.direction}-{v.iv_environment}")
def test_moderate_top_pick_is_never_a_loss_many_times_its_margin(cands, view):
    """NIFTY risk_reversal (max loss INR 16.4 lakh, ~10x its margin) ranked first under moderate;
    the moderate profile now takes at most 3x the margin at risk, the aggressive one keeps it."""
    lim = ScoringConfig().filters("moderate").max_loss_to_margin
    assert lim == 3.0
    views = {"NIFTY": view, "RELIANCE": view}
    ranked = rank(score_candidates(cands, views, risk="moderate"))
    for sym in SYMBOLS:
        top = next(s for s in ranked if s.symbol == sym and s.rank == 1)
        a = top.candidate.analytics
        assert top.passed and a.max_loss is not None and a.max_loss <= lim * a.margin, (sym, top.strategy_name)
    rr = next(s for s in ranked if s.symbol == "NIFTY" and s.strategy_name == "risk_reversal")
    assert rr.candidate.analytics.max_loss > 5 * rr.candidate.analytics.margin
    assert not rr.passed and any("x the margin" in r for r in rr.rejections)
    (agg,) = [s for s in score_candidates(cands, views, risk="aggressive") if s.symbol == "NIFTY"
              and s.strategy_name == "risk_reversal"]
    assert agg.passed


# --- components -----------------------------------------------------------------------------------

VIEW_SET = [
    MarketView("BULLISH", 0.9, "LOW", None, 0.8),
    MarketView("BEARISH", 0.5, "HIGH", None, -0.6),
    MarketView("NEUTRAL", 0.05, "NORMAL", None, None),
    MarketView(None, 0.0, None, None, None),
    MarketView(None, 0.3, None, "BEARISH_LOW_IV", 0.0),
]


@pytest.mark.parametrize("risk", RISK_TOLERANCES)
@pytest.mark.parametrize("view", VIEW_SET, ids=lambda v: f"{v.direction}-{v.iv_environment}")
def test_every_component_is_in_0_1_and_the_total_in_0_100(cands, risk, view):
    scored = score_candidates(cands, {s: view for s in SYMBOLS}, risk=risk)
    assert len(scored) == len(cands)
    w = ScoringConfig().weights.as_dict()
    for s, c in zip(scored, cands, strict=True):
        assert s.candidate is c
        assert list(s.components) == list(COMPONENTS)
        for k, v in s.components.items():
            assert 0.0 <= v <= 1.0 and math.isfinite(v), (c.symbol, c.name, k, v)
        assert 0.0 <= s.total_score <= 100.0
        assert s.total_score == pytest.approx(100 * sum(w[k] * s.components[k] for k in w) / sum(w.values()))
        assert s.conviction == conviction(s.total_score, None, s.candidate.analytics.expected_value)
        assert s.passed == (not s.rejections)
        assert s.risk_tolerance == risk
        json.dumps(s.components), json.dumps(s.details)  # storable as JSON


def test_the_probability_component_is_the_pop(cands, views):
    for s in score_candidates(cands, views):
        assert s.components["probability"] == pytest.approx(s.candidate.analytics.pop)


def test_bullish_strategies_align_better_with_a_bullish_view(cands):
    bull = MarketView("BULLISH", 0.7, "NORMAL", None)
    bear = MarketView("BEARISH", 0.7, "NORMAL", None)
    neutral = MarketView("NEUTRAL", 0.05, "NORMAL", None)
    checked = 0
    for sym in SYMBOLS:
        cs = [c for c in cands if c.symbol == sym]
        a_bull = {s.candidate.name: s.components["market_alignment"] for s in score_candidates(cs, {sym: bull})}
        a_bear = {s.candidate.name: s.components["market_alignment"] for s in score_candidates(cs, {sym: bear})}
        a_neut = {s.candidate.name: s.components["market_alignment"] for s in score_candidates(cs, {sym: neutral})}
        for c in cs:
            n, o = c.name, c.strategy.outlook
            if o is Outlook.BULLISH:
                assert a_bull[n] > a_bear[n] and a_bull[n] > a_neut[n], n
                checked += 1
            elif o is Outlook.BEARISH:
                assert a_bear[n] > a_bull[n] and a_bear[n] > a_neut[n], n
            elif o is Outlook.NEUTRAL:
                assert a_neut[n] > a_bull[n] and a_neut[n] > a_bear[n], n
            else:  # VOLATILE: a strong trend (a move) beats a quiet market
                assert a_bull[n] > a_neut[n] and a_bear[n] > a_neut[n], n
    assert checked >= 10
    # the strength of the view matters: a strong-view strategy fits a strong trend better than a weak one
    strong, weak = MarketView("BULLISH", 0.9, "NORMAL", None), MarketView("BULLISH", 0.3, "NORMAL", None)
    assert component(cands, "long_call", strong, "market_alignment") > component(cands, "long_call", weak,
                                                                                 "market_alignment")
    assert component(cands, "short_put", weak, "market_alignment") > component(cands, "short_put", strong,
                                                                               "market_alignment")
    # volatile strategies prefer a quiet market with cheap vol to one with rich vol
    quiet_low = MarketView("NEUTRAL", 0.0, "LOW", None)
    quiet_high = MarketView("NEUTRAL", 0.0, "HIGH", None)
    assert component(cands, "long_straddle", quiet_low, "market_alignment") > component(
        cands, "long_straddle", quiet_high, "market_alignment")


def test_iv_fit_ordering(cands):
    envs = {e: MarketView("NEUTRAL", 0.1, e, None) for e in ("LOW", "NORMAL", "HIGH")}
    unknown = MarketView("NEUTRAL", 0.1, None, None)
    for c in [c for c in cands if c.symbol == "NIFTY"]:
        fit = {e: score_candidates([c], {"NIFTY": v})[0].components["iv_fit"] for e, v in envs.items()}
        (u,) = score_candidates([c], {"NIFTY": unknown})
        pref = c.strategy.iv_preference
        if pref is IVPreference.HIGH:
            assert fit["HIGH"] == 1.0 and fit["NORMAL"] == 0.5 and fit["LOW"] == 0.0
        elif pref is IVPreference.LOW:
            assert fit["LOW"] == 1.0 and fit["NORMAL"] == 0.5 and fit["HIGH"] == 0.0
        else:
            assert fit == {"LOW": 0.6, "NORMAL": 0.6, "HIGH": 0.6}
        assert u.components["iv_fit"] == 0.5
        assert any("IV environment unknown" in n for n in u.notes)


def test_market_state_fills_direction_and_iv_environment():
    v = MarketView(None, 0.4, None, "bullish_high_iv", 3.0)
    assert (v.direction, v.iv_environment, v.market_state, v.momentum) == ("BULLISH", "HIGH", "BULLISH_HIGH_IV", 1.0)
    assert MarketView("bearish", float("nan"), "low", None).strength == 0.0
    with pytest.raises(ValueError, match="direction"):
        MarketView("SIDEWAYS", 0.5, None, None)
    with pytest.raises(ValueError, match="iv_environment"):
        MarketView("BULLISH", 0.5, "EXTREME", None)


def test_views_from_technical_signals():
    frame = pl.DataFrame({
        "symbol": ["A", "B", "C"], "direction": ["BULLISH", "BEARISH", None], "strength": [0.6, 0.4, None],
        "iv_environment": [None, "LOW", None], "market_state": ["BULLISH_HIGH_IV", "BEARISH_LOW_IV", None],
        "rsi14": [70.0, 30.0, None], "macd": [5.0, -50.0, None], "macd_hist": [1.0, -10.0, None],
        "atr14": [10.0, 10.0, None],
    })
    v = views_from_signals(frame)
    assert v["A"].iv_environment == "HIGH" and v["A"].momentum == pytest.approx((0.2 * (0.5 * 0.5 + 0.5 * 0.4) + 0.15 * 1) / 0.35)
    assert v["B"].momentum == pytest.approx(-1.0)
    assert v["C"].direction is None and v["C"].momentum is None and v["C"].strength == 0.0


def test_momentum_alignment(cands):
    up, down = MarketView("NEUTRAL", 0.1, "NORMAL", None, 0.8), MarketView("NEUTRAL", 0.1, "NORMAL", None, -0.8)
    flat = MarketView("NEUTRAL", 0.1, "NORMAL", None, 0.0)
    assert component(cands, "long_call", up, "momentum") > component(cands, "long_call", down, "momentum")
    assert component(cands, "long_put", down, "momentum") > component(cands, "long_put", up, "momentum")
    assert component(cands, "iron_condor", flat, "momentum") > component(cands, "iron_condor", up, "momentum")
    assert component(cands, "long_call", MarketView("NEUTRAL", 0.1, "NORMAL", None), "momentum") == 0.5


def test_a_symbol_without_a_view_is_scored_neutral_with_a_note_not_a_rejection(cands, views):
    nifty = [c for c in cands if c.symbol == "NIFTY"]
    without = score_candidates(nifty, {"RELIANCE": views["RELIANCE"]})
    neutral = score_candidates(nifty, {"NIFTY": MarketView.neutral()})
    for a, b in zip(without, neutral, strict=True):
        assert any("no market view for NIFTY" in n for n in a.notes)
        assert not any("view" in r for r in a.rejections)
        assert a.components == b.components and a.rejections == b.rejections
        assert a.components["market_alignment"] == a.components["iv_fit"] == a.components["momentum"] == 0.5


def test_reward_risk_uses_max_profit_over_max_loss_when_both_are_near(cands, views):
    for name in ("bull_call_spread", "bear_put_spread", "iron_condor", "bull_put_spread"):
        c = by(cands, "NIFTY", name)
        (s,) = score_candidates([c], views)
        rr = c.analytics.max_profit / c.analytics.max_loss
        assert s.details["reward_risk_basis"] == "max_profit/max_loss"
        assert s.components["reward_risk"] == pytest.approx(rr / (rr + 1.0))


def test_expected_payoff_ratio_matches_monte_carlo_and_unbounded_loss_is_penalized(cands, views):
    z = np.random.default_rng(7).standard_normal(400_000)
    penalty = ScoringConfig().components.unbounded_loss_penalty
    seen = set()
    for s in score_candidates(cands, views):
        c = s.candidate
        a = c.analytics
        if s.details["reward_risk_basis"] != "expected_payoff_ratio" or not c.is_single_expiry:
            continue
        seen.add(c.name)
        p = a.pop_inputs
        sd = p.sigma * math.sqrt(p.t_years)
        pnl = pnl_at_front_expiry([c], p.forward * np.exp(sd * z - 0.5 * sd * sd))[0]
        win, loss = pnl[pnl > 0], -pnl[pnl < 0]
        mc = win.mean() / loss.mean()
        assert s.details["payoff_ratio"] == pytest.approx(mc, rel=0.03), c.name
        unbounded = a.max_loss is None or c.strategy.unlimited_risk
        expected = mc * (penalty if unbounded else 1.0)
        assert s.details["reward_risk_effective"] == pytest.approx(expected, rel=0.03), c.name
    # unbounded profit, unbounded loss and remote extremes all take this path
    assert {"long_call", "short_straddle", "short_put", "long_put"} <= seen


def test_time_decay_rewards_income_and_penalizes_long_premium(cands, views):
    for s in score_candidates(cands, views):
        th = s.candidate.analytics.greeks.theta
        if th > 1:
            assert s.components["time_decay"] > 0.5, s.candidate.name
        elif th < -1:
            assert s.components["time_decay"] < 0.5, s.candidate.name
    assert component(cands, "long_strangle", views["NIFTY"], "time_decay") < 0.1
    assert component(cands, "iron_condor", views["NIFTY"], "time_decay") > 0.7


def test_liquidity_and_complexity(cands, views):
    scored = {(s.symbol, s.strategy_name): s for s in score_candidates(cands, views)}
    # RELIANCE quotes are wider and its strikes needed looser levels than NIFTY's
    for name in ("long_call", "bull_put_spread", "iron_condor"):
        assert scored["NIFTY", name].components["liquidity"] > scored["RELIANCE", name].components["liquidity"]
    # a leg without a two-sided quote at the loosest level drags the candidate down
    c = by(cands, "NIFTY", "bull_put_spread")
    legs = [dataclasses.replace(leg) for leg in c.legs]
    legs[1].bid, legs[1].level, legs[1].oi = None, 3, 0.0
    worse = dataclasses.replace(c, legs=legs, fallback_level=3, fallback="any_price")
    (w,) = score_candidates([worse], views)
    assert w.components["liquidity"] == 0.0
    assert scored["NIFTY", "long_call"].components["complexity"] == 1.0
    assert scored["NIFTY", "iron_condor"].components["complexity"] < scored["NIFTY", "bull_put_spread"].components[
        "complexity"]


# --- risk filters and ranking -----------------------------------------------------------------------

def test_risk_tolerance_filters(cands, views):
    res = {r: {(s.symbol, s.strategy_name): s for s in score_candidates(cands, views, risk=r)} for r in RISK_TOLERANCES}
    # the score does not depend on the tolerance, only the filters do
    for key, s in res["moderate"].items():
        assert res["conservative"][key].total_score == s.total_score == res["aggressive"][key].total_score
    unlimited = res["conservative"]["NIFTY", "short_straddle"]
    assert not unlimited.passed and any("unlimited risk" in r for r in unlimited.rejections)
    low_pop = res["conservative"]["NIFTY", "long_call_butterfly"]
    assert low_pop.candidate.analytics.pop < 0.5
    assert not low_pop.passed and any(r.startswith("POP") for r in low_pop.rejections)
    naked = res["conservative"]["NIFTY", "short_put"]  # a bounded loss ten times the margin
    assert not naked.passed and any("x the margin" in r for r in naked.rejections)
    assert res["conservative"]["NIFTY", "iron_condor"].passed
    for key in (("NIFTY", "short_straddle"), ("NIFTY", "long_call_butterfly"), ("NIFTY", "short_put")):
        assert res["aggressive"][key].passed, res["aggressive"][key].rejections
    for s in res["conservative"].values():  # no conservative candidate has unlimited risk or a POP < 50%
        if s.passed:
            a = s.candidate.analytics
            assert a.pop >= 0.5 and a.max_loss is not None and not s.candidate.strategy.unlimited_risk
            assert s.candidate.fallback_level <= 1 and s.candidate.strategy.complexity <= 4
    n_pass = {r: sum(s.passed for s in res[r].values()) for r in RISK_TOLERANCES}
    assert n_pass["conservative"] < n_pass["moderate"] < n_pass["aggressive"]


def test_fallback_complexity_category_and_inr_filters(tmp_path, cands, views):
    p = tmp_path / "f.yaml"
    p.write_text("risk_tolerances:\n  moderate:\n    max_fallback_level: 0\n    max_complexity: 2\n"
                 "    excluded_categories: [synthetic]\n    max_loss_inr: 10000\n")
    cfg = ScoringConfig.load(p)
    res = {(s.symbol, s.strategy_name): s for s in score_candidates(cands, views, config=cfg)}
    assert any("liquidity level" in r for r in res["RELIANCE", "bull_put_spread"].rejections)
    assert any("complexity 4" in r for r in res["NIFTY", "iron_condor"].rejections)
    assert any("category synthetic" in r for r in res["NIFTY", "synthetic_long"].rejections)
    assert any("INR" in r and "limit INR 10,000" in r for r in res["NIFTY", "long_call"].rejections)


def test_rank_orders_each_symbol_passed_first_then_by_conviction_then_score(cands, views):
    scored = score_candidates(list(reversed(cands)), views, risk="conservative")
    ranked = rank(scored)
    assert len(ranked) == len(scored) and {id(s) for s in ranked} == {id(s) for s in scored}
    assert [s.symbol for s in ranked] == sorted([s.symbol for s in ranked], key=["RELIANCE", "NIFTY"].index)
    for sym in SYMBOLS:
        group = [s for s in ranked if s.symbol == sym]
        assert [s.rank for s in group] == list(range(1, len(group) + 1))
        passed = [s.passed for s in group]
        assert passed == sorted(passed, reverse=True) and any(passed) and not all(passed)
        for block in ([s for s in group if s.passed], [s for s in group if not s.passed]):
            keys = [(CONVICTIONS.index(s.conviction), -s.total_score) for s in block]
            assert keys == sorted(keys)
        best = min(CONVICTIONS.index(s.conviction) for s in group if s.passed)
        assert group[0].passed and group[0].total_score == max(
            s.total_score for s in group if s.passed and CONVICTIONS.index(s.conviction) == best)
    assert rank([]) == []


def test_scoring_analyses_candidates_without_analytics(cands, views):
    c = dataclasses.replace(by(cands, "NIFTY", "iron_condor"), analytics=None)
    (s,) = score_candidates([c], views)
    assert c.analytics is not None and isinstance(s, Scored)
    assert score_candidates([], views) == []


# --- exit levels ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exits(cands):
    return exit_levels_all(cands)


def test_exit_levels_for_every_catalogue_strategy(cands, exits):
    names = {c.name for c in cands if c.symbol == "NIFTY"}
    assert names == {d.name for d in CATALOGUE}
    assert len({c.name for c in cands if c.symbol == "RELIANCE"}) >= len(CATALOGUE) - 2
    cap = ExitConfig().max_stop_loss_inr
    for c, e in zip(cands, exits, strict=True):
        a = c.analytics
        what = f"{c.symbol} {c.name}"
        assert isinstance(e, ExitLevels) and e.basis in ("credit", "debit", "other")
        # profit target and scale-out
        assert e.profit_target is not None and e.profit_target > 0, what
        if a.max_profit is not None:
            assert e.profit_target <= a.max_profit + 1e-9, what
        pnl = [s["pnl"] for s in e.scale_out]
        assert [s["at_pct"] for s in e.scale_out] == [0.25, 0.5, 0.75]
        assert all(b > a_ for a_, b in zip(pnl, pnl[1:], strict=False)) and pnl[0] > 0, what
        if a.max_profit is not None:
            assert pnl[-1] <= a.max_profit, what
        assert sum(s["close_fraction"] for s in e.scale_out) <= 1 + 1e-9
        # stop
        assert e.stop_loss is not None and 0 < e.stop_loss <= cap, what
        if a.max_loss is not None:
            assert e.stop_loss <= a.max_loss, what
        assert e.stop_loss_pct is not None and e.stop_loss_pct > 0
        # trailing
        assert 0 < e.trailing_distance < e.trailing_activation <= e.profit_target
        # time exit: a session before the front expiry, not before the entry
        assert calendar.is_session(e.time_exit_date), what
        assert c.session <= e.time_exit_date < c.expiry, what
        assert e.time_exit_dte == (c.expiry - e.time_exit_date).days
        if calendar.previous_session(c.expiry - dt.timedelta(days=7), inclusive=True) > c.session:
            assert e.time_exit_date == calendar.previous_session(c.expiry - dt.timedelta(days=7), inclusive=True)
        else:  # too close: the last session before expiry
            assert e.time_exit_date == calendar.previous_session(c.expiry)
        # adjustments: one per breakeven, one per short option leg with its real strike and expiry
        bes = [x for x in e.adjustments if x["trigger"] == "breakeven_breached"]
        assert [x["breakeven"] for x in bes] == pytest.approx(a.breakevens, abs=0.01)
        for x in bes:  # the P&L is negative past the trigger on its side
            b = x["breakeven"]
            probe = b * (0.99 if x["side"] == "below" else 1.01)
            assert pnl_at_front_expiry([c], np.array([probe]))[0, 0] < 0, (what, x)
        deltas = [x for x in e.adjustments if x["trigger"] == "short_delta"]
        shorts = [(leg.instrument.value, leg.strike, leg.expiry.isoformat()) for leg in c.legs
                  if leg.instrument.is_option and leg.side is Side.SELL]
        assert sorted((x["instrument"], x["strike"], x["expiry"]) for x in deltas) == sorted(shorts), what
        for x in deltas:
            leg = c.legs[x["leg"]]
            assert leg.side is Side.SELL and leg.strike == x["strike"]
            assert x["threshold"] >= 0.35 and x["threshold"] > abs(leg.delta)
            # the trigger price is where the short leg moves into the money: above for calls, below for puts
            assert (x["price"] > c.spot) if leg.instrument is Instrument.CE else (x["price"] < c.spot), (what, x)


def test_exit_rules_by_basis(cands, exits):
    e = {(c.symbol, c.name): x for c, x in zip(cands, exits, strict=True)}
    cfg = ExitConfig()
    ss = by(cands, "NIFTY", "short_strangle")
    assert e["NIFTY", "short_strangle"].basis == "credit"
    assert e["NIFTY", "short_strangle"].profit_target == pytest.approx(0.5 * ss.analytics.max_profit)
    assert e["NIFTY", "short_strangle"].stop_loss == pytest.approx(2.0 * ss.analytics.net_premium)
    straddle = e["NIFTY", "short_straddle"]  # 2 x a large credit: the absolute cap
    assert straddle.stop_loss == cfg.max_stop_loss_inr
    ic = by(cands, "NIFTY", "iron_condor")
    assert e["NIFTY", "iron_condor"].stop_loss == pytest.approx(
        min(2 * ic.analytics.net_premium, 0.5 * ic.analytics.max_loss))
    bcs = by(cands, "NIFTY", "bull_call_spread")
    assert e["NIFTY", "bull_call_spread"].basis == "debit"
    assert e["NIFTY", "bull_call_spread"].profit_target == pytest.approx(0.5 * bcs.analytics.max_profit)
    assert e["NIFTY", "bull_call_spread"].stop_loss == pytest.approx(-0.5 * bcs.analytics.net_premium)
    lc = by(cands, "NIFTY", "long_call")  # unbounded profit: 100% of the debit
    assert lc.analytics.max_profit is None
    assert e["NIFTY", "long_call"].profit_target == pytest.approx(-lc.analytics.net_premium)
    assert e["NIFTY", "long_call"].profit_target_pct == pytest.approx(1.0)
    lp = by(cands, "NIFTY", "long_put")  # max profit only at S = 0 (remote): as if unbounded
    assert lp.analytics.max_profit is not None
    assert e["NIFTY", "long_put"].profit_target == pytest.approx(-lp.analytics.net_premium)
    assert any("beyond" in n for n in e["NIFTY", "long_put"].notes)
    syn = by(cands, "NIFTY", "synthetic_long")  # sized by its margin, not by its tiny premium
    assert e["NIFTY", "synthetic_long"].basis == "other"
    assert e["NIFTY", "synthetic_long"].stop_loss == pytest.approx(
        min(0.25 * min(syn.analytics.margin, syn.analytics.max_loss), cfg.max_stop_loss_inr))
    # a weekly bought a week before expiry exits on the last session before it
    assert e["NIFTY", "iron_condor"].time_exit_date == dt.date(2025, 7, 23)
    assert e["RELIANCE", "iron_condor"].time_exit_date == dt.date(2025, 7, 24)  # monthly 2025-07-31 - 7


def test_time_exit_dates_and_config(cands, tmp_path):
    c = by(cands, "RELIANCE", "bull_put_spread")
    moved = dataclasses.replace(c, expiry=dt.date(2025, 8, 22), session=dt.date(2025, 7, 17))
    e = exit_levels(moved)
    assert e.time_exit_date == dt.date(2025, 8, 14)  # 08-15 is Independence Day
    assert e.time_exit_dte == 8
    last_day = dataclasses.replace(c, session=dt.date(2025, 7, 30))  # entry on the last session before expiry
    assert exit_levels(last_day).time_exit_date == dt.date(2025, 7, 30)
    p = tmp_path / "x.yaml"
    p.write_text("exits:\n  time_exit_dte: 3\n  credit_profit_pct: 0.75\n  max_stop_loss_inr: null\n"
                 "  short_delta_threshold: 0.5\n  breakeven_buffer_pct: 0.01\n")
    cfg = ExitConfig.load(p)
    e2 = exit_levels(c, cfg)
    assert e2.time_exit_date == dt.date(2025, 7, 28)
    assert e2.profit_target == pytest.approx(0.75 * c.analytics.max_profit)
    (d,) = [x for x in e2.adjustments if x["trigger"] == "short_delta"]
    assert d["threshold"] == 0.5
    (b,) = [x for x in e2.adjustments if x["trigger"] == "breakeven_breached"]
    assert b["side"] == "below" and b["price"] == pytest.approx(b["breakeven"] * 1.01, abs=0.01)
    straddle = by(cands, "NIFTY", "short_straddle")
    assert exit_levels(straddle, cfg).stop_loss == pytest.approx(2 * straddle.analytics.net_premium)


def test_exit_rows_fit_the_strategy_exit_levels_table(cands, exits):
    cols = {col.name for col in schema.strategy_exit_levels.columns}
    engine = sa.create_engine("sqlite://")
    schema.strategy_exit_levels.create(engine)
    rows = []
    for i, (c, e) in enumerate(zip(cands, exits, strict=True)):
        row = e.to_row()
        assert set(row) <= cols
        assert json.loads(row["scale_out"]) == e.scale_out
        assert json.loads(row["adjustments"]) == e.adjustments
        rows.append(e.to_row(strategy_id=f"{c.symbol}-{c.name}-{i}", trade_date=SESSION))
        json.dumps(e.to_dict())
    with engine.begin() as conn:
        conn.execute(schema.strategy_exit_levels.insert(), rows)
        back = conn.execute(sa.select(schema.strategy_exit_levels)).mappings().all()
    assert len(back) == len(cands)
    assert all(isinstance(r["time_exit_date"], dt.date) for r in back)


def test_exit_levels_of_one_equals_many(cands, exits):
    for c, e in list(zip(cands, exits, strict=True))[::7]:
        assert exit_levels(c) == e
