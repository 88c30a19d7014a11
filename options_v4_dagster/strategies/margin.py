"""Margin of strategy candidates: a SPAN-like estimate (:class:`MarginParams`), vectorized across
candidates (:func:`span_margin`, called by :func:`.analytics.analyze`).

* Long-only option positions (no short option, no future): the debit.
* Otherwise ``SPAN + exposure + debit + cash``:
  - price scan range PSR = max(6 x sigma_daily x sqrt(2), 9.3% index / 14.2% stock) x spot, with
    sigma_daily = the front ATM IV / sqrt(252) standing in for NSE's EWMA volatility;
  - volatility scan range VSR = max(25% x ATM IV, 4 vol points index / 10 stock);
  - the 16 SPAN scenarios (price 0, +-1/3, +-2/3, +-1 PSR, each with vol +-VSR; +-2 PSR extreme
    moves at 35%; a move is floored at -100%: the price cannot fall below zero), every option leg
    revalued with Black-76 at its own IV, FUT legs linearly;
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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.black import black76_price
from .leg_arrays import KIND_CALL, KIND_EQ, KIND_FUT, KIND_PUT, LegArrays

__all__ = ["MarginDetail", "MarginParams", "span_margin"]


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



_SCN_PRICE = np.array([0, 0, 1 / 3, 1 / 3, -1 / 3, -1 / 3, 2 / 3, 2 / 3, -2 / 3, -2 / 3, 1, 1, -1, -1, 0, 0])
_SCN_VOL = np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 0, 0], dtype=float)


def span_margin(a: LegArrays, net_premium: np.ndarray, p: MarginParams):
    """Margin per candidate (INR) and its parts (:class:`MarginDetail` fields as arrays)."""
    n = a.K.shape[0]
    idx = a.is_index
    is_opt = (a.kind == KIND_CALL) | (a.kind == KIND_PUT)
    short_opt = is_opt & (a.q < 0)
    fut = a.kind == KIND_FUT
    eq = a.kind == KIND_EQ
    sigma_d = a.sig / np.sqrt(p.trading_days)
    psr = np.maximum(p.sigmas * sigma_d * np.sqrt(p.mpor_days), np.where(idx, p.psr_floor_index, p.psr_floor_stock))
    vsr = np.maximum(p.vsr_fraction * a.sig, np.where(idx, p.vsr_min_index, p.vsr_min_stock))
    price_mult = np.concatenate([_SCN_PRICE[:14], [p.extreme_multiple, -p.extreme_multiple]])
    weight = np.concatenate([np.ones(14), [p.extreme_cover, p.extreme_cover]])
    # (n, 16) relative moves, floored at -100%: the underlying cannot fall below zero (an ATM IV above
    # ~94% makes the -2 x PSR extreme move larger than the price; a negative forward prices as NaN)
    move = np.maximum(psr[:, None] * price_mult[None, :], -1.0)
    T = np.maximum(a.t, 1e-6)[:, None, :]
    Fl = a.F[:, None, :]
    with np.errstate(all="ignore"):
        v0 = black76_price(a.F, a.K, np.maximum(a.t, 1e-6), a.iv, a.kind == KIND_CALL, a.df)
        vol = np.maximum(a.iv[:, None, :] + _SCN_VOL[None, :, None] * vsr[:, None, None], 0.01)
        vs = black76_price(Fl * (1.0 + move[:, :, None]), a.K[:, None, :], T, vol, (a.kind == KIND_CALL)[:, None, :],
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
    net_short = (np.maximum(-np.where(a.kind == KIND_CALL, a.q, 0.0).sum(axis=1), 0.0)
                 + np.maximum(-np.where(a.kind == KIND_PUT, a.q, 0.0).sum(axis=1), 0.0))
    somc = np.where(idx, p.somc_index, p.somc_stock) * a.spot * net_short
    span = np.maximum(scan + cal, somc)
    expiring = short_opt & (a.t < 1.0 / 365.0)
    elm = (np.where(idx, p.elm_index, p.elm_stock) * a.spot * (short_qty + fut_qty)
           + np.where(idx, p.elm_expiry_day_index, 0.0) * a.spot * np.where(expiring, -a.q, 0.0).sum(axis=1))
    debit = np.maximum(-net_premium, 0.0)
    eq_cash = np.where(eq & (a.q > 0), a.q * a.spot[:, None], 0.0).sum(axis=1)
    long_only = (short_qty == 0) & (fut_qty == 0)
    secured = np.where(short_opt & (a.kind == KIND_PUT), -a.q * a.K, 0.0).sum(axis=1)
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

