"""The payoff curves of a strategy candidate, as data for a chart: P&L at the front expiry and today
(T+0) on a grid of underlying prices around the forward, with the marks a chart shows (strikes,
breakevens, spot, the POP law's forward and volatility). :mod:`options_v4_dagster.reports.payoff_chart`
draws them; nothing here draws or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..quant.black import black76_price
from .build import Candidate
from .leg_arrays import pnl_at_front_expiry

__all__ = ["SPAN_SIGMAS", "PayoffCurves", "payoff_curves", "value_today"]

#: the grid covers the forward +- this many standard deviations of the POP law
SPAN_SIGMAS = 3.2


@dataclass(frozen=True)
class PayoffCurves:
    """What a payoff chart of one candidate shows. INR for P&L, underlying prices in INR."""

    symbol: str
    name: str  # the strategy's name (file names)
    display_name: str
    legs: str  # one line: "BUY 75 CE 25000 31Jul @123.45, SELL ..."
    spot: float
    forward: float  # the POP law: forward, annual volatility (ATM IV) and years to the front expiry
    sigma: float
    t_years: float
    max_profit: float | None  # None = unlimited
    max_loss: float | None
    pop: float
    expected_value: float
    strikes: tuple[float, ...]  # distinct, ascending
    breakevens: tuple[float, ...]  # all of them (a chart marks those within [lo, hi])
    S: np.ndarray  # the grid: lo..hi with every strike and breakeven inside it as a node
    expiry: np.ndarray  # P&L at the front expiry on S (exactly 0 at the breakevens)
    today: np.ndarray  # P&L if the underlying moved to S now (T+0)
    score: float | None = None  # total score and conviction, when the candidate was scored
    conviction: str | None = None

    @property
    def sd(self) -> float:
        """Standard deviation of log S at the front expiry (sigma sqrt(T))."""
        return _sd(self.sigma, self.t_years)

    @property
    def lo(self) -> float:
        return float(self.forward * np.exp(-SPAN_SIGMAS * self.sd))

    @property
    def hi(self) -> float:
        return float(self.forward * np.exp(SPAN_SIGMAS * self.sd))


def _sd(sigma: float, t_years: float) -> float:
    return float(sigma * np.sqrt(max(t_years, 1e-6)))


def value_today(c: Candidate, S: np.ndarray) -> np.ndarray:
    """P&L (INR) if the underlying moved to ``S`` now: options revalued by Black-76 at their IVs on
    forwards scaled with the underlying, futures and stock at the new level."""
    S = np.asarray(S, dtype=float)
    total = np.zeros_like(S)
    for leg in c.legs:
        q = leg.signed_quantity
        if leg.instrument.is_option and leg.iv is not None and leg.forward and leg.t_years:
            F = S * (leg.forward / c.spot)
            now = black76_price(F, leg.strike, leg.t_years, leg.iv, leg.instrument.value == "CE", leg.df or 1.0)
            total += q * (now - leg.price)
        elif leg.instrument.is_option:  # no IV: value at intrinsic
            intr = np.maximum(S - leg.strike, 0) if leg.instrument.value == "CE" else np.maximum(leg.strike - S, 0)
            total += q * (intr - leg.price)
        else:
            scale = (leg.forward / c.spot) if (leg.instrument.value == "FUT" and leg.forward) else 1.0
            total += q * (S * scale - leg.price)
    return total


def _legs_line(c: Candidate) -> str:
    return ", ".join(f"{leg.side.value} {leg.quantity} {leg.instrument.value}"
                     + (f" {leg.strike:g}" if leg.strike else "") + (f" {leg.expiry:%d%b}" if leg.expiry else "")
                     + f" @{leg.price:.2f}" for leg in c.legs)


def payoff_curves(c: Candidate, points: int = 600, *, score: float | None = None,
                  conviction: str | None = None) -> PayoffCurves:
    """The curves of an analysed candidate on ``points`` evenly spaced prices over the forward
    +- :data:`SPAN_SIGMAS` standard deviations, plus every strike and breakeven inside that range
    (so kinks are exact and the profit and loss parts of the expiry curve meet at zero)."""
    a = c.analytics
    if a is None:
        raise ValueError(f"{c.symbol} {c.name}: analyse the candidate before charting it")
    forward, sigma, t_years = float(a.pop_inputs.forward), float(a.pop_inputs.sigma), float(a.pop_inputs.t_years)
    sd = _sd(sigma, t_years)
    lo, hi = forward * np.exp(-SPAN_SIGMAS * sd), forward * np.exp(SPAN_SIGMAS * sd)
    strikes = tuple(sorted({float(leg.strike) for leg in c.legs if leg.strike is not None}))
    breakevens = tuple(float(b) for b in a.breakevens)
    S = np.unique(np.concatenate([np.linspace(lo, hi, points), [m for m in strikes + breakevens if lo < m < hi]]))
    expiry = pnl_at_front_expiry([c], S)[0]
    return PayoffCurves(
        symbol=c.symbol, name=c.name, display_name=c.strategy.display_name, legs=_legs_line(c), spot=float(c.spot),
        forward=forward, sigma=sigma, t_years=t_years, max_profit=a.max_profit, max_loss=a.max_loss,
        pop=float(a.pop), expected_value=float(a.expected_value), strikes=strikes, breakevens=breakevens, S=S,
        expiry=np.where(np.isin(S, breakevens), 0.0, expiry), today=value_today(c, S), score=score,
        conviction=conviction,
    )
