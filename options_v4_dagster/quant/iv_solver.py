"""Jäckel's "Let's Be Rational" implied-volatility solver in normalized terms, vectorized.

The machinery behind :func:`.black.implied_vol_black76` (method and accuracy in :mod:`.black`'s
docstring): ``x = ln(F/K) <= 0`` (the out-of-the-money call equivalent), ``beta`` the time value
divided by ``df sqrt(F K)``, ``s = sigma sqrt(T)``. :func:`solve_fast` gives the table guess and
the Householder steps, :func:`solve_slow` the direct guess and the bracketed fallback for the few
elements the fast path leaves pending; :func:`normalized_otm_call` is the normalized Black function.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erfc, erfcx, ndtri

__all__ = ["INV_SQRT_2PI", "normalized_otm_call", "solve_fast", "solve_slow"]

_INV_SQRT2 = 0.70710678118654752440
INV_SQRT_2PI = 0.39894228040143267794
_SQRT_2PI = 2.5066282746310005024
_SQRT_2_OVER_PI = 0.79788456080286535588
_TWO_PI = 6.2831853071795864769
_SQRT3 = 1.7320508075688772935
_TWO_PI_OVER_SQRT27 = 1.2091995761561452337  # 2 pi / sqrt(27)
_PI_OVER_SIX = 0.52359877559829887308
_SQRT_PI_OVER_TWO = 1.2533141373155002512
_EPS = np.finfo(float).eps
_DBL_MIN = np.finfo(float).tiny
_DBL_MAX = np.finfo(float).max
_R_MIN = -(1.0 - np.sqrt(_EPS))  # rational cubic control parameter bounds (Jäckel)
_R_MAX = 2.0 / (_EPS * _EPS)

_MAIN_ITERATIONS = 2  # Householder(3) steps after the rational guess
_CONVERGED_STEP = 1e-5  # last Householder step (relative) below which an element is done
_SAFE_ITERATIONS = 200  # cap of the bracketed fallback (converges in far fewer)


# --------------------------------------------------------------------------------------
# the normalized Black function


def normalized_otm_call(x, s):
    """Normalized out-of-the-money Black call ``b(x, s)`` for ``x <= 0``, ``s > 0``.

    ``b = exp(x/2) Phi(x/s + s/2) - exp(-x/2) Phi(x/s - s/2)``: the undiscounted time value
    of the out-of-the-money option divided by ``sqrt(F K)``.
    """
    return _black_terms(x, s, np.exp(0.5 * x), np.exp(-0.5 * x))[0]


def _black_terms(x, s, ex, iex):
    """``b(x, s)``, ``db/ds`` and ``h = x/s`` for ``x <= 0`` (``ex = exp(x/2)``, ``iex = 1/ex``).

    Both normal tails come from erfc, so tiny time values keep their relative accuracy.
    """
    h = x / s
    t = 0.5 * s
    ht = h + t
    b = 0.5 * (ex * erfc(ht * -_INV_SQRT2) - iex * erfc((t - h) * _INV_SQRT2))
    bp = (INV_SQRT_2PI * ex) * np.exp(-0.5 * ht * ht)  # exp(x/2) phi(h+t) = exp(-(h^2+t^2)/2)/sqrt(2 pi)
    return b, bp, h


# --------------------------------------------------------------------------------------
# implied volatility: Jäckel's rational guess


def _min_control(dl, dr, sec, prefer):
    """Minimum shape-preserving rational cubic control parameter (Delbourgo-Gregory)."""
    monotonic = (dl * sec >= 0) & (dr * sec >= 0)
    convex = (dl <= sec) & (sec <= dr)
    concave = (dl >= sec) & (sec >= dr)
    cc = convex | concave
    lost = np.where(prefer, _R_MAX, -_DBL_MAX)
    r1 = np.where(monotonic, np.where(np.abs(sec) >= _DBL_MIN, (dr + dl) / sec, lost), -_DBL_MAX)
    smdl = sec - dl
    drms = dr - sec
    drmdl = dr - dl
    nz = (np.abs(smdl) >= _DBL_MIN) & (np.abs(drms) >= _DBL_MIN)
    r2 = np.where(nz, np.maximum(np.abs(drmdl / drms), np.abs(drmdl / smdl)), lost)
    r2 = np.where(cc, r2, np.where(monotonic & prefer, _R_MAX, -_DBL_MAX))
    r = np.maximum(_R_MIN, np.maximum(r1, r2))
    return np.where(monotonic | cc, r, _R_MIN)


def _nodes(x, ex, iex, lower):
    """Jäckel's nodes for ``x <= 0``: the inflection point ``s_c`` and ``s_l`` (lower side) or
    ``s_h`` (upper side), with ``b`` and ``1/b'`` there."""
    s_c = np.sqrt(-2.0 * x)
    b_c = 0.5 * ex - 0.5 * iex * erfc(s_c * _INV_SQRT2)  # b(x, s_c): h + t = 0 there
    inv_v_c = _SQRT_2PI * iex
    s_o = np.where(lower, s_c - b_c * inv_v_c, s_c + (ex - b_c) * inv_v_c)
    b_o, bp_o, _ = _black_terms(x, s_o, ex, iex)
    return s_c, b_c, inv_v_c, s_o, b_o, 1.0 / bp_o


