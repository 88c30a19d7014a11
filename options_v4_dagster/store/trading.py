"""The trading ledger over the warehouse: orders (reserved before sending, moved by compare-and-set),
their event log, fills, positions and strategy execution states. Implements
:class:`options_v4_dagster.trading.ledger.ExecutionStore`. Append-only: rows are inserted and
updated, never deleted.

Concurrency: :meth:`TradingStore.reserve_order` is ``INSERT ... ON CONFLICT DO NOTHING`` on the
primary key (PostgreSQL and SQLite), so of two processes reserving one correlation id at once
exactly one creates the row and the other reads it back. :meth:`TradingStore.transition` updates
``WHERE status = <stored> AND version = <stored>``: a lost race raises ConcurrentUpdate.

Change notifications: every transaction that writes a position (a fill) or a strategy's execution
state also sends ``pg_notify`` on PostgreSQL (:func:`.changes.notify`, delivered at its commit), so a
running real-time monitor picks up fills, exits and new positions without polling.

Speed: every statement of the order path is built once (bound parameters, module level or cached
per dialect) and executed with its values, so SQLAlchemy compiles and caches it once; an execution
runs some twenty small statements per order.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields as dc_fields

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..trading.broker import BrokerOrder, Fill
from ..trading.ledger import (
    FEE_FIELDS,
    ConcurrentUpdate,
    CorrelationIdCollision,
    OrderMeta,
    StoredOrder,
    StrategyStatus,
    TradeIdCollision,
)
from ..trading.orders import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyState,
    check_strategy_transition,
    check_transition,
)
from .changes import notify
from .schema import order_events, orders, positions, strategy_execution_status, trades
from .warehouse import Warehouse

#: fields :meth:`TradingStore.transition` may set besides the status
TRANSITION_FIELDS = frozenset({"broker_order_id", "filled_quantity", "average_price", "reason", "error_code",
                               "price", "modifications"})
#: stored fields that must agree when a correlation id is reserved again
_IDENTITY = ("allocation_id", "position_id", "leg", "slice_no", "attempt", "broker", "purpose", "security_id",
             "side", "quantity")
_ORDER_FIELDS = {f.name for f in dc_fields(StoredOrder)}
_STATUS_FIELDS = {f.name for f in dc_fields(StrategyStatus)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _json(payload: Mapping | None) -> str | None:
    return None if payload is None else json.dumps(payload, default=str, sort_keys=True)


_STATEMENTS: dict[tuple, sa.Executable] = {}


def _cached(key: tuple, build: Callable[[], sa.Executable]) -> sa.Executable:
    stmt = _STATEMENTS.get(key)
    if stmt is None:
        stmt = _STATEMENTS[key] = build()
    return stmt


def _insert(conn: sa.Connection, table: sa.Table):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def insert_ignore(conn: sa.Connection, table: sa.Table, values: dict, keys: Sequence[str]) -> int:
    """INSERT ... ON CONFLICT (keys) DO NOTHING RETURNING keys: 1 when the row was inserted, 0 when
    one with the same keys exists (rowcount is not reliable here across drivers)."""
    stmt = _cached(("insert_ignore", conn.dialect.name, table.name, tuple(keys)),
                   lambda: _insert(conn, table).on_conflict_do_nothing(index_elements=list(keys))
                   .returning(*(table.c[k] for k in keys)))
    return len(conn.execute(stmt, values).all())


def upsert(conn: sa.Connection, table: sa.Table, values: dict, keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET every other column of ``values``."""
    cols = tuple(values)

    def build():
        ins = _insert(conn, table)
        return ins.on_conflict_do_update(index_elements=list(keys),
                                         set_={c: ins.excluded[c] for c in cols if c not in keys})

    conn.execute(_cached(("upsert", conn.dialect.name, table.name, tuple(keys), cols), build), values)


_P = sa.bindparam
_ORDER = sa.select(orders).where(orders.c.correlation_id == _P("cid_"))
_ORDER_CAS = sa.select(orders.c.status, orders.c.version).where(orders.c.correlation_id == _P("cid_"))
_MOVE = (orders.update().where(orders.c.correlation_id == _P("cid_"), orders.c.status == _P("old_status"),
                               orders.c.version == _P("old_version")).returning(*orders.c))
