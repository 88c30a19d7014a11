"""Exactly-once placement of single orders, following them at the broker, and reconciliation.

The protocol of one order (one correlation id):

1. ``reserve_order``: the row is written (INITIALIZED) under its unique id before anything is sent.
2. compare-and-set INITIALIZED → SUBMITTED, committed *before* the request is sent: of two processes
   only the one whose compare-and-set wins sends, and a row still INITIALIZED was never sent.
3. ``broker.place``: the answer moves the row to the broker's status; OrderRejected → REJECTED;
   OutcomeUnknown → UNKNOWN, then the broker is asked by correlation id (never sent again).
4. A SUBMITTED/UNKNOWN row (a crash after step 2, a timeout) is resolved by asking the broker by
   correlation id; still unknown to the broker ``unknown_grace`` seconds after it was sent, it becomes
   REJECTED with error code LOST — only then may the caller use the next attempt number.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from .broker import (
    Broker,
    BrokerOrder,
    BrokerRateLimited,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    OutcomeUnknown,
)
from .fees import order_charges
from .ledger import LOST, NOT_SENT, ConcurrentUpdate, ExecutionStore, FeesFn, OrderMeta, StoredOrder
from .orders import IllegalTransition, OrderRequest, OrderStatus
from .rules import protection_band

S = OrderStatus
_LOOKUP_ERRORS = (BrokerUnavailable, BrokerRateLimited, OutcomeUnknown)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ExecutionConfig:
    """How execution places and follows orders. Times in seconds of ``clock``/``sleep``."""

    live: bool = False
    fill_timeout: float = 30.0  # wait for a leg group's fills before each repricing
    poll_interval: float = 0.5
    max_reprices: int = 3  # modifications toward the market, within the protection band
    reprice_step: float = 0.005  # share of the reference price per repricing (at least one tick)
    unknown_grace: float = 30.0  # an order the broker does not know this long after sending is REJECTED (LOST)
    max_attempts: int = 3  # orders per slice whose predecessors never reached the broker
    on_leg_failure: Literal["unwind", "leave"] = "unwind"
    daily_order_budget: int = 1000  # orders per broker per IST day (Dhan allows 7,000)
    margin_buffer: float = 0.0  # funds must cover margin x (1 + buffer)
    send_retries: int = 5  # BrokerRateLimited / BrokerUnavailable before sending: retries of the same request
    retry_wait: float = 1.0  # first backoff, doubled per retry
    kill_switch: bool | Callable[[], bool] = False
    band: Callable[[float], tuple[float, float]] = protection_band  # (low, high) around a reference price
    market_open: Callable[[dt.datetime], bool] | None = None  # None: NSE 09:15-15:30 IST on sessions
    fees_fn: FeesFn | None = order_charges  # NSE charges per fill (config/charges.yaml); None: recorded as zero
    clock: Callable[[], dt.datetime] = _utcnow
    sleep: Callable[[float], None] = time.sleep

    def killed(self) -> bool:
        return bool(self.kill_switch() if callable(self.kill_switch) else self.kill_switch)


class OrderDesk:
    """Places and follows orders for one broker, exactly once per correlation id."""

    def __init__(self, broker: Broker, store: ExecutionStore, config: ExecutionConfig) -> None:
        self.broker, self.store, self.config = broker, store, config
        self.placed: list[str] = []  # correlation ids whose place() returned in this process

    def now(self) -> dt.datetime:
        return self.config.clock()

    # -- placing -------------------------------------------------------------------------------
    def submit(self, request: OrderRequest, meta: OrderMeta) -> StoredOrder:
        """The order of ``request.correlation_id`` placed at most once: sent when its row is new (or
        was never sent), else looked up / followed at the broker."""
        row, _created = self.store.reserve_order(request, meta, at=self.now())
        if row.status is S.INITIALIZED:
            try:
                row = self.store.transition(row.correlation_id, S.SUBMITTED, expected_version=row.version,
                                            at=self.now(), payload={"sending": True})
            except ConcurrentUpdate:  # another process is sending it: follow, never send
                return self.resolve(self.store.order(row.correlation_id))
            return self._send(row, request)
        if row.status in (S.SUBMITTED, S.UNKNOWN):
            return self.resolve(row)
        return self.refresh(row)

    def _send(self, row: StoredOrder, request: OrderRequest) -> StoredOrder:
        cid, wait = row.correlation_id, self.config.retry_wait
        last: Exception | None = None
        for _ in range(self.config.send_retries + 1):
            try:
                bo = self.broker.place(request)
            except OrderRejected as exc:
                return self.store.transition(cid, S.REJECTED, source="broker", at=self.now(), reason=str(exc),
                                             error_code=exc.code)
            except OutcomeUnknown as exc:
                row = self.store.transition(cid, S.UNKNOWN, source="broker", at=self.now(), reason=str(exc),
                                            error_code=exc.code)
                return self.resolve(row)
            except (BrokerRateLimited, BrokerUnavailable) as exc:  # nothing placed: same request again
                last = exc
                self.store.record_event(cid, source="broker", payload={"not_sent": str(exc)}, at=self.now())
                self.config.sleep(wait)
                wait *= 2
                continue
            self.placed.append(cid)
            return self.apply(row, bo)
        return self.store.transition(cid, S.REJECTED, at=self.now(), error_code=NOT_SENT,
                                     reason=f"not sent after {self.config.send_retries} retries: {last}")

    # -- following -----------------------------------------------------------------------------
    def resolve(self, row: StoredOrder, *, wait: bool = True) -> StoredOrder:
        """A SUBMITTED/UNKNOWN order: ask the broker by correlation id until it answers or the grace
        period after the row's last update passes (then REJECTED, code LOST). ``wait`` False: one
        lookup (reconciliation)."""
        cid = row.correlation_id
        deadline = row.updated_at + dt.timedelta(seconds=self.config.unknown_grace) if row.updated_at else self.now()
        while True:
            answered = True
            try:
                bo = self.broker.order_by_correlation_id(cid)
            except OrderNotFound:
                bo = None
            except _LOOKUP_ERRORS as exc:
                bo, answered = None, False
                self.store.record_event(cid, source="broker", payload={"lookup_failed": str(exc)}, at=self.now())
            if bo is not None:
                return self.apply(self.store.order(cid), bo)
            if answered and self.now() >= deadline:
                return self.store.transition(
                    cid, S.REJECTED, source="reconcile", at=self.now(), error_code=LOST,
                    reason=f"the broker has no order with correlation id {cid} "
                           f"{self.config.unknown_grace:g}s after it was sent")
            if not wait:
                return self.store.order(cid)
            if self.now() >= deadline + dt.timedelta(seconds=self.config.unknown_grace):
                return self.store.order(cid)  # the broker cannot be asked: stays unresolved
            self.config.sleep(self.config.poll_interval)

    def refresh(self, row: StoredOrder) -> StoredOrder:
        """Bring a stored order up to date with the broker (status, fills)."""
        if row.status in (S.SUBMITTED, S.UNKNOWN):
            return self.resolve(row, wait=False)
        if row.status.terminal or row.status is S.INITIALIZED or not row.broker_order_id:
            if row.filled_quantity and self.store.filled_from_trades(row.correlation_id)[0] < row.filled_quantity:
                self._fetch_fills(row)
            return row
        try:
            bo = self.broker.order(row.broker_order_id)
        except (*_LOOKUP_ERRORS, OrderNotFound) as exc:
            self.store.record_event(row.correlation_id, source="broker", payload={"refresh_failed": str(exc)},
                                    at=self.now())
            return row
        return self.apply(row, bo)

    def apply(self, row: StoredOrder, bo: BrokerOrder, *, source: str = "broker", **extra) -> StoredOrder:
        """Move the stored order to what the broker reports; record new fills."""
        fields = dict(extra)
        if bo.order_id and bo.order_id != row.broker_order_id:
            fields["broker_order_id"] = bo.order_id
        if bo.filled_quantity != row.filled_quantity:
            fields["filled_quantity"] = bo.filled_quantity
            fields["average_price"] = bo.average_price or None
        if bo.reason and bo.reason != row.reason:
            fields.update(reason=bo.reason, error_code=bo.error_code)
        if bo.status is not row.status or fields:
            try:
                row = self.store.transition(row.correlation_id, bo.status, expected_version=row.version,
                                            source=source, at=self.now(), payload={"broker_status": str(bo.status)},
                                            **fields)
            except IllegalTransition as exc:  # a stale broker report: logged, not applied
                self.store.record_event(row.correlation_id, source=source, at=self.now(),
                                        payload={"ignored": str(exc), "broker_status": str(bo.status)})
            except ConcurrentUpdate:
                row = self.store.order(row.correlation_id)
        if row.filled_quantity and self.store.filled_from_trades(row.correlation_id)[0] < row.filled_quantity:
            self._fetch_fills(row)
        return row

    def _fetch_fills(self, row: StoredOrder) -> None:
        try:
            fills = sorted((f for f in self.broker.trades(row.broker_order_id) if f.order_id == row.broker_order_id),
                           key=lambda f: (f.traded_at, f.trade_id))
        except _LOOKUP_ERRORS as exc:
            self.store.record_event(row.correlation_id, source="broker", payload={"trades_failed": str(exc)},
                                    at=self.now())
            return
        fees = [dict(x) for x in self.config.fees_fn(fills, row)] if self.config.fees_fn else None
        self.store.record_fills(row.correlation_id, fills, fees)

    def wait(self, rows: Iterable[StoredOrder], timeout: float) -> list[StoredOrder]:
        """Poll the working orders until none is working or ``timeout`` passes."""
        rows = list(rows)
        deadline = self.now() + dt.timedelta(seconds=timeout)
        while True:
            rows = [self.refresh(r) if r.status.working else r for r in rows]
            if not any(r.status.working for r in rows) or self.now() >= deadline:
                return rows
            self.config.sleep(self.config.poll_interval)

    def modify(self, row: StoredOrder, price: float) -> StoredOrder:
        try:
            bo = self.broker.modify(row.broker_order_id, price=price)
        except (OrderRejected, *_LOOKUP_ERRORS, OrderNotFound) as exc:
            self.store.record_event(row.correlation_id, source="broker", at=self.now(),
                                    payload={"modify_failed": str(exc), "price": price})
            return self.refresh(row)
        return self.apply(row, bo, price=price, modifications=row.modifications + 1)

    def cancel(self, row: StoredOrder) -> StoredOrder:
        try:
            bo = self.broker.cancel(row.broker_order_id)
        except (OrderRejected, *_LOOKUP_ERRORS, OrderNotFound) as exc:
            self.store.record_event(row.correlation_id, source="broker", at=self.now(),
                                    payload={"cancel_failed": str(exc)})
            return self.refresh(row)
        return self.apply(row, bo)


# -- reconciliation -----------------------------------------------------------------------------

ENTRY_CID = re.compile(r"^e(?P<alloc>[A-Za-z0-9]{1,10})-(?P<pos>\d+)-(?P<leg>\d+)-(?P<slice>\d+)-(?P<attempt>\d+)$")
EXIT_CID = re.compile(r"^x(?P<intent>[0-9a-f]{10})-(?P<leg>\d+)-(?P<slice>\d+)-(?P<attempt>\d+)$")


def parse_correlation_id(cid: str | None, broker: str) -> OrderMeta | None:
    """The meta an id of ours carries (None: not one of ours). The allocation id is known only by its
    prefix, so adopted orders have none."""
    m = ENTRY_CID.match(cid or "")
    if m:
        return OrderMeta(broker, "entry", int(m["leg"]), int(m["slice"]), int(m["attempt"]),
                         position_no=int(m["pos"]), intent=f"allocation prefix {m['alloc']}")
    m = EXIT_CID.match(cid or "")
    if m:
        return OrderMeta(broker, "exit", int(m["leg"]), int(m["slice"]), int(m["attempt"]),
                         intent=f"intent digest {m['intent']}")
    return None


@dataclass
class ReconcileReport:
    adopted: list[str] = field(default_factory=list)  # at the broker under our ids, unknown here: stored, flagged
    updated: list[str] = field(default_factory=list)  # ours, brought up to date with the broker
    rejected: list[str] = field(default_factory=list)  # ours, unknown to the broker after the grace: REJECTED
    unresolved: list[str] = field(default_factory=list)  # ours, still unknown (within the grace, broker unreachable)


def reconcile(broker: Broker, store: ExecutionStore, config: ExecutionConfig | None = None) -> ReconcileReport:
    """On start: adopt broker orders with our correlation-id pattern that the store lacks (flagged,
    with their fills), and bring every working order of ours up to date; one the broker does not
    know after the grace period becomes REJECTED (LOST)."""
    config = config or ExecutionConfig()
    desk, report = OrderDesk(broker, store, config), ReconcileReport()
    for bo in broker.orders():
        meta = parse_correlation_id(bo.correlation_id, broker.name)
        if meta is None or store.order(bo.correlation_id) is not None:
            continue
        row, created = store.adopt_order(bo, meta, at=desk.now(),
                                         reason="adopted at reconciliation: the broker knows this order, the store did not")
        if created:
            report.adopted.append(row.correlation_id)
            if row.filled_quantity:
                desk._fetch_fills(row)
    working = [s for s in OrderStatus if s.working]
    for row in store.orders(statuses=working, broker=broker.name):
        after = desk.refresh(row)
        if after.status.working and after.version == row.version and row.broker_order_id:
            after = _forget_unknown(desk, after)
        if after.status is S.REJECTED and after.error_code == LOST:
            report.rejected.append(row.correlation_id)
        elif after.status in (S.SUBMITTED, S.UNKNOWN):
            report.unresolved.append(row.correlation_id)
        elif after.version != row.version:
            report.updated.append(row.correlation_id)
    return report


def _forget_unknown(desk: OrderDesk, row: StoredOrder) -> StoredOrder:
    """A working order with a broker id that the broker knows neither by id nor by correlation id (a
    paper broker's process that ended, an order purged by the broker): REJECTED with code LOST once the
    grace period after its last update has passed, so it never stays PENDING forever. Only at
    reconciliation: while a run follows its own orders, a failed lookup is retried, never concluded."""
    try:
        desk.broker.order(row.broker_order_id)
        return row
    except OrderNotFound:
        pass
    except _LOOKUP_ERRORS:
        return row
    try:
        if desk.broker.order_by_correlation_id(row.correlation_id) is not None:
            return desk.resolve(row, wait=False)
    except _LOOKUP_ERRORS:
        return row
    if row.updated_at and desk.now() < row.updated_at + dt.timedelta(seconds=desk.config.unknown_grace):
        return row
    return desk.store.transition(
        row.correlation_id, S.REJECTED, source="reconcile", at=desk.now(), error_code=LOST,
        reason=f"the broker ({desk.broker.name}) no longer knows order {row.broker_order_id} "
               f"({row.status}, {row.filled_quantity}/{row.quantity} filled) after the grace period")
