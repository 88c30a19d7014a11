"""Position accounting by average cost, per contract (the paper broker's positions; usable for the
``positions`` table per strategy and leg as well).

A fill in the direction of the position (or opening one) moves the average open price; a fill
against it realizes ``(price - average open) x closed quantity`` for a long (the negative for a
short); a fill larger than the position flips it, the rest opening at the fill price.
"""

from __future__ import annotations

from dataclasses import dataclass

from .orders import Side
from .rules import InstrumentSpec

__all__ = ["Ledger"]


@dataclass
class Ledger:
    spec: InstrumentSpec
    net: int = 0  # signed shares: + long, - short
    avg_open: float = 0.0  # average price of the open quantity (0 when flat)
    buy_qty: int = 0
    buy_value: float = 0.0
    sell_qty: int = 0
    sell_value: float = 0.0
    realized: float = 0.0

    @property
    def buy_average(self) -> float:
        return self.buy_value / self.buy_qty if self.buy_qty else 0.0

    @property
    def sell_average(self) -> float:
        return self.sell_value / self.sell_qty if self.sell_qty else 0.0

    def unrealized(self, mark: float | None) -> float:
        """P&L of the open quantity at ``mark`` (0 without a mark or when flat)."""
        return (mark - self.avg_open) * self.net if (mark is not None and self.net) else 0.0

    def apply(self, side: Side, qty: int, price: float) -> None:
        if qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {qty}")
        d = qty if side is Side.BUY else -qty
        if side is Side.BUY:
            self.buy_qty, self.buy_value = self.buy_qty + qty, self.buy_value + qty * price
        else:
            self.sell_qty, self.sell_value = self.sell_qty + qty, self.sell_value + qty * price
        if self.net == 0 or (self.net > 0) == (d > 0):
            self.avg_open = (self.avg_open * abs(self.net) + price * qty) / (abs(self.net) + qty)
        else:
            closed = min(qty, abs(self.net))
            self.realized += closed * (price - self.avg_open) * (1 if self.net > 0 else -1)
            if qty > closed:  # through zero: the rest opens at this price
                self.avg_open = price
        self.net += d
        if self.net == 0:
            self.avg_open = 0.0