_EVENT = order_events.insert()
_FILLED = (sa.select(sa.func.sum(trades.c.quantity), sa.func.sum(trades.c.quantity * trades.c.price))
           .where(trades.c.correlation_id == _P("cid_")))
_LEG_FILLS = (sa.select(trades.c.side, trades.c.quantity, trades.c.price, trades.c.fees, trades.c.purpose,
                        trades.c.traded_at)
              .where(trades.c.allocation_id == _P("aid_"), trades.c.position_id == _P("pid_"),
                     trades.c.leg == _P("leg_")).order_by(trades.c.traded_at, trades.c.trade_id))
_E = strategy_execution_status
_STATUS = sa.select(_E).where(_E.c.allocation_id == _P("aid_"), _E.c.position_id == _P("pid_"))
_STATE = sa.select(_E.c.state).where(_E.c.allocation_id == _P("aid_"), _E.c.position_id == _P("pid_"))
_SET_STATE = (_E.update().where(_E.c.allocation_id == _P("aid_"), _E.c.position_id == _P("pid_"),
                                _E.c.state == _P("old_state")).returning(*_E.c))
_PREMIUM_FEES = (sa.select(sa.func.sum(sa.case((trades.c.side == "SELL", 1), else_=-1) * trades.c.quantity
                                       * trades.c.price).filter(trades.c.purpose == "entry"),
                           sa.func.sum(trades.c.fees))
                 .where(trades.c.allocation_id == _P("aid_"), trades.c.position_id == _P("pid_")))
_REALIZED = (sa.select(sa.func.sum(positions.c.realized_pnl))
             .where(positions.c.allocation_id == _P("aid_"), positions.c.position_id == _P("pid_")))


def _order(row) -> StoredOrder:
    d = {k: v for k, v in row._mapping.items() if k in _ORDER_FIELDS}
    d["side"], d["status"], d["order_type"] = Side(d["side"]), OrderStatus(d["status"]), OrderType(d["order_type"])
    d["adopted"] = bool(d["adopted"])
    return StoredOrder(**d)


def _status(row) -> StrategyStatus:
    d = {k: v for k, v in row._mapping.items() if k in _STATUS_FIELDS}
    d["state"] = StrategyState(d["state"])
    return StrategyStatus(**d)


def _event(conn, cid: str, frm, to, source: str, payload: Mapping | None, at: dt.datetime) -> None:
    conn.execute(_EVENT, dict(correlation_id=cid, at=at, from_status=frm and str(frm), to_status=to and str(to),
                              source=source, payload=_json(payload)))


