"""Strategy creation core: catalogue, strike selection, building and analytics.

The analytics are checked against independent computations written here: a leg-by-leg payoff on
a fine price grid (max profit, max loss, breakevens, unbounded sides) and Monte-Carlo simulation
of the POP model from the stored ``pop_inputs`` (probability of profit and expected value).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time

import numpy as np
import polars as pl
import pytest

from options_v4_dagster import universe
from options_v4_dagster.errors import DataError
from options_v4_dagster.market.nse_files import NseFilesProvider
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.quant.black import black76_price
from options_v4_dagster.strategies import (
    CATALOGUE,
    BuildConfig,
    StrategyUnavailable,
    analyze,
    build_candidates,
    build_strategy,
    by_name,
    chain_views,
    pnl_at_front_expiry,
)
from options_v4_dagster.strategies.catalogue import (
    Category,
    ExpiryRule,
    Instrument,
    IVPreference,
    LegDef,
    Outlook,
    Side,
    StrategyDef,
    StrikeKind,
    atm,
    delta,
    em,
    increasing,
    moneyness,
    rel,
)
from options_v4_dagster.strategies.strikes import LEVELS, select_strike, validate

SESSION = dt.date(2025, 7, 17)
SIM_SYMBOLS = ("NIFTY", "RELIANCE")
REQUIRED = {
    "long_call", "long_put", "bull_call_spread", "bear_put_spread", "bull_put_spread", "bear_call_spread",
    "short_straddle", "short_strangle", "iron_condor", "iron_butterfly", "long_call_butterfly",
    "long_put_butterfly", "long_straddle", "long_strangle", "covered_call", "cash_secured_put", "call_calendar",
    "put_calendar", "call_diagonal", "put_diagonal", "call_ratio_spread", "put_ratio_spread", "call_backspread",
    "put_backspread", "jade_lizard", "broken_wing_butterfly", "risk_reversal",
}
MC_PATHS = 1_000_000


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_chain() -> pl.DataFrame:
    chains, failures = SimulatedMarket().option_chains(list(SIM_SYMBOLS), SESSION)
    assert not failures
    return chains


@pytest.fixture(scope="module")
def sim_iv(sim_chain) -> pl.DataFrame:
    return surface.chain_iv(sim_chain)


@pytest.fixture(scope="module")
def sim_built(sim_iv):
    cands, failures = build_candidates(sim_iv)
    analyze(cands)
    return cands, failures


# --- independent reference computations ----------------------------------------------------------

def brute_pnl(c, S: np.ndarray) -> np.ndarray:
    """P&L at expiry, leg by leg (single-expiry positions)."""
    S = np.asarray(S, dtype=float)
    total = np.zeros_like(S)
    for leg in c.legs:
        q = leg.quantity if leg.side is Side.BUY else -leg.quantity
        if leg.instrument is Instrument.CE:
            total += q * (np.maximum(S - leg.strike, 0.0) - leg.price)
        elif leg.instrument is Instrument.PE:
            total += q * (np.maximum(leg.strike - S, 0.0) - leg.price)
        else:  # EQ at the spot, FUT at its price: linear
            total += q * (S - leg.price)
    return total


def lognormal_paths(c, z: np.ndarray) -> np.ndarray:
    p = c.analytics.pop_inputs
    s = p.sigma * math.sqrt(p.t_years)
    return p.forward * np.exp(s * z - 0.5 * s * s)


def grid_crossings(S: np.ndarray, pnl: np.ndarray) -> np.ndarray:
    pos = pnl > 0
    i = np.flatnonzero(pos[1:] != pos[:-1])
    return 0.5 * (S[i] + S[i + 1])


# --- catalogue -----------------------------------------------------------------------------------

def test_catalogue_has_the_required_strategies_and_valid_definitions():
    names = [d.name for d in CATALOGUE]
    assert len(names) == len(set(names)) >= 27
    assert REQUIRED <= set(names)
    for d in CATALOGUE:
        assert d.legs and d.option_legs
        assert 0.0 <= d.strength <= 1.0 and 1 <= d.complexity <= 5
        assert isinstance(d.outlook, Outlook) and isinstance(d.iv_preference, IVPreference)
        assert isinstance(d.category, Category)
        json.dumps(d.to_dict())
    # every kind of strike rule is used
    kinds = {leg.strike.kind for d in CATALOGUE for leg in d.legs if leg.strike is not None}
    assert {StrikeKind.ATM, StrikeKind.DELTA, StrikeKind.EXPECTED_MOVE, StrikeKind.RELATIVE} <= kinds
    assert {leg.instrument for d in CATALOGUE for leg in d.legs} == {Instrument.CE, Instrument.PE, Instrument.EQ}
    assert {d.name for d in CATALOGUE if d.is_multi_expiry} == {"call_calendar", "put_calendar", "call_diagonal",
                                                                  "put_diagonal"}
    assert by_name("iron_condor").constraints


def test_bad_definitions_are_rejected():
    with pytest.raises(ValueError, match="earlier option leg"):
        StrategyDef("bad", (LegDef(Side.BUY, Instrument.CE, rel(1, steps=1)), LegDef(Side.SELL, Instrument.CE, atm())),
                    Outlook.BULLISH, 0.5, IVPreference.ANY, Category.DIRECTIONAL, 2)
    with pytest.raises(ValueError, match="no strike rule"):
        StrategyDef("bad", (LegDef(Side.BUY, Instrument.CE),), Outlook.BULLISH, 0.5, IVPreference.ANY,
                    Category.DIRECTIONAL, 1)
    with pytest.raises(ValueError, match="non-option"):
        StrategyDef("bad", (LegDef(Side.BUY, Instrument.EQ), LegDef(Side.SELL, Instrument.CE, delta(0.3))),
                    Outlook.BULLISH, 0.5, IVPreference.ANY, Category.INCOME, 2, constraints=(increasing(0, 1),))
    with pytest.raises(ValueError):
        delta(1.2)
    with pytest.raises(ValueError):
        rel(0, steps=1, em=0.5)


def test_adding_a_strategy_is_one_definition(sim_iv):
    # a definition the catalogue does not have, using the moneyness and expected-move rules
    d = StrategyDef("otm_call_spread_test",
                    (LegDef(Side.BUY, Instrument.CE, moneyness(1.01)), LegDef(Side.SELL, Instrument.CE, em(1.5))),
                    Outlook.BULLISH, 0.5, IVPreference.LOW, Category.DIRECTIONAL, 2, constraints=(increasing(0, 1),))
    cands, failures = build_candidates(sim_iv, strategies=(d,))
    assert not failures and {c.symbol for c in cands} == set(SIM_SYMBOLS)
    for c in cands:
        e = chain_views(sim_iv)[c.symbol].eligible(1 / 365)[0]
        assert abs(c.legs[0].strike - 1.01 * e.forward) <= 2 * e.step
        assert abs(c.legs[1].strike - (e.forward + 1.5 * e.expected_move)) <= 2 * e.step


# --- building ------------------------------------------------------------------------------------

def test_every_catalogue_strategy_builds_on_simulated_chains(sim_built):
    cands, failures = sim_built
    assert not failures, [(f.symbol, f.strategy, f.reason) for f in failures]
    for sym in SIM_SYMBOLS:
        assert sorted(c.name for c in cands if c.symbol == sym) == sorted(d.name for d in CATALOGUE)


def test_legs_are_listed_contracts_at_executable_prices(sim_iv, sim_built):
    rows = {(r["symbol"], r["expiry"], r["strike"], r["option_type"]): r for r in sim_iv.iter_rows(named=True)}
    for c in sim_built[0]:
        for leg in c.legs:
            assert leg.quantity == leg.ratio * c.lots * c.lot_size
            if not leg.instrument.is_option:
                continue
            r = rows.get((c.symbol, leg.expiry, leg.strike, leg.instrument.value))
            assert r is not None, f"{c.symbol} {c.name}: {leg.instrument} {leg.strike} {leg.expiry} not in the chain"
            assert leg.expiry >= SESSION + dt.timedelta(days=1)
            if r["bid"] and r["ask"] and r["bid"] > 0 and r["ask"] >= r["bid"]:
                assert leg.price == (r["ask"] if leg.side is Side.BUY else r["bid"])
                assert leg.price_kind == ("ask" if leg.side is Side.BUY else "bid")
            else:
                assert leg.price == r["iv_price"] and leg.price_kind in ("mid", "ltp")
            assert leg.iv is not None and leg.iv > 0


def test_lots_scale_quantities(sim_iv):
    view = chain_views(sim_iv)["NIFTY"]
    one = build_strategy(view, by_name("call_ratio_spread"))
    three = build_strategy(view, by_name("call_ratio_spread"), BuildConfig(lots=3))
    assert [leg.quantity for leg in three.legs] == [3 * leg.quantity for leg in one.legs]
    assert [leg.quantity for leg in one.legs] == [one.lot_size, 2 * one.lot_size]


def test_strike_relationships(sim_built):
    for c in sim_built[0]:
        k = [leg.strike for leg in c.legs]
        n = c.name
        if n == "iron_condor":
            assert k[1] < k[0] < k[2] < k[3]
        elif n == "iron_butterfly":
            assert k[3] < k[0] == k[1] < k[2] and k[2] - k[0] == k[0] - k[3]
        elif n in ("long_call_butterfly", "long_put_butterfly"):
            assert k[1] < k[0] < k[2] and k[2] - k[0] == k[0] - k[1]
        elif n == "broken_wing_butterfly":
            assert k[1] < k[0] < k[2] and k[2] - k[0] > k[0] - k[1]
        elif n in ("call_calendar", "put_calendar"):
            assert k[0] == k[1] and c.legs[1].expiry > c.legs[0].expiry == c.expiry
            assert c.back_expiry == c.legs[1].expiry
        elif n == "call_diagonal":
            assert k[0] < k[1] and c.legs[0].expiry > c.legs[1].expiry
        elif n == "put_diagonal":
            assert k[0] > k[1] and c.legs[0].expiry > c.legs[1].expiry
        elif n in ("short_strangle", "long_strangle"):
            assert k[1] < c.forward < k[0]
        elif n == "jade_lizard":
            assert k[0] < k[1] < k[2]
        # delta legs below 0.5 are out of the money
        for leg, ldef in zip(c.legs, c.strategy.legs, strict=True):
            if ldef.strike is not None and ldef.strike.kind is StrikeKind.DELTA and ldef.strike.value < 0.5:
                assert (leg.strike > leg.forward) if leg.instrument is Instrument.CE else (leg.strike < leg.forward)
                assert abs(abs(leg.delta * leg.forward / c.spot) - ldef.strike.value) < 0.12  # near the target


def test_validate_rejects_broken_relationships():
    validate([100.0, 110.0], (increasing(0, 1),), step=5)
    with pytest.raises(StrategyUnavailable, match="increasing"):
        validate([110.0, 110.0], (increasing(0, 1),), step=5, strategy="x", symbol="ABC")
    eq = by_name("long_call_butterfly").constraints
    validate([100.0, 95.0, 105.0], eq, step=5)
    with pytest.raises(StrategyUnavailable, match="equal_width"):
        validate([100.0, 95.0, 110.0], eq, step=5)
    bw = by_name("broken_wing_butterfly").constraints
    with pytest.raises(StrategyUnavailable, match="wider_upper"):
        validate([100.0, 95.0, 105.0], bw, step=5)
    with pytest.raises(StrategyUnavailable, match="same_strike"):
        validate([100.0, 105.0], by_name("short_straddle").constraints, step=5)


def _nifty_chain(sim_chain: pl.DataFrame) -> pl.DataFrame:
    return sim_chain.filter(pl.col("symbol") == "NIFTY")


def test_fallback_levels_on_thinned_chains(sim_chain):
    raw = _nifty_chain(sim_chain)
    defs = (by_name("long_call"), by_name("iron_condor"), by_name("call_calendar"))
    full, _ = build_candidates(surface.chain_iv(raw), strategies=defs)
    assert all(c.fallback == "strict" for c in full)
    # open interest below the strict level's minimum: the relaxed level serves
    thin = raw.with_columns(pl.lit(50.0).alias("oi"))
    cands, failures = build_candidates(surface.chain_iv(thin), strategies=defs)
    assert not failures and all(c.fallback == "relaxed" for c in cands)
    assert all(leg.level_name == "relaxed" for c in cands for leg in c.legs)
    # no bids at all, almost no open interest: only contracts with a last price are left
    thinner = raw.with_columns(pl.lit(None, dtype=pl.Float64).alias("bid"), pl.lit(2.0).alias("oi"),
                               pl.lit(0.0).alias("volume"))
    iv = surface.chain_iv(thinner)
    cands, failures = build_candidates(iv, strategies=defs)
    assert not failures and all(c.fallback == "any_price" for c in cands)
    for c in cands:
        for leg in c.legs:
            assert leg.level == len(LEVELS) - 1 and leg.price_kind in ("mid", "ltp")
    # every other strike removed: the chosen strikes are still listed ones
    odd = raw.filter(((pl.col("strike") / 50).round(0) % 2) == 1)
    iv = surface.chain_iv(odd)
    listed = set(zip(iv["expiry"], iv["strike"], iv["option_type"], strict=True))
    cands, failures = build_candidates(iv)
    assert len(failures) <= 2, failures
    for c in cands:
        for leg in c.legs:
            if leg.instrument.is_option:
                assert (leg.expiry, leg.strike, leg.instrument.value) in listed


def test_a_strategy_that_cannot_be_built_raises_a_typed_error(sim_chain):
    raw = _nifty_chain(sim_chain)
    iv = surface.chain_iv(raw)
    view = chain_views(iv)["NIFTY"]
    near = view.eligible(1 / 365)[0]
    # remove every strike within 12 steps of the near expiry's forward
    hole = raw.filter(~((pl.col("expiry") == near.expiry)
                        & ((pl.col("strike") - near.forward).abs() < 12 * near.step)))
    iv_hole = surface.chain_iv(hole)
    view_hole = chain_views(iv_hole)["NIFTY"]
    with pytest.raises(DataError) as err:
        build_strategy(view_hole, by_name("long_call"))
    e = err.value
    assert isinstance(e, StrategyUnavailable)
    assert e.symbol == "NIFTY" and e.field == "strike" and e.strategy == "long_call" and e.session == SESSION
    assert "loosest liquidity level" in e.reason
    # the build of all strategies records such failures instead of raising
    cands, failures = build_candidates(iv_hole)
    failed = {f.strategy for f in failures}
    assert "long_call" in failed and all(f.symbol == "NIFTY" and f.reason for f in failures)
    # too few expiries for a calendar
    one_expiry = iv.filter(pl.col("expiry") == near.expiry)
    with pytest.raises(StrategyUnavailable, match="needs 2 expiries"):
        build_strategy(chain_views(one_expiry)["NIFTY"], by_name("call_calendar"))


def test_select_strike_prefers_liquid_strikes_near_the_target(sim_iv):
    view = chain_views(sim_iv)["NIFTY"]
    e = view.eligible(1 / 365)[0]
    sel = select_strike(view, e, "CE", atm())
    assert abs(sel.strike - e.forward) <= LEVELS[0].window_steps * e.step
    assert sel.level == 0 and sel.strike in set(view.arrays["strike"][e.ce])


# --- analytics: single expiry, exact vs brute force --------------------------------------------------

@pytest.mark.parametrize("symbol", SIM_SYMBOLS)
def test_single_expiry_metrics_equal_brute_force_on_a_fine_grid(sim_built, symbol):
    cands = [c for c in sim_built[0] if c.symbol == symbol and c.is_single_expiry]
    assert {c.name for c in cands} == {d.name for d in CATALOGUE if not d.is_multi_expiry}
    for c in cands:
        a = c.analytics
        strikes = [leg.strike for leg in c.legs if leg.strike is not None]
        h = c.spot * 2e-5  # grid step
        S = np.arange(0.0, 3.0 * max(*strikes, c.spot), h)
        pnl = brute_pnl(c, S)
        tol = sum(leg.quantity for leg in c.legs) * h + 1e-6 * abs(pnl).max()
        slope_end = (pnl[-1] - pnl[-2]) / h
        if slope_end > 1e-6:
            assert a.max_profit is None, c.name
        else:
            assert a.max_profit == pytest.approx(pnl.max(), abs=tol), c.name
        if slope_end < -1e-6:
            assert a.max_loss is None, c.name
        else:
            assert a.max_loss == pytest.approx(-pnl.min(), abs=tol), c.name
        assert (a.max_loss is None) == c.strategy.unlimited_risk, c.name
        be = grid_crossings(S, pnl)
        assert len(a.breakevens) == len(be), (c.name, a.breakevens, be)
        np.testing.assert_allclose(a.breakevens, be, atol=h, err_msg=c.name)
        # exact: the P&L is zero at every breakeven
        assert np.abs(brute_pnl(c, np.array(a.breakevens))).max(initial=0) < 1e-6 * c.spot * 10
        assert a.net_premium == pytest.approx(sum((-1 if leg.side is Side.BUY else 1) * leg.quantity * leg.price
                                                  for leg in c.legs if leg.instrument.is_option))
        assert a.payoff_model == "expiry"


def test_pop_and_expected_value_match_monte_carlo(sim_built):
    z = np.random.default_rng(20250717).standard_normal(MC_PATHS)
    for c in sim_built[0]:
        if not c.is_single_expiry:
            continue
        a = c.analytics
        assert a.pop_inputs.forward == c.forward and a.pop_inputs.sigma == c.atm_iv
        assert a.pop_inputs.t_years == pytest.approx((c.expiry - SESSION).days / 365.0, abs=1e-9)
        pnl = brute_pnl(c, lognormal_paths(c, z))
        mc_pop = float((pnl > 0).mean())
        assert abs(a.pop - mc_pop) < 0.005, (c.symbol, c.name, a.pop, mc_pop)
        se = float(pnl.std()) / math.sqrt(MC_PATHS)
        assert abs(a.expected_value - float(pnl.mean())) < 5 * se + 1e-9, (c.symbol, c.name)


def test_pop_and_expected_value_match_quadrature(sim_built):
    """A deterministic, tighter check: the lognormal density integrated on a fine grid in z."""
    zq = np.linspace(-12.0, 12.0, 480_001)
    w = np.exp(-0.5 * zq * zq) / math.sqrt(2 * math.pi) * (zq[1] - zq[0])
    for c in sim_built[0]:
        if not c.is_single_expiry:
            continue
        a = c.analytics
        pnl = brute_pnl(c, lognormal_paths(c, zq))
        assert a.pop == pytest.approx(float(((pnl > 0) * w).sum()), abs=1e-4), (c.symbol, c.name)
        scale = c.spot * sum(leg.quantity for leg in c.legs)
        assert a.expected_value == pytest.approx(float((pnl * w).sum()), abs=1e-7 * scale), (c.symbol, c.name)


# --- analytics: calendars and diagonals -------------------------------------------------------------

def test_calendars_and_diagonals_from_black76_at_the_front_expiry(sim_built):
    multi = [c for c in sim_built[0] if not c.is_single_expiry]
    assert len(multi) == 4 * len(SIM_SYMBOLS)
    z = np.random.default_rng(7).standard_normal(400_000)
    for c in multi:
        a = c.analytics
        assert a.payoff_model == "black76_front_expiry"
        p = a.pop_inputs
        s = p.sigma * math.sqrt(p.t_years)
        S = p.forward * np.exp(np.linspace(-8 * s, 8 * s, 40001))
        pnl = pnl_at_front_expiry([c], S)[0]
        be = grid_crossings(S, pnl)
        assert 1 <= len(a.breakevens) == len(be) <= 2, (c.name, a.breakevens, be)
        np.testing.assert_allclose(a.breakevens, be, atol=float(np.diff(S).max()))
        assert np.abs(pnl_at_front_expiry([c], np.array(a.breakevens))).max() < 1e-3 * c.lot_size
        assert a.max_profit == pytest.approx(pnl.max(), rel=1e-3)
        assert a.max_loss == pytest.approx(-pnl.min(), rel=1e-3)
        # a long calendar loses at most its debit (plus, for puts, the interest on the strike: deep in
        # the money the European back put is worth df x (K - F) < K - S) and profits near the strike
        if c.name in ("call_calendar", "put_calendar"):
            front, back = c.legs
            interest = back.strike * back.quantity * (1 - back.df / front.df) if c.name == "put_calendar" else 0.0
            assert a.max_loss <= -a.net_premium + interest + 1e-3 * -a.net_premium
            assert a.max_profit > 0 and a.max_profit == pytest.approx(pnl_at_front_expiry([c], [front.strike])[0, 0])
        sim = pnl_at_front_expiry([c], lognormal_paths(c, z))[0]
        assert abs(a.pop - float((sim > 0).mean())) < 0.005, (c.symbol, c.name)
        assert abs(a.expected_value - float(sim.mean())) < 5 * float(sim.std()) / math.sqrt(z.size) + 1e-9


def test_pnl_at_front_expiry_is_the_expiry_payoff_for_single_expiry(sim_built):
    singles = [c for c in sim_built[0] if c.is_single_expiry and c.symbol == "NIFTY"]
    S = np.linspace(20000, 31000, 501)
    np.testing.assert_allclose(pnl_at_front_expiry(singles, S), np.array([brute_pnl(c, S) for c in singles]),
                               rtol=1e-12, atol=1e-6)


# --- greeks and margin ------------------------------------------------------------------------------

def test_position_greeks(sim_built):
    for c in sim_built[0]:
        g = c.analytics.greeks
        assert g.delta == pytest.approx(sum(leg.signed_quantity * leg.delta for leg in c.legs))
        assert g.theta == pytest.approx(sum(leg.signed_quantity * leg.theta for leg in c.legs))
        if c.name == "synthetic_long":
            assert g.delta == pytest.approx(c.lot_size, rel=0.02) and abs(g.vega) < 0.02 * c.lot_size
        if c.name in ("long_straddle", "long_strangle"):
            assert g.vega > 0 and g.theta < 0 and g.gamma > 0
        if c.name in ("short_straddle", "iron_condor"):
            assert g.vega < 0 and g.theta > 0


def _scan_risk_by_hand(c, p=None):
    """The 16 SPAN scenarios, leg by leg (an independent re-computation)."""
    idx = c.is_index
    psr = max(6 * c.atm_iv / math.sqrt(252) * math.sqrt(2), 0.093 if idx else 0.142)
    vsr = max(0.25 * c.atm_iv, 0.04 if idx else 0.10)
    scen = [(m, v, 1.0) for m in (0, 1 / 3, -1 / 3, 2 / 3, -2 / 3, 1, -1) for v in (1, -1)]
    scen += [(2, 0, 0.35), (-2, 0, 0.35)]
    worst = 0.0
    for m, v, w in scen:
        pnl = 0.0
        for leg in c.legs:
            q = leg.signed_quantity
            if leg.instrument.is_option:
                call = leg.instrument is Instrument.CE
                v0 = black76_price(leg.forward, leg.strike, leg.t_years, leg.iv, call, leg.df)
                v1 = black76_price(leg.forward * max(1 + m * psr, 0.0), leg.strike, leg.t_years, max(leg.iv + v * vsr, 0.01),
                                   call, leg.df)
                pnl += q * (v1 - v0)
            elif leg.instrument is Instrument.FUT:
                pnl += q * leg.forward * m * psr
        worst = max(worst, -pnl * w)
    return worst, psr


def test_margin_model(sim_built):
    by = {(c.symbol, c.name): c for c in sim_built[0]}
    for c in sim_built[0]:
        a = c.analytics
        md = a.margin_detail
        assert a.margin > 0
        has_short = any(leg.side is Side.SELL and leg.instrument.is_option for leg in c.legs)
        has_fut = any(leg.instrument is Instrument.FUT for leg in c.legs)
        eq_cash = sum(leg.quantity * leg.price for leg in c.legs if leg.instrument is Instrument.EQ)
        if c.strategy.margin_basis == "cash_secured":
            assert md.model == "cash_secured"
            assert a.margin == pytest.approx(sum(leg.strike * leg.quantity for leg in c.legs))
        elif not has_short and not has_fut:
            assert md.model == "long_premium"
            assert a.margin == pytest.approx(-a.net_premium + eq_cash)
        else:
            assert md.model == "span"
            scan, psr = _scan_risk_by_hand(c)
            assert md.scan_risk == pytest.approx(scan, rel=1e-9, abs=1e-6), c.name
            assert md.price_scan_pct == pytest.approx(psr)
            assert md.span >= md.scan_risk + md.calendar_charge - 1e-6
            assert a.margin == pytest.approx(md.span + md.exposure + md.premium + md.cash)
            short_qty = sum(leg.quantity for leg in c.legs if leg.side is Side.SELL and leg.instrument.is_option)
            fut_qty = sum(leg.quantity for leg in c.legs if leg.instrument is Instrument.FUT)
            elm = (0.02 if c.is_index else 0.035) * c.spot * (short_qty + fut_qty)
            assert md.exposure == pytest.approx(elm)
        if a.max_profit is not None:
            assert a.return_on_margin == pytest.approx(a.max_profit / a.margin)
    for sym in SIM_SYMBOLS:
        # hedging lowers the requirement; the index floor of the price scan is 9.3%
        assert by[(sym, "iron_condor")].analytics.margin < by[(sym, "short_strangle")].analytics.margin
        assert by[(sym, "bull_put_spread")].analytics.margin < by[(sym, "short_put")].analytics.margin
        assert by[(sym, "call_calendar")].analytics.margin_detail.calendar_charge >= 0
    assert by[("NIFTY", "short_call")].analytics.margin_detail.price_scan_pct >= 0.093
    assert by[("RELIANCE", "short_call")].analytics.margin_detail.price_scan_pct >= 0.142


def test_candidates_serialize(sim_built):
    for c in sim_built[0]:
        d = json.loads(json.dumps(c.to_dict()))
        for key in ("symbol", "strategy_name", "category", "legs", "net_premium", "max_profit", "max_loss",
                    "breakevens", "pop", "pop_inputs", "expected_value", "greeks", "margin", "return_on_margin"):
            assert key in d
        assert set(d["pop_inputs"]) >= {"forward", "sigma", "t_years"}
        assert {"side", "instrument", "strike", "expiry", "quantity", "price"} <= set(d["legs"][0])


def test_index_eq_legs_become_futures(sim_built):
    for c in sim_built[0]:
        if c.name == "covered_call":
            linear = c.legs[0]
            if c.symbol == "NIFTY":
                assert linear.instrument is Instrument.FUT and linear.expiry == c.expiry and c.notes
            else:
                assert linear.instrument is Instrument.EQ and linear.price == c.spot and linear.expiry is None


# --- real NSE chain -------------------------------------------------------------------------------

@pytest.mark.nse_data
def test_real_nifty_chain_builds_all_but_at_most_two(nse_data_dir, capsys):
    chain = NseFilesProvider(nse_data_dir).option_chain("NIFTY", SESSION)
    iv = surface.chain_iv(chain)
    cands, failures = build_candidates(iv)
    analyze(cands)
    with capsys.disabled():
        print(f"\nreal NIFTY {SESSION}: {len(cands)}/{len(CATALOGUE)} strategies built; failures: "
              + ("; ".join(f"{f.strategy}: {f.reason}" for f in failures) or "none"))
    assert len(failures) <= 2
    listed = set(zip(iv["expiry"], iv["strike"], iv["option_type"], strict=True))
    for c in cands:
        for leg in c.legs:
            if leg.instrument.is_option:
                assert (leg.expiry, leg.strike, leg.instrument.value) in listed
        a = c.analytics
        assert 0.0 <= a.pop <= 1.0 and math.isfinite(a.expected_value) and a.margin > 0
        assert (a.max_loss is None) == c.strategy.unlimited_risk, c.name


# --- the whole simulated universe ----------------------------------------------------------------------

def test_universe_build_and_analysis_timing(capsys):
    t0 = time.perf_counter()
    chains, chain_failures = SimulatedMarket().option_chains(universe.symbols(), SESSION)
    iv = surface.chain_iv(chains)
    t1 = time.perf_counter()
    cands, failures = build_candidates(iv)
    t2 = time.perf_counter()
    analyze(cands)
    t3 = time.perf_counter()
    symbols = set(chains["symbol"].unique().to_list())
    with capsys.disabled():
        print(f"\nuniverse {SESSION}: {len(symbols)} symbols, {len(cands)} candidates, {len(failures)} strategy "
              f"failures; chains+IV {t1 - t0:.2f}s, build {t2 - t1:.2f}s, analytics {t3 - t2:.2f}s, "
              f"build+analytics {t3 - t1:.2f}s")
        for f in failures[:10]:
            print(f"  {f.symbol} {f.strategy}: {f.reason}")
    assert not chain_failures
    assert {c.symbol for c in cands} == symbols  # every underlying with a chain gets candidates
    assert len(failures) <= 0.01 * len(symbols) * len(CATALOGUE)


def test_expiry_rules_skip_expiring_contracts(sim_iv):
    view = chain_views(sim_iv)["NIFTY"]
    assert view.expiries[0].expiry == SESSION  # NIFTY's weekly expires on the session itself
    eligible = view.eligible(1 / 365)
    assert eligible[0].expiry > SESSION
    assert ExpiryRule.FRONT.index == ExpiryRule.NEAR.index == 0 and ExpiryRule.BACK.index == 1


@pytest.mark.parametrize("em_over_step", [0.3, 0.8, 1.2, 1.6, 2.2, 3.0, 4.7, 9.5])
def test_broken_wing_upper_wing_is_wider_whatever_the_expected_move(em_over_step):
    """The lower wing is -0.5 expected moves (>= 1 step), the upper +1 (>= 2 steps): the upper is
    always wider, also where the expected move is under two strike steps (low-priced stocks)."""
    from options_v4_dagster.strategies.strikes import ExpiryInfo, relative_steps

    d = by_name("broken_wing_butterfly")
    lower, upper = d.legs[1].strike, d.legs[2].strike
    e = ExpiryInfo(SESSION, 0.05, 1.0, 100.0, None, 0.2, 1.0, em_over_step, slice(0, 0), slice(0, 0))
    lo, hi = relative_steps(e, lower), relative_steps(e, upper)
    assert lo <= -1 and hi >= 2 and hi > -lo
    with pytest.raises(ValueError, match="min_steps"):
        rel(0, em=1.0, min_steps=0)
