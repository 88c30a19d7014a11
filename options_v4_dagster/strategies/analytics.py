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

Margin (SPAN-like estimate, :class:`MarginParams`)
--------------------------------------------------
* Long-only option positions (no short option, no future): the debit.
* Otherwise ``SPAN + exposure + debit + cash``:
  - price scan range PSR = max(6 x sigma_daily x sqrt(2), 9.3% index / 14.2% stock) x spot, with
    sigma_daily = the front ATM IV / sqrt(252) standing in for NSE's EWMA volatility;
  - volatility scan range VSR = max(25% x ATM IV, 4 vol points index / 10 stock);
  - the 16 SPAN scenarios (price 0, +-1/3, +-2/3, +-1 PSR, each with vol +-VSR; +-2 PSR extreme
    moves at 35%), every option leg revalued with Black-76 at its own IV, FUT legs linearly;
    scan risk = the largest scenario loss;
  - calendar spread charge: 1.75% index / 2.2% stock of spot x the delta offset between the two
    expiries (the smaller of opposite net deltas, in shares);
  - short option minimum: 3% index / 7.5% stock of spot x the net short option quantity (short
    calls not covered by long calls plus short puts not covered by long puts, in shares);
    SPAN = max(scan risk + calendar charge, short option minimum);
  - exposure margin (ELM): 2% index / 3.5% stock of spot x (short option + futures quantity),
    plus 2% on short index options expiring that day (SEBI, Oct 2024);
  - debit: the net premium paid, if any; cash: EQ legs are paid in full (spot x quantity) and are
    left out of the scan.
