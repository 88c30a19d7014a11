"""Portfolio allocation: market rules, industry views and the engine (no Dagster)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from options_v4_dagster.allocation import (
    AllocationResult,
    IndustryAllocations,
    InsufficientCapital,
    NoCandidates,
    allocate,
    allocation_tables,
    candidates_from_tables,
    default_industry_allocations,
    load_industry_allocations,
    load_market_conditions,
    matches_view,
    opposes_view,
)
from options_v4_dagster.allocation.config import TIERS
from options_v4_dagster.allocation.industries import NEUTRAL_BEARISH, NEUTRAL_BULLISH, SECTOR_OF_INDUSTRY
from options_v4_dagster.errors import ConfigError, OptionsV4Error
from options_v4_dagster.strategies.catalogue import by_name

CAPITAL = 1_500_000.0
STRATEGIES = (
    "iron_condor", "bull_put_spread", "bear_call_spread", "iron_butterfly", "short_put", "call_calendar",
    "put_calendar", "short_strangle", "bull_call_spread", "bear_put_spread", "long_straddle", "long_call",
    "long_put", "covered_call", "call_backspread", "jade_lizard", "put_ratio_spread", "short_call",
)
POSITION_TYPES = ("LONG", "SHORT", "NEUTRAL")


def _conviction(score: float) -> str:
    return "VERY_HIGH" if score >= 80 else "HIGH" if score >= 65 else "MEDIUM" if score >= 45 else \
        "LOW" if score >= 30 else "VERY_LOW"


def synthetic(seed: int = 7, n_symbols: int = 200, n_industries: int = 20, per_symbol: int = 7):
    """~200 symbols across ~20 industries (uneven sizes), several candidates each, deterministic."""
    rng = np.random.default_rng(seed)
    industries = [f"IND{i:02d}" for i in range(n_industries)]
    sizes = rng.dirichlet(np.full(n_industries, 2.0))
    ind_of = rng.choice(n_industries, size=n_symbols, p=sizes)
    rows = []
    for s in range(n_symbols):
        sym = f"S{s:03d}"
        lot_size = int(rng.choice([25, 50, 75, 150, 300, 500, 1000]))
        t_years = float(rng.integers(5, 40)) / 365.0
        for name in rng.choice(STRATEGIES, size=per_symbol, replace=False):
            d = by_name(str(name))
            score = float(rng.uniform(33, 92))
            margin = float(np.exp(rng.uniform(np.log(15_000), np.log(110_000))))
            pop = float(rng.uniform(0.3, 0.85))
            credit = d.iv_preference.value == "HIGH"
            max_profit = margin * float(rng.uniform(0.05, 0.4)) if credit or "spread" in d.name else None
            max_loss = None if d.unlimited_risk else margin * float(rng.uniform(0.3, 1.0))
            ev = float(rng.normal(0.004, 0.02)) * margin
            rows.append({
                "strategy_id": f"20250717-{sym}-{d.name}", "symbol": sym, "strategy_name": d.name,
                "category": d.category.value, "outlook": d.outlook.value, "total_score": score,
                "conviction": _conviction(score), "pop": pop, "max_profit": max_profit, "max_loss": max_loss,
                "expected_value": ev, "margin": margin,
                "net_premium": (margin * 0.05) if credit else -(margin * 0.6),
                "lot_size": lot_size, "lots": 1, "industry": industries[ind_of[s]],
                "unlimited_risk": d.unlimited_risk, "t_years": t_years,
                "delta": float(rng.normal(0, 50)), "gamma": float(rng.normal(0, 2)),
                "theta": float(rng.normal(50, 100)), "vega": float(rng.normal(0, 200)),
            })
    cands = pl.DataFrame(rows, schema_overrides={"max_profit": pl.Float64, "max_loss": pl.Float64})
    counts = {ind: int((ind_of == i).sum()) for i, ind in enumerate(industries)}
    alloc = IndustryAllocations.from_weights(
        {k: v for k, v in counts.items() if v > 0},
        {ind: POSITION_TYPES[i % 3] for i, ind in enumerate(industries)},
        source="synthetic")
    return cands, alloc


@pytest.fixture(scope="module")
def synth():
    return synthetic()


@pytest.fixture(scope="module")
def rules():
    return load_market_conditions().resolve("NORMAL", "NEUTRAL", "NEUTRAL")


@pytest.fixture(scope="module")
def result(synth, rules) -> AllocationResult:
    cands, alloc = synth
    return allocate(cands, CAPITAL, rules, alloc)


def _check_limits(res: AllocationResult, rules, capital: float = CAPITAL) -> None:
    pos = res.positions
    lim, risk = rules.position_limits, rules.risk_limits
    tol = 1e-6 * capital
    assert pos.height > 0
    assert pos.get_column("capital_used").max() <= lim.max_position_pct * capital + tol
    per_symbol = pos.group_by("symbol").agg(pl.col("capital_used").sum())
    assert per_symbol.get_column("capital_used").max() <= lim.max_symbol_pct * capital + tol
    per_ind = pos.group_by("industry").agg(pl.col("capital_used").sum())
    assert per_ind.get_column("capital_used").max() <= lim.max_industry_pct * capital + tol
    unl = pos.filter(pl.col("unlimited_risk")).get_column("capital_used").sum()
    assert unl <= risk.max_unlimited_risk_pct * capital + tol
    assert pos.get_column("capital_used").sum() <= risk.max_portfolio_margin_pct * capital + tol
    assert pos.height <= lim.max_positions
    # the summary reports the same limits
    lims = res.summary.limits
    assert lims["max_position_capital"] == pytest.approx(lim.max_position_pct * capital)
    assert lims["max_industry_capital"] == pytest.approx(lim.max_industry_pct * capital)
    assert lims["max_symbol_capital"] == pytest.approx(lim.max_symbol_pct * capital)


# --------------------------------------------------------------------------------------------
# the synthetic portfolio

def test_synthetic_set_meets_the_targets(result, rules):
    s = result.summary
    pos = result.positions
    assert 20 <= s.positions == pos.height <= 30
    assert s.deployment >= 0.95
    assert s.deployment <= 1.0
    assert s.meets_deployment_target
    for t in TIERS:
        assert abs(s.tier_shares[t] - rules.tier_split[t]) <= 0.05, (t, s.tier_shares)
    assert sum(s.tier_shares.values()) == pytest.approx(1.0)
    assert pos.get_column("symbol").n_unique() == pos.height  # one position per symbol
    assert "status" not in pos.columns  # execution status lives in the trading tables, not the allocation
    assert pos.get_column("position_id").n_unique() == pos.height
    assert s.capital_used == pytest.approx(pos.get_column("capital_used").sum())
    assert pos.get_column("weight").sum() == pytest.approx(s.deployment)


def test_whole_lots_and_capital_per_lot(result, synth):
    pos = result.positions
    assert pos.schema["lots"] == pl.Int64
    assert pos.get_column("lots").min() >= 1
    cands, _ = synth
    m = pos.join(cands.select("strategy_id", "margin"), on="strategy_id")
    assert np.allclose(m["capital_used"], m["lots"] * m["margin"], atol=0.01)
    assert np.allclose(m["margin_per_lot"], m["margin"])
    assert (m["quantity"] == m["lots"] * m["lot_size"]).all()


def test_each_limit_holds_on_the_default_rules(result, rules):
    _check_limits(result, rules)


@pytest.mark.parametrize("changes", [
    {"max_industry_pct": 0.12},
    {"max_position_pct": 0.05},
    {"max_symbol_pct": 0.04},
    {"max_unlimited_risk_pct": 0.05},
    {"max_portfolio_margin_pct": 0.97},
    {"max_industry_pct": 0.10, "max_position_pct": 0.045, "max_unlimited_risk_pct": 0.0},
])
def test_each_limit_holds_when_tightened(synth, rules, changes):
    cands, alloc = synth
    r = rules.with_limits(**changes)
    res = allocate(cands, CAPITAL, r, alloc)
    _check_limits(res, r)
    if "max_unlimited_risk_pct" in changes and changes["max_unlimited_risk_pct"] == 0.0:
        assert not res.positions.get_column("unlimited_risk").any()
    if res.summary.deployment < r.deployment_target:
        assert any("below the" in n for n in res.summary.notes)


def test_limits_that_bind_are_reported(synth, rules):
    cands, alloc = synth
    r = rules.with_limits(max_position_pct=0.02, max_positions=25, target_positions=25, min_positions=20)
    res = allocate(cands, CAPITAL, r, alloc)
    _check_limits(res, r)
    assert res.summary.deployment < 0.95
    assert not res.summary.meets_deployment_target
    note = next(n for n in res.summary.notes if "below the 95% target" in n)
    assert "limits bind: max per position 2% x 25 positions = 50% of capital" in note


def test_expected_return_is_computed_from_ev_and_expiry(result, synth, rules):
    cands, _ = synth
    pos = result.positions.join(cands.select("strategy_id", pl.col("expected_value").alias("ev1"),
                                             pl.col("t_years").alias("t1")), on="strategy_id")
    floor_t = rules.returns.min_expiry_days / 365
    want = [ev * lots * (30 / 365) / max(t, floor_t) for ev, lots, t in zip(pos["ev1"], pos["lots"], pos["t1"],
                                                                            strict=True)]
    assert np.allclose(pos["expected_return"], want, atol=0.01)
    s = result.summary
    assert s.expected_monthly_return == pytest.approx(sum(want) / CAPITAL, abs=1e-6)
    assert s.target_monthly_return == 0.04
    assert s.meets_return_target == (s.expected_monthly_return >= 0.04)
    for g in ("delta", "gamma", "theta", "vega"):
        assert s.greeks[g] == pytest.approx(result.positions.get_column(g).sum())


def test_same_result_twice_and_independent_of_row_order(synth, rules, result):
    cands, alloc = synth
    again = allocate(cands, CAPITAL, rules, alloc)
    assert again.positions.equals(result.positions)
    assert again.summary == result.summary
    shuffled = cands.sample(fraction=1.0, shuffle=True, seed=3)
    third = allocate(shuffled, CAPITAL, rules, alloc)
    assert third.positions.equals(result.positions)


def test_lots_column_and_lot_sizes_rescale_per_lot_metrics(synth, rules, result):
    cands, alloc = synth
    money = ["max_profit", "max_loss", "expected_value", "net_premium", "margin", "delta", "gamma", "theta", "vega"]
    doubled = cands.with_columns([pl.col(c) * 2 for c in money], lots=pl.lit(2))
    res = allocate(doubled, CAPITAL, rules, alloc)
    assert res.positions.select("strategy_id", "lots").equals(result.positions.select("strategy_id", "lots"))
    assert np.allclose(res.positions["capital_used"], result.positions["capital_used"])
    # the session's lot size for one symbol is twice the candidate's: its lot costs twice as much
    sym = result.positions["symbol"][0]
    ls = int(cands.filter(pl.col("symbol") == sym)["lot_size"][0])
    res2 = allocate(cands, CAPITAL, rules, alloc, lot_sizes={sym: 2 * ls})
    row = res2.positions.filter(pl.col("symbol") == sym)
    if row.height:
        base = cands.filter(pl.col("strategy_id") == row["strategy_id"][0])["margin"][0]
        assert row["margin_per_lot"][0] == pytest.approx(2 * base)
        assert row["lot_size"][0] == 2 * ls


def test_kelly_fraction_from_pop_and_payoff():
    alloc = IndustryAllocations.from_weights({"A": 1.0}, {"A": "LONG"})
    rules = load_market_conditions().resolve("NORMAL", "NEUTRAL", "NEUTRAL")
    base = {"symbol": "X", "category": "income", "outlook": "BULLISH", "total_score": 70.0,
            "conviction": "HIGH", "margin": 50_000.0, "industry": "A", "t_years": 30 / 365,
            "lot_size": 100, "lots": 1, "unlimited_risk": False, "net_premium": 2000.0}
    c = pl.DataFrame([
        {**base, "strategy_id": "a", "strategy_name": "bull_put_spread", "pop": 0.7, "max_profit": 10_000.0,
         "max_loss": 40_000.0, "expected_value": 1_000.0},
    ])
    res = allocate(c, 1_000_000, rules, alloc)
    # EV-consistent average loss (0.7 x 10000 - 1000) / 0.3 = 20000 -> b = 0.5, f* = 0.7 - 0.3 / 0.5 = 0.1
    assert res.positions["kelly_fraction"][0] == pytest.approx(0.25 * 0.1)
    assert res.positions["payoff_ratio"][0] == pytest.approx(0.5)
    # the packaged rules admit only a positive edge; without that filter a negative EV sizes at Kelly 0
    with pytest.raises(NoCandidates, match="expected value below 0"):
        allocate(c.with_columns(expected_value=pl.lit(-10.0)), 1_000_000, rules, alloc)
    any_ev = rules.with_limits(min_expected_value=None)
    neg = allocate(c.with_columns(expected_value=pl.lit(-10.0)), 1_000_000, any_ev, alloc)
    assert neg.positions["kelly_fraction"][0] == 0.0
    no_ev = allocate(c.with_columns(expected_value=pl.lit(None, dtype=pl.Float64)), 1_000_000, any_ev, alloc)
    # b from the extremes: 10000 / 40000 = 0.25 -> f* = 0.7 - 0.3 / 0.25 < 0 -> 0
    assert no_ev.positions["kelly_fraction"][0] == 0.0
    huge = allocate(c.with_columns(expected_value=pl.lit(6_000.0)), 1_000_000, rules, alloc)
    assert huge.positions["kelly_fraction"][0] == pytest.approx(rules.risk_limits.kelly_cap)


# --------------------------------------------------------------------------------------------
# fallback hierarchy and the LONG / SHORT matching

def _expected_level(row, rules) -> int:
    pt, outlook, name, cat = row["position_type"], row["outlook"], row["strategy_name"], row["category"]
    if matches_view(pt, outlook, name):
        if name in rules.preferred_strategies:
            return 0
        return 1 if cat in rules.preferred_categories else 2
    assert not opposes_view(pt, outlook, name)
    return 3


def test_fallback_level_recorded_matches_the_strategy(result, rules):
    prefix = {0: "market-state preference", 1: "category fallback", 2: "view match", 3: "any-strategy fallback"}
    for row in result.positions.iter_rows(named=True):
        assert row["fallback_level"] == _expected_level(row, rules)
        assert row["selection_reason"].startswith(prefix[row["fallback_level"]])
        assert row["strategy_name"] in row["selection_reason"]
    assert result.summary.fallback_levels["0"] > 0


def test_removing_preferred_strategies_uses_the_next_level(synth, rules, result):
    cands, alloc = synth
    no_pref = cands.filter(~pl.col("strategy_name").is_in(list(rules.preferred_strategies)))
    res = allocate(no_pref, CAPITAL, rules, alloc)
    levels = res.summary.fallback_levels
    assert levels["0"] == 0 and levels["1"] > 0
    assert not res.positions.get_column("strategy_name").is_in(list(rules.preferred_strategies)).any()
    for row in res.positions.iter_rows(named=True):
        assert row["fallback_level"] == _expected_level(row, rules)
    # and without the preferred categories either: level 2 or 3 only
    none = no_pref.filter(~pl.col("category").is_in(list(rules.preferred_categories)))
    res2 = allocate(none, CAPITAL, rules, alloc)
    assert set(res2.positions.get_column("fallback_level").unique()) <= {2, 3}
    assert res2.summary.fallback_levels["2"] > 0


def test_fallback_order_for_one_symbol(rules):
    alloc = IndustryAllocations.from_weights({"A": 1.0}, {"A": "LONG"})
    base = {"symbol": "X", "conviction": "HIGH", "margin": 40_000.0, "industry": "A", "pop": 0.6,
            "max_profit": 5_000.0, "max_loss": 20_000.0, "expected_value": 100.0, "t_years": 0.05,
            "lot_size": 50, "lots": 1, "unlimited_risk": False, "net_premium": 1_000.0}
    rows = [
        {**base, "strategy_id": "x0", "strategy_name": "bull_put_spread", "category": "income",
         "outlook": "BULLISH", "total_score": 50.0},   # preferred name (level 0)
        {**base, "strategy_id": "x1", "strategy_name": "jade_lizard", "category": "income",
         "outlook": "BULLISH", "total_score": 70.0},   # preferred category (level 1)
        {**base, "strategy_id": "x2", "strategy_name": "bull_call_spread", "category": "directional",
         "outlook": "BULLISH", "total_score": 80.0},   # matches the view (level 2)
        {**base, "strategy_id": "x3", "strategy_name": "long_straddle", "category": "volatility",
         "outlook": "VOLATILE", "total_score": 90.0},  # does not oppose the view (level 3)
        {**base, "strategy_id": "x4", "strategy_name": "bear_put_spread", "category": "directional",
         "outlook": "BEARISH", "total_score": 99.0},   # opposes the LONG view: never
    ]
    c = pl.DataFrame(rows)
    why = {0: ("market-state preference", "bull_put_spread is a preferred strategy of"),
           1: ("category fallback", "preferred category income"),
           2: ("view match", "bull_call_spread (BULLISH) matches the A view LONG"),
           3: ("any-strategy fallback", "long_straddle (VOLATILE) does not oppose")}
    for expected_id, level in (("x0", 0), ("x1", 1), ("x2", 2), ("x3", 3)):
        res = allocate(c, 1_000_000, rules, alloc)
        assert res.positions["strategy_id"].to_list() == [expected_id]
        assert res.positions["fallback_level"][0] == level
        reason = res.positions["selection_reason"][0]
        assert reason.startswith(why[level][0]) and why[level][1] in reason, reason
        if level == 0:
            assert rules.state in reason
        c = c.filter(pl.col("strategy_id") != expected_id)
    with pytest.raises(NoCandidates, match="opposes the LONG view"):
        allocate(c, 1_000_000, rules, alloc)
    strict = rules.with_limits(fallback_to_any=False)
    with pytest.raises(NoCandidates):
        allocate(pl.DataFrame(rows[3:4]), 1_000_000, strict, alloc)


def test_short_industries_never_get_bullish_strategies(result, synth, rules):
    pos = result.positions
    short = pos.filter(pl.col("position_type") == "SHORT")
    long_ = pos.filter(pl.col("position_type") == "LONG")
    neutral = pos.filter(pl.col("position_type") == "NEUTRAL")
    assert short.height and long_.height and neutral.height
    assert not (short["outlook"] == "BULLISH").any()
    assert not short["strategy_name"].is_in(list(NEUTRAL_BULLISH)).any()
    assert not (long_["outlook"] == "BEARISH").any()
    assert not long_["strategy_name"].is_in(list(NEUTRAL_BEARISH)).any()
    matched = neutral.filter(pl.col("fallback_level") <= 2)
    assert matched["outlook"].is_in(["NEUTRAL", "VOLATILE"]).all()
    # every industry's positions carry that industry's view
    _, alloc = synth
    for row in pos.iter_rows(named=True):
        assert row["position_type"] == alloc.position_type(row["industry"])
    # under every limit set, too (more industries get squeezed into fallbacks)
    cands, alloc = synth
    only_bullish = cands.filter(pl.col("outlook") == "BULLISH")
    res = allocate(only_bullish, CAPITAL, rules, alloc)
    assert (res.positions["position_type"] != "SHORT").all()
    shorts = {i for i, pt in alloc.position_types.items() if pt == "SHORT"}
    ex = res.excluded.filter(pl.col("industry").is_in(list(shorts)))
    assert ex.height and ex["reason"].str.contains("opposes the SHORT view").all()


def test_matching_rule():
    assert matches_view("LONG", "BULLISH", "long_call")
    assert matches_view("LONG", "BULLISH", "bull_put_spread")
    assert matches_view("LONG", "NEUTRAL", "call_ratio_spread")  # neutral-bullish
    assert not matches_view("LONG", "NEUTRAL", "iron_condor")
    assert matches_view("SHORT", "BEARISH", "bear_call_spread")
    assert matches_view("SHORT", "NEUTRAL", "put_ratio_spread")  # neutral-bearish
    assert not matches_view("SHORT", "BULLISH", "covered_call")
    assert opposes_view("SHORT", "BULLISH", "covered_call")
    assert opposes_view("SHORT", "NEUTRAL", "call_ratio_spread")
    assert opposes_view("LONG", "BEARISH", "long_put")
    assert not opposes_view("NEUTRAL", "BULLISH", "long_call")
    assert matches_view("NEUTRAL", "VOLATILE", "long_straddle")
    for name in NEUTRAL_BULLISH | NEUTRAL_BEARISH:
        by_name(name)  # every name is in the catalogue
    with pytest.raises(ConfigError):
        matches_view("UP", "BULLISH", "long_call")


# --------------------------------------------------------------------------------------------
# errors

def test_capital_too_small_raises_insufficient_capital(synth, rules):
    cands, alloc = synth
    with pytest.raises(InsufficientCapital) as exc:
        allocate(cands, 1000, rules, alloc)
    msg = str(exc.value)
    assert "capital 1,000" in msg and "lot" in msg and "margin" in msg
    assert isinstance(exc.value, OptionsV4Error)


def test_no_candidates_is_a_different_error(rules, synth):
    _, alloc = synth
    with pytest.raises(NoCandidates, match="no strategy candidates"):
        allocate(pl.DataFrame(), CAPITAL, rules, alloc)
    assert not issubclass(NoCandidates, InsufficientCapital)
    assert not issubclass(InsufficientCapital, NoCandidates)


def _write(tmp_path, text: str, name: str = "market_conditions.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_market_conditions_tier_split_must_sum_to_one(tmp_path):
    p = _write(tmp_path, "states:\n  HIGH_VIX:\n    when: {vix_band: HIGH}\n"
                         "    tier_split: {tier1: 0.5, tier2: 0.3, tier3: 0.1}\n")
    with pytest.raises(ConfigError, match=r"market_conditions.yaml: states\.HIGH_VIX\.tier_split: must sum to 1"):
        load_market_conditions(p)


def test_market_conditions_wrong_type_names_the_key(tmp_path):
    p = _write(tmp_path, "defaults:\n  position_limits:\n    max_positions: many\n")
    with pytest.raises(ConfigError, match=r"defaults\.position_limits\.max_positions: .*integer"):
        load_market_conditions(p)
    p = _write(tmp_path, "defaults:\n  deployment_target: 1.5\n")
    with pytest.raises(ConfigError, match=r"defaults\.deployment_target"):
        load_market_conditions(p)


def test_market_conditions_unknown_key_names_the_key(tmp_path):
    p = _write(tmp_path, "states:\n  HIGH_VIX:\n    when: {vix_band: HIGH}\n    risk_limits: {kelly_fracton: 0.2}\n")
    with pytest.raises(ConfigError, match=r"states\.HIGH_VIX\.risk_limits\.kelly_fracton: unknown key"):
        load_market_conditions(p)
    p = _write(tmp_path, "defaults:\n  preferred_strategies: [iron_condr]\n")
    with pytest.raises(ConfigError, match=r"defaults\.preferred_strategies: unknown strategy name"):
        load_market_conditions(p)
    p = _write(tmp_path, "states:\n  X:\n    when: {vix_band: SKY_HIGH}\n")
    with pytest.raises(ConfigError, match=r"states\.X\.when\.vix_band"):
        load_market_conditions(p)


def test_market_conditions_merged_limits_are_checked(tmp_path):
    p = _write(tmp_path, "states:\n  TIGHT:\n    when: {vix_band: HIGH}\n    position_limits: {max_positions: 10}\n")
    with pytest.raises(ConfigError, match=r"states\.TIGHT: position_limits: min_positions \(20\) > max_positions"):
        load_market_conditions(p)


def test_market_conditions_resolve_picks_the_most_specific_state(tmp_path):
    cfg = load_market_conditions()
    assert cfg.resolve("NORMAL", "NEUTRAL", "NEUTRAL").state == "DEFAULT"
    assert cfg.resolve(None, None, None).state == "DEFAULT"
    assert cfg.resolve("HIGH", "BEARISH", "NEUTRAL").state == "HIGH_VIX"
    assert cfg.resolve("LOW", "BULLISH", None).state == "LOW_VIX_BULLISH"
    assert cfg.resolve("VERY_LOW", "BEARISH", None).state == "LOW_VIX"
    assert cfg.resolve("NORMAL", "BULLISH", "NEUTRAL").state == "NORMAL_VIX_BULLISH"
    assert cfg.resolve("NORMAL", "BEARISH", "BULLISH").state == "BEARISH_TREND_PUT_SUPPORT"  # tie: listed first
    r = cfg.resolve("very_high", "neutral", None)
    assert r.state == "VERY_HIGH_VIX" and r.vix_band == "VERY_HIGH"
    assert r.position_limits.max_position_pct == 0.06  # overridden
    assert r.position_limits.max_positions == 30       # inherited
    assert r.tier_split == {"tier1": 0.6, "tier2": 0.3, "tier3": 0.1}
    with pytest.raises(ConfigError, match="vix_band"):
        cfg.resolve("EXTREME", None, None)
    # the packaged defaults are those of the brief
    d = cfg.rules("DEFAULT")
    assert d.deployment_target == 0.95 and d.monthly_return_target == 0.04
    assert (d.position_limits.min_positions, d.position_limits.max_positions) == (20, 30)
    p = _write(tmp_path, "states:\n  A:\n    when: {vix_band: HIGH}\n  B:\n    when: {vix_band: HIGH}\n"
                         "  C:\n    when: {vix_band: HIGH, pcr_sentiment: '*'}\n")
    assert load_market_conditions(p).resolve("HIGH", "BULLISH", "BULLISH").state == "A"


# --------------------------------------------------------------------------------------------
# industries

def test_default_industry_allocations_cover_the_universe():
    alloc = default_industry_allocations()
    tables = allocation_tables(alloc)
    ind = tables["industry_allocations_current"]
    assert ind.columns == ["industry", "weight", "position_type"]
    assert ind["weight"].sum() == pytest.approx(1.0)
    assert set(ind["position_type"]) <= {"LONG", "SHORT", "NEUTRAL"}
    sec = tables["sector_allocations_current"]
    assert sec.columns == ["sector", "weight"] and sec["weight"].sum() == pytest.approx(1.0)
    mapping = tables["stock_industry_mapping"]
    assert mapping.columns == ["symbol", "industry", "sector"]
    from options_v4_dagster.universe import universe_frame

    assert mapping.height == universe_frame().height
    assert "Other" not in set(mapping["sector"])  # every universe industry has a sector
    assert set(ind["industry"]) <= set(SECTOR_OF_INDUSTRY)
    # weight proportional to the number of F&O underlyings
    counts = universe_frame().group_by("industry").len()
    fs = counts.filter(pl.col("industry") == "Financial Services")["len"][0]
    assert alloc.weight("Financial Services") == pytest.approx(fs / universe_frame().height)
    assert alloc.industry_of("RELIANCE") == "Oil Gas & Consumable Fuels"


def test_industry_csv_import(tmp_path):
    uni = pl.DataFrame({"symbol": ["A", "B", "C", "D"], "industry": ["Banks", "Banks", "IT", "Metals"]})
    p = _write(tmp_path, "industry,weight,position_type\nBanks,3,LONG\nIT,1,short\nMetals,,NEUTRAL\n", "ind.csv")
    alloc = load_industry_allocations(p, uni)
    assert alloc.weights["Banks"] == pytest.approx(3 / (3 + 1 + 0.25))
    assert alloc.position_type("IT") == "SHORT"
    assert alloc.weights["Metals"] == pytest.approx(0.25 / 4.25)  # blank weight: the F&O count share 1/4
    assert sum(alloc.weights.values()) == pytest.approx(1.0)


@pytest.mark.parametrize("body, match", [
    ("industry,weight,position_type\nBanks,-1,LONG\n", r"ind\.csv row 2 \(industry 'Banks'\): weight must be >= 0"),
    ("industry,weight,position_type\nBanks,1,LONG\nIT,1,UP\n", r"row 3 \(industry 'IT'\): position_type 'UP'"),
    ("industry,weight,position_type\nBanks,x,LONG\n", r"row 2 .*weight 'x' is not a number"),
    ("industry,weight\nBanks,1\n", r"missing position_type"),
    ("industry,weight,position_type\nBanks,0,LONG\n", r"add up to 0"),
])
def test_industry_csv_errors_name_the_row(tmp_path, body, match):
    p = _write(tmp_path, body, "ind.csv")
    with pytest.raises(ConfigError, match=match):
        load_industry_allocations(p, pl.DataFrame({"symbol": ["A"], "industry": ["Banks"]}))


@pytest.mark.parametrize("body, match", [
    ("industries:\n  Banks: {position_type: UP}\n", r"industries\.Banks\.position_type: must be one of"),
    ("industries:\n  Banks: {weight: -0.1}\n", r"industries\.Banks\.weight"),
    ("industries:\n  Banks: {position: LONG}\n", r"industries\.Banks\.position: unknown key"),
    ("weighting: by_cap\n", r"weighting"),
])
def test_industry_yaml_errors_name_the_key(tmp_path, body, match):
    p = _write(tmp_path, body, "ind.yaml")
    with pytest.raises(ConfigError, match=match):
        load_industry_allocations(p, pl.DataFrame({"symbol": ["A"], "industry": ["Banks"]}))


def test_zero_weight_industry_is_left_out(synth, rules):
    cands, alloc = synth
    top = max(alloc.weights, key=alloc.weights.get)
    w = dict(alloc.weights)
    w[top] = 0.0
    res = allocate(cands, CAPITAL, rules, IndustryAllocations.from_weights(w, alloc.position_types))
    assert top not in set(res.positions["industry"])
    assert math.isclose(sum(res.summary.industry_shares.values()), res.summary.deployment, rel_tol=1e-9)


def test_candidates_from_tables_joins_the_warehouse_tables(rules):
    strategies = pl.DataFrame({
        "strategy_id": ["d-A-bull_put_spread-moderate", "d-B-bear_call_spread-moderate", "d-B-x-conservative"],
        "symbol": ["A", "B", "B"], "strategy_name": ["bull_put_spread", "bear_call_spread", "bear_call_spread"],
        "category": ["income"] * 3, "outlook": ["BULLISH", "BEARISH", "BEARISH"],
        "risk_tolerance": ["moderate", "moderate", "conservative"], "total_score": [70.0, 60.0, 50.0],
        "conviction": ["HIGH", "MEDIUM", "MEDIUM"], "unlimited_risk": [False] * 3, "lots": [1] * 3,
        "lot_size": [100, 200, 200], "rank": [1, 1, 2],
    })
    params = pl.DataFrame({
        "strategy_id": strategies["strategy_id"], "net_premium": [1000.0, 800.0, 700.0],
        "max_profit": [1000.0, 800.0, 700.0], "max_loss": [4000.0, 4200.0, 4300.0], "pop": [0.7, 0.7, 0.7],
        "pop_t_years": [0.05, 0.05, 0.05], "expected_value": [50.0, 40.0, 30.0], "margin": [30_000.0] * 3,
        "delta": [10.0, -10.0, -9.0], "gamma": [0.0] * 3, "theta": [5.0] * 3, "vega": [-3.0] * 3,
    })
    universe = pl.DataFrame({"symbol": ["A", "B"], "industry": ["Banks", "IT"]})
    cands = candidates_from_tables(strategies, params, universe, risk_tolerance="moderate")
    assert cands.height == 2 and set(cands["industry"]) == {"Banks", "IT"} and "t_years" in cands.columns
    alloc = IndustryAllocations.from_weights({"Banks": 1, "IT": 1}, {"Banks": "LONG", "IT": "SHORT"})
    res = allocate(cands, 1_000_000, rules, alloc)
    assert res.positions.height == 2
    # the industry may also come from the allocations' symbol mapping
    mapped = IndustryAllocations.from_weights({"Banks": 1, "IT": 1}, {"Banks": "LONG", "IT": "SHORT"},
                                              symbol_industry={"A": "Banks", "B": "IT"})
    res2 = allocate(cands.drop("industry"), 1_000_000, rules, mapped)
    assert res2.positions.select("symbol", "industry").sort("symbol").rows() == [("A", "Banks"), ("B", "IT")]
    as_dict = res2.to_dict()
    assert {"positions", "limits", "deployment", "expected_monthly_return"} <= set(as_dict)
    assert {"symbol", "strategy_name", "tier", "industry", "lots", "capital_used",
            "expected_return"} <= set(as_dict["positions"][0])


def test_limit_breaches_finds_every_kind_of_breach(result):
    """The asset check's verdict: nothing on the engine's own output, each breach when planted."""
    from options_v4_dagster.allocation import limit_breaches

    pos, lim = result.positions, result.summary.limits
    assert limit_breaches(pos, lim, CAPITAL) == []
    first = pos.row(0, named=True)
    over = pos.with_columns(pl.when(pl.col("strategy_id") == first["strategy_id"])
                            .then(lim["max_position_capital"] * 1.01).otherwise(pl.col("capital_used"))
                            .alias("capital_used"))
    assert any(f"{first['symbol']}: position" in b for b in limit_breaches(over, lim, CAPITAL))
    half = pos.with_columns(pl.when(pl.col("strategy_id") == first["strategy_id"]).then(0)
                            .otherwise(pl.col("lots")).alias("lots"))
    assert any("0 lots" in b for b in limit_breaches(half, lim, CAPITAL))
    one_industry = pos.with_columns(pl.lit("Everything").alias("industry"))
    assert any(b.startswith("Everything: industry") for b in limit_breaches(one_industry, lim, CAPITAL))
    twice = pl.concat([pos.head(1), pos.head(1).with_columns(pl.lit("X2").alias("strategy_id"))])
    assert any(f"{first['symbol']}: symbol" in b for b in limit_breaches(twice, {**lim, "max_symbol_capital":
                                                                                  first["capital_used"]}, CAPITAL))
    assert any(b.startswith("capital used") for b in limit_breaches(pos, lim, 0.5 * CAPITAL))


def test_exclusions_carry_a_code_beside_the_text(synth, rules):
    """Every excluded symbol and every excluded candidate count has an ExclusionCode; the summary's
    counts by code and by kind agree, and the typed summary is not read by string keys."""
    from options_v4_dagster.allocation import AllocationSummary, ExclusionCode

    cands, alloc = synth
    only_bullish = cands.filter(pl.col("outlook") == "BULLISH")
    r = rules.with_limits(min_expected_value=0.0, max_unlimited_risk_pct=0.01)
    res = allocate(only_bullish, CAPITAL, r, alloc)
    ex = res.excluded
    assert ex.columns == ["symbol", "industry", "code", "reason"] and ex.height
    assert set(ex["code"]) <= {c.value for c in ExclusionCode}
    shorts = {i for i, pt in alloc.position_types.items() if pt == "SHORT"}
    short_ex = ex.filter(pl.col("industry").is_in(list(shorts)))
    assert (short_ex["code"] == ExclusionCode.OPPOSES_VIEW).all()
    assert ex.filter(pl.col("code") == ExclusionCode.NOT_SELECTED)["reason"].str.contains("not selected").all()
    s = allocate(cands, CAPITAL, r, alloc).summary
    assert isinstance(s, AllocationSummary)
    assert s.excluded_codes[ExclusionCode.LOW_EXPECTED_VALUE] > 0
    assert s.excluded_codes[ExclusionCode.LOT_ABOVE_UNLIMITED_RISK_LIMIT] > 0
    assert sum(s.excluded_codes.values()) == sum(s.excluded_reasons.values())
    assert s.excluded_reasons["expected value too low"] == s.excluded_codes[ExclusionCode.LOW_EXPECTED_VALUE]
    d = s.to_dict()
    assert d["excluded_codes"] == s.excluded_codes and d["notes"] == list(s.notes) and d["lots"] == s.lots
    assert res.to_dict()["position_count"] == res.summary.positions == res.positions.height
    with pytest.raises(TypeError):  # a dataclass, not a dict read by string keys
        s["deployment"]
