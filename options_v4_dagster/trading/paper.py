"""The paper broker: a :class:`~options_v4_dagster.trading.broker.Broker` that fills against a
:class:`~options_v4_dagster.trading.quotes.QuoteBook` and enforces what NSE and Dhan enforce.

Matching (each time an order is placed or modified, and for every working order on
:meth:`PaperBroker.update_quotes` / :meth:`PaperBroker.step`, oldest first):

* a BUY limit fills when ``limit >= ask``, at the ask; a SELL when ``limit <= bid``, at the bid —
  never better than the quote. ``slippage_ticks`` moves the price that many ticks against the
  trader, never beyond the limit;
* ``partial_fills``: at most the displayed quantity (``ask_qty`` / ``bid_qty``, whole lots) per
  evaluation, shared by every order on that side of that contract until the book changes (or
  :meth:`step`, which shows the same quotes with their quantities again); the rest rests as
  PART_TRADED. A side without a displayed quantity fills nothing;
* a non-crossing limit rests PENDING; a contract missing from the book rests too;
* MARKET orders become limits at the protection band's edge (Dhan's market price protection).

Checks, in the order a real order meets them:

* API (raise :class:`OrderRejected`, nothing recorded): positive whole lots, price on the tick,
  options only, market hours when ``live`` (09:15-15:30 IST on an NSE session); rate limit
  (:class:`BrokerRateLimited`, DH-904: more than ``orders_per_second`` place/modify/cancel
  requests in the last second by the injectable ``clock``);
* exchange / RMS (the order is recorded TRANSIT then REJECTED, with ``reason`` and ``error_code``,
  and returned): quantity at or above the freeze quantity (execution slices before sending, see
  :mod:`.rules`), a limit outside the protection band (reference = the quote's ltp, else mid; no
  reference, no band check), insufficient funds.

Funds (:meth:`PaperBroker.funds`): ``total = capital + realized P&L - charges``;
``available = capital - charges + premium received - premium paid - premium reserved by working
BUY orders - margin of (positions + working orders)``; ``used_margin = total - available``. An
order leaving ``available < 0`` is rejected. The margin is the sum over underlyings of
``margin_fn(that underlying's legs)`` (memoized), ``margin_fn`` defaulting to
:func:`.margin.estimate_margin`.
Charges (:mod:`.fees`, brokerage once per order) are deducted per fill when ``apply_charges``.

Positions use average cost (realized on the closing part of a fill); unrealized P&L marks at the
quote's reference price.
Events: every state change and fill is passed to ``on_event`` (and kept in ``events``) as a dict
shaped like the ``Data`` of Dhan's order-update WebSocket (OrderNo, CorrelationId, Status,
Quantity, TradedQty, RemainingQuantity, Price, TradedPrice, AvgTradedPrice, ReasonDescription,
LastUpdatedTime, TxnType B/S, OrderType LMT/MKT, ...); ``Status`` is the :class:`OrderStatus`
value (upper case). Every transition is checked with :func:`.orders.check_transition`.

Ids: orders count up from a number drawn from ``numpy.random.default_rng(seed)``; a trade id is
``<order id>-<fill n>``. ``seed`` None (default) draws from the OS, so processes sharing the ``trades``
table (keyed by broker, trade_id) never number alike; a seed reproduces the ids. Nothing else is random.

Test-only fault hooks (plain attributes, all off by default):

* ``reject_next`` (int): the next N accepted orders are REJECTED by the "exchange" (DH-906);
* ``unknown_after_accept`` (int): the next N orders are accepted and processed (and may fill) but
  the call raises :class:`OutcomeUnknown` — look them up by correlation id;
* ``unavailable_next`` (int): the next N calls to place raise :class:`BrokerUnavailable` (nothing sent);
* ``never_fill`` (set of security ids): orders on these contracts rest and never fill.
``placements`` counts placements per correlation id (a test asserts none is above 1).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from ..calendar import IST, MARKET_CLOSE, is_session
from ..universe import is_index
from .accounting import Ledger
from .broker import (
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
from .clock import ManualClock  # noqa: F401  (re-exported: the paper broker's test clock)
from .fees import ChargeRates, fill_charges, load_charges
from .margin import MarginLeg, estimate_margin
from .orders import OrderRequest, OrderStatus, OrderType, Side, check_transition
from .quotes import Quote, QuoteBook
from .rules import (
    INPUT_ERROR,
    ORDER_ERROR,
    FreezeLimits,
    InstrumentSpec,
    check_band,
    check_freeze,
    check_price,
    check_quantity,
    load_freeze_limits,
    market_limit_price,
    round_to_tick,
)

__all__ = ["MARKET_OPEN", "ManualClock", "PaperBroker", "PaperConfig", "RATE_LIMIT_CODE"]

MARKET_OPEN = dt.time(9, 15)
RATE_LIMIT_CODE = "DH-904"
S = OrderStatus
MarginFn = Callable[[list[MarginLeg]], float]


@dataclass(frozen=True)
class PaperConfig:
    capital: float = 1_500_000.0
    partial_fills: bool = False
    slippage_ticks: int = 0
    live: bool = False  # enforce market hours (NSE sessions, 09:15-15:30 IST)
    orders_per_second: int = 10
    max_modifications: int = 25
    seed: int | None = None  # None: from the OS (unique ids across processes); an int: reproducible
    enforce_funds: bool = True
    apply_charges: bool = True


@dataclass
class _Order:
    order_id: str
    req: OrderRequest
    spec: InstrumentSpec
    order_type: OrderType
    price: float
    quantity: int
    status: OrderStatus = S.SUBMITTED
    filled: int = 0
    fills: int = 0  # number of fills, for the trade ids
    value: float = 0.0
    last_price: float = 0.0
    reason: str | None = None
    code: str | None = None
    modifications: int = 0
    updated_at: dt.datetime | None = None

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled

    def view(self) -> BrokerOrder:
        avg = round(self.value / self.filled, 6) if self.filled else 0.0
        return BrokerOrder(self.order_id, self.req.correlation_id, self.req.security_id, self.req.side, self.quantity,
                           self.price, self.status, self.filled, avg, self.reason, self.code, self.updated_at)


class PaperBroker:
    """See the module docstring. ``quotes``: the session's book (:meth:`update_quotes` replaces it)."""

    name = "paper"

    def __init__(self, quotes: QuoteBook, config: PaperConfig | None = None, *,
                 clock: Callable[[], dt.datetime] | None = None, margin_fn: MarginFn | None = None,
                 on_event: Callable[[dict], None] | None = None, freeze_limits: FreezeLimits | None = None,
                 charges: ChargeRates | None = None, instruments: Mapping[str, InstrumentSpec] | None = None) -> None:
        self.config = config or PaperConfig()
        self._book = quotes
        self._clock = clock or (lambda: dt.datetime.now(IST))
        self._margin_fn: MarginFn = margin_fn or estimate_margin
        self.on_event = on_event
        self._freeze = freeze_limits or load_freeze_limits()
        self._rates = charges or load_charges()
        self._instruments = dict(instruments or {})
        rng = np.random.default_rng(self.config.seed)
        self._next_order = int(rng.integers(10**11, 9 * 10**11))
        self._orders: dict[str, _Order] = {}
        self._working: dict[str, _Order] = {}
        self._by_cid: dict[str, str] = {}
        self._fills: list[Fill] = []
        self._positions: dict[str, Ledger] = {}
        self._recent: list[dt.datetime] = []
        self._consumed: Counter[tuple[str, Side]] = Counter()
        self._margin_memo: dict[tuple[MarginLeg, ...], float] = {}
        self._now = self._clock()
        self.events: list[dict] = []
        self.placements: Counter[str] = Counter()
        self.charges_paid = 0.0
        # test-only fault hooks (module docstring)
        self.reject_next = 0
        self.unknown_after_accept = 0
        self.unavailable_next = 0
        self.never_fill: set[str] = set()

    # -- Broker protocol ---------------------------------------------------------------------

    def place(self, request: OrderRequest) -> BrokerOrder:
        self._now = self._clock()
        if self.unavailable_next > 0:
            self.unavailable_next -= 1
            raise BrokerUnavailable("paper fault: broker unavailable", correlation_id=request.correlation_id)
        self._throttle(request.correlation_id)
        if not (isinstance(request.side, Side) and isinstance(request.order_type, OrderType)):
            request = replace(request, side=Side(request.side), order_type=OrderType(request.order_type))
        try:
            spec = self._spec(request)
            check_quantity(request.quantity, spec.lot_size)
            if request.order_type is OrderType.LIMIT:
                check_price(request.price, spec.tick_size)
            if spec.option_type not in ("CE", "PE"):
                raise OrderRejected(f"the paper broker trades options only (option_type {spec.option_type!r})",
                                    code=INPUT_ERROR)
            if self.config.live:
                self._check_market_hours()
        except OrderRejected as exc:
            exc.correlation_id = request.correlation_id
            raise
        o = _Order(self._new_id(), request, spec, request.order_type, round(float(request.price), 6),
                   int(request.quantity))
        self._orders[o.order_id] = o
        self._by_cid[request.correlation_id] = o.order_id
        self.placements[request.correlation_id] += 1
        self._working[o.order_id] = o
        self._move(o, S.TRANSIT)
        try:
            self._exchange_checks(o)
        except OrderRejected as exc:
            self._move(o, S.REJECTED, reason=str(exc), code=exc.code)
        else:
            self._move(o, S.PENDING)
            self._match(o)
        if self.unknown_after_accept > 0:
            self.unknown_after_accept -= 1
            raise OutcomeUnknown("paper fault: the response was lost after the order was accepted",
                                 correlation_id=request.correlation_id)
        return o.view()

    def modify(self, order_id: str, *, price: float, quantity: int | None = None) -> BrokerOrder:
        """New limit ``price`` and optionally the new *total* quantity (as Dhan: not the remainder)."""
        self._now = self._clock()
        o = self._get(order_id)
        cid = o.req.correlation_id
        if o.status not in (S.PENDING, S.PART_TRADED):
            raise OrderRejected(f"order {order_id} is {o.status}: only a working order can be modified",
                                code=ORDER_ERROR, correlation_id=cid)
        if o.modifications >= self.config.max_modifications:
            raise OrderRejected(f"order {order_id} was modified {o.modifications} times (the limit)",
                                code=ORDER_ERROR, correlation_id=cid)
        self._throttle(cid)
        qty = o.quantity if quantity is None else int(quantity)
        try:
            new_price = check_price(price, o.spec.tick_size)
            check_quantity(qty, o.spec.lot_size)
            if qty <= o.filled:
                raise OrderRejected(f"quantity {qty} must exceed the {o.filled} already traded", code=INPUT_ERROR)
            check_freeze(qty, o.spec.freeze_quantity)
            check_band(o.req.side, new_price, self._reference(o.req.security_id), o.spec.tick_size)
        except OrderRejected as exc:
            exc.correlation_id = cid
            raise
        old = (o.price, o.quantity, o.order_type)
        o.price, o.quantity, o.order_type = new_price, qty, OrderType.LIMIT
        if self.config.enforce_funds and (avail := self._account()[1]) < 0:
            o.price, o.quantity, o.order_type = old
            raise OrderRejected(f"RMS: insufficient funds for the modification (available {avail:,.2f})",
                                code=ORDER_ERROR, correlation_id=cid)
        o.modifications += 1
        self._move(o, o.status, reason="MODIFIED")
        self._match(o)
        return o.view()

    def cancel(self, order_id: str) -> BrokerOrder:
        self._now = self._clock()
        o = self._get(order_id)
        if o.status not in (S.PENDING, S.PART_TRADED, S.TRANSIT):
            raise OrderRejected(f"order {order_id} is {o.status}: nothing to cancel", code=ORDER_ERROR,
                                correlation_id=o.req.correlation_id)
        self._throttle(o.req.correlation_id)
        self._move(o, S.CANCELLED, reason="CANCELLED")
        return o.view()

    def order(self, order_id: str) -> BrokerOrder:
        return self._get(order_id).view()

    def order_by_correlation_id(self, correlation_id: str) -> BrokerOrder | None:
        """The latest order placed with ``correlation_id`` (None if none)."""
        oid = self._by_cid.get(correlation_id)
        return None if oid is None else self._orders[oid].view()

    def orders(self) -> list[BrokerOrder]:
        return [o.view() for o in self._orders.values()]

    def trades(self, order_id: str | None = None) -> list[Fill]:
        return [f for f in self._fills if order_id is None or f.order_id == order_id]

    def positions(self) -> list[BrokerPosition]:
        return [BrokerPosition(sid, p.net, p.buy_average, p.sell_average, round(p.realized, 6),
                               round(p.unrealized(self._reference(sid)), 6)) for sid, p in self._positions.items()]

    def funds(self) -> Funds:
        total, available = self._account()
        return Funds(available=round(available, 2), used_margin=round(total - available, 2), total=round(total, 2))

    def margin(self, requests: list[OrderRequest]) -> MarginQuote:
        """``margin_fn`` of the requests as a basket plus the net premium paid; ``hedge_benefit`` =
        the legs' margins one by one minus the basket's."""
        sign = [1 if Side(r.side) is Side.BUY else -1 for r in requests]
        legs = [self._leg(self._spec(r), s * r.quantity) for r, s in zip(requests, sign, strict=True)]
        basket = float(self._margin_fn(legs))
        alone = sum(float(self._margin_fn([leg])) for leg in legs)
        price = [r.price if OrderType(r.order_type) is OrderType.LIMIT else (self._reference(r.security_id) or 0.0)
                 for r in requests]
        debit = sum(s * p * r.quantity for r, s, p in zip(requests, sign, price, strict=True))
        return MarginQuote(total=round(basket + max(debit, 0.0), 2), span=round(basket, 2),
                           hedge_benefit=round(alone - basket, 2),
                           details={"premium": round(debit, 2), "model": "paper estimate (trading/margin.py)"})

    # -- paper-only controls -----------------------------------------------------------------

    def update_quotes(self, book: QuoteBook) -> list[BrokerOrder]:
        """Replace the book (e.g. the next snapshot or session) and match every working order
        against it, oldest first. Returns the orders that changed."""
        self._book = book
        return self.step()

    def step(self) -> list[BrokerOrder]:
        """One more matching round against the current book, displayed quantities available again."""
        self._now = self._clock()
        self._consumed.clear()
        changed = []
        for o in list(self._working.values()):
            before = o.filled
            self._match(o)
            if o.filled != before:
                changed.append(o.view())
        return changed

    def carry_position(self, spec: InstrumentSpec, net_quantity: int, average_price: float) -> None:
        """An open position from before this broker existed (the paper account's stored positions): it
        counts in funds and margin like one filled here (premium at ``average_price``), without orders,
        fills or events."""
        if net_quantity:
            self._positions.setdefault(spec.security_id, Ledger(spec)).apply(
                Side.BUY if net_quantity > 0 else Side.SELL, abs(int(net_quantity)), float(average_price))

    def expire_working(self) -> list[BrokerOrder]:
        """End of session: every working DAY order becomes EXPIRED."""
        self._now = self._clock()
        out = []
        for o in list(self._working.values()):
            self._move(o, S.EXPIRED, reason="EXPIRED")
            out.append(o.view())
        return out

    # -- internals ---------------------------------------------------------------------------

    def _spec(self, r: OrderRequest) -> InstrumentSpec:
        known = self._instruments.get(r.security_id)
        if known is not None:
            return known
        freeze = self._freeze.freeze_quantity(r.symbol, int(r.lot_size)) if r.lot_size > 0 else None
        return InstrumentSpec(r.security_id, r.symbol, r.expiry, float(r.strike), str(r.option_type).upper(),
                              int(r.lot_size), float(r.tick_size), freeze)

    @staticmethod
    def _leg(spec: InstrumentSpec, signed_qty: int) -> MarginLeg:
        return MarginLeg(spec.symbol, spec.expiry, spec.strike, spec.option_type, signed_qty)

    def _new_id(self) -> str:
        self._next_order += 1
        return str(self._next_order)

    def _get(self, order_id: str) -> _Order:
        o = self._orders.get(order_id)
        if o is None:
            raise OrderNotFound(f"no paper order {order_id}")
        return o

    def _check_market_hours(self) -> None:
        now = self._now.astimezone(IST)
        if not is_session(now.date()) or not (MARKET_OPEN <= now.time() < MARKET_CLOSE):
            raise OrderRejected(f"market is closed at {now:%Y-%m-%d %H:%M} IST (NSE F&O: 09:15-15:30 on sessions)",
                                code=ORDER_ERROR)

    def _throttle(self, cid: str | None) -> None:
        now = self._now
        self._recent = [t for t in self._recent if (now - t).total_seconds() < 1.0]
        if len(self._recent) >= self.config.orders_per_second:
            raise BrokerRateLimited(f"exceeds Limit {self.config.orders_per_second} for user (orders per second)",
                                    code=RATE_LIMIT_CODE, correlation_id=cid)
        self._recent.append(now)

    def _reference(self, security_id: str) -> float | None:
        q = self._book.quote(security_id)
        return None if q is None else q.reference

    def _exchange_checks(self, o: _Order) -> None:
        if self.reject_next > 0:
            self.reject_next -= 1
            raise OrderRejected("paper fault: rejected by the exchange (reject_next)", code=ORDER_ERROR)
        check_freeze(o.quantity, o.spec.freeze_quantity)
        ref = self._reference(o.req.security_id)
        if o.order_type is OrderType.MARKET:
            o.price = market_limit_price(o.req.side, ref, o.spec.tick_size)
        else:
            check_band(o.req.side, o.price, ref, o.spec.tick_size)
        if self.config.enforce_funds:
            total, available = self._account()
            if available < 0:
                raise OrderRejected(f"RMS: insufficient funds: available {available:,.2f} after this order "
                                    f"(total {total:,.2f})", code=ORDER_ERROR)

    def _account(self) -> tuple[float, float]:
        """(total, available) with every working order counted as if filled at its limit."""
        charges = self.charges_paid if self.config.apply_charges else 0.0
        cash = sum(p.sell_value - p.buy_value for p in self._positions.values())
        realized = sum(p.realized for p in self._positions.values())
        net: Counter[str] = Counter({sid: p.net for sid, p in self._positions.items()})
        specs = {sid: p.spec for sid, p in self._positions.items()}
        reserved = 0.0
        for o in self._working.values():
            signed = o.remaining if o.req.side is Side.BUY else -o.remaining
            net[o.req.security_id] += signed
            specs.setdefault(o.req.security_id, o.spec)
            if signed > 0:
                reserved += signed * o.price
        by_symbol: dict[str, list[MarginLeg]] = {}
        for sid, q in net.items():
            if q:
                by_symbol.setdefault(specs[sid].symbol.upper(), []).append(self._leg(specs[sid], q))
        margin = sum(self._symbol_margin(legs) for legs in by_symbol.values())
        capital = self.config.capital - charges
        return capital + realized, capital + cash - reserved - margin

    def _symbol_margin(self, legs: list[MarginLeg]) -> float:
        """``margin_fn`` of one underlying's legs, memoized on the legs (margins of different
        underlyings add up; an order changes one underlying's book)."""
        key = tuple(sorted(legs, key=lambda g: (g.expiry, g.strike, g.option_type)))
        hit = self._margin_memo.get(key)
        if hit is None:
            if len(self._margin_memo) > 4096:
                self._margin_memo.clear()
            hit = self._margin_memo[key] = float(self._margin_fn(list(key)))
        return hit

    def _match(self, o: _Order) -> None:
        if o.status not in (S.PENDING, S.PART_TRADED) or o.req.security_id in self.never_fill:
            return
        q: Quote | None = self._book.quote(o.req.security_id)
        if q is None:
            return
        buy = o.req.side is Side.BUY
        touch, shown = (q.ask, q.ask_qty) if buy else (q.bid, q.bid_qty)
        if touch is None or (o.price < touch if buy else o.price > touch):
            return
        qty = o.remaining
        if self.config.partial_fills:
            key = (o.req.security_id, o.req.side)
            left = (shown or 0) - self._consumed[key]
            qty = min(qty, max(left, 0) // o.spec.lot_size * o.spec.lot_size)
            if qty <= 0:
                return
            self._consumed[key] += qty
        slip = self.config.slippage_ticks * o.spec.tick_size
        px = min(touch + slip, o.price) if buy else max(touch - slip, o.price)
        # an off-tick quote rounds against the trader (BUY up, SELL down); the limit is on the tick
        self._fill(o, qty, round_to_tick(px, o.spec.tick_size, Side.SELL if buy else Side.BUY))

    def _fill(self, o: _Order, qty: int, price: float) -> None:
        first = o.filled == 0
        o.filled += qty
        o.value += qty * price
        o.last_price = price
        o.fills += 1
        self._fills.append(Fill(f"{o.order_id}-{o.fills}", o.order_id, o.req.correlation_id, o.req.security_id,
                                o.req.side, qty, price, self._now))
        self._positions.setdefault(o.req.security_id, Ledger(o.spec)).apply(o.req.side, qty, price)
        if self.config.apply_charges:
            self.charges_paid += fill_charges(o.req.side, qty, price, self._rates, first_fill_of_order=first).total_charges
        self._move(o, S.TRADED if o.remaining == 0 else S.PART_TRADED)

    def _move(self, o: _Order, new: OrderStatus, *, reason: str | None = None, code: str | None = None) -> None:
        o.status = check_transition(o.status, new, what=f"paper order {o.order_id}")
        o.updated_at = self._now
        if reason is not None:
            o.reason = reason
        if code is not None:
            o.code = code
        if not o.status.working:
            self._working.pop(o.order_id, None)
        self._emit(o)

    def _emit(self, o: _Order) -> None:
        r, s = o.req, o.spec
        data = {
            "Exchange": "NSE", "Segment": "D", "Source": "P", "SecurityId": r.security_id, "ClientId": "PAPER",
            "OrderNo": o.order_id, "ExchOrderNo": str(10**15 + int(o.order_id)), "Product": "M",
            "TxnType": "B" if r.side is Side.BUY else "S", "OrderType": "MKT" if r.order_type is OrderType.MARKET else "LMT",
            "Validity": "DAY", "Quantity": o.quantity, "TradedQty": o.filled, "RemainingQuantity": o.remaining,
            "Price": o.price, "TradedPrice": o.last_price, "AvgTradedPrice": o.view().average_price,
            "Status": o.status.value, "ReasonDescription": o.reason or "CONFIRMED", "OmsErrorCode": o.code or "",
            "CorrelationId": r.correlation_id, "Symbol": s.symbol, "LegNo": 1, "LotSize": s.lot_size,
            "StrikePrice": s.strike, "OptType": s.option_type, "ExpiryDate": f"{s.expiry}",
            "Instrument": "OPTIDX" if is_index(s.symbol) else "OPTSTK",
            "LastUpdatedTime": f"{self._now.astimezone(IST):%Y-%m-%d %H:%M:%S}",
        }
        self.events.append(data)
        if self.on_event is not None:
            self.on_event(data)
