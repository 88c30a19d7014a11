"""Execution of an approved allocation snapshot: pre-trade checks, then per position buy legs first,
their fills awaited (repriced within the protection band), then sell legs; a leg that cannot be
filled is cancelled and the filled legs unwound (or left for a human), the strategy FAILED/UNWOUND
with the reason. Every order goes through :class:`~.placement.OrderDesk` (exactly once per
correlation id), so executing the same allocation again places nothing.

No Dagster here: ``defs/execution`` and ``options-v4 execute`` build an
:class:`~.plan.AllocationPlan` from the store and call :func:`execute_allocation`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace

from .. import calendar
from ..errors import OptionsV4Error
from .broker import Broker, BrokerRateLimited, BrokerUnavailable, OrderRejected, OutcomeUnknown
from .ledger import RETRYABLE_CODES, ExecutionStore, OrderMeta, StoredOrder, StrategyStatus
from .orders import OrderRequest, OrderStatus, Side, StrategyState, entry_correlation_id, exit_correlation_id
from .placement import ExecutionConfig, OrderDesk
from .plan import AllocationPlan, LegPlan, PositionPlan
from .rules import round_to_tick, slices

S, T = OrderStatus, StrategyState
#: strategy states execution leaves alone (done, or for a human / the monitor)
SETTLED = frozenset({T.OPEN, T.FAILED, T.UNWOUND, T.PARTIALLY_EXITED, T.CLOSED})
MARKET_OPEN, MARKET_CLOSE = dt.time(9, 15), dt.time(15, 30)

__all__ = ["ExecutionConfig", "ExecutionReport", "PreTradeCheckFailed", "execute_allocation", "pre_trade_checks"]


class PreTradeCheckFailed(OptionsV4Error):
    """A pre-trade check stopped the allocation before its first order. ``check``: its name."""

    def __init__(self, check: str, message: str) -> None:
        self.check = check
        super().__init__(f"pre-trade check '{check}' failed: {message}")


@dataclass
class LegReport:
    leg: int
    side: str
    instrument: str
    strike: float | None
    expiry: dt.date | None
    quantity: int
    status: str
    filled_quantity: int
    average_price: float | None
    correlation_ids: list[str]

    @property
    def correlation_id(self) -> str:
        return self.correlation_ids[-1] if self.correlation_ids else ""


@dataclass
class StrategyReport:
    position_id: str
    position_no: int
    strategy_id: str
    symbol: str
    strategy_name: str
    state: str
    reason: str | None
    legs: list[LegReport]


@dataclass
class ExecutionReport:
    allocation_id: str
    strategies: list[StrategyReport]
    orders_placed: int
    seconds: float
    nothing_to_do: bool = False  # every position was already settled: nothing was sent
    messages: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for s, rep in zip(d["strategies"], self.strategies, strict=True):
            for leg, lr in zip(s["legs"], rep.legs, strict=True):
                leg["correlation_id"] = lr.correlation_id
                leg["expiry"] = lr.expiry.isoformat() if lr.expiry else None
        return d


def nse_market_open(now: dt.datetime) -> bool:
    ist = now.astimezone(calendar.IST)
    return calendar.is_session(ist.date()) and MARKET_OPEN <= ist.time() <= MARKET_CLOSE


def _requests(pos: PositionPlan, leg: LegPlan, attempt: int = 0) -> list[OrderRequest]:
    return [OrderRequest(entry_correlation_id(pos.allocation_id, pos.position_no, leg.leg, i, attempt),
                         leg.security_id, pos.symbol, leg.expiry, leg.strike or 0.0, leg.instrument, leg.side, qty,
                         round_to_tick(leg.price, leg.tick_size), lot_size=leg.lot_size, tick_size=leg.tick_size)
            for i, qty in enumerate(leg.slices())]


def pre_trade_checks(positions: list[PositionPlan], broker: Broker, store: ExecutionStore,
                     config: ExecutionConfig) -> None:
    """Every check for the positions about to start; the first that fails raises
    :class:`PreTradeCheckFailed` naming it (nothing has been sent then)."""
    now = config.clock()
    if config.killed():
        raise PreTradeCheckFailed("kill_switch", "the kill switch is on")
    if config.live and not (config.market_open or nse_market_open)(now):
        raise PreTradeCheckFailed("market_hours", f"{now.astimezone(calendar.IST):%Y-%m-%d %H:%M} IST is outside "
                                                  "the NSE session (09:15-15:30 on trading days)")
    for p in positions:
        for leg in p.legs:
            where = f"{p.position_id} leg {leg.leg} ({leg.instrument} {leg.strike})"
            if leg.quantity <= 0 or leg.lot_size <= 0 or leg.quantity % leg.lot_size:
                raise PreTradeCheckFailed("lot_quantity", f"{where}: {leg.quantity} shares is not a positive "
                                                          f"multiple of the lot size {leg.lot_size}")
            if not leg.price or leg.price <= 0:
                raise PreTradeCheckFailed("lot_quantity", f"{where}: no limit price")
            if config.live and not leg.security_id_known:
                raise PreTradeCheckFailed("instrument", f"{where}: no broker security id")
            try:
                leg.slices()
            except (OrderRejected, ValueError) as exc:
                raise PreTradeCheckFailed("freeze_quantity", f"{where}: {exc}") from exc
    reqs = [r for p in positions for leg in p.legs for r in _requests(p, leg)]
    ist_midnight = dt.datetime.combine(now.astimezone(calendar.IST).date(), dt.time(), calendar.IST)
    used = store.orders_created_since(ist_midnight.astimezone(dt.UTC), broker=broker.name)
    if used + len(reqs) > config.daily_order_budget:
        raise PreTradeCheckFailed("order_budget", f"{len(reqs)} orders would exceed today's budget "
                                                  f"({used} of {config.daily_order_budget} used)")
    try:
        margin, funds = broker.margin(reqs).total, broker.funds().available
    except (BrokerUnavailable, BrokerRateLimited, OutcomeUnknown) as exc:
        raise PreTradeCheckFailed("funds_margin", f"the broker could not quote margin or funds: {exc}") from exc
    need = margin * (1 + config.margin_buffer)
    if need > funds:
        raise PreTradeCheckFailed("funds_margin", f"margin {need:,.0f} INR for the allocation exceeds the "
                                                  f"available funds {funds:,.0f} INR")


class _Position:
    """One position's legging (and unwinding) through the desk."""

    def __init__(self, desk: OrderDesk, pos: PositionPlan, config: ExecutionConfig) -> None:
        self.desk, self.store, self.pos, self.config = desk, desk.store, pos, config
        self.status: StrategyStatus | None = None

    def _meta(self, leg: int, slice_no: int, attempt: int, purpose="entry", intent=None) -> OrderMeta:
        p = self.pos
        return OrderMeta(self.desk.broker.name, purpose, leg, slice_no, attempt, p.allocation_id, p.position_id,
                         p.position_no, p.strategy_id, intent)

    def _set(self, state: StrategyState, reason: str | None = None) -> None:
        if self.status.state is not state or reason:
            self.status = self.store.set_strategy_state(self.pos.allocation_id, self.pos.position_id, state,
                                                        reason=reason, at=self.config.clock())

    def _slice(self, req: OrderRequest, meta_of) -> StoredOrder:
        """Place one slice: attempt 0, and the next attempt only after one never reached the broker."""
        row = None
        for attempt in range(self.config.max_attempts):
            r = replace(req, correlation_id=req.correlation_id.rsplit("-", 1)[0] + f"-{attempt}")
            row = self.desk.submit(r, meta_of(attempt))
            if not (row.status is S.REJECTED and row.error_code in RETRYABLE_CODES and row.filled_quantity == 0):
                return row
        return row

    def fill(self, legs: tuple[LegPlan, ...]) -> str | None:
        """Place the legs' slices and get them filled; None, or why they could not be."""
        rows: dict[str, tuple[LegPlan, StoredOrder]] = {}
        for leg in legs:
            for i, req in enumerate(_requests(self.pos, leg)):
                row = self._slice(req, lambda a, leg=leg, i=i: self._meta(leg.leg, i, a))
                rows[row.correlation_id] = (leg, row)
        return self._await(rows)

    def _await(self, rows: dict[str, tuple[LegPlan, StoredOrder]], reprice: bool = True) -> str | None:
        for k in range(self.config.max_reprices + 1):
            got = self.desk.wait([r for _, r in rows.values()], self.config.fill_timeout)
            rows = {r.correlation_id: (rows[r.correlation_id][0], r) for r in got}
            failed = [r for _, r in rows.values() if not r.status.working and r.status is not S.TRADED]
            if failed:
                r = failed[0]
                self._cancel_working(rows)
                return f"leg {r.leg} order {r.correlation_id} {r.status}: {r.reason or 'not filled'}"
            if all(r.status is S.TRADED for _, r in rows.values()):
                return None
            if not reprice or k == self.config.max_reprices:
                break
            for cid, (leg, r) in list(rows.items()):
                if r.status.working and r.broker_order_id:
                    rows[cid] = (leg, self.desk.modify(r, self._reprice(leg, r.side, k + 1)))
        rows = self._cancel_working(rows)
        short = [r for _, r in rows.values() if r.status is not S.TRADED]
        if not short:
            return None
        r = short[0]
        return (f"leg {r.leg} order {r.correlation_id} not filled after {self.config.max_reprices} repricings "
                f"({r.filled_quantity}/{r.quantity} filled, {r.status})")

    def _reprice(self, leg: LegPlan, side: Side, k: int) -> float:
        low, high = self.config.band(leg.price)
        step = max(leg.tick_size, leg.price * self.config.reprice_step) * k
        price = min(leg.price + step, high) if side is Side.BUY else max(leg.price - step, low)
        return round_to_tick(price, leg.tick_size, side)

    def _cancel_working(self, rows: dict) -> dict:
        out = {}
        for cid, (leg, r) in rows.items():
            if r.status.working and r.broker_order_id:
                r = self.desk.cancel(r)
            out[cid] = (leg, r)
        return out

    def _filled(self, purpose: str = "entry") -> dict[int, tuple[int, StoredOrder]]:
        """Net filled shares (+ bought, - sold) per leg of this position's orders of ``purpose``."""
        net: dict[int, int] = defaultdict(int)
        last: dict[int, StoredOrder] = {}
        for o in self.store.orders(allocation_id=self.pos.allocation_id, position_id=self.pos.position_id):
            if o.purpose == purpose:
                net[o.leg] += o.filled_quantity if o.side is Side.BUY else -o.filled_quantity
                last[o.leg] = o
        return {leg: (q, last[leg]) for leg, q in net.items() if q}

    def unwind(self) -> str | None:
        """Close what the entry filled: opposite orders at the protective edge of the band around the
        entry price; None when everything was closed."""
        exits = self._filled("exit")
        legs = {leg.leg: leg for leg in self.pos.legs}
        rows: dict[str, tuple[LegPlan, StoredOrder]] = {}
        intent = f"unwind:{self.pos.allocation_id}:{self.pos.position_id}"
        for leg_no, (q, o) in self._filled("entry").items():
            q += exits.get(leg_no, (0, None))[0]
            if not q:
                continue
            leg = legs[leg_no]
            side = Side.SELL if q > 0 else Side.BUY
            _, avg = self.store.filled_from_trades(o.correlation_id)
            low, high = self.config.band(avg or leg.price)
            price = round_to_tick(low if side is Side.SELL else high, leg.tick_size, side)
            for i, qty in enumerate(slices(abs(q), leg.lot_size, leg.freeze_quantity)):
                req = OrderRequest(exit_correlation_id(intent, leg_no, i, 0), leg.security_id, self.pos.symbol,
                                   leg.expiry, leg.strike or 0.0, leg.instrument, side, qty, price,
                                   lot_size=leg.lot_size, tick_size=leg.tick_size)
                row = self._slice(req, lambda a, n=leg_no, i=i: self._meta(n, i, a, "exit", "unwind"))
                rows[row.correlation_id] = (leg, row)
        return self._await(rows, reprice=False) if rows else None

    def run(self, approval_id: str | None) -> None:
        p = self.pos
        self.status, _ = self.store.start_strategy(StrategyStatus(
            p.allocation_id, p.position_id, p.strategy_id, p.symbol, self.desk.broker.name, T.PENDING,
            position_no=p.position_no, strategy_name=p.strategy_name, approval_id=approval_id, legs=len(p.legs),
            started_at=self.config.clock(), updated_at=self.config.clock()))
        if self.status.state in SETTLED:
            return
        if self.config.killed():
            return self._fail("kill switch turned on before the position started")
        why = self.fill(p.buy_legs) if p.buy_legs else None
        if self._filled():
            self._set(T.PARTIALLY_ESTABLISHED)
        if why is None and p.sell_legs:
            why = self.fill(p.sell_legs)
            if self._filled():
                self._set(T.PARTIALLY_ESTABLISHED)
        if why is None:
            return self._set(T.OPEN)
        self._fail(why)

    def _fail(self, why: str) -> None:
        if not self._filled():
            return self._set(T.FAILED, why)
        if self.config.on_leg_failure == "leave":
            return self._set(T.FAILED, f"{why}; filled legs left open for a human")
        left = self.unwind()
        if left is None:
            return self._set(T.UNWOUND, f"{why}; filled legs unwound")
        self._set(T.FAILED, f"{why}; unwind incomplete: {left}")


