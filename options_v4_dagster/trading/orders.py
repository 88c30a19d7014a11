"""Orders and strategies as state machines, and the deterministic correlation ids that make
placement exactly-once.

Order states: local ``INITIALIZED`` (row written, nothing sent) → ``SUBMITTED`` (request sent)
→ the broker's states (Dhan's TRANSIT, PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED,
EXPIRED), plus ``UNKNOWN``: a submit whose outcome is not known (timeout, disconnect, 5xx after
sending). An UNKNOWN order is resolved by asking the broker by correlation id, never by sending
again. An illegal transition raises :class:`IllegalTransition`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from ..errors import OptionsV4Error


class IllegalTransition(OptionsV4Error):
    """An order or strategy was asked to move to a state it cannot reach from its current one."""


class OrderStatus(StrEnum):
    INITIALIZED = "INITIALIZED"
    SUBMITTED = "SUBMITTED"
    UNKNOWN = "UNKNOWN"
    TRANSIT = "TRANSIT"
    PENDING = "PENDING"
    PART_TRADED = "PART_TRADED"
    TRADED = "TRADED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def working(self) -> bool:
        """At the broker (or possibly so) and able to fill further."""
        return self in (OrderStatus.SUBMITTED, OrderStatus.UNKNOWN, OrderStatus.TRANSIT,
                        OrderStatus.PENDING, OrderStatus.PART_TRADED)


S = OrderStatus
TERMINAL = frozenset({S.TRADED, S.REJECTED, S.CANCELLED, S.EXPIRED})
_BROKER_STATES = frozenset({S.TRANSIT, S.PENDING, S.PART_TRADED, S.TRADED, S.REJECTED, S.CANCELLED, S.EXPIRED})

#: from-state → states it may move to. Self-moves are listed where the broker reports repeats
#: (a modified PENDING order, a further partial fill, an UNKNOWN still unresolved).
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.INITIALIZED: frozenset({S.SUBMITTED, S.REJECTED}),  # REJECTED: refused by a local check, never sent
    S.SUBMITTED: _BROKER_STATES | {S.UNKNOWN},
    S.UNKNOWN: _BROKER_STATES | {S.UNKNOWN},  # REJECTED also when the broker never knew it (grace period)
    S.TRANSIT: _BROKER_STATES,
    S.PENDING: frozenset({S.PENDING, S.PART_TRADED, S.TRADED, S.REJECTED, S.CANCELLED, S.EXPIRED}),
    S.PART_TRADED: frozenset({S.PART_TRADED, S.TRADED, S.CANCELLED, S.EXPIRED}),
    S.TRADED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}


def check_transition(current: OrderStatus | str, new: OrderStatus | str, *, what: str = "order") -> OrderStatus:
    """``new`` as an :class:`OrderStatus` if ``current → new`` is legal, else :class:`IllegalTransition`."""
    cur, nxt = OrderStatus(current), OrderStatus(new)
    if nxt not in ORDER_TRANSITIONS[cur]:
        raise IllegalTransition(f"{what}: {cur} → {nxt} is not a legal order transition")
    return nxt


class StrategyState(StrEnum):
    PENDING = "PENDING"  # approved, no leg filled yet
    PARTIALLY_ESTABLISHED = "PARTIALLY_ESTABLISHED"  # some legs (or slices) filled
    OPEN = "OPEN"  # every leg filled in full
    FAILED = "FAILED"  # could not be established; filled legs left for a human (or unwound)
    UNWOUND = "UNWOUND"  # could not be established; filled legs closed again
    PARTIALLY_EXITED = "PARTIALLY_EXITED"
    CLOSED = "CLOSED"


T = StrategyState
STRATEGY_TRANSITIONS: dict[StrategyState, frozenset[StrategyState]] = {
    T.PENDING: frozenset({T.PENDING, T.PARTIALLY_ESTABLISHED, T.OPEN, T.FAILED}),
    T.PARTIALLY_ESTABLISHED: frozenset({T.PARTIALLY_ESTABLISHED, T.OPEN, T.FAILED, T.UNWOUND}),
    T.OPEN: frozenset({T.OPEN, T.PARTIALLY_EXITED, T.CLOSED}),
    T.FAILED: frozenset({T.FAILED, T.UNWOUND}),
    T.UNWOUND: frozenset(),
    T.PARTIALLY_EXITED: frozenset({T.PARTIALLY_EXITED, T.CLOSED}),
    T.CLOSED: frozenset(),
}


def check_strategy_transition(current: StrategyState | str, new: StrategyState | str, *,
                              what: str = "strategy") -> StrategyState:
    cur, nxt = StrategyState(current), StrategyState(new)
    if nxt not in STRATEGY_TRANSITIONS[cur]:
        raise IllegalTransition(f"{what}: {cur} → {nxt} is not a legal strategy transition")
    return nxt


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"  # brokers turn it into a protected limit (Dhan since 2026)


#: Dhan's correlationId travels as ``tag``: keep it short and plain.
CORRELATION_ID_MAX = 25
_CID_OK = re.compile(r"^[A-Za-z0-9_-]{1,25}$")


def entry_correlation_id(allocation_id: str, position_id: int, leg: int, slice_no: int = 0, attempt: int = 0) -> str:
    """Deterministic id of one entry order: (allocation, position, leg, slice, attempt).

    ``attempt`` counts new orders for the same slice after an earlier one ended unfilled
    (rejected or cancelled with nothing traded); a repricing *modifies* the order and keeps it.
    """
    alloc = allocation_id.replace("-", "")[:10]
    cid = f"e{alloc}-{position_id}-{leg}-{slice_no}-{attempt}"
    return _checked(cid)


def exit_correlation_id(intent_key: str, leg: int, slice_no: int = 0, attempt: int = 0) -> str:
    """Deterministic id of one exit order of an exit intent (e.g. ``1234:scale_out:50``)."""
    digest = hashlib.sha256(intent_key.encode()).hexdigest()[:10]
    return _checked(f"x{digest}-{leg}-{slice_no}-{attempt}")


def _checked(cid: str) -> str:
    if not _CID_OK.match(cid):
        raise ValueError(f"correlation id {cid!r} is not 1-{CORRELATION_ID_MAX} characters of [A-Za-z0-9_-]")
    return cid


@dataclass(frozen=True)
class OrderRequest:
    """What is asked of a broker. ``quantity`` in shares (a multiple of the lot size)."""

    correlation_id: str
    security_id: str
    symbol: str
    expiry: object  # datetime.date
    strike: float
    option_type: str  # CE / PE
    side: Side
    quantity: int
    price: float
    order_type: OrderType = OrderType.LIMIT
    lot_size: int = 1
    tick_size: float = 0.05
    exchange_segment: str = "NSE_FNO"
    product_type: str = "MARGIN"  # carry-forward F&O