class TradingStore:
    """The :class:`~options_v4_dagster.trading.ledger.ExecutionStore` of a warehouse."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh
        self.engine = wh.engine

    # -- orders --------------------------------------------------------------------------------
    def reserve_order(self, request: OrderRequest, meta: OrderMeta, *,
                      at: dt.datetime | None = None) -> tuple[StoredOrder, bool]:
        at = at or _now()
        values = dict(correlation_id=request.correlation_id, allocation_id=meta.allocation_id,
                      position_id=meta.position_id, position_no=meta.position_no, strategy_id=meta.strategy_id,
                      leg=meta.leg, slice_no=meta.slice_no, attempt=meta.attempt, purpose=meta.purpose,
                      intent=meta.intent, broker=meta.broker, security_id=request.security_id,
                      symbol=request.symbol, expiry=request.expiry, strike=request.strike,
                      option_type=request.option_type, side=str(request.side), quantity=request.quantity,
                      lot_size=request.lot_size, order_type=str(request.order_type), price=request.price,
                      modifications=0, status=str(OrderStatus.INITIALIZED), version=0, filled_quantity=0,
                      adopted=False, created_at=at, updated_at=at)
        with self.engine.begin() as conn:
            created = insert_ignore(conn, orders, values, ["correlation_id"]) == 1
            if created:
                _event(conn, request.correlation_id, None, OrderStatus.INITIALIZED, "local",
                       {"request": {k: values[k] for k in ("security_id", "side", "quantity", "price",
                                                           "order_type")}}, at)
            row = conn.execute(_ORDER, {"cid_": request.correlation_id}).one()
        stored = _order(row)
        if not created:
            differ = [k for k in _IDENTITY if str(getattr(stored, k)) != str(values[k])]
            if differ:
                raise CorrelationIdCollision(
                    f"correlation id {request.correlation_id} is stored for another order ("
                    + ", ".join(f"{k}: stored {getattr(stored, k)!r}, asked {values[k]!r}" for k in differ) + ")")
        return stored, created

    def order(self, correlation_id: str) -> StoredOrder | None:
        with self.engine.connect() as conn:
            row = conn.execute(_ORDER, {"cid_": correlation_id}).first()
        return _order(row) if row else None

    def orders(self, *, allocation_id: str | None = None, position_id: str | None = None,
               statuses: Sequence[OrderStatus] | None = None, broker: str | None = None) -> list[StoredOrder]:
        params = {"aid_": allocation_id, "pid_": position_id, "broker_": broker,
                  "statuses_": None if statuses is None else [str(s) for s in statuses]}
        given = tuple(k for k, v in params.items() if v is not None)

        def build():
            conds = {"aid_": orders.c.allocation_id == _P("aid_"), "pid_": orders.c.position_id == _P("pid_"),
                     "broker_": orders.c.broker == _P("broker_"),
                     "statuses_": orders.c.status.in_(_P("statuses_", expanding=True))}
            return sa.select(orders).where(*(conds[k] for k in given)).order_by(
                orders.c.position_no, orders.c.leg, orders.c.slice_no, orders.c.attempt, orders.c.correlation_id)

        with self.engine.connect() as conn:
            return [_order(r) for r in conn.execute(_cached(("orders", given), build),
                                                    {k: params[k] for k in given})]

    def transition(self, correlation_id: str, new_status: OrderStatus, *, expected_version: int | None = None,
                   source: str = "local", payload: Mapping | None = None, at: dt.datetime | None = None,
                   **fields) -> StoredOrder:
        unknown = set(fields) - TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition cannot set {sorted(unknown)}")
        at = at or _now()
        with self.engine.begin() as conn:
            cur = conn.execute(_ORDER_CAS, {"cid_": correlation_id}).first()
            if cur is None:
                raise KeyError(f"no order {correlation_id}")
            if expected_version is not None and cur.version != expected_version:
                raise ConcurrentUpdate(f"{correlation_id}: version {cur.version}, expected {expected_version}")
            new = check_transition(cur.status, new_status, what=correlation_id)
            row = conn.execute(_MOVE, {"cid_": correlation_id, "old_status": cur.status, "old_version": cur.version,
                                       "status": str(new), "version": cur.version + 1, "updated_at": at,
                                       **fields}).first()
            if row is None:
                raise ConcurrentUpdate(f"{correlation_id}: changed by another process while moving "
                                       f"{cur.status} -> {new}")
            _event(conn, correlation_id, cur.status, new, source,
                   {**({k: v for k, v in fields.items()}), **(payload or {})} or None, at)
        return _order(row)

    def record_event(self, correlation_id: str, *, source: str, payload: Mapping,
                     at: dt.datetime | None = None) -> None:
        with self.engine.begin() as conn:
            _event(conn, correlation_id, None, None, source, payload, at or _now())

    def events(self, correlation_id: str) -> list[dict]:
        q = sa.select(order_events).where(order_events.c.correlation_id == correlation_id).order_by(order_events.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def adopt_order(self, order: BrokerOrder, meta: OrderMeta, *, symbol: str | None = None, reason: str,
                    at: dt.datetime | None = None) -> tuple[StoredOrder, bool]:
        """Store an order the broker knows under one of our correlation ids and we do not (flagged
        ``adopted``), with the broker's status; nothing when the id is already stored."""
        at = at or _now()
        cid = order.correlation_id or f"adopted-{order.order_id}"[:32]
        values = dict(correlation_id=cid, allocation_id=meta.allocation_id, position_id=meta.position_id,
                      position_no=meta.position_no, strategy_id=meta.strategy_id, leg=meta.leg,
                      slice_no=meta.slice_no, attempt=meta.attempt, purpose=meta.purpose, intent=meta.intent,
                      broker=meta.broker, security_id=order.security_id, symbol=symbol or order.security_id,
                      side=str(order.side), quantity=order.quantity, order_type=str(OrderType.LIMIT),
                      price=order.price, modifications=0, status=str(order.status), version=0,
                      broker_order_id=order.order_id, filled_quantity=order.filled_quantity,
                      average_price=order.average_price or None, reason=reason, error_code=order.error_code,
                      adopted=True, created_at=at, updated_at=at)
        with self.engine.begin() as conn:
            created = insert_ignore(conn, orders, values, ["correlation_id"]) == 1
            if created:
                _event(conn, cid, None, order.status, "reconcile", {"adopted": reason, "order_id": order.order_id}, at)
            row = conn.execute(_ORDER, {"cid_": cid}).one()
        return _order(row), created

    def orders_created_since(self, since: dt.datetime, *, broker: str) -> int:
        q = sa.select(sa.func.count()).select_from(orders).where(orders.c.created_at >= since,
                                                                 orders.c.broker == broker)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # -- fills and positions -------------------------------------------------------------------
    def record_fills(self, correlation_id: str, fills: Sequence[Fill],
                     fees: Sequence[Mapping[str, float]] | None = None) -> int:
        if not fills:
            return 0
        fees = list(fees) if fees is not None else [{}] * len(fills)
        with self.engine.begin() as conn:
            o = conn.execute(_ORDER, {"cid_": correlation_id}).one()
            rows = []
            for f, fee in zip(fills, fees, strict=True):
                charges = {k: float(fee.get(k, 0.0)) for k in FEE_FIELDS}
                rows.append(dict(broker=o.broker, trade_id=f.trade_id, correlation_id=correlation_id,
                                 broker_order_id=f.order_id, allocation_id=o.allocation_id,
                                 position_id=o.position_id, strategy_id=o.strategy_id, leg=o.leg,
                                 purpose=o.purpose, security_id=f.security_id or o.security_id, symbol=o.symbol,
                                 expiry=o.expiry, strike=o.strike, option_type=o.option_type, side=str(f.side),
                                 quantity=int(f.quantity), price=float(f.price), **charges,
                                 fees=float(fee.get("fees", sum(charges.values()))), traded_at=f.traded_at,
                                 recorded_at=_now()))
            inserted = 0
            for r in rows:
                if insert_ignore(conn, trades, r, ["broker", "trade_id"]):
                    inserted += 1
                    continue
                had = conn.execute(sa.select(trades.c.correlation_id, trades.c.quantity, trades.c.price).where(
                    trades.c.broker == r["broker"], trades.c.trade_id == r["trade_id"])).one()
                if (had.correlation_id, int(had.quantity), float(had.price)) != (
                        correlation_id, r["quantity"], r["price"]):
                    raise TradeIdCollision(
                        f"{o.broker} trade {r['trade_id']} of {correlation_id} ({r['quantity']} @ {r['price']}) is "
                        f"already stored for {had.correlation_id} ({had.quantity} @ {had.price}): not recorded")
            if inserted and o.allocation_id is not None and o.position_id is not None:
                self._refresh_position(conn, o)
        return inserted

    def filled_from_trades(self, correlation_id: str) -> tuple[int, float | None]:
        with self.engine.connect() as conn:
            qty, value = conn.execute(_FILLED, {"cid_": correlation_id}).one()
        return (int(qty), float(value) / int(qty)) if qty else (0, None)

    def _refresh_position(self, conn: sa.Connection, o) -> None:
        """Recompute the leg's position from all its trades (average cost; realized P&L on the
        closing part of each opposite fill)."""
        fills = conn.execute(_LEG_FILLS, {"aid_": o.allocation_id, "pid_": o.position_id, "leg_": o.leg}).all()
        q, avg, realized = 0, 0.0, 0.0
        acc = {"buy_quantity": 0, "buy_value": 0.0, "sell_quantity": 0, "sell_value": 0.0, "fees": 0.0}
        entry_q, entry_v, entry_side = 0, 0.0, None
        for side, n, price, fee, purpose, _ in fills:
            s = n if side == "BUY" else -n
            key = "buy" if s > 0 else "sell"
            acc[f"{key}_quantity"] += n
            acc[f"{key}_value"] += n * price
            acc["fees"] += fee or 0.0
            if purpose == "entry":
                entry_q, entry_v, entry_side = entry_q + n, entry_v + n * price, side
            if q == 0 or (q > 0) == (s > 0):
                avg = (avg * abs(q) + price * n) / (abs(q) + n)
                q += s
                continue
            closing = min(n, abs(q))
            realized += closing * (price - avg) * (1 if q > 0 else -1)
            q += s
            if q == 0:
                avg = 0.0
            elif (q > 0) == (s > 0):  # flipped through zero: the rest opens at this price
                avg = price
        now = _now()
        values = dict(allocation_id=o.allocation_id, position_id=o.position_id, leg=o.leg, strategy_id=o.strategy_id,
                      symbol=o.symbol, security_id=o.security_id, expiry=o.expiry, strike=o.strike,
                      option_type=o.option_type, entry_side=entry_side, quantity=q,
                      average_price=avg if q else None, entry_quantity=entry_q,
                      entry_price=entry_v / entry_q if entry_q else None, realized_pnl=realized, **acc,
                      opened_at=fills[0].traded_at if fills else None,
                      closed_at=fills[-1].traded_at if fills and q == 0 else None, updated_at=now)
        upsert(conn, positions, values, ["allocation_id", "position_id", "leg"])
        notify(conn, f"position {o.allocation_id} {o.position_id} {o.leg}")

    # -- strategy execution states -------------------------------------------------------------
    def start_strategy(self, status: StrategyStatus) -> tuple[StrategyStatus, bool]:
        now = _now()
        values = {k: getattr(status, k) for k in _STATUS_FIELDS}
        values["state"] = str(status.state)
        values["started_at"] = status.started_at or now
        values["updated_at"] = status.updated_at or now
        t = strategy_execution_status
        with self.engine.begin() as conn:
            created = insert_ignore(conn, t, values, ["allocation_id", "position_id"]) == 1
            if created:
                notify(conn, f"strategy {status.allocation_id} {status.position_id} {values['state']}")
            row = conn.execute(_STATUS, {"aid_": status.allocation_id, "pid_": status.position_id}).one()
        return _status(row), created

    def strategy_status(self, allocation_id: str, position_id: str) -> StrategyStatus | None:
        with self.engine.connect() as conn:
            row = conn.execute(_STATUS, {"aid_": allocation_id, "pid_": position_id}).first()
        return _status(row) if row else None

    def set_strategy_state(self, allocation_id: str, position_id: str, state: StrategyState, *,
                           reason: str | None = None, at: dt.datetime | None = None) -> StrategyStatus:
        at = at or _now()
        key = {"aid_": allocation_id, "pid_": position_id}
        with self.engine.begin() as conn:
            cur = conn.execute(_STATE, key).scalar_one()
            new = check_strategy_transition(cur, state, what=f"{allocation_id}/{position_id}")
            premium, fees = conn.execute(_PREMIUM_FEES, key).one()
            realized = conn.execute(_REALIZED, key).scalar()
            values = dict(state=str(new), updated_at=at, entry_premium=premium, fees=fees,
                          realized_pnl=None if realized is None else float(realized) - float(fees or 0.0))
            if reason is not None:
                values["reason"] = reason
            if new is StrategyState.OPEN:
                values["opened_at"] = at
            if new in (StrategyState.CLOSED, StrategyState.UNWOUND):
                values["closed_at"] = at
            row = conn.execute(_SET_STATE, {**key, "old_state": cur, **values}).first()
            if row is None:
                raise ConcurrentUpdate(f"{allocation_id}/{position_id}: state changed while moving {cur} -> {new}")
            notify(conn, f"strategy {allocation_id} {position_id} {new}")
        return _status(row)