def execute_allocation(plan: AllocationPlan, broker: Broker, store: ExecutionStore,
                       config: ExecutionConfig | None = None) -> ExecutionReport:
    """Execute the plan's positions on ``broker``: positions already settled (OPEN, FAILED, UNWOUND,
    ...) are left alone, interrupted ones resumed, new ones checked (:func:`pre_trade_checks`, raising
    :class:`PreTradeCheckFailed` before any order) and placed. Running it again places nothing."""
    config = config or ExecutionConfig()
    start = time.perf_counter()
    desk = OrderDesk(broker, store, config)
    todo, fresh = [], []
    for p in plan.positions:
        st = store.strategy_status(p.allocation_id, p.position_id)
        if st is None:
            fresh.append(p)
        if st is None or st.state not in SETTLED:
            todo.append(p)
    messages = []
    if fresh:
        pre_trade_checks(fresh, broker, store, config)
    elif todo and config.killed():
        raise PreTradeCheckFailed("kill_switch", "the kill switch is on")
    if not todo:
        messages.append(f"allocation {plan.allocation_id}: every position was already executed; nothing placed")
    for p in todo:
        _Position(desk, p, config).run(plan.approval_id)
    return ExecutionReport(plan.allocation_id, _reports(plan, store), len(desk.placed),
                           time.perf_counter() - start, nothing_to_do=not todo, messages=messages)


