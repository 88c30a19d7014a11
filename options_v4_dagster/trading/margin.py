"""The paper broker's margin estimate for a book of option legs (the ``margin_fn`` default).

The strategies' SPAN-like model (``strategies/analytics.py``) needs each leg's IV, the forward and
the time to expiry, which a broker's order does not carry; this estimate needs only the contracts
and reuses that model's percentages (:class:`~options_v4_dagster.strategies.analytics.MarginParams`):

per underlying and expiry, with the option legs' payoff at expiry ``P(S) = sum q x payoff`` (q
signed shares, premiums left out: they move cash, see ``PaperBroker.funds``),

* defined risk: ``L = max(0, -min P(S))`` over S = 0, the strikes and beyond the highest strike
  (unbounded when the net call quantity is negative);
* naked estimate: ``N = sum over short legs |q| x strike x (price scan floor + exposure margin)``
  (9.3% + 2% index, 14.2% + 3.5% stock), the strike standing in for the spot;
* requirement = ``min(L, N)``: a long-only book needs nothing beyond its premium, a credit spread
  its width x quantity, a naked short the percentage of its notional.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..strategies.analytics import MarginParams
from ..universe import is_index

__all__ = ["MarginLeg", "estimate_margin", "naked_rate"]


@dataclass(frozen=True)
class MarginLeg:
    symbol: str
    expiry: dt.date
    strike: float
    option_type: str  # CE / PE
    quantity: int  # signed shares: + long, - short


def naked_rate(symbol: str, params: MarginParams = MarginParams()) -> float:
    """Margin per INR of short notional for a naked short option (price scan floor + exposure)."""
    if is_index(symbol):
        return params.psr_floor_index + params.elm_index
    return params.psr_floor_stock + params.elm_stock


def _group_requirement(strike: np.ndarray, is_call: np.ndarray, q: np.ndarray, rate: float) -> float:
    points = np.concatenate([[0.0], np.unique(strike)])
    intrinsic = np.where(is_call[None, :], np.maximum(points[:, None] - strike[None, :], 0.0),
                         np.maximum(strike[None, :] - points[:, None], 0.0))
    payoff = intrinsic @ q
    call_slope = q[is_call].sum()
    loss = np.inf if call_slope < 0 else max(0.0, -float(payoff.min()))
    naked = float((np.abs(q) * strike)[q < 0].sum()) * rate
    return min(loss, naked)


def estimate_margin(legs: Iterable[MarginLeg], params: MarginParams = MarginParams()) -> float:
    """The margin requirement (INR) of ``legs`` (see the module docstring). Legs of one contract
    net out; non-option legs raise ``ValueError``."""
    groups: dict[tuple[str, dt.date], dict[tuple[float, bool], int]] = defaultdict(lambda: defaultdict(int))
    for leg in legs:
        ot = leg.option_type.upper()
        if ot not in ("CE", "PE"):
            raise ValueError(f"margin estimate covers options only, got option_type {leg.option_type!r}")
        groups[(leg.symbol.upper(), leg.expiry)][(float(leg.strike), ot == "CE")] += int(leg.quantity)
    total = 0.0
    for (symbol, _expiry), book in groups.items():
        items = [(k, c, q) for (k, c), q in book.items() if q]
        if not items:
            continue
        strike, is_call, q = (np.array(x) for x in zip(*items, strict=True))
        total += _group_requirement(strike.astype(float), is_call.astype(bool), q.astype(float),
                                    naked_rate(symbol, params))
    return round(total, 2)
