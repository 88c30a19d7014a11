"""What execution reads and writes about orders, fills and strategy states: the records and the
:class:`ExecutionStore` protocol (``store/trading.py`` implements it over the warehouse).

The store is the source of truth for exactly-once placement: an order's row is reserved under its
unique correlation id *before* the request is sent, and every status change is a compare-and-set
against the stored status (so two processes never both move one order, and never both send it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..errors import OptionsV4Error
from .broker import BrokerOrder, Fill
from .orders import OrderRequest, OrderStatus, OrderType, Side, StrategyState

Purpose = Literal["entry", "exit"]

#: error codes of REJECTED rows that never reached the broker: the slice may be tried again
#: under the next attempt number (any other rejection ends the leg)
NOT_SENT = "NOT_SENT"  # refused before sending (broker unreachable, rate limited past the retries)
LOST = "LOST"  # sent or maybe sent, but the broker did not know it after the grace period
RETRYABLE_CODES = frozenset({NOT_SENT, LOST})

#: the charges of one fill, INR (trading/fees.py's breakdown); ``fees`` is their total
FEE_FIELDS = ("brokerage", "stt", "exchange_charges", "sebi_fees", "stamp_duty", "gst")


class ConcurrentUpdate(OptionsV4Error):
    """A compare-and-set lost: the order changed since it was read (another process moved it)."""


class TradeIdCollision(OptionsV4Error):
    """A fill arrived under a trade id the store already holds for a different fill (another order,
    quantity or price): nothing of the batch is recorded, since dropping it would lose a fill."""


class CorrelationIdCollision(OptionsV4Error):
    """A correlation id is already stored for a different order (another allocation, position or
    broker): nothing is sent, since the broker would see one key for two orders."""


@dataclass(frozen=True)
class OrderMeta:
    """Where an order comes from, stored next to the request."""

    broker: str
    purpose: Purpose
    leg: int
    slice_no: int = 0
    attempt: int = 0
    allocation_id: str | None = None
    position_id: str | None = None
    position_no: int | None = None
    strategy_id: str | None = None
    intent: str | None = None  # exit intent key (unwind, strategy:rule:level)


@dataclass(frozen=True)
class StoredOrder:
    """One row of ``orders``."""

    correlation_id: str
    broker: str
    purpose: str
    leg: int
    slice_no: int
    attempt: int
    security_id: str
    symbol: str
    side: Side
    quantity: int
    order_type: OrderType
    status: OrderStatus
    version: int
    filled_quantity: int = 0
    price: float | None = None
    average_price: float | None = None
    allocation_id: str | None = None
    position_id: str | None = None
    position_no: int | None = None
    strategy_id: str | None = None
    intent: str | None = None
    expiry: dt.date | None = None
    strike: float | None = None
    option_type: str | None = None
    lot_size: int | None = None
    modifications: int = 0
    broker_order_id: str | None = None
    reason: str | None = None
    error_code: str | None = None
    adopted: bool = False
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def remaining_quantity(self) -> int:
        return self.quantity - self.filled_quantity

    def request(self) -> OrderRequest:
        """The request this row stands for (as stored: the latest limit price)."""
        return OrderRequest(self.correlation_id, self.security_id, self.symbol, self.expiry, self.strike or 0.0,
                            self.option_type or "", self.side, self.quantity, self.price or 0.0, self.order_type,
                            self.lot_size or 1)


@dataclass(frozen=True)
class StrategyStatus:
    """One row of ``strategy_execution_status``."""

    allocation_id: str
    position_id: str
    strategy_id: str
    symbol: str
    broker: str
    state: StrategyState
    position_no: int | None = None
    strategy_name: str | None = None
    approval_id: str | None = None
    reason: str | None = None
    legs: int | None = None
    entry_premium: float | None = None
    fees: float | None = None
    realized_pnl: float | None = None  # INR: every leg's realized P&L less every fee (final once CLOSED)
    started_at: dt.datetime | None = None
    opened_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


#: fees of one order's fills: (all its fills so far, earliest first; the order) -> per fill
#: {brokerage, stt, exchange_charges, sebi_fees, stamp_duty, gst, fees} INR (brokerage on the first
#: fill only). ``trading/fees.py``'s :func:`~.fees.order_charges` is the NSE schedule.
FeesFn = Callable[[Sequence[Fill], StoredOrder], Sequence[Mapping[str, float]]]


class ExecutionStore(Protocol):
    """The persistence execution needs (``store.trading.TradingStore``)."""

    def reserve_order(self, request: OrderRequest, meta: OrderMeta, *,
                      at: dt.datetime | None = None) -> tuple[StoredOrder, bool]:
        """Insert the order's row (status INITIALIZED) under its unique correlation id, or return the
        row already stored for it; ``created`` says which. Raises :class:`CorrelationIdCollision`
        when the stored row belongs to another allocation, position, leg or broker."""

    def order(self, correlation_id: str) -> StoredOrder | None: ...

    def orders(self, *, allocation_id: str | None = None, position_id: str | None = None,
               statuses: Sequence[OrderStatus] | None = None, broker: str | None = None) -> list[StoredOrder]: ...

    def transition(self, correlation_id: str, new_status: OrderStatus, *, expected_version: int | None = None,
                   source: str = "local", payload: Mapping | None = None, at: dt.datetime | None = None,
                   **fields) -> StoredOrder:
        """Move the order to ``new_status`` (checked with ``check_transition`` against the stored
        status), set ``fields`` and log an order_events row, in one transaction, as a compare-and-set
        on the stored (status, version). Raises IllegalTransition or :class:`ConcurrentUpdate`."""

    def record_event(self, correlation_id: str, *, source: str, payload: Mapping,
                     at: dt.datetime | None = None) -> None: ...

    def record_fills(self, correlation_id: str, fills: Sequence[Fill],
                     fees: Sequence[Mapping[str, float]] | None = None) -> int:
        """Insert the order's fills not stored yet (idempotent on (broker, trade_id)) and update the
        position of its (allocation, position, leg) from all of its trades; the number inserted."""

    def filled_from_trades(self, correlation_id: str) -> tuple[int, float | None]:
        """(shares, volume-weighted price) of the order's stored fills."""

    def adopt_order(self, order: BrokerOrder, meta: OrderMeta, *, symbol: str | None = None,
                    reason: str, at: dt.datetime | None = None) -> tuple[StoredOrder, bool]: ...

    def start_strategy(self, status: StrategyStatus) -> tuple[StrategyStatus, bool]:
        """Insert the position's execution row if absent; the stored row and whether it is new."""

    def strategy_status(self, allocation_id: str, position_id: str) -> StrategyStatus | None: ...

    def set_strategy_state(self, allocation_id: str, position_id: str, state: StrategyState, *,
                           reason: str | None = None, at: dt.datetime | None = None) -> StrategyStatus:
        """Checked with ``check_strategy_transition``; entry premium and fees are refreshed from the
        position's trades."""

    def orders_created_since(self, since: dt.datetime, *, broker: str) -> int: ...
