"""The positions being built and the capital limits they must respect (the engine's working state).

A :class:`Book` holds the open :class:`Holding` objects (a candidate row, its tier and its whole
lots) and answers one question for every step that adds capital: which :class:`Limit` adding it
would break (:meth:`Book.blocker`). Selection opens holdings, sizing changes their lots.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .config import MarketRules

__all__ = ["Book", "Holding", "Limit", "inr", "pct"]


class Limit(StrEnum):
    """A capital limit of the book (the value is the name used in exclusion and shortfall texts)."""

    POSITION = "position"
    SYMBOL = "symbol"
    INDUSTRY = "industry"
    UNLIMITED_RISK = "unlimited_risk"
    PORTFOLIO = "portfolio"


def inr(x: float) -> str:
    """An INR amount as the texts show it (``1,234,567``)."""
    return f"{x:,.0f}"


def pct(x: float) -> str:
    """A fraction as a percentage with up to 4 significant digits (``8%``, ``12.5%``)."""
    return f"{100 * x:.4g}%"


@dataclass
class Holding:
    """One position while it is built: the candidate row, its tier and lots, the capital target."""

    row: dict
    tier: str
    lots: int = 1
    target: float = 0.0
    demoted_from: str | None = None

    @property
    def m(self) -> float:
        """Capital per lot."""
        return float(self.row["capital_per_lot"])

    @property
    def capital(self) -> float:
        return self.lots * self.m


class Book:
    """The positions being built and the limit checks on them."""

    def __init__(self, capital: float, rules: MarketRules) -> None:
        lim, rk = rules.position_limits, rules.risk_limits
        self.capital = capital
        self.cap_position = lim.max_position_pct * capital
        self.cap_symbol = lim.max_symbol_pct * capital
        self.cap_industry = lim.max_industry_pct * capital
        self.cap_portfolio = rk.max_portfolio_margin_pct * capital
        self.cap_unlimited = rk.max_unlimited_risk_pct * capital
        self.positions: list[Holding] = []
        self.eps = 1e-6 * max(capital, 1.0)

    @property
    def per_lot_cap(self) -> float:
        """The most one lot of any candidate may need (position, symbol and portfolio caps)."""
        return min(self.cap_position, self.cap_symbol, self.cap_portfolio)

    @property
    def room_cap(self) -> float:
        """The most one position may hold (position and symbol caps)."""
        return min(self.cap_position, self.cap_symbol)

    def total(self) -> float:
        return sum(p.capital for p in self.positions)

    def by(self, key: str, value: Any) -> float:
        return sum(p.capital for p in self.positions if p.row[key] == value)

    def tier_capital(self, tier: str) -> float:
        return sum(p.capital for p in self.positions if p.tier == tier)

    def unlimited(self) -> float:
        return sum(p.capital for p in self.positions if p.row["unlimited_risk"])

    def blocker(self, row: dict, extra: float, own: Holding | None = None) -> Limit | None:
        """Which limit adding ``extra`` capital to ``row``'s position would break (None = fits)."""
        e = self.eps
        pos_cap = (own.capital if own else 0.0) + extra
        if pos_cap > self.cap_position + e:
            return Limit.POSITION
        if self.by("symbol", row["symbol"]) + extra > self.cap_symbol + e:
            return Limit.SYMBOL
        if self.by("industry", row["industry"]) + extra > self.cap_industry + e:
            return Limit.INDUSTRY
        if row["unlimited_risk"] and self.unlimited() + extra > self.cap_unlimited + e:
            return Limit.UNLIMITED_RISK
        if self.total() + extra > self.cap_portfolio + e:
            return Limit.PORTFOLIO
        return None

    def limit_names(self, rules: MarketRules) -> dict[Limit, str]:
        """Each limit as the texts name it, with its percentage (``max per position 8%``)."""
        lim, risk = rules.position_limits, rules.risk_limits
        return {Limit.POSITION: f"max per position {pct(lim.max_position_pct)}",
                Limit.SYMBOL: f"max per symbol {pct(lim.max_symbol_pct)}",
                Limit.INDUSTRY: f"max per industry {pct(lim.max_industry_pct)}",
                Limit.UNLIMITED_RISK: f"max unlimited-risk share {pct(risk.max_unlimited_risk_pct)}",
                Limit.PORTFOLIO: f"max portfolio margin {pct(risk.max_portfolio_margin_pct)}"}

    def limits(self, rules: MarketRules) -> dict[str, float]:
        """The limits in force (INR caps and the rules' counts and fractions), as the summary reports them."""
        lim, risk = rules.position_limits, rules.risk_limits
        return {
            "max_position_capital": self.cap_position, "max_symbol_capital": self.cap_symbol,
            "max_industry_capital": self.cap_industry, "max_portfolio_capital": self.cap_portfolio,
            "max_unlimited_risk_capital": self.cap_unlimited, "min_positions": lim.min_positions,
            "target_positions": lim.target_positions, "max_positions": lim.max_positions,
            "max_position_pct": lim.max_position_pct, "max_symbol_pct": lim.max_symbol_pct,
            "max_industry_pct": lim.max_industry_pct, "max_portfolio_margin_pct": risk.max_portfolio_margin_pct,
            "max_unlimited_risk_pct": risk.max_unlimited_risk_pct, "kelly_fraction": risk.kelly_fraction,
            "kelly_cap": risk.kelly_cap, "deployment_target": rules.deployment_target,
        }