def _coefficients(x, ex, lower, outer, s_c, b_c, inv_v_c, s_o, b_o, inv_v_o):
    """Coefficients of the rational cubic guess ``s(beta)`` (middle segments) or ``f(beta)``
    (outer segments, in Jäckel's lower/upper map space): ``xl, 1/h, a0, a1, a2, a3, r - 3, xr``."""
    ax = -x
    s2 = s_o * s_o
    z = ax / (_SQRT3 * s_o)
    y = z * z
    phi_m = 0.5 * erfc(np.where(lower, z, 0.5 * s_o) * _INV_SQRT2)
    # lower map f = 2pi/sqrt(27) |x| Phi(-z)^3 at s_l, with d/dbeta and d2/dbeta2
    f_lo = _TWO_PI_OVER_SQRT27 * ax * phi_m * phi_m * phi_m
    fp_lo = _TWO_PI * y * phi_m * phi_m * np.exp(y + 0.125 * s2)
    fpp_lo = (_PI_OVER_SIX * y / (s2 * s_o) * phi_m
              * (8.0 * _SQRT3 * s_o * ax + (3.0 * s2 * (s2 - 8.0) - 8.0 * x * x) * phi_m
                 * _SQRT_2PI * np.exp(0.5 * y))
              * np.exp(2.0 * y + 0.25 * s2))
    # upper map f = Phi(-s/2) at s_h
    w = (x / s_o) ** 2
    fp_hi = -0.5 * np.exp(0.5 * w)
    fpp_hi = _SQRT_PI_OVER_TWO * np.exp(w + 0.125 * s2) * w / s_o
    # The left node carries the fitted curvature:
    #   middle: (b_c, s_c) -> (b_o, s_o), curvature 0 at the inflection point s_c;
    #   outer : (b_o, f(s_o)) -> (0, 0) [low] or (b_max, 0) [high], in map space.
    xl = np.where(outer, b_o, b_c)
    yl = np.where(outer, np.where(lower, f_lo, phi_m), s_c)
    dl = np.where(outer, np.where(lower, fp_lo, fp_hi), inv_v_c)
    d2l = np.where(outer, np.where(lower, fpp_lo, fpp_hi), 0.0)
    xr = np.where(outer, np.where(lower, 0.0, ex), b_o)
    yr = np.where(outer, 0.0, s_o)
    dr = np.where(outer, np.where(lower, 1.0, -0.5), inv_v_o)
    h = xr - xl  # may be negative: the rational cubic is symmetric under reversal
    sec = (yr - yl) / h
    num = 0.5 * h * d2l + (dr - dl)
    den = sec - dl
    r = num / den
    r = np.where(np.abs(den) < _DBL_MIN, np.where(num > 0, _R_MAX, _R_MIN), r)
    r = np.where(np.abs(num) < _DBL_MIN, 0.0, r)
    r = np.minimum(np.maximum(r, _min_control(dl, dr, sec, outer)), _R_MAX)
    return xl, 1.0 / h, yl, r * yl + h * dl, r * yr - h * dr, yr, r - 3.0, xr


