"""The live broker: :class:`DhanBroker` implements :class:`~.broker.Broker` on the official dhanhq SDK
(2.3.0) through :class:`~options_v4_dagster.market.dhan_client.DhanClient` (SDK construction,
timeouts, envelope → typed errors, circuit breaker).

Calls:

* ``place`` → ``place_order(..., tag=correlation_id)`` (POST /orders), one order per call: the
  executor already slices by freeze quantity, so ``place_slice_order`` (whose slices share one
  correlation id and could not be looked up one by one) is not used. Sent **once**: never retried
  here; the executor decides after asking by correlation id.
* ``modify`` → ``modify_order`` (PUT /orders/{id}; quantity is the order's *total*; at most 25
  modifications an order, counted here too), ``cancel`` → ``cancel_order``; both then read the
  order back, so the returned order carries the traded quantity.
* ``order`` → ``get_order_by_id``; ``order_by_correlation_id`` → ``get_order_by_correlationID``
  (not found → None); ``orders`` → ``get_order_list``; ``trades`` → ``get_trade_book``;
  ``positions`` → ``get_positions``; ``funds`` → ``get_fund_limits`` (``availabelBalance``);
  ``margin`` → ``margin_calculator_multi`` (the installed SDK has it: hedge benefit included),
  else ``margin_calculator`` per leg, summed. Rows are mapped by :mod:`.dhan_rows`.

Errors (the SDK never raises: its failure envelopes become these):

* place/modify/cancel: no HTTP answer and the request certainly not sent (connection refused,
  connect timeout, DNS; or the circuit was already open) → :class:`BrokerUnavailable`; no answer
  after it may have been sent (read timeout, connection dropped), an HTTP 5xx or DH-908/909, or a
  2xx without an order id → :class:`OutcomeUnknown`; HTTP 429 / DH-904 → :class:`BrokerRateLimited`;
  any other refusal (DH-905 input, DH-906 order error, RMS codes, DH-901 token) →
  :class:`OrderRejected` with the code. An order the exchange rejects after acceptance is returned
  REJECTED with ``omsErrorCode``/``omsErrorDescription``.
* reads are retried on transient failures (DhanClient), then: unreachable / 5xx →
  BrokerUnavailable, 429 → BrokerRateLimited, 404 or a "not found" answer → OrderNotFound, else
  :class:`BrokerError`.

Order requests (place, modify, cancel) hold a slot of the shared
:class:`~.order_limiter.OrderRateLimiter` (10/s, 250/min, 1,000/h, 7,000/day across processes) from
before sending until the answer; reads are spaced by the client's own throttle (``read_interval``, 20/s)
and, across processes, by the machine's shared ledger (:mod:`~options_v4_dagster.market.dhan_limits`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Self

from ..errors import CircuitOpen, DataError, ProviderError, RateLimited
from ..market.dhan_client import TRANSIENT_CODES, DhanClient
from .broker import (
    BrokerError,
    BrokerOrder,
    BrokerPosition,
    BrokerRateLimited,
    BrokerUnavailable,
    Fill,
    Funds,
    MarginQuote,
    OrderNotFound,
    OrderRejected,
    OutcomeUnknown,
)
from .dhan_rows import (
    fill_from_row,
    funds_from_row,
    margin_from_row,
    normalize_status,
    order_from_row,
    position_from_row,
)
from .order_limiter import OrderRateLimiter
from .orders import OrderRequest, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)
S = OrderStatus
MAX_MODIFICATIONS = 25
_NOT_FOUND = re.compile(r"not\s*found|no\s+(such\s+)?(order|record|data)|does not exist|invalid order id", re.I)


def _detail(exc: ProviderError) -> str:
    return getattr(exc, "detail", None) or str(exc)


def _rows(data: Any) -> list[Mapping]:
    if isinstance(data, list):
        return [r for r in data if isinstance(r, Mapping)]
    if isinstance(data, Mapping):
        inner = data.get("data")
        if isinstance(inner, (list, Mapping)) and "orderId" not in data:
            return _rows(inner)
        return [data] if data else []
    return []


class DhanBroker:
    """See the module docstring. ``limiter`` None: no shared order-rate limit (tests only)."""

    name = "dhan"

    def __init__(self, client: DhanClient, limiter: OrderRateLimiter | None, *, validity: str = "DAY",
                 read_interval: float = 0.05, max_modifications: int = MAX_MODIFICATIONS) -> None:
        self.client = client
        self.limiter = limiter
        self.validity = validity
        self.max_modifications = max_modifications
        self._read_slots = [("dhan-order-read", read_interval)]
        self._cid_by_order: dict[str, str] = {}
        self._quantity: dict[str, int] = {}
        self.modifications: Counter[str] = Counter()

    @classmethod
    def from_env(cls, base_url: str | None = None, **client_kw: Any) -> Self:
        """Client from ``DHAN_CLIENT_ID`` / ``DHAN_ACCESS_TOKEN`` (/ ``DHAN_API_BASE_URL``), limiter from
        :func:`options_v4_dagster.config.dhan_order_settings`."""
        return cls.with_limiter(DhanClient.from_env(base_url, **client_kw))

    @classmethod
    def from_credentials(cls, client_id: str, access_token: str, base_url: str | None = None,
                         **client_kw: Any) -> Self:
        """As :meth:`from_env` with the credentials passed in (the Dagster resource resolves them from ``dg.EnvVar``)."""
        return cls.with_limiter(DhanClient.from_credentials(client_id, access_token, base_url, **client_kw))

    @classmethod
    def with_limiter(cls, client: DhanClient) -> Self:
        """A broker on ``client`` with the account's shared order-rate limiter
        (:func:`options_v4_dagster.config.dhan_order_settings`)."""
        from .. import config

        s = config.dhan_order_settings()
        return cls(client, OrderRateLimiter(s["path"], key=f"dhan_{client.client_id}", margin_ms=s["margin_ms"],
                                            max_wait=s["max_wait"]))

    def __repr__(self) -> str:
        return f"DhanBroker({self.client!r}, limiter={self.limiter!r})"

    def close(self) -> None:
        self.client.close()
        if self.limiter is not None:
            self.limiter.close()

    @property
    def sdk(self):
        return self.client.client

    # -- transport ---------------------------------------------------------------------------

    def _write(self, what: str, fn: Callable[[], dict], cid: str | None) -> Any:
        """One order request: a limiter slot, then sent exactly once; failures as broker errors."""
        try:
            with self.limiter.slot(cid or what) if self.limiter is not None else contextlib.nullcontext():
                return self.client.call(what, fn, slots=(), max_attempts=1)
        except CircuitOpen as exc:
            cause = exc.__cause__
            if isinstance(cause, ProviderError) and getattr(cause, "connection_failure", False):
                raise self._write_error(cause, what, cid) from exc  # this very request opened it
            raise BrokerUnavailable(f"{what}: {_detail(exc)}", correlation_id=cid) from exc
        except ProviderError as exc:
            raise self._write_error(exc, what, cid) from exc
        except DataError as exc:
            raise OrderRejected(f"{what}: {exc}", correlation_id=cid) from exc

    @staticmethod
    def _write_error(exc: ProviderError, what: str, cid: str | None) -> BrokerError:
        msg, code, status = _detail(exc), exc.code, exc.status
        if getattr(exc, "connection_failure", False):
            if getattr(exc, "request_sent", True) is False:
                return BrokerUnavailable(f"{msg} (not sent)", correlation_id=cid)
            return OutcomeUnknown(f"{msg} (the request may have reached Dhan: look it up by correlation id)",
                                  correlation_id=cid)
        if isinstance(exc, RateLimited):
            return BrokerRateLimited(msg, code=code or "DH-904", correlation_id=cid)
        if (status is not None and status >= 500) or code in TRANSIENT_CODES:
            return OutcomeUnknown(f"{msg} (server error after sending)", code=code, correlation_id=cid)
        if status is not None and 200 <= status < 300:
            return OutcomeUnknown(f"{msg} (an unreadable success answer)", code=code, correlation_id=cid)
        return OrderRejected(msg, code=code, correlation_id=cid)

    def _read(self, what: str, fn: Callable[..., dict], *args: Any) -> Any:
        try:
            return self.client.call(what, fn, *args, slots=self._read_slots)
        except (CircuitOpen, RateLimited, ProviderError) as exc:
            msg, code, status = _detail(exc), exc.code, exc.status
            if isinstance(exc, RateLimited):
                raise BrokerRateLimited(msg, code=code or "DH-904") from exc
            if isinstance(exc, CircuitOpen) or exc.retryable:  # no answer, 5xx, DH-908/909 (after retries)
                raise BrokerUnavailable(msg, code=code) from exc
            if status == 404 or _NOT_FOUND.search(msg):
                raise OrderNotFound(msg, code=code) from exc
            raise BrokerError(msg, code=code) from exc
        except DataError as exc:  # DH-907: no data
            raise OrderNotFound(f"{what}: {exc}") from exc

    def _remember(self, bo: BrokerOrder) -> BrokerOrder:
        if bo.order_id:
            if bo.correlation_id:
                self._cid_by_order[bo.order_id] = bo.correlation_id
            self._quantity[bo.order_id] = bo.quantity
        return bo

    # -- Broker protocol ---------------------------------------------------------------------

    def place(self, request: OrderRequest) -> BrokerOrder:
        cid = request.correlation_id
        side, otype = Side(request.side), OrderType(request.order_type)
        price = float(request.price) if otype is OrderType.LIMIT else 0.0
        fn = functools.partial(self.sdk.place_order, security_id=str(request.security_id),
                               exchange_segment=request.exchange_segment, transaction_type=side.value,
                               quantity=int(request.quantity), order_type=otype.value,
                               product_type=request.product_type, price=price, validity=self.validity, tag=cid)
        data = self._write(f"place_order {cid}", fn, cid)
        oid = str(data.get("orderId") or "") if isinstance(data, Mapping) else ""
        if not oid:
            raise OutcomeUnknown(f"place_order answered without an order id: {str(data)[:200]}", correlation_id=cid)
        status = normalize_status(data.get("orderStatus") or "TRANSIT")
        bo = self._remember(BrokerOrder(oid, cid, str(request.security_id), side, int(request.quantity), price, status,
                                        filled_quantity=int(request.quantity) if status is S.TRADED else 0))
        if status not in (S.TRANSIT, S.PENDING):  # traded or rejected at once: the row has the details
            try:
                return self.order(oid)
            except BrokerError as exc:
                log.warning("dhan: order %s (%s) is %s; its details could not be read: %s", oid, cid, status, exc)
        return bo

    def modify(self, order_id: str, *, price: float, quantity: int | None = None) -> BrokerOrder:
        """New limit ``price``; ``quantity`` the order's new *total* (Dhan's meaning), default unchanged."""
        cid = self._cid_by_order.get(order_id)
        if self.modifications[order_id] >= self.max_modifications:
            raise OrderRejected(f"order {order_id} was modified {self.modifications[order_id]} times "
                                f"(Dhan allows {self.max_modifications})", code="DH-906", correlation_id=cid)
        if quantity is None:
            quantity = self._quantity.get(order_id) or self.order(order_id).quantity
        fn = functools.partial(self.sdk.modify_order, order_id=str(order_id), order_type=OrderType.LIMIT.value,
                               leg_name=None, quantity=int(quantity), price=float(price), trigger_price=0,
                               disclosed_quantity=0, validity=self.validity)
        self._write(f"modify_order {order_id}", fn, cid)
        self.modifications[order_id] += 1
        return self.order(order_id)

    def cancel(self, order_id: str) -> BrokerOrder:
        self._write(f"cancel_order {order_id}", functools.partial(self.sdk.cancel_order, str(order_id)),
                    self._cid_by_order.get(order_id))
        return self.order(order_id)

    def order(self, order_id: str) -> BrokerOrder:
        rows = _rows(self._read(f"get_order_by_id {order_id}", self.sdk.get_order_by_id, str(order_id)))
        if not rows:
            raise OrderNotFound(f"Dhan has no order {order_id}")
        return self._remember(order_from_row(rows[-1]))

    def order_by_correlation_id(self, correlation_id: str) -> BrokerOrder | None:
        try:
            data = self._read(f"get_order_by_correlationID {correlation_id}", self.sdk.get_order_by_correlationID,
                              correlation_id)
        except OrderNotFound:
            return None
        orders = [order_from_row(r) for r in _rows(data)]
        orders = [o for o in orders if o.correlation_id in (None, correlation_id)]
        if not orders:
            return None
        if len(orders) > 1:
            log.warning("dhan: %d orders carry correlation id %s; the latest is used", len(orders), correlation_id)
        return self._remember(max(orders, key=lambda o: (o.updated_at is not None, o.updated_at, o.order_id)))

    def orders(self) -> list[BrokerOrder]:
        try:
            data = self._read("get_order_list", self.sdk.get_order_list)
        except OrderNotFound:
            return []
        return [self._remember(order_from_row(r)) for r in _rows(data)]

    def trades(self, order_id: str | None = None) -> list[Fill]:
        try:
            data = self._read(f"get_trade_book {order_id or ''}".strip(), self.sdk.get_trade_book, order_id)
        except OrderNotFound:
            return []
        return [fill_from_row(r, self._cid_by_order.get(str(r.get("orderId")))) for r in _rows(data)]

    def positions(self) -> list[BrokerPosition]:
        try:
            data = self._read("get_positions", self.sdk.get_positions)
        except OrderNotFound:
            return []
        return [position_from_row(r) for r in _rows(data)]

    def funds(self) -> Funds:
        rows = _rows(self._read("get_fund_limits", self.sdk.get_fund_limits))
        if not rows:
            raise BrokerError("get_fund_limits answered without data")
        return funds_from_row(rows[0])

    def margin(self, requests: list[OrderRequest]) -> MarginQuote:
        """Margin of the basket: ``margin_calculator_multi`` (hedge benefit) when the SDK has it, else
        ``margin_calculator`` per leg, summed (no hedge benefit: an upper bound)."""
        legs = [{"exchangeSegment": r.exchange_segment, "transactionType": Side(r.side).value,
                 "quantity": int(r.quantity), "productType": r.product_type, "securityId": str(r.security_id),
                 "price": float(r.price), "triggerPrice": 0.0} for r in requests]
        if hasattr(self.sdk, "margin_calculator_multi"):
            data = self._read("margin_calculator_multi", self.sdk.margin_calculator_multi, legs, False, False)
            return margin_from_row(_rows(data)[0] if _rows(data) else {}, model="dhan margin_calculator_multi")
        quotes = [margin_from_row(_rows(self._read("margin_calculator", self.sdk.margin_calculator, g["securityId"],
                                                   g["exchangeSegment"], g["transactionType"], g["quantity"],
                                                   g["productType"], g["price"]))[0],
                                  model="dhan margin_calculator") for g in legs]
        return MarginQuote(total=sum(q.total for q in quotes), span=sum(q.span for q in quotes),
                           exposure=sum(q.exposure for q in quotes),
                           details={"model": "dhan margin_calculator per leg, summed", "legs": len(quotes)})
