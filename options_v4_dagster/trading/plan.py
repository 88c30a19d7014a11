"""What an approved allocation asks to trade: positions, their legs and each leg's slices.

Built by ``store.trading_queries.allocation_plan`` from the snapshot (portfolio_allocation), the
candidates' lots (strategies) and legs (strategy_details), with each leg's security id, lot, tick and
freeze quantity from the session's ``instruments`` rows. Quantities in shares.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .orders import Side
from .rules import TICK_SIZE, slices


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
    tick_size: float = TICK_SIZE
    freeze_quantity: int | None = None  # the exchange freeze limit (shares): every order stays strictly below it
    security_id_known: bool = True  # False: the contract_key stands in (no broker id in the candidate)
    #: where security id, lot, tick and freeze come from: "instruments" (the session's table) or "fallback"
    instrument_source: str = "instruments"

    def slices(self) -> list[int]:
        """Shares per order (:func:`~.rules.slices`): whole lots, each strictly below the freeze
        quantity, full slices first."""
        return slices(self.quantity, self.lot_size, self.freeze_quantity)


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
    capital: float | None = None  # the snapshot's capital (INR): the paper account's default
    #: "instruments" (every leg from the session's instruments rows), "fallback" (the session has none:
    #: strategy_details, the allocation's lots, the default tick, config/freeze_limits.yaml) or "mixed"
    instrument_source: str = "instruments"
    instrument_note: str | None = None  # why and what fell back

    @property
    def symbols(self) -> list[str]:
        """The underlyings of the positions, sorted (what the session's quote book needs)."""
        return sorted({p.symbol for p in self.positions})