def _rational_cubic(beta, xl, ih, a0, a1, a2, a3, r3, xr):
    # t and 1 - t both from differences, so either end keeps its relative accuracy
    t = (beta - xl) * ih
    u = (xr - beta) * ih
    return (t * t * (t * a3 + u * a2) + u * u * (t * a1 + u * a0)) / (1.0 + r3 * t * u)


def _invert_maps(val, x, beta, ex, lower, outer):
    """``s`` from the interpolated value (inverting the lower/upper map on the outer segments)
    and the objective masks ``low`` (``1/ln b``) and ``high`` (``ln(b_max - b)``); the other
    elements use ``b`` itself."""
    s = val
    idx = np.flatnonzero(outer)
    if idx.size:
        s = val.copy()
        lo = lower[idx]
        v = val[idx]
        ax = -x[idx]
        q = ndtri(np.where(lo, np.cbrt(v / (_TWO_PI_OVER_SQRT27 * ax)), v))
        s[idx] = np.where(lo, ax / (-_SQRT3 * q), -2.0 * q)
    low = outer & lower
    high = outer & ~lower & (beta > 0.5 * ex)
    return s, low, high


def _guess_direct(x, beta, ex, iex):
    """Jäckel's initial guess (``s``, ``low``, ``high``) computed from scratch (any ``x``)."""
    s_c, b_c, inv_v_c = _nodes(x, ex, iex, True)[:3]
    lower = beta < b_c
    s_c, b_c, inv_v_c, s_o, b_o, inv_v_o = _nodes(x, ex, iex, lower)
    outer = np.where(lower, beta < b_o, beta > b_o)
    co = _coefficients(x, ex, lower, outer, s_c, b_c, inv_v_c, s_o, b_o, inv_v_o)
    val = _rational_cubic(beta, *co)
    bad = outer & ~(val > 0)  # round-off for extreme |x|: quadratic in map space (Jäckel)
    if bad.any():
        t_lo = beta / b_o
        q_lo = (co[2] * t_lo + b_o * (1.0 - t_lo)) * t_lo
        hh = ex - b_o
        t_hi = (beta - b_o) / hh
        q_hi = (co[2] * (1.0 - t_hi) + 0.5 * hh * t_hi) * (1.0 - t_hi)
        val = np.where(bad, np.where(lower, q_lo, q_hi), val)
    return _invert_maps(val, x, beta, ex, lower, outer)


# Everything in the guess except the final interpolation depends on x alone. It is tabulated
# once, on a uniform grid in sqrt(|x|), as (value, difference to the next node) pairs stored in
# complex numbers so that one gather feeds a linear interpolation. Elements off the table
# (|x| > _TAB_YMAX**2, or tiny |x| on the lower side where the nodes are singular) use the
# direct guess; either way the Householder steps polish the result.
_TAB_N = 896
_TAB_YMAX = 1.75  # |x| <= 3.06 (strike/forward within e^-3.06 .. e^3.06)
_TAB_SCALE = _TAB_N / _TAB_YMAX
_TAB_YSMALL = 16.0 / _TAB_SCALE  # below this sqrt(|x|) the lower side uses the direct guess


def _build_tables():
    y = np.linspace(0.0, _TAB_YMAX, _TAB_N + 1)
    x = -y * y
    ex = np.exp(0.5 * x)
    iex = np.exp(-0.5 * x)

    def pack(v):
        d = np.append(np.diff(v), 0.0)
        return v + 1j * d

    with np.errstate(all="ignore"):
        sides = [_nodes(x, ex, iex, lower) for lower in (True, False)]
        t_c = pack(sides[1][1])
        t_o = np.concatenate([pack(nd[4]) for nd in sides])
        regions = []  # index: side + 2 * outer  (side 0 = lower)
        for outer in (False, True):
            for lower, nd in zip((True, False), sides, strict=True):
                regions.append(_coefficients(x, ex, lower, outer, *nd))
        t_k = tuple(np.concatenate([pack(reg[q]) for reg in regions]) for q in range(7))  # not xr
    return t_c, t_o, t_k


