"""Strategy candidates as padded leg arrays (one row per candidate, one column per leg) and their
P&L at the front expiry, vectorized across candidates: the expiry payoff for single-expiry
positions, the Black-76 valuation of the back legs for calendars and diagonals (the P&L model of
:mod:`.analytics`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.black import black76_price
from .build import Candidate
from .catalogue import Instrument

__all__ = ["KIND_CALL", "KIND_EQ", "KIND_FUT", "KIND_NONE", "KIND_PUT", "LegArrays", "leg_arrays", "pnl_at_front_expiry",
           "pnl_expiry", "pnl_front", "premium_cash"]

KIND_NONE, KIND_CALL, KIND_PUT, KIND_FUT, KIND_EQ = 0, 1, 2, 3, 4


@dataclass
class LegArrays:
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

    def take(self, idx: np.ndarray) -> LegArrays:
        return LegArrays(**{k: v[idx] for k, v in self.__dict__.items()})


def leg_arrays(cands: list[Candidate]) -> LegArrays:
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
    codes = {Instrument.CE: KIND_CALL, Instrument.PE: KIND_PUT, Instrument.FUT: KIND_FUT, Instrument.EQ: KIND_EQ}
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
    return LegArrays(kind=kind, K=K, q=q, price=price, iv=iv, t=t, F=F, df=df, back=back, delta=dl, gamma=gm, vega=vg,
                 theta=th, spot=spot, F0=F0, sig=sig, T0=T0, df0=df0, single=single, is_index=is_index,
                 cash_secured=cash_secured)


def premium_cash(a: LegArrays) -> np.ndarray:
    """Premium cash flow per position (INR): + received, - paid (option legs)."""
    return -(a.q * a.price).sum(axis=1)


# --------------------------------------------------------------------------------------------
# P&L functions

def pnl_expiry(a: LegArrays, S: np.ndarray) -> np.ndarray:
    """P&L at expiry (single-expiry positions) at prices ``S`` of shape (n, G)."""
    x = S[:, :, None]
    K = a.K[:, None, :]
    k = a.kind[:, None, :]
    v = np.where(k == KIND_CALL, np.maximum(x - K, 0.0),
                 np.where(k == KIND_PUT, np.maximum(K - x, 0.0), np.where(k >= KIND_FUT, x - K, 0.0)))
    return (v * a.q[:, None, :]).sum(axis=2) + premium_cash(a)[:, None]


def pnl_front(a: LegArrays, S: np.ndarray) -> np.ndarray:
    """P&L at the front expiry at prices ``S`` (n, G): front legs at intrinsic, back legs Black-76."""
    x = S[:, :, None]
    K = a.K[:, None, :]
    k = a.kind[:, None, :]
    ratio_nl = a.F / a.F0[:, None]
    back_opt = a.back & ((a.kind == KIND_CALL) | (a.kind == KIND_PUT))
    front = ~a.back[:, None, :]
    ratio = np.where(a.back, ratio_nl, 1.0)[:, None, :]
    v = np.where(k == KIND_CALL, np.maximum(x - K, 0.0), np.where(k == KIND_PUT, np.maximum(K - x, 0.0), 0.0))
    v = np.where(front, v, 0.0)  # back options are added below
    v = np.where(k == KIND_FUT, x * ratio - K, np.where(k == KIND_EQ, x - K, v))
    out = (v * a.q[:, None, :]).sum(axis=2) + premium_cash(a)[:, None]
    ri, lj = np.nonzero(back_opt)  # Black-76 only where needed: (position, back leg) pairs
    if ri.size:
        tau = np.maximum(a.t[ri, lj] - a.T0[ri], 0.0)[:, None]
        with np.errstate(all="ignore"):
            bv = black76_price(S[ri] * ratio_nl[ri, lj][:, None], a.K[ri, lj][:, None], tau, a.iv[ri, lj][:, None],
                               (a.kind[ri, lj] == KIND_CALL)[:, None], (a.df[ri, lj] / a.df0[ri])[:, None])
        np.add.at(out, ri, bv * a.q[ri, lj][:, None])
    return out


def pnl_at_front_expiry(cands: list[Candidate], S: np.ndarray) -> np.ndarray:
    """P&L (INR) of each candidate at its front expiry for underlying prices ``S`` ((G,) or (n, G)):
    the expiry payoff for single-expiry positions, the Black-76 valuation for calendars/diagonals."""
    a = leg_arrays(cands)
    S = np.asarray(S, dtype=float)
    S = np.broadcast_to(S, (len(cands), S.shape[-1])) if S.ndim == 1 else S
    out = np.empty(S.shape)
    s, m = a.single, ~a.single
    if s.any():
        out[s] = pnl_expiry(a.take(np.flatnonzero(s)), S[s])
    if m.any():
        out[m] = pnl_front(a.take(np.flatnonzero(m)), S[m])
    return out

