"""A small scripted broker implementing the Broker protocol, with fault injection, for the execution
tests until the PaperBroker and the Dhan stand-in take over. It counts the orders it accepted per
correlation id (``accepted``) and the place() calls per id (``calls``): tests assert no key was
accepted twice.

Per security id a :class:`Script` says how its orders behave: filled at once at the limit (default),
filled in steps over polls (partial fills), never filled, filled only at or beyond a price, rejected,
or accepted and then answered with OutcomeUnknown (a timeout after the broker took it).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field, replace

from options_v4_dagster.trading.broker import (
    BrokerOrder,
    BrokerPosition,
    BrokerRateLimited,
    Fill,
    Funds,
    MarginQuote,
    OrderNotFound,
    OrderRejected,
    OutcomeUnknown,
)
from options_v4_dagster.trading.orders import OrderRequest, OrderStatus, Side

S = OrderStatus


class FakeClock:
    """An aware UTC clock that only moves when slept on."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.t = start or dt.datetime(2025, 7, 17, 5, 0, tzinfo=dt.UTC)  # 10:30 IST
        self.slept = 0.0

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.t += dt.timedelta(seconds=seconds)


@dataclass
class Script:
    kind: str = "fill"  # fill | steps | never | reject | at_price
    steps: list[tuple[int, float]] = field(default_factory=list)  # (shares, price) per poll, for "steps"
    price: float | None = None  # at_price: a buy fills at or above it, a sell at or below it
    unknown_after_accept: bool = False  # place() accepts, then raises OutcomeUnknown
    rate_limited: int = 0  # place() raises BrokerRateLimited this many times first


class ScriptedBroker:
    name = "paper"

    def __init__(self, clock: FakeClock, *, funds: float = 1e9, margin_per_order: float = 0.0) -> None:
        self.clock = clock
        self.scripts: dict[str, Script] = {}
        self.by_id: dict[str, BrokerOrder] = {}
        self.fills: list[Fill] = []
        self.accepted: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.modifications: Counter[str] = Counter()
        self.funds_available, self.margin_per_order = funds, margin_per_order
        self._steps: dict[str, list[tuple[int, float]]] = {}
        self._seq = 0

    def script(self, security_id: str, **kw) -> None:
        self.scripts[security_id] = Script(**kw)

    def assert_no_key_twice(self) -> None:
        twice = {k: n for k, n in self.accepted.items() if n > 1}
        assert not twice, f"placed twice: {twice}"

    # -- the protocol --------------------------------------------------------------------------
    def place(self, request: OrderRequest) -> BrokerOrder:
        cid = request.correlation_id
        self.calls[cid] += 1
        sc = self.scripts.get(request.security_id, Script())
        if sc.rate_limited:
            sc.rate_limited -= 1
            raise BrokerRateLimited("too many requests", code="DH-904", correlation_id=cid)
        if sc.kind == "reject":
            raise OrderRejected("price outside the protection band", code="RS-9005", correlation_id=cid)
        self._seq += 1
        oid = f"O{self._seq}"
        self.accepted[cid] += 1
        self.by_id[oid] = BrokerOrder(oid, cid, request.security_id, request.side, request.quantity, request.price,
                                      S.PENDING, updated_at=self.clock.now())
        self._steps[oid] = list(sc.steps)
        self._match(oid)
        if sc.unknown_after_accept:
            sc.unknown_after_accept = False
            raise OutcomeUnknown("read timeout after sending", correlation_id=cid)
        return self.by_id[oid]

    def _trade(self, oid: str, qty: int, price: float) -> None:
        o = self.by_id[oid]
        n = len(self.fills) + 1
        self.fills.append(Fill(f"T{n}", oid, o.correlation_id, o.security_id, o.side, qty, price, self.clock.now()))
        filled = o.filled_quantity + qty
        avg = (o.average_price * o.filled_quantity + price * qty) / filled
        self.by_id[oid] = replace(o, filled_quantity=filled, average_price=avg,
                                  status=S.TRADED if filled >= o.quantity else S.PART_TRADED)

    def _match(self, oid: str) -> None:
        o = self.by_id[oid]
        if o.status.terminal:
            return
        sc = self.scripts.get(o.security_id, Script())
        if sc.kind == "fill":
            self._trade(oid, o.remaining_quantity, o.price)
        elif sc.kind == "steps" and self._steps[oid]:
            qty, price = self._steps[oid].pop(0)
            self._trade(oid, min(qty, o.remaining_quantity), price)
        elif sc.kind == "at_price" and ((o.side is Side.BUY and o.price >= sc.price)
                                        or (o.side is Side.SELL and o.price <= sc.price)):
            self._trade(oid, o.remaining_quantity, o.price)

    def modify(self, order_id: str, *, price: float, quantity: int | None = None) -> BrokerOrder:
        o = self._get(order_id)
        if o.status.terminal:
            raise OrderRejected(f"order {order_id} is {o.status}")
        self.modifications[o.correlation_id] += 1
        self.by_id[order_id] = replace(o, price=price)
        self._match(order_id)
        return self.by_id[order_id]

    def cancel(self, order_id: str) -> BrokerOrder:
        o = self._get(order_id)
        if o.status.terminal:
            raise OrderRejected(f"order {order_id} is {o.status}")
        self.by_id[order_id] = replace(o, status=S.CANCELLED)
        return self.by_id[order_id]

    def _get(self, order_id: str) -> BrokerOrder:
        if order_id not in self.by_id:
            raise OrderNotFound(f"no order {order_id}")
        return self.by_id[order_id]

    def order(self, order_id: str) -> BrokerOrder:
        self._match(order_id)  # time passes between polls: the next step fills
        return self._get(order_id)

    def order_by_correlation_id(self, correlation_id: str) -> BrokerOrder | None:
        found = [o for o in self.by_id.values() if o.correlation_id == correlation_id]
        return found[-1] if found else None

    def orders(self) -> list[BrokerOrder]:
        return list(self.by_id.values())

    def trades(self, order_id: str | None = None) -> list[Fill]:
        return [f for f in self.fills if order_id is None or f.order_id == order_id]

    def positions(self) -> list[BrokerPosition]:
        return []

    def funds(self) -> Funds:
        return Funds(self.funds_available, 0.0, self.funds_available)

    def margin(self, requests: list[OrderRequest]) -> MarginQuote:
        return MarginQuote(self.margin_per_order * len(requests))