_TAB_C, _TAB_O, _TAB_K = _build_tables()


def _guess(x, beta, ex):
    """Initial guess of ``s`` and the objective masks from the tables, and the mask of elements
    the tables do not cover (they need :func:`_guess_direct`)."""
    n1 = _TAB_N + 1
    y = np.sqrt(-x)
    u = np.minimum(y * _TAB_SCALE, _TAB_N * (1.0 - 1e-12))  # cell i <= N-1, weight w in [0, 1)
    i = u.astype(np.intp)
    w = u - i
    c = _TAB_C.take(i)
    lower = beta < c.real + w * c.imag
    j = i + (~lower) * n1
    c = _TAB_O.take(j)
    b_o = c.real + w * c.imag
    outer = (lower & (beta < b_o)) | (~lower & (beta > b_o))
    k = j + outer * (2 * n1)
    co = []
    for tab in _TAB_K:
        c = tab.take(k)
        co.append(c.real + w * c.imag)
    co.append(np.where(outer, ex * ~lower, b_o))  # xr, exact at the outer ends
    val = _rational_cubic(beta, *co)
    s, low, high = _invert_maps(val, x, beta, ex, lower, outer)
    direct = ~((y < _TAB_YMAX) & (s > 0) & (s < np.inf)) | (lower & (y < _TAB_YSMALL))
    return s, low, high, direct


# --------------------------------------------------------------------------------------
# implied volatility: Householder iterations


def _householder_step(x, beta, s, low, high, ex, iex, ln_beta, ln_m_beta):
    """One third-order Householder step on Jäckel's objective for each element's segment:
    ``b - beta`` (middle), ``1/ln b - 1/ln beta`` (``low``), ``ln(b_max - beta) - ln(b_max - b)``
    (``high``; ``low`` and ``high`` are None when no element needs them)."""
    b, bp, h = _black_terms(x, s, ex, iex)
    hs = h / s
    b_halley = h * hs - 0.25 * s  # b''/b'
    b_hh3 = b_halley * b_halley - 3.0 * hs * hs - 0.25  # b^(3)/b'
    newton = (beta - b) / bp
    halley = b_halley
    hh3 = b_hh3
    if low is not None:
        ln_b = np.log(b)
        bpob = bp / b
        inv_ln_b = 1.0 / ln_b
        a = -bpob * (1.0 + 2.0 * inv_ln_b)
        newton = np.where(low, (ln_beta - ln_b) * ln_b / (ln_beta * bpob), newton)
        halley = np.where(low, b_halley + a, halley)
        hh3 = np.where(low, b_hh3 + 2.0 * bpob * bpob * (1.0 + 3.0 * inv_ln_b * (1.0 + inv_ln_b))
                       + 3.0 * b_halley * a, hh3)
    if high is not None:
        m = ex - b
        gp = bp / m
        newton = np.where(high, (np.log(m) - ln_m_beta) / gp, newton)
        halley = np.where(high, b_halley + gp, halley)
        hh3 = np.where(high, b_hh3 + gp * (2.0 * gp + 3.0 * b_halley), hh3)
    ds = newton * (1.0 + 0.5 * halley * newton) / (1.0 + newton * (halley + hh3 * newton / 6.0))
    return np.maximum(-0.5 * s, ds)


def _iterate(x, beta, s, low, high, ex, iex):
    """The fixed Householder steps; also returns the mask of elements not surely converged."""
    ln_beta = np.log(beta) if low.any() else None
    ln_m_beta = np.log(ex - beta) if high.any() else None
    low = low if ln_beta is not None else None
    high = high if ln_m_beta is not None else None
    ds = s
    for _ in range(_MAIN_ITERATIONS):
        ds = _householder_step(x, beta, s, low, high, ex, iex, ln_beta, ln_m_beta)
        s = s + ds
    return s, ~(np.abs(ds) <= _CONVERGED_STEP * s)  # also catches NaN / inf