def _reports(plan: AllocationPlan, store: ExecutionStore) -> list[StrategyReport]:
    out = []
    for p in plan.positions:
        st = store.strategy_status(p.allocation_id, p.position_id)
        orders = [o for o in store.orders(allocation_id=p.allocation_id, position_id=p.position_id)
                  if o.purpose == "entry"]
        legs = []
        for leg in p.legs:
            mine = [o for o in orders if o.leg == leg.leg]
            filled = sum(o.filled_quantity for o in mine)
            traded = [store.filled_from_trades(o.correlation_id) for o in mine if o.filled_quantity]
            qty_tr = sum(q for q, _ in traded)
            value = sum(q * (px or 0.0) for q, px in traded)
            status = ("NOT_PLACED" if not mine else str(S.TRADED) if filled >= leg.quantity
                      else str(mine[-1].status))
            legs.append(LegReport(leg.leg, str(leg.side), leg.instrument, leg.strike, leg.expiry, leg.quantity, status,
                                  filled, value / qty_tr if qty_tr else None, [o.correlation_id for o in mine]))
        out.append(StrategyReport(p.position_id, p.position_no, p.strategy_id, p.symbol, p.strategy_name,
                                  str(st.state) if st else "NOT_STARTED", st.reason if st else None, legs))
    return out
