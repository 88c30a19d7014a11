"""Analytics of strategy candidates, vectorized across candidates (any mix of symbols).

:func:`analyze` fills every candidate's :class:`Analytics`. Units: INR for the whole position
(quantities are shares), underlying prices in INR.

P&L model
---------
* **Single-expiry** positions (all option/FUT legs on one expiry; EQ legs have none): the P&L at
  expiry is piecewise linear in the underlying price S with kinks at the strikes:
  ``sum_legs q (payoff - price)`` with q the signed quantity in shares, an option's payoff
  ``max(S - K, 0)`` / ``max(K - S, 0)``, a FUT's ``S - futures price``, an EQ's ``S - spot``
  (options' ``price`` is the executable premium). Max profit / max loss are the extreme values at
  S = 0 and the strikes, or unbounded (``None``) when the slope beyond the highest strike
  (calls + linear legs, an exact integer) is positive / negative. Every breakeven is exact: the
  root of the linear piece on each segment where the sign of the P&L changes, and on the ray
  beyond the last strike.
* **Calendars and diagonals**: the P&L at the *front* expiry, the front legs at intrinsic value and
  each back leg valued with Black-76 at its own IV (sticky strike) on the forward
  ``S x F_back / F_front`` with the remaining time and the discount factor ratio. Breakevens:
  sign changes on a log grid of 1,601 points over the front forward +- 8 standard deviations,
  refined by bisection to 1e-9 of the forward. Max profit / loss: the extremes on that grid
  (plus the front strikes, where the P&L has kinks, and S -> 0), refined by zooming on the
  extreme's neighbourhood; unbounded when the asymptotic slope beyond the strikes is above 1% of the largest
  leg quantity.

Probability of profit and expected value
----------------------------------------
S at the (front) expiry is lognormal with mean the expiry's forward F, volatility the expiry's ATM
IV (forward convention) and T = calendar days to 15:30 on expiry / 365 (``pop_inputs``):
``P(S_T <= x) = N((ln(x/F) + s^2/2) / s)``, ``s = sigma sqrt(T)``. POP is the exact probability of
the intervals where the P&L is positive (differences of that CDF at the breakevens).
``expected_value`` is E[P&L at expiry] under the same law, undiscounted (INR at expiry): exact for
single-expiry positions (each leg's expectation in closed form, ``E[(S-K)+] = F N(d1) - K N(d2)``);
calendars add a 96-node Gauss-Hermite quadrature of the back legs' Black-76 values.

Greeks: the sum over legs of signed quantity x per-share greek (spot convention, see
:mod:`.build`): delta in shares of the underlying, gamma per INR, vega INR per vol point, theta INR
per calendar day with the spot held fixed (the forward drifts to the spot as expiry nears).

Margin: see :mod:`.margin` (SPAN-like estimate, :class:`MarginParams`); the leg arrays and the
P&L functions: :mod:`.leg_arrays`.

``return_on_margin`` = max profit / margin (None when max profit is unbounded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import ndtr

from .build import Candidate
from .leg_arrays import (
    KIND_CALL,
    KIND_EQ,
    KIND_FUT,
    KIND_PUT,
    LegArrays,
    leg_arrays,
    pnl_at_front_expiry,
    pnl_expiry,
    pnl_front,
    premium_cash,
)
from .margin import MarginDetail, MarginParams, span_margin

__all__ = ["Analytics", "Greeks", "MarginDetail", "MarginParams", "PopInputs", "analyze", "pnl_at_front_expiry"]

GRID_POINTS = 1601
GRID_SIGMAS = 8.0
BISECT_ITERS = 60
GH_NODES = 96
SLOPE_TOL = 0.01  # of the largest leg quantity: asymptotic slopes below it count as flat (calendars)


@dataclass(frozen=True)
class PopInputs:
    forward: float
    sigma: float
    t_years: float
    model: str = "lognormal on the forward, ATM IV, calendar days / 365"


@dataclass(frozen=True)
class Greeks:
    delta: float  # shares of the underlying
    gamma: float  # delta change per INR
    vega: float  # INR per vol point
    theta: float  # INR per calendar day, spot held fixed


@dataclass
class Analytics:
    net_premium: float  # INR, > 0 credit received, < 0 debit paid (option legs)
    max_profit: float | None  # INR; None = unbounded
    max_loss: float | None  # INR, positive = a loss; None = unbounded
    breakevens: list[float]
    pop: float
    pop_inputs: PopInputs
    expected_value: float  # INR at expiry under the POP law
    reward_risk: float | None
    greeks: Greeks
    margin: float
    margin_detail: MarginDetail
    return_on_margin: float | None
    payoff_model: str  # "expiry" or "black76_front_expiry"

    def to_dict(self) -> dict:
        return {
            "net_premium": self.net_premium, "max_profit": self.max_profit, "max_loss": self.max_loss,
            "breakevens": list(self.breakevens), "pop": self.pop, "pop_inputs": asdict(self.pop_inputs),
            "expected_value": self.expected_value, "reward_risk": self.reward_risk, "greeks": asdict(self.greeks),
            "margin": self.margin, "margin_detail": asdict(self.margin_detail),
            "return_on_margin": self.return_on_margin, "payoff_model": self.payoff_model,
        }


def _cdf(x: np.ndarray, F: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Lognormal CDF of S_T (mean F, log-sd s) at x (0 -> 0, inf -> 1); F, s broadcast on rows."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(x / F[:, None]) + 0.5 * s[:, None] ** 2) / s[:, None]
    z = np.where(x <= 0, -np.inf, np.where(np.isposinf(x), np.inf, z))
    return ndtr(z)


def _pop(state0: np.ndarray, roots: np.ndarray, F: np.ndarray, s: np.ndarray) -> np.ndarray:
    """P(P&L > 0): ``state0`` profitable just above S = 0, the sign toggling at each root (NaN = none)."""
    r = np.sort(roots, axis=1)
    r = np.where(np.isnan(r), np.inf, r)
    n = r.shape[0]
    b = np.concatenate([np.zeros((n, 1)), r, np.full((n, 1), np.inf)], axis=1)
    c = _cdf(b, F, s)
    mass = np.diff(c, axis=1)
    odd = (np.arange(mass.shape[1]) % 2 == 1)[None, :]
    prof = state0[:, None] ^ odd
    return np.clip((mass * prof).sum(axis=1), 0.0, 1.0)


def _vanilla_expectation(a: LegArrays, mask: np.ndarray) -> np.ndarray:
    """sum over legs (mask) of q x E[leg value at the front expiry] under the POP law (closed form)."""
    F, s = a.F0[:, None], (a.sig * np.sqrt(a.T0))[:, None]
    K = a.K
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(F / K) + 0.5 * s * s) / s
        d2 = d1 - s
        call = F * ndtr(d1) - K * ndtr(d2)
        put = K * ndtr(-d2) - F * ndtr(-d1)
    v = np.where(a.kind == KIND_CALL, call, np.where(a.kind == KIND_PUT, put, np.where(a.kind >= KIND_FUT, F - K, 0.0)))
    return np.where(mask, v * a.q, 0.0).sum(axis=1)


# --------------------------------------------------------------------------------------------
# single-expiry: exact

def _single(a: LegArrays):
    n, L = a.K.shape
    is_opt = (a.kind == KIND_CALL) | (a.kind == KIND_PUT)
    kmax = np.where(is_opt, a.K, -np.inf).max(axis=1)
    strikes = np.sort(np.where(is_opt, a.K, kmax[:, None]), axis=1)
    nodes = np.concatenate([np.zeros((n, 1)), strikes], axis=1)
    v = pnl_expiry(a, nodes)
    slope = np.where((a.kind == KIND_CALL) | (a.kind >= KIND_FUT), a.q, 0.0).sum(axis=1)  # beyond the last strike
    max_profit = np.where(slope > 0, np.nan, v.max(axis=1))
    min_pnl = np.where(slope < 0, np.nan, v.min(axis=1))
    xa, xb, va, vb = nodes[:, :-1], nodes[:, 1:], v[:, :-1], v[:, 1:]
    cross = (va > 0) != (vb > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(cross, xa - va * (xb - xa) / (vb - va), np.nan)
        vl, xl = v[:, -1], nodes[:, -1]
        tail = (slope != 0) & ((vl > 0) != (slope > 0))
        rt = np.where(tail, xl - vl / slope, np.nan)
    roots = np.concatenate([r, rt[:, None]], axis=1)
    state0 = v[:, 0] > 0
    return max_profit, min_pnl, roots, state0


# --------------------------------------------------------------------------------------------
# calendars / diagonals: Black-76 valuation at the front expiry

def _refine_extreme(a: LegArrays, S: np.ndarray, v: np.ndarray, sign: int, rounds: int = 3,
                    points: int = 33) -> np.ndarray:
    """The max (sign +1) / min (-1) of the P&L: the grid's extreme, then zooming ``rounds`` times on
    ``points`` between its neighbours (a smooth interior extreme; a kink is already a grid node)."""
    n, G = S.shape
    rows = np.arange(n)
    j = np.argmax(sign * v, axis=1)
    best = v[rows, j]
    lo, hi = S[rows, np.maximum(j - 1, 0)], S[rows, np.minimum(j + 1, G - 1)]
    t = np.linspace(0.0, 1.0, points)
    for _ in range(rounds):
        x = lo[:, None] + (hi - lo)[:, None] * t[None, :]
        y = pnl_front(a, x)
        k = np.argmax(sign * y, axis=1)
        yk = y[rows, k]
        best = np.where(sign * yk > sign * best, yk, best)
        step = (hi - lo) / (points - 1)
        c = x[rows, k]
        lo, hi = np.maximum(c - step, lo), np.minimum(c + step, hi)
    return best


def _multi(a: LegArrays):
    n = a.K.shape[0]
    s = a.sig * np.sqrt(a.T0)
    u = np.linspace(-GRID_SIGMAS, GRID_SIGMAS, GRID_POINTS)
    S = a.F0[:, None] * np.exp(s[:, None] * u[None, :])
    is_opt = (a.kind == KIND_CALL) | (a.kind == KIND_PUT)
    kinks = np.where(is_opt & ~a.back, a.K, a.F0[:, None])  # the front legs' strikes: P&L kinks
    S = np.sort(np.concatenate([S, kinks], axis=1), axis=1)
    S = np.concatenate([np.full((n, 1), 1e-9) * a.F0[:, None], S], axis=1)  # S -> 0
    v = pnl_front(a, S)
    qmax = np.abs(a.q).max(axis=1)
    ratio = a.F / a.F0[:, None]
    dfr = a.df / a.df0[:, None]
    lin = np.where(a.kind == KIND_FUT, np.where(a.back, ratio, 1.0), np.where(a.kind == KIND_EQ, 1.0, 0.0))
    call_slope = np.where(a.kind == KIND_CALL, np.where(a.back, dfr * ratio, 1.0), 0.0)
    slope = (a.q * (lin + call_slope)).sum(axis=1)
    tol = SLOPE_TOL * qmax
    max_profit = np.where(slope > tol, np.nan, _refine_extreme(a, S, v, +1))
    min_pnl = np.where(slope < -tol, np.nan, _refine_extreme(a, S, v, -1))
    # breakevens: sign changes on the grid (past the S -> 0 point), refined by bisection
    g = S[:, 1:]
    w = v[:, 1:]
    cross = (w[:, :-1] > 0) != (w[:, 1:] > 0)
    ri, rj = np.nonzero(cross)
    roots = np.full((n, max(int(cross.sum(axis=1).max()) if n else 0, 1)), np.nan)
    if ri.size:
        lo, hi = g[ri, rj], g[ri, rj + 1]
        sub = a.take(ri)
        plo = w[ri, rj] > 0
        for _ in range(BISECT_ITERS):
            mid = 0.5 * (lo + hi)
            pm = pnl_front(sub, mid[:, None])[:, 0] > 0
            same = pm == plo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
            if np.all(hi - lo <= 1e-9 * sub.F0):
                break
        rank = np.cumsum(cross, axis=1)[ri, rj] - 1
        roots[ri, rank] = 0.5 * (lo + hi)
    state0 = w[:, 0] > 0
    return max_profit, min_pnl, roots, state0


def _back_expectation(a: LegArrays) -> np.ndarray:
    """E[sum of back legs' Black-76 values at the front expiry] by Gauss-Hermite quadrature."""
    z, wts = hermegauss(GH_NODES)
    wts = wts / np.sqrt(2.0 * np.pi)
    s = a.sig * np.sqrt(a.T0)
    S = a.F0[:, None] * np.exp(s[:, None] * z[None, :] - 0.5 * s[:, None] ** 2)
    only_back = a.take(np.arange(a.K.shape[0]))
    only_back.q = np.where(a.back & (a.kind != KIND_EQ), a.q, 0.0)
    only_back.price = np.zeros_like(a.price)
    return (pnl_front(only_back, S) * wts[None, :]).sum(axis=1)


# --------------------------------------------------------------------------------------------

def _opt(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _breakevens(roots: np.ndarray, scale: float) -> list[float]:
    """Sorted finite roots; a pair at one point (the P&L touching zero) is not a breakeven."""
    r = sorted(float(x) for x in roots if np.isfinite(x))
    out: list[float] = []
    for x in r:
        if out and abs(out[-1] - x) <= 1e-9 * scale:
            out.pop()
        else:
            out.append(x)
    return out


def analyze(cands: list[Candidate], margin_params: MarginParams = MarginParams()) -> list[Analytics]:
    """Compute :class:`Analytics` for every candidate (also stored on ``candidate.analytics``)."""
    if not cands:
        return []
    a = leg_arrays(cands)
    n = len(cands)
    net_premium = premium_cash(a)
    s = a.sig * np.sqrt(a.T0)
    max_profit = np.full(n, np.nan)
    min_pnl = np.full(n, np.nan)
    ev = np.zeros(n)
    pop = np.zeros(n)
    roots_all: list[np.ndarray] = [np.empty(0)] * n
    single = np.flatnonzero(a.single)
    multi = np.flatnonzero(~a.single)
    if single.size:
        sa = a.take(single)
        mp, ml, roots, st0 = _single(sa)
        max_profit[single], min_pnl[single] = mp, ml
        pop[single] = _pop(st0, roots, sa.F0, s[single])
        ev[single] = premium_cash(sa) + _vanilla_expectation(sa, np.ones_like(sa.back))
        for j, i in enumerate(single):
            roots_all[i] = roots[j]
    if multi.size:
        ma = a.take(multi)
        mp, ml, roots, st0 = _multi(ma)
        max_profit[multi], min_pnl[multi] = mp, ml
        pop[multi] = _pop(st0, roots, ma.F0, s[multi])
        ev[multi] = premium_cash(ma) + _vanilla_expectation(ma, ~ma.back) + _back_expectation(ma)
        for j, i in enumerate(multi):
            roots_all[i] = roots[j]
    g = {k: (getattr(a, k) * a.q).sum(axis=1) for k in ("delta", "gamma", "vega", "theta")}
    margin, md = span_margin(a, net_premium, margin_params)
    out = []
    for i, c in enumerate(cands):
        mp, ml = _opt(max_profit[i]), _opt(-min_pnl[i])
        rr = mp / ml if mp is not None and ml is not None and ml > 0 else None
        m = float(margin[i])
        res = Analytics(
            net_premium=float(net_premium[i]), max_profit=mp, max_loss=ml,
            breakevens=_breakevens(roots_all[i], float(a.F0[i])), pop=float(pop[i]),
            pop_inputs=PopInputs(forward=float(a.F0[i]), sigma=float(a.sig[i]), t_years=float(a.T0[i])),
            expected_value=float(ev[i]), reward_risk=rr,
            greeks=Greeks(**{k: float(v[i]) for k, v in g.items()}),
            margin=m,
            margin_detail=MarginDetail(**{k: (str(v[i]) if k == "model" else float(v[i])) for k, v in md.items()}),
            return_on_margin=mp / m if mp is not None and m > 0 else None,
            payoff_model="expiry" if a.single[i] else "black76_front_expiry",
        )
        c.analytics = res
        out.append(res)
    return out