* ``cash_secured`` strategies: strike x quantity of the short puts (the cash held), no SPAN.
``return_on_margin`` = max profit / margin (None when max profit is unbounded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import ndtr

from ..quant.black import black76_price
from .build import Candidate
from .catalogue import Instrument

__all__ = ["Analytics", "Greeks", "MarginDetail", "MarginParams", "PopInputs", "analyze", "pnl_at_front_expiry"]

GRID_POINTS = 1601
GRID_SIGMAS = 8.0
BISECT_ITERS = 60
GH_NODES = 96
SLOPE_TOL = 0.01  # of the largest leg quantity: asymptotic slopes below it count as flat (calendars)

_K_NONE, _K_CALL, _K_PUT, _K_FUT, _K_EQ = 0, 1, 2, 3, 4


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


@dataclass(frozen=True)
class MarginParams:
    sigmas: float = 6.0
    mpor_days: float = 2.0  # the sqrt(2) scaling
    trading_days: float = 252.0
    psr_floor_index: float = 0.093
    psr_floor_stock: float = 0.142
    vsr_fraction: float = 0.25
    vsr_min_index: float = 0.04
    vsr_min_stock: float = 0.10
    extreme_multiple: float = 2.0
    extreme_cover: float = 0.35
    calendar_index: float = 0.0175
    calendar_stock: float = 0.022
    somc_index: float = 0.03
    somc_stock: float = 0.075
    elm_index: float = 0.02
    elm_stock: float = 0.035
    elm_expiry_day_index: float = 0.02


@dataclass(frozen=True)
class MarginDetail:
    model: str  # "long_premium", "span", "cash_secured"
    price_scan_pct: float
    vol_scan: float
    scan_risk: float
    calendar_charge: float
    short_option_minimum: float
    span: float
    exposure: float
    premium: float  # net debit paid (0 for a credit)
    cash: float  # EQ legs paid in full, or the cash securing the puts


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


# --------------------------------------------------------------------------------------------
# candidates -> padded leg arrays

@dataclass
class _Legs:
    kind: np.ndarray  # (n, L) int
    K: np.ndarray  # strike; entry price for linear legs
    q: np.ndarray  # signed shares
    price: np.ndarray  # option premium per share (0 for linear legs)
    iv: np.ndarray
    t: np.ndarray
    F: np.ndarray
    df: np.ndarray
    back: np.ndarray  # bool: expires after the front expiry
    delta: np.ndarray
    gamma: np.ndarray
    vega: np.ndarray
    theta: np.ndarray
    spot: np.ndarray  # (n,)
    F0: np.ndarray  # front forward, sigma, T, discount factor
    sig: np.ndarray
    T0: np.ndarray
    df0: np.ndarray
    single: np.ndarray
    is_index: np.ndarray
    cash_secured: np.ndarray

    def take(self, idx: np.ndarray) -> _Legs:
        return _Legs(**{k: v[idx] for k, v in self.__dict__.items()})


def _arrays(cands: list[Candidate]) -> _Legs:
    n = len(cands)
    L = max(len(c.legs) for c in cands)
    z = lambda: np.zeros((n, L))  # noqa: E731
    kind = np.zeros((n, L), dtype=np.int8)
    K, q, price, iv, t, F, df = z(), z(), z(), z(), z(), z(), np.ones((n, L))
    back = np.zeros((n, L), dtype=bool)
    dl, gm, vg, th = z(), z(), z(), z()
    spot, F0, sig, T0, df0 = (np.zeros(n) for _ in range(5))
    single = np.zeros(n, dtype=bool)
    is_index = np.zeros(n, dtype=bool)
    cash_secured = np.zeros(n, dtype=bool)
    codes = {Instrument.CE: _K_CALL, Instrument.PE: _K_PUT, Instrument.FUT: _K_FUT, Instrument.EQ: _K_EQ}
    for i, c in enumerate(cands):
        spot[i], F0[i], sig[i], T0[i] = c.spot, c.forward, c.atm_iv, c.t_years
        single[i] = c.is_single_expiry
        is_index[i] = c.is_index
        cash_secured[i] = c.strategy.margin_basis == "cash_secured"
        dfs = [leg.df for leg in c.legs if leg.expiry == c.expiry and leg.df is not None]
        df0[i] = dfs[0] if dfs else 1.0
        for j, leg in enumerate(c.legs):
            kind[i, j] = codes[leg.instrument]
            q[i, j] = leg.signed_quantity
            if leg.instrument.is_option:
                K[i, j], price[i, j] = leg.strike, leg.price
                iv[i, j] = leg.iv
            else:
                K[i, j] = leg.price
            t[i, j] = leg.t_years if leg.t_years is not None else c.t_years
            F[i, j] = leg.forward if leg.forward is not None else c.spot
            df[i, j] = leg.df if leg.df is not None else 1.0
            back[i, j] = leg.expiry is not None and leg.expiry > c.expiry
            dl[i, j], gm[i, j], vg[i, j], th[i, j] = leg.delta, leg.gamma, leg.vega, leg.theta
    return _Legs(kind=kind, K=K, q=q, price=price, iv=iv, t=t, F=F, df=df, back=back, delta=dl, gamma=gm, vega=vg,
                 theta=th, spot=spot, F0=F0, sig=sig, T0=T0, df0=df0, single=single, is_index=is_index,
                 cash_secured=cash_secured)


def _cash(a: _Legs) -> np.ndarray:
    """Premium cash flow per position (INR): + received, - paid (option legs)."""
    return -(a.q * a.price).sum(axis=1)


# --------------------------------------------------------------------------------------------
# P&L functions

def _pnl_expiry(a: _Legs, S: np.ndarray) -> np.ndarray:
    """P&L at expiry (single-expiry positions) at prices ``S`` of shape (n, G)."""
    x = S[:, :, None]
    K = a.K[:, None, :]
    k = a.kind[:, None, :]
    v = np.where(k == _K_CALL, np.maximum(x - K, 0.0),
                 np.where(k == _K_PUT, np.maximum(K - x, 0.0), np.where(k >= _K_FUT, x - K, 0.0)))
    return (v * a.q[:, None, :]).sum(axis=2) + _cash(a)[:, None]


def _pnl_front(a: _Legs, S: np.ndarray) -> np.ndarray:
    """P&L at the front expiry at prices ``S`` (n, G): front legs at intrinsic, back legs Black-76."""
    x = S[:, :, None]
    K = a.K[:, None, :]
    k = a.kind[:, None, :]
    ratio_nl = a.F / a.F0[:, None]
    back_opt = a.back & ((a.kind == _K_CALL) | (a.kind == _K_PUT))
    front = ~a.back[:, None, :]
    ratio = np.where(a.back, ratio_nl, 1.0)[:, None, :]
    v = np.where(k == _K_CALL, np.maximum(x - K, 0.0), np.where(k == _K_PUT, np.maximum(K - x, 0.0), 0.0))
    v = np.where(front, v, 0.0)  # back options are added below
    v = np.where(k == _K_FUT, x * ratio - K, np.where(k == _K_EQ, x - K, v))
    out = (v * a.q[:, None, :]).sum(axis=2) + _cash(a)[:, None]
    ri, lj = np.nonzero(back_opt)  # Black-76 only where needed: (position, back leg) pairs
    if ri.size:
        tau = np.maximum(a.t[ri, lj] - a.T0[ri], 0.0)[:, None]
        with np.errstate(all="ignore"):
            bv = black76_price(S[ri] * ratio_nl[ri, lj][:, None], a.K[ri, lj][:, None], tau, a.iv[ri, lj][:, None],
                               (a.kind[ri, lj] == _K_CALL)[:, None], (a.df[ri, lj] / a.df0[ri])[:, None])
        np.add.at(out, ri, bv * a.q[ri, lj][:, None])
    return out


def pnl_at_front_expiry(cands: list[Candidate], S: np.ndarray) -> np.ndarray:
    """P&L (INR) of each candidate at its front expiry for underlying prices ``S`` ((G,) or (n, G)):
    the expiry payoff for single-expiry positions, the Black-76 valuation for calendars/diagonals."""
    a = _arrays(cands)
    S = np.asarray(S, dtype=float)
    S = np.broadcast_to(S, (len(cands), S.shape[-1])) if S.ndim == 1 else S
    out = np.empty(S.shape)
    s, m = a.single, ~a.single
    if s.any():
        out[s] = _pnl_expiry(a.take(np.flatnonzero(s)), S[s])
    if m.any():
        out[m] = _pnl_front(a.take(np.flatnonzero(m)), S[m])
    return out


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


def _vanilla_expectation(a: _Legs, mask: np.ndarray) -> np.ndarray:
    """sum over legs (mask) of q x E[leg value at the front expiry] under the POP law (closed form)."""
    F, s = a.F0[:, None], (a.sig * np.sqrt(a.T0))[:, None]
    K = a.K
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(F / K) + 0.5 * s * s) / s
        d2 = d1 - s
        call = F * ndtr(d1) - K * ndtr(d2)
        put = K * ndtr(-d2) - F * ndtr(-d1)
    v = np.where(a.kind == _K_CALL, call, np.where(a.kind == _K_PUT, put, np.where(a.kind >= _K_FUT, F - K, 0.0)))
    return np.where(mask, v * a.q, 0.0).sum(axis=1)