def solve_fast(x, beta, ex):
    """Normalized implied vol ``s = sigma sqrt(T)`` for ``x <= 0``, ``0 < beta < ex = exp(x/2)``
    by table guess and Householder steps; also returns the mask of elements left pending."""
    s, low, high, direct = _guess(x, beta, ex)
    s, unsure = _iterate(x, beta, s, low, high, ex, 1.0 / ex)
    return s, unsure | direct


def solve_slow(x, beta):
    """Same as :func:`solve_fast` for any element: direct guess, then the bracketed fallback
    for whatever the Householder steps did not settle."""
    ex = np.exp(0.5 * x)
    iex = np.exp(-0.5 * x)
    s, low, high = _guess_direct(x, beta, ex, iex)
    s, unsure = _iterate(x, beta, s, low, high, ex, iex)
    if unsure.any():
        idx = np.flatnonzero(unsure)
        s[idx] = _solve_safe(x[idx], beta[idx], s[idx])
    return s


# --------------------------------------------------------------------------------------
# implied volatility: bracketed fallback


def _log_objective(x, s, ex, iex, ln_beta, ln_m_beta, high):
    """Objective ``G`` (increasing in s), ``G'`` and ``G''``: ``ln b - ln beta`` or, near the
    upper bound, ``ln(b_max - beta) - ln(b_max - b)``. ``ln b`` uses erfcx where b is tiny."""
    b, bp, h = _black_terms(x, s, ex, iex)
    t = 0.5 * s
    ht = h + t
    tail = ht < 0
    d = erfcx(-ht * _INV_SQRT2) - erfcx((t - h) * _INV_SQRT2)  # both arguments >= 0 on tail
    ln_b = np.where(tail, -0.5 * (h * h + t * t) + np.log(0.5 * d), np.log(b))
    bpob = np.where(tail, _SQRT_2_OVER_PI / d, bp / b)
    b_halley = h * h / s - 0.25 * s
    gp_hi = bp / (ex - b)
    g = np.where(high, ln_m_beta - np.log(ex - b), ln_b - ln_beta)
    gp = np.where(high, gp_hi, bpob)
    gpp = np.where(high, gp_hi * (b_halley + gp_hi), bpob * (b_halley - bpob))
    return g, gp, gpp


def _solve_safe(x, beta, s):
    """Bracketed Halley iteration with bisection on the (log) price; robust everywhere."""
    ex = np.exp(0.5 * x)
    iex = np.exp(-0.5 * x)
    ln_beta = np.log(beta)
    ln_m_beta = np.log(ex - beta)
    high = beta > 0.5 * ex
    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    s = np.where(np.isfinite(s) & (s > 0), s, np.sqrt(-2.0 * x) + 1.0)
    active = np.arange(s.size)
    for _ in range(_SAFE_ITERATIONS):
        sa, la, ha = s[active], lo[active], hi[active]
        g, gp, gpp = _log_objective(x[active], sa, ex[active], iex[active], ln_beta[active],
                                    ln_m_beta[active], high[active])
        above = g > 0
        ha = np.where(above, np.minimum(ha, sa), ha)
        la = np.where(above, la, np.maximum(la, sa))
        newton = -g / gp
        step = newton / (1.0 + 0.5 * newton * gpp / gp)
        s_new = sa + step
        tiny = np.abs(step) <= 4.0 * _EPS * sa  # converged (the step may touch the bracket)
        ok = np.isfinite(s_new) & (s_new > la) & (s_new < ha)
        bisect = np.where(np.isinf(ha), 2.0 * np.maximum(sa, la),
                          np.where((la > 0) & (ha > 4.0 * la), np.sqrt(la * ha), 0.5 * (la + ha)))
        s_next = np.where(ok | tiny, s_new, bisect)
        narrow = np.isfinite(ha) & (ha - la <= 4.0 * _EPS * ha)
        s_next = np.where(narrow & ~tiny, 0.5 * (la + ha), s_next)
        s_next = np.where(g == 0, sa, s_next)
        done = (g == 0) | tiny | narrow
        s[active], lo[active], hi[active] = s_next, la, ha
        active = active[~done]
        if active.size == 0:
            break
    return s