# -- a stored allocation snapshot to execute ------------------------------------------------------

D = dt.date(2025, 7, 17)
EXPIRY = dt.date(2025, 7, 31)
NOW = dt.datetime(2025, 7, 17, 4, 0, tzinfo=dt.UTC)


def seed_allocation(wh, allocation_id: str = "a" * 64, positions: dict | None = None) -> str:
    """Store a snapshot: ``positions`` maps position_id -> (symbol, lots, lot_size, legs) with legs
    [(side, CE/PE, strike, price, security_id)] per one lot. Default: two bull call spreads."""

    from options_v4_dagster.store import schema

    positions = positions or {
        "AL-NIFTY": ("NIFTY", 2, 75, [("BUY", "CE", 25000.0, 120.0, "N25000CE"), ("SELL", "CE", 25200.0, 60.0, "N25200CE")]),
        "AL-TCS": ("TCS", 1, 175, [("BUY", "PE", 3400.0, 40.0, "T3400PE"), ("SELL", "PE", 3300.0, 15.0, "T3300PE")]),
    }
    with wh.engine.begin() as c:
        c.execute(schema.portfolio_allocation_summary.insert().values(
            allocation_id=allocation_id, trade_date=D, capital=1e6, capital_used=1e5, deployment=0.1,
            positions=len(positions), rules="{}", industry_views="{}", created_at=NOW))
        for pid, (sym, lots, lot, legs) in positions.items():
            sid = f"20250717-{sym}-Spread-moderate"
            c.execute(schema.strategies.insert().values(strategy_id=sid, trade_date=D, symbol=sym,
                                                        strategy_name="Spread", risk_tolerance="moderate", lots=1,
                                                        lot_size=lot, created_at=NOW))
            for i, (side, typ, k, px, sec) in enumerate(legs, 1):
                c.execute(schema.strategy_details.insert().values(
                    strategy_id=sid, leg=i, trade_date=D, side=side, instrument=typ, strike=k, expiry=EXPIRY,
                    quantity=lot, price=px, security_id=sec))
            c.execute(schema.portfolio_allocation.insert().values(
                allocation_id=allocation_id, position_id=pid, trade_date=D, strategy_id=sid, symbol=sym,
                strategy_name="Spread", tier="TIER1", lots=lots, lot_size=lot, capital_used=1e4, capital=1e6,
                created_at=NOW))
    return allocation_id