# --------------------------------------------------------------------------------------------
# single-expiry: exact

def _single(a: _Legs):
    n, L = a.K.shape
    is_opt = (a.kind == _K_CALL) | (a.kind == _K_PUT)
    kmax = np.where(is_opt, a.K, -np.inf).max(axis=1)
    strikes = np.sort(np.where(is_opt, a.K, kmax[:, None]), axis=1)
    nodes = np.concatenate([np.zeros((n, 1)), strikes], axis=1)
    v = _pnl_expiry(a, nodes)
    slope = np.where((a.kind == _K_CALL) | (a.kind >= _K_FUT), a.q, 0.0).sum(axis=1)  # beyond the last strike
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

def _refine_extreme(a: _Legs, S: np.ndarray, v: np.ndarray, sign: int, rounds: int = 3,
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
        y = _pnl_front(a, x)
        k = np.argmax(sign * y, axis=1)
        yk = y[rows, k]
        best = np.where(sign * yk > sign * best, yk, best)
        step = (hi - lo) / (points - 1)
        c = x[rows, k]
        lo, hi = np.maximum(c - step, lo), np.minimum(c + step, hi)
    return best


def _multi(a: _Legs):
    n = a.K.shape[0]
    s = a.sig * np.sqrt(a.T0)
    u = np.linspace(-GRID_SIGMAS, GRID_SIGMAS, GRID_POINTS)
    S = a.F0[:, None] * np.exp(s[:, None] * u[None, :])
    is_opt = (a.kind == _K_CALL) | (a.kind == _K_PUT)
    kinks = np.where(is_opt & ~a.back, a.K, a.F0[:, None])  # the front legs' strikes: P&L kinks
    S = np.sort(np.concatenate([S, kinks], axis=1), axis=1)
    S = np.concatenate([np.full((n, 1), 1e-9) * a.F0[:, None], S], axis=1)  # S -> 0
    v = _pnl_front(a, S)
    qmax = np.abs(a.q).max(axis=1)
    ratio = a.F / a.F0[:, None]
    dfr = a.df / a.df0[:, None]
    lin = np.where(a.kind == _K_FUT, np.where(a.back, ratio, 1.0), np.where(a.kind == _K_EQ, 1.0, 0.0))
    call_slope = np.where(a.kind == _K_CALL, np.where(a.back, dfr * ratio, 1.0), 0.0)
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
            pm = _pnl_front(sub, mid[:, None])[:, 0] > 0
            same = pm == plo
            lo = np.where(same, mid, lo)
            hi = np.where(same, hi, mid)
            if np.all(hi - lo <= 1e-9 * sub.F0):
                break
        rank = np.cumsum(cross, axis=1)[ri, rj] - 1
        roots[ri, rank] = 0.5 * (lo + hi)
    state0 = w[:, 0] > 0
    return max_profit, min_pnl, roots, state0


def _back_expectation(a: _Legs) -> np.ndarray:
    """E[sum of back legs' Black-76 values at the front expiry] by Gauss-Hermite quadrature."""
    z, wts = hermegauss(GH_NODES)
    wts = wts / np.sqrt(2.0 * np.pi)
    s = a.sig * np.sqrt(a.T0)
    S = a.F0[:, None] * np.exp(s[:, None] * z[None, :] - 0.5 * s[:, None] ** 2)
    only_back = a.take(np.arange(a.K.shape[0]))
    only_back.q = np.where(a.back & (a.kind != _K_EQ), a.q, 0.0)
    only_back.price = np.zeros_like(a.price)
    return (_pnl_front(only_back, S) * wts[None, :]).sum(axis=1)


# --------------------------------------------------------------------------------------------
# margin

_SCN_PRICE = np.array([0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1, 0, 0])
_SCN_VOL = np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, 0], dtype=float)


