"""What an approved allocation asks to trade: positions, their legs and each leg's slices.

Built by ``store.trading_queries.allocation_plan`` from the snapshot (portfolio_allocation), the
candidates' lots (strategies) and legs (strategy_details). Quantities in shares.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from .orders import Side


@dataclass(frozen=True)
class LegPlan:
    leg: int  # the candidate's leg number (strategy_details.leg)
    side: Side
    instrument: str  # CE / PE / FUT / EQ
    strike: float | None
    expiry: dt.date | None
    quantity: int  # shares for the whole position (per-lot quantity x allocated lots)
    price: float  # reference limit price per share (the snapshot's executable price)
    security_id: str
    lot_size: int
    tick_size: float = 0.05
    freeze_quantity: int | None = None  # shares per order at most (exchange freeze limit)
    security_id_known: bool = True  # False: a synthetic id (no scrip-master id in the candidate)

    def slices(self) -> list[int]:
        """Shares per order: freeze-quantity slices rounded down to whole lots, the rest last."""
        return slice_quantities(self.quantity, self.lot_size, self.freeze_quantity)


@dataclass(frozen=True)
class PositionPlan:
    allocation_id: str
    position_id: str
    position_no: int  # 1-based within the snapshot (ordered by position_id): the correlation ids use it
    strategy_id: str
    symbol: str
    strategy_name: str
    lots: int
    legs: tuple[LegPlan, ...]

    @property
    def buy_legs(self) -> tuple[LegPlan, ...]:
        return tuple(x for x in self.legs if x.side is Side.BUY)

    @property
    def sell_legs(self) -> tuple[LegPlan, ...]:
        return tuple(x for x in self.legs if x.side is Side.SELL)


@dataclass(frozen=True)
class AllocationPlan:
    allocation_id: str
    trade_date: dt.date
    positions: tuple[PositionPlan, ...]
    approval_id: str | None = None


def slice_quantities(quantity: int, lot_size: int, freeze_quantity: int | None) -> list[int]:
    """``quantity`` split into orders of at most ``freeze_quantity`` shares, each a whole number of
    lots (the largest multiple of the lot below the freeze limit)."""
    if quantity <= 0:
        return []
    if not freeze_quantity or quantity <= freeze_quantity:
        return [quantity]
    per = (freeze_quantity // lot_size) * lot_size if lot_size > 0 else freeze_quantity
    if per <= 0:
        raise ValueError(f"freeze quantity {freeze_quantity} is below one lot of {lot_size}")
    full, rest = divmod(quantity, per)
    return [per] * full + ([rest] if rest else [])


def round_to_tick(price: float, tick: float, *, side: Side | None = None) -> float:
    """``price`` on the tick grid: down for a buy, up for a sell (never more aggressive than asked),
    nearest otherwise."""
    n = price / tick
    k = math.floor(n + 1e-9) if side is Side.BUY else math.ceil(n - 1e-9) if side is Side.SELL else round(n)
    return round(k * tick, 2)
