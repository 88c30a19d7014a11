"""The broker interface both brokers implement (paper and Dhan) and the typed errors they raise.

Every method either returns a typed value or raises a :class:`BrokerError` subclass; SDK
envelopes ({'status': 'failure', ...}) never leak to callers. The crucial distinction for
exactly-once placement is between :class:`OrderRejected` (the broker answered: not placed) and
:class:`OutcomeUnknown` (the request may or may not have reached the exchange: ask by
correlation id before anything else).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import OptionsV4Error
from .orders import OrderRequest, OrderStatus, Side


class BrokerError(OptionsV4Error):
    """A broker call failed. ``code``: the broker's code (e.g. DH-904, an OMS code) when known."""

    def __init__(self, message: str, *, code: str | None = None, correlation_id: str | None = None) -> None:
        self.code = code
        self.correlation_id = correlation_id
        prefix = f"[{correlation_id}] " if correlation_id else ""
        super().__init__(prefix + message + (f" ({code})" if code else ""))


class OrderRejected(BrokerError):
    """The broker or a pre-send check answered: this order was not placed."""


class OutcomeUnknown(BrokerError):
    """The request may have been accepted (timeout after sending, disconnect, 5xx): look it up by
    correlation id before sending anything for the same key."""


class BrokerRateLimited(BrokerError):
    """Too many requests (DH-904, HTTP 429): nothing was placed; wait and retry the same request."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached before sending (connection refused, DNS, circuit open):
    nothing was placed."""


class OrderNotFound(BrokerError):
    """The broker does not know this order id / correlation id."""


@dataclass(frozen=True)
class BrokerOrder:
    """The broker's view of one order (Dhan's order book row, or the paper broker's)."""

    order_id: str
    correlation_id: str | None
    security_id: str
    side: Side
    quantity: int  # shares ordered
    price: float
    status: OrderStatus
    filled_quantity: int = 0
    average_price: float = 0.0  # volume-weighted over fills; 0 when nothing traded
    reason: str | None = None  # rejection text / OMS error description
    error_code: str | None = None
    updated_at: dt.datetime | None = None

    @property
    def remaining_quantity(self) -> int:
        return self.quantity - self.filled_quantity


@dataclass(frozen=True)
class Fill:
    """One trade (execution) of an order."""

    trade_id: str
    order_id: str
    correlation_id: str | None
    security_id: str
    side: Side
    quantity: int
    price: float
    traded_at: dt.datetime


@dataclass(frozen=True)
class BrokerPosition:
    security_id: str
    net_quantity: int  # + long, - short (shares)
    buy_average: float
    sell_average: float
    realized_pnl: float
    unrealized_pnl: float


@dataclass(frozen=True)
class Funds:
    available: float
    used_margin: float
    total: float


@dataclass(frozen=True)
class MarginQuote:
    """Margin for a basket of orders (with the hedge benefit where the broker computes it)."""

    total: float
    span: float = 0.0
    exposure: float = 0.0
    hedge_benefit: float = 0.0
    details: dict = field(default_factory=dict)


@runtime_checkable
class Broker(Protocol):
    """What execution and monitoring need from a broker. Quantities in shares, prices in INR."""

    name: str

    def place(self, request: OrderRequest) -> BrokerOrder:
        """Send one order. Raises OrderRejected, OutcomeUnknown, BrokerRateLimited or
        BrokerUnavailable; a returned order may already be REJECTED by the exchange."""

    def modify(self, order_id: str, *, price: float, quantity: int | None = None) -> BrokerOrder: ...

    def cancel(self, order_id: str) -> BrokerOrder: ...

    def order(self, order_id: str) -> BrokerOrder:
        """Raises OrderNotFound."""

    def order_by_correlation_id(self, correlation_id: str) -> BrokerOrder | None:
        """None when the broker has no order with this correlation id."""

    def orders(self) -> list[BrokerOrder]: ...

    def trades(self, order_id: str | None = None) -> list[Fill]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def funds(self) -> Funds: ...

    def margin(self, requests: list[OrderRequest]) -> MarginQuote: ...