def _margin(a: _Legs, net_premium: np.ndarray, p: MarginParams):
    n = a.K.shape[0]
    idx = a.is_index
    is_opt = (a.kind == _K_CALL) | (a.kind == _K_PUT)
    short_opt = is_opt & (a.q < 0)
    fut = a.kind == _K_FUT
    eq = a.kind == _K_EQ
    sigma_d = a.sig / np.sqrt(p.trading_days)
    psr = np.maximum(p.sigmas * sigma_d * np.sqrt(p.mpor_days), np.where(idx, p.psr_floor_index, p.psr_floor_stock))
    vsr = np.maximum(p.vsr_fraction * a.sig, np.where(idx, p.vsr_min_index, p.vsr_min_stock))
    price_mult = np.concatenate([_SCN_PRICE[:14], [p.extreme_multiple, -p.extreme_multiple]])
    weight = np.concatenate([np.ones(14), [p.extreme_cover, p.extreme_cover]])
    move = psr[:, None] * price_mult[None, :]  # (n, 16) relative moves
    T = np.maximum(a.t, 1e-6)[:, None, :]
    Fl = a.F[:, None, :]
    with np.errstate(all="ignore"):
        v0 = black76_price(a.F, a.K, np.maximum(a.t, 1e-6), a.iv, a.kind == _K_CALL, a.df)
        vol = np.maximum(a.iv[:, None, :] + _SCN_VOL[None, :, None] * vsr[:, None, None], 0.01)
        vs = black76_price(Fl * (1.0 + move[:, :, None]), a.K[:, None, :], T, vol, (a.kind == _K_CALL)[:, None, :],
                           a.df[:, None, :])
    d_opt = np.where(is_opt[:, None, :], vs - v0[:, None, :], 0.0)
    d_fut = np.where(fut[:, None, :], Fl * move[:, :, None], 0.0)
    pnl = ((d_opt + d_fut) * a.q[:, None, :]).sum(axis=2) * weight[None, :]
    scan = np.maximum((-pnl).max(axis=1), 0.0)
    # calendar spread charge: delta offset between the expiries
    dl = a.delta * a.q
    d_front = np.where((is_opt | fut) & ~a.back, dl, 0.0).sum(axis=1)
    d_back = np.where((is_opt | fut) & a.back, dl, 0.0).sum(axis=1)
    offset = np.where(np.sign(d_front) * np.sign(d_back) < 0, np.minimum(np.abs(d_front), np.abs(d_back)), 0.0)
    cal = np.where(idx, p.calendar_index, p.calendar_stock) * a.spot * offset
    short_qty = np.where(short_opt, -a.q, 0.0).sum(axis=1)
    fut_qty = np.where(fut, np.abs(a.q), 0.0).sum(axis=1)
    net_short = (np.maximum(-np.where(a.kind == _K_CALL, a.q, 0.0).sum(axis=1), 0.0)
                 + np.maximum(-np.where(a.kind == _K_PUT, a.q, 0.0).sum(axis=1), 0.0))
    somc = np.where(idx, p.somc_index, p.somc_stock) * a.spot * net_short
    span = np.maximum(scan + cal, somc)
    expiring = short_opt & (a.t < 1.0 / 365.0)
    elm = (np.where(idx, p.elm_index, p.elm_stock) * a.spot * (short_qty + fut_qty)
           + np.where(idx, p.elm_expiry_day_index, 0.0) * a.spot * np.where(expiring, -a.q, 0.0).sum(axis=1))
    debit = np.maximum(-net_premium, 0.0)
    eq_cash = np.where(eq & (a.q > 0), a.q * a.spot[:, None], 0.0).sum(axis=1)
    long_only = (short_qty == 0) & (fut_qty == 0)
    secured = np.where(short_opt & (a.kind == _K_PUT), -a.q * a.K, 0.0).sum(axis=1)
    model = np.where(a.cash_secured, "cash_secured", np.where(long_only, "long_premium", "span"))
    margin = np.where(a.cash_secured, secured + eq_cash,
                      np.where(long_only, debit + eq_cash, span + elm + debit + eq_cash))
    zero = np.zeros(n)
    uses_span = model == "span"
    details = {
        "model": model, "price_scan_pct": psr, "vol_scan": vsr, "scan_risk": np.where(uses_span, scan, zero),
        "calendar_charge": np.where(uses_span, cal, zero), "short_option_minimum": np.where(uses_span, somc, zero),
        "span": np.where(uses_span, span, zero), "exposure": np.where(uses_span, elm, zero),
        "premium": np.where(a.cash_secured, zero, debit),
        "cash": np.where(a.cash_secured, secured + eq_cash, eq_cash),
    }
    return margin, details


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
    a = _arrays(cands)
    n = len(cands)
    net_premium = _cash(a)
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
        ev[single] = _cash(sa) + _vanilla_expectation(sa, np.ones_like(sa.back))
        for j, i in enumerate(single):
            roots_all[i] = roots[j]
    if multi.size:
        ma = a.take(multi)
        mp, ml, roots, st0 = _multi(ma)
        max_profit[multi], min_pnl[multi] = mp, ml
        pop[multi] = _pop(st0, roots, ma.F0, s[multi])
        ev[multi] = _cash(ma) + _vanilla_expectation(ma, ~ma.back) + _back_expectation(ma)
        for j, i in enumerate(multi):
            roots_all[i] = roots[j]
    g = {k: (getattr(a, k) * a.q).sum(axis=1) for k in ("delta", "gamma", "vega", "theta")}
    margin, md = _margin(a, net_premium, margin_params)
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
