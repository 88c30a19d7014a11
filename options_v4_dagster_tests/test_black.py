"""Black-76 / BSM pricing, implied volatility and greeks (options_v4_dagster.quant.black)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from options_v4_dagster.quant import black as B
from options_v4_dagster.quant.black import (
    black76_price,
    bsm_price,
    greeks_black76,
    greeks_bsm,
    implied_vol_black76,
    implied_vol_bsm,
)

DAY = 1.0 / 365.0


def _tv(price, F, K, is_call, df):
    return price / df - np.maximum(np.where(is_call, F - K, K - F), 0.0)


def _grid(F: float = 100.0):
    sig = np.geomspace(0.01, 3.0, 37)
    T = np.geomspace(DAY, 2.0, 29)
    x = np.linspace(-1.0, 1.0, 61)  # ln(F/K)
    call = np.array([True, False])
    S, TT, X, C = np.meshgrid(sig, T, x, call, indexing="ij")
    K = F * np.exp(-X)
    return S.ravel(), TT.ravel(), K.ravel(), C.ravel()


# --------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("F", [100.0, 24_850.0])
def test_round_trip_black76_dense_grid(F):
    sig, T, K, call = _grid(F)
    df = np.exp(-0.07 * T)
    price = black76_price(F, K, T, sig, call, df)
    dom = _tv(price, F, K, call, df) > 1e-6 * F  # the stated accuracy domain
    assert dom.sum() > 40_000
    iv = implied_vol_black76(price, F, K, T, call, df)
    assert not np.isnan(iv[dom]).any()
    err = np.abs(iv - sig)[dom]
    assert err.max() <= 1e-10, err.max()
    # out-of-the-money quotes (no parity cancellation in the input) are near machine precision
    otm = dom & np.where(call, K >= F, K <= F)
    assert np.abs(iv - sig)[otm].max() <= 1e-12


def test_round_trip_bsm_dense_grid():
    sig, T, K, call = _grid(100.0)
    S, r, q = 100.0, 0.10, 0.015
    price = bsm_price(S, K, T, r, sig, call, q)
    F = S * np.exp((r - q) * T)
    dom = _tv(price, F, K, call, np.exp(-r * T)) > 1e-6 * F
    iv = implied_vol_bsm(price, S, K, T, r, call, q)
    assert not np.isnan(iv[dom]).any()
    assert np.abs(iv - sig)[dom].max() <= 1e-10


def test_domain_corners():
    """Corners of sigma x T x moneyness, calls and puts, kept where the time value is measurable."""
    F = 100.0
    sig = np.array([0.01, 0.0101, 1.0, 2.99, 3.0])
    T = np.array([DAY, 1.01 * DAY, 0.25, 1.99, 2.0])
    x = np.array([-1.0, -0.999, -1e-9, 0.0, 1e-9, 0.999, 1.0])
    S, TT, X, C = (a.ravel() for a in np.meshgrid(sig, T, x, [True, False], indexing="ij"))
    K = F * np.exp(-X)
    price = black76_price(F, K, TT, S, C)
    dom = _tv(price, F, K, C, 1.0) > 1e-6 * F
    iv = implied_vol_black76(price, F, K, TT, C)
    assert np.abs(iv - S)[dom].max() <= 1e-10
    # deep out of the money at short expiry and low vol: tiny but non-zero prices still solve
    tiny = ~dom & (_tv(price, F, K, C, 1.0) > 1e-250 * F) & np.where(C, K > F, K < F)
    assert tiny.any()
    assert np.all(np.abs(iv[tiny] / S[tiny] - 1.0) <= 1e-9)


def test_random_wide_region_is_consistent_and_silent():
    """Far outside the stated domain: no exception, no warning, NaN only where nothing fits,
    and the solved vol reprices the time value."""
    rng = np.random.default_rng(11)
    n = 60_000
    sig = np.exp(rng.uniform(math.log(1e-3), math.log(10.0), n))
    T = np.exp(rng.uniform(math.log(1e-4), math.log(30.0), n))
    x = rng.uniform(-6.0, 6.0, n)
    F = np.exp(rng.uniform(-3.0, 11.0, n))
    K = F * np.exp(-x)
    call = rng.random(n) < 0.5
    df = np.exp(-rng.uniform(-0.01, 0.15, n) * T)
    price = black76_price(F, K, T, sig, call, df)
    tv = _tv(price, F, K, call, df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iv = implied_vol_black76(price, F, K, T, call, df)
    fits = (tv > 0) & (tv < np.minimum(F, K))
    assert np.array_equal(np.isnan(iv), ~fits & (tv != 0))
    # out of the money the inputs are exact: the vol itself comes back
    ok = fits & (tv > 1e-250 * F) & (tv < 0.999 * np.minimum(F, K))
    otm = ok & np.where(call, K >= F, K <= F)
    assert np.all(np.abs(iv[otm] / sig[otm] - 1.0) <= 1e-9)
    # in the money (time value >= 1e-6 of the price) the time value is repriced; its
    # elasticity to s = sigma sqrt(T) is about 1 + (x/s)^2
    itm = ok & ~otm & (tv > 1e-6 * price / df)
    tv2 = _tv(black76_price(F, K, T, iv, call, df), F, K, call, df)
    h2 = (x / (sig * np.sqrt(T))) ** 2
    assert np.all(np.abs(tv2[itm] / tv[itm] - 1.0) <= 1e-9 * (1.0 + h2[itm]))


# --------------------------------------------------------------------------------------
# no volatility fits -> NaN


@pytest.mark.parametrize(
    "price, F, K, T, is_call, df",
    [
        (19.0, 120.0, 100.0, 0.5, True, 1.0),  # below intrinsic
        (19.0, 100.0, 120.0, 0.5, False, 1.0),  # below intrinsic (put)
        (19.5, 120.0, 100.0, 0.5, True, 0.98),  # below discounted intrinsic 19.6
        (-0.01, 100.0, 120.0, 0.5, True, 1.0),  # negative price
        (np.nan, 100.0, 100.0, 0.5, True, 1.0),
        (np.inf, 100.0, 100.0, 0.5, True, 1.0),
        (100.0, 100.0, 90.0, 0.5, True, 1.0),  # call at its bound df*F
        (150.0, 100.0, 90.0, 0.5, True, 1.0),  # above it
        (98.0, 100.0, 90.0, 0.5, True, 0.98),  # discounted bound 0.98*100
        (120.0, 100.0, 120.0, 0.5, False, 1.0),  # put at its bound df*K
        (5.0, 100.0, 100.0, 0.0, True, 1.0),  # T = 0
        (5.0, 100.0, 100.0, -0.1, True, 1.0),  # T < 0
        (5.0, 100.0, 100.0, np.nan, True, 1.0),
        (5.0, 100.0, 100.0, np.inf, True, 1.0),
        (5.0, 0.0, 100.0, 0.5, True, 1.0),  # F = 0
        (5.0, -100.0, 100.0, 0.5, False, 1.0),  # F < 0
        (5.0, 100.0, 0.0, 0.5, True, 1.0),  # K = 0
        (5.0, 100.0, -5.0, 0.5, True, 1.0),  # K < 0
        (5.0, np.nan, 100.0, 0.5, True, 1.0),
        (5.0, np.inf, 100.0, 0.5, False, 1.0),
        (5.0, 100.0, np.inf, 0.5, False, 1.0),
        (5.0, 100.0, 100.0, 0.5, True, 0.0),  # df = 0
        (5.0, 100.0, 100.0, 0.5, True, -1.0),
        (5.0, 100.0, 100.0, 0.5, True, np.nan),
    ],
)
def test_nan_where_no_vol_fits(price, F, K, T, is_call, df):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(implied_vol_black76(price, F, K, T, is_call, df))


def test_nan_positions_in_a_batch_leave_the_others_exact():
    F, T = 100.0, 0.3
    K = np.array([90.0, 100.0, 110.0, 100.0, 120.0, 100.0])
    call = np.array([True, True, True, False, False, True])
    sig = np.array([0.2, 0.25, 0.3, 0.25, 0.35, 0.4])
    price = black76_price(F, K, T, sig, call)
    price[1] = -1.0
    price[4] = 19.0  # below the put's intrinsic 20
    T_arr = np.full(6, T)
    T_arr[5] = 0.0
    iv = implied_vol_black76(price, F, K, T_arr, call)
    assert np.isnan(iv[[1, 4, 5]]).all()
    np.testing.assert_allclose(iv[[0, 2, 3]], sig[[0, 2, 3]], rtol=0, atol=1e-13)


def test_price_at_intrinsic_gives_zero_vol():
    assert implied_vol_black76(20.0, 120.0, 100.0, 0.5, True) == 0.0
    assert implied_vol_black76(0.0, 100.0, 120.0, 0.5, True) == 0.0
    assert implied_vol_bsm(0.0, 100.0, 150.0, 0.5, 0.1, True) == 0.0


# --------------------------------------------------------------------------------------
# vollib (Let's Be Rational)


def _vollib_sample(n=1500, seed=3):
    rng = np.random.default_rng(seed)
    T = np.exp(rng.uniform(math.log(DAY), math.log(2.0), n))
    sig = np.exp(rng.uniform(math.log(0.02), math.log(2.0), n))
    x = np.clip(rng.normal(0.0, 1.0, n) * sig * np.sqrt(T), -1.0, 1.0)
    F = np.exp(rng.uniform(math.log(50.0), math.log(50_000.0), n))
    K = F * np.exp(-x)
    call = rng.random(n) < 0.5
    r = 0.065
    return F, K, T, sig, call, r


def test_agrees_with_vollib_black():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ivmod = pytest.importorskip("py_vollib.black.implied_volatility")
    F, K, T, sig, call, r = _vollib_sample()
    df = np.exp(-r * T)
    price = black76_price(F, K, T, sig, call, df)
    large = _tv(price, F, K, call, df) > 1e-3 * F
    assert large.sum() > 500
    ours = implied_vol_black76(price, F, K, T, call, df)
    ref = np.array([ivmod.implied_volatility(p, f, k, r, t, "c" if c else "p")
                    for p, f, k, t, c in zip(price[large], F[large], K[large], T[large], call[large],
                                             strict=True)])
    assert np.abs(ours[large] - ref).max() <= 1e-9


def test_agrees_with_vollib_bsm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ivmod = pytest.importorskip("py_vollib.black_scholes_merton.implied_volatility")
    S, K, T, sig, call, r = _vollib_sample(seed=4)
    q = 0.012
    price = bsm_price(S, K, T, r, sig, call, q)
    F = S * np.exp((r - q) * T)
    large = _tv(price, F, K, call, np.exp(-r * T)) > 1e-3 * F
    ours = implied_vol_bsm(price, S, K, T, r, call, q)
    ref = np.array([ivmod.implied_volatility(p, s, k, t, r, q, "c" if c else "p")
                    for p, s, k, t, c in zip(price[large], S[large], K[large], T[large], call[large],
                                             strict=True)])
    assert np.abs(ours[large] - ref).max() <= 1e-9


# --------------------------------------------------------------------------------------
# consistency


def test_bsm_is_black76_on_the_carry_forward():
    rng = np.random.default_rng(5)
    n = 2000
    S = rng.uniform(50, 5000, n)
    K = S * np.exp(rng.uniform(-0.5, 0.5, n))
    T = rng.uniform(DAY, 2.0, n)
    r, q = rng.uniform(0.0, 0.12, n), rng.uniform(0.0, 0.04, n)
    sig = rng.uniform(0.05, 1.5, n)
    call = rng.random(n) < 0.5
    F = S * np.exp((r - q) * T)
    df = np.exp(-r * T)
    p_bsm = bsm_price(S, K, T, r, sig, call, q)
    np.testing.assert_allclose(p_bsm, black76_price(F, K, T, sig, call, df), rtol=1e-13, atol=0)
    np.testing.assert_allclose(implied_vol_bsm(p_bsm, S, K, T, r, call, q),
                               implied_vol_black76(p_bsm, F, K, T, call, df), rtol=0, atol=1e-13)
    g_b, g_f = greeks_bsm(S, K, T, r, sig, call, q), greeks_black76(F, K, T, sig, call, df)
    np.testing.assert_allclose(g_b["vega"], g_f["vega"], rtol=1e-12)
    np.testing.assert_allclose(g_b["delta"], g_f["delta"] * F / S, rtol=1e-12)  # dF/dS = F/S
    np.testing.assert_allclose(g_b["gamma"], g_f["gamma"] * (F / S) ** 2, rtol=1e-12)


def test_put_call_parity():
    F = 100.0
    K = np.array([60.0, 80.0, 95.0, 100.0, 105.0, 125.0, 160.0])
    T, df, sig = 0.75, 0.95, 0.32
    c = black76_price(F, K, T, sig, True, df)
    p = black76_price(F, K, T, sig, False, df)
    np.testing.assert_allclose(c - p, df * (F - K), rtol=0, atol=1e-12)
    # a parity-consistent pair has one implied vol
    np.testing.assert_allclose(implied_vol_black76(c, F, K, T, True, df),
                               implied_vol_black76(p, F, K, T, False, df), rtol=0, atol=1e-12)
    # and the greeks obey parity: delta_c - delta_p = df, same gamma and vega
    gc, gp = greeks_black76(F, K, T, sig, True, df), greeks_black76(F, K, T, sig, False, df)
    np.testing.assert_allclose(gc["delta"] - gp["delta"], df, atol=1e-14)
    np.testing.assert_allclose(gc["gamma"], gp["gamma"], rtol=1e-14)
    np.testing.assert_allclose(gc["vega"], gp["vega"], rtol=1e-14)


def test_black76_price_keeps_deep_itm_time_value():
    F, K, T, sig = 100.0, 40.0, 0.1, 0.2  # deep ITM call: time value ~1e-40
    p = black76_price(F, K, T, sig, True)
    assert p == 60.0
    # the time value is carried by the OTM put with full relative accuracy
    put = black76_price(F, K, T, sig, False)
    assert 0 < put < 1e-30
    assert black76_price(F, K, T, np.nan, True) != black76_price(F, K, T, np.nan, True)  # NaN
    assert black76_price(F, K, T, 0.0, True) == 60.0
    assert black76_price(F, K, 0.0, sig, False, 0.9) == 0.0
    assert black76_price(F, 0.0, T, sig, True) == 100.0


# --------------------------------------------------------------------------------------
# greeks


def _fd_black76(F, K, T, sig, call, df):
    r = -np.log(df) / T

    def V(F=F, T=T, sig=sig, r=r):
        return black76_price(F, K, T, sig, call, np.exp(-r * T))

    hF, hs, hT, hr = 1e-4 * F, 1e-5, 1e-6, 1e-6
    return {
        "delta": (V(F=F + hF) - V(F=F - hF)) / (2 * hF),
        "gamma": (V(F=F + hF) - 2 * V() + V(F=F - hF)) / hF**2,
        "vega": (V(sig=sig + hs) - V(sig=sig - hs)) / (2 * hs),
        "theta": (V(T=T - hT) - V(T=T + hT)) / (2 * hT) / 365.0,
        "rho": (V(r=r + hr) - V(r=r - hr)) / (2 * hr),
    }


def _fd_bsm(S, K, T, r, sig, call, q):
    def V(S=S, T=T, r=r, sig=sig):
        return bsm_price(S, K, T, r, sig, call, q)

    hS, hs, hT, hr = 1e-4 * S, 1e-5, 1e-6, 1e-6
    return {
        "delta": (V(S=S + hS) - V(S=S - hS)) / (2 * hS),
        "gamma": (V(S=S + hS) - 2 * V() + V(S=S - hS)) / hS**2,
        "vega": (V(sig=sig + hs) - V(sig=sig - hs)) / (2 * hs),
        "theta": (V(T=T - hT) - V(T=T + hT)) / (2 * hT) / 365.0,
        "rho": (V(r=r + hr) - V(r=r - hr)) / (2 * hr),
    }


def _greek_cases():
    K = np.array([70.0, 90.0, 100.0, 100.0, 110.0, 140.0])
    T = np.array([0.05, 0.25, 0.5, 1.0, 0.75, 2.0])
    sig = np.array([0.45, 0.3, 0.2, 0.6, 0.25, 0.35])
    return K, T, sig


@pytest.mark.parametrize("call", [True, False])
def test_greeks_black76_vs_finite_differences(call):
    K, T, sig = _greek_cases()
    F, df = 100.0, np.exp(-0.08 * T)
    g = greeks_black76(F, K, T, sig, call, df)
    fd = _fd_black76(F, K, T, sig, call, df)
    assert set(g) == {"delta", "gamma", "vega", "theta", "rho"}
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=2e-5, atol=1e-8, err_msg=k)
    # conventions: forward delta = df N(d1); vega per 1.00 vol; theta per calendar day
    d1 = (np.log(F / K) + 0.5 * sig**2 * T) / (sig * np.sqrt(T))
    from scipy.special import ndtr

    np.testing.assert_allclose(g["delta"], df * (ndtr(d1) - (0.0 if call else 1.0)), rtol=1e-13)
    np.testing.assert_allclose(g["rho"], -T * black76_price(F, K, T, sig, call, df), rtol=1e-12)


@pytest.mark.parametrize("call", [True, False])
def test_greeks_bsm_vs_finite_differences(call):
    K, T, sig = _greek_cases()
    S, r, q = 100.0, 0.10, 0.02
    g = greeks_bsm(S, K, T, r, sig, call, q)
    fd = _fd_bsm(S, K, T, r, sig, call, q)
    for k in g:
        np.testing.assert_allclose(g[k], fd[k], rtol=2e-5, atol=1e-8, err_msg=k)


def test_greeks_nan_for_invalid_inputs():
    g = greeks_black76([100.0, 100.0, 100.0, -1.0, 100.0], [100.0, 100.0, 0.0, 100.0, np.nan],
                       [0.5, 0.0, 0.5, 0.5, 0.5], [0.0, 0.2, 0.2, 0.2, 0.2], True)
    for v in g.values():
        assert np.isnan(v).all()
    g = greeks_bsm(100.0, 100.0, -0.1, 0.1, 0.2, False)
    assert all(np.isnan(v) for v in g.values())


# --------------------------------------------------------------------------------------
# shapes


def test_scalars_in_give_floats_out():
    iv = implied_vol_black76(5.0, 100.0, 100.0, 0.5, True)
    assert isinstance(iv, float) and np.ndim(iv) == 0
    assert isinstance(implied_vol_bsm(5.0, 100, 100, 0.5, 0.1, False), float)
    assert np.ndim(black76_price(100, 100, 0.5, 0.2, True)) == 0
    g = greeks_black76(100.0, 100.0, 0.5, 0.2, True)
    assert all(isinstance(v, float) for v in g.values())
    g = greeks_bsm(100.0, 100.0, 0.5, 0.1, 0.2, True)
    assert all(isinstance(v, float) for v in g.values())


def test_broadcasting():
    K = np.array([90.0, 100.0, 110.0, 120.0])
    T = np.array([[0.1], [0.5], [1.0]])
    sig = 0.3
    price = black76_price(100.0, K, T, sig, True, 0.99)
    assert price.shape == (3, 4)
    iv = implied_vol_black76(price, 100.0, K, T, True, 0.99)
    assert iv.shape == (3, 4)
    np.testing.assert_allclose(iv, sig, atol=1e-13)
    # is_call broadcasts too, and lists are accepted
    iv2 = implied_vol_black76(price[:, :2], 100.0, [90.0, 100.0], T, [True, True])
    assert iv2.shape == (3, 2)
    g = greeks_bsm(100.0, K, T, 0.1, sig, [True, False, True, False])
    assert all(v.shape == (3, 4) for v in g.values())
    assert implied_vol_black76(np.zeros((0, 3)), 100.0, 100.0, 1.0, True).shape == (0, 3)


def test_large_batch_matches_small_batches_across_blocks():
    """Blocks, the table guess and the deferred slow path give the same answers as small calls."""
    rng = np.random.default_rng(9)
    n = 3 * B._BLOCK + 123
    F = 100.0
    x = rng.uniform(-1.0, 1.0, n)
    x[::97] = rng.uniform(-1e-5, 1e-5, x[::97].size)  # near the money: the direct guess
    x[5::211] = rng.uniform(-4.5, -3.2, x[5::211].size)  # beyond the tables
    x[7::301] = rng.uniform(-3.1, -3.0, x[7::301].size)  # across the tables' edge
    K = F * np.exp(-x)
    T = np.exp(rng.uniform(math.log(DAY), math.log(2.0), n))
    sig = np.exp(rng.uniform(math.log(0.01), math.log(3.0), n))
    sig[::97] = 0.01
    call = np.where(x <= 0, True, False)  # out of the money: exact inputs
    price = black76_price(F, K, T, sig, call)
    big = implied_vol_black76(price, F, K, T, call)
    small = np.concatenate([implied_vol_black76(price[i:i + 500], F, K[i:i + 500], T[i:i + 500],
                                                call[i:i + 500]) for i in range(0, n, 500)])
    np.testing.assert_array_equal(np.isnan(big), np.isnan(small))
    np.testing.assert_allclose(big, small, rtol=1e-12, atol=0)
    fine = price > 1e-300
    assert np.all(np.abs(big[fine] / sig[fine] - 1.0) <= 1e-9)


@pytest.mark.parametrize("call", [True, False])
def test_theta_with_spot_held_is_the_time_derivative_at_fixed_spot(call):
    """``S`` given: theta is dV/dt at fixed spot, the forward ``F = S exp(b T)`` drifting with T
    (finite difference in time on Black-76 re-evaluated on the carried forward); it equals the
    BSM theta with ``q = r - b``; without ``S`` it stays the fixed-forward theta."""
    K, T, sig = _greek_cases()
    S, r, b = 100.0, 0.08, np.array([0.06, -0.02, 0.075, 0.0, 0.12, 0.03])
    df = np.exp(-r * T)
    F = S * np.exp(b * T)
    g = greeks_black76(F, K, T, sig, call, df, S=S)

    def V(t):
        return black76_price(S * np.exp(b * t), K, t, sig, call, np.exp(-r * t))

    h = 1e-6
    fd = (V(T - h) - V(T + h)) / (2 * h) / 365.0
    np.testing.assert_allclose(g["theta"], fd, rtol=2e-5, atol=1e-8)
    np.testing.assert_allclose(g["theta"], greeks_bsm(S, K, T, r, sig, call, r - b)["theta"], rtol=1e-10)
    fixed_f = greeks_black76(F, K, T, sig, call, df)["theta"]
    moved = np.abs(b) > 0
    assert np.all(np.abs(g["theta"] - fixed_f)[moved] > 1e-6)  # the two conventions differ with carry
    np.testing.assert_allclose(g["theta"][~moved], fixed_f[~moved], rtol=1e-12)
    for k in ("delta", "gamma", "vega", "rho"):  # only theta depends on S
        np.testing.assert_array_equal(g[k], greeks_black76(F, K, T, sig, call, df)[k])
    assert np.isnan(greeks_black76(100.0, 100.0, 0.5, 0.2, call, 0.96, S=-1.0)["theta"])


def test_theta_of_the_real_nifty_leg_with_spot_held(nse_data_dir):
    """NIFTY 2025-07-24 25150 CE on 2025-07-17 (real NSE chain, IV 9.55%): the fixed-forward theta
    was -9.44 INR/day; with the spot held it is -12.02, the figure a broker shows."""
    import datetime as dt

    import polars as pl

    from options_v4_dagster.market.nse_files import NseFilesProvider
    from options_v4_dagster.quant import surface

    chain, _ = NseFilesProvider(nse_data_dir).option_chains(["NIFTY"], dt.date(2025, 7, 17))
    row = surface.chain_iv(chain).filter(
        (pl.col("expiry") == dt.date(2025, 7, 24)) & (pl.col("strike") == 25150) & (pl.col("option_type") == "CE")
    ).row(0, named=True)
    assert row["iv"] == pytest.approx(0.0955, abs=5e-4)
    assert row["theta"] == pytest.approx(-12.02, abs=0.01)
    fixed_f = greeks_black76(row["forward"], 25150.0, row["t_years"], row["iv"], True, row["df"])["theta"]
    assert fixed_f == pytest.approx(-9.44, abs=0.01)
    S, F, T, df, sig = row["underlying_price"], row["forward"], row["t_years"], row["df"], row["iv"]
    h = 1e-6  # one day's decay at fixed spot, by finite difference in time

    def V(t):
        return black76_price(S * (F / S) ** (t / T), 25150.0, t, sig, True, df ** (t / T))

    assert row["theta"] == pytest.approx((V(T - h) - V(T + h)) / (2 * h) / 365.0, rel=1e-5)
