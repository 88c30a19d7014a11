"""The one exit path: an exit intent (a stored ``exit_intents`` row) carried out through the same
:class:`~.placement.OrderDesk` as entries, confirmed from fills. No Dagster here; the monitoring
cycle (:mod:`.monitor`) reserves the intent and calls :meth:`ExitPath.drive`.

One drive of an intent:

1. **What is left** per leg, from the store: the open quantity of the leg less what exit orders of
   *other* intents still have working at the broker (a stop firing while a scale-out works closes
   only the rest), less what this intent's own working orders carry; and never more than the intent's
   stored quantity less what its orders already filled (an ``EXIT_ALL`` stores the open quantity at
   the decision). Whole lots only.
2. **Orders** from :func:`~.exit_orders.plan_exit` with the intent's attempt number in the
   correlation ids (so a second process, a retry or a restart meets the same ids and places nothing
   new), the intent moved to PLACED (compare-and-set) before the first is sent. Buy-to-close legs
   first, their fills awaited (repriced towards the market within the protection band, like
   entries), then the sell-to-close legs -- never the longs while a short could not be bought back.
3. **Confirmed from fills**, never assumed: what did not fill is cancelled and tried again with the
   next attempt number, priced at the band edge (escalated to HIGH urgency), up to ``max_attempts``
   attempts per drive. The intent ends FILLED (nothing left), PARTIAL (some filled) or FAILED
   (nothing filled); PARTIAL and FAILED intents are driven again by the next cycle (with the next
   attempt numbers) and are reported (``escalated``) with what is left.

Every order request and broker response is written to the audit log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from .decisions import LEG_QUANTITY_SCHEMA, Urgency
from .exit_orders import ExitOrder, ExitPlanError, plan_exit
from .ledger import ExecutionStore, OrderMeta, StoredOrder
from .orders import OrderStatus, Side, exit_correlation_id
from .placement import ExecutionConfig, OrderDesk
from .rules import FreezeLimits, round_to_tick

S = OrderStatus
AuditFn = Callable[[list[tuple[str, str | None, Mapping | None]]], object]

__all__ = ["DriveResult", "ExitPath", "intent_prefix"]


def intent_prefix(intent_key: str) -> str:
    """The correlation-id prefix every order of the intent shares (``x<digest>-``)."""
    return exit_correlation_id(intent_key, 0, 0, 0).split("-", 1)[0] + "-"


@dataclass
class DriveResult:
    intent_key: str
    state: str  # FILLED / PARTIAL / FAILED
    filled: dict[int, int] = field(default_factory=dict)  # leg -> shares filled by this intent's orders (all drives)
    left: dict[int, int] = field(default_factory=dict)  # leg -> shares still to close
    orders: list[str] = field(default_factory=list)  # correlation ids submitted in this drive
    attempt: int = 0  # the next attempt number
    note: str = ""

    @property
    def escalated(self) -> bool:
        return self.state != "FILLED"


class ExitPath:
    """Drives exit intents on one broker through one desk."""

    def __init__(self, desk: OrderDesk, store: ExecutionStore, config: ExecutionConfig, *, audit: AuditFn,
                 open_quantities: Callable[[str, str], Mapping[int, int]], freeze: FreezeLimits | None = None,
                 max_attempts: int = 3) -> None:
        self.desk, self.store, self.config, self.audit = desk, store, config, audit
        self.open_quantities = open_quantities  # (allocation_id, position_id) -> leg -> signed open shares
        self.freeze, self.max_attempts = freeze, max_attempts

    # -- what is left -----------------------------------------------------------------------------
    def _book(self, intent: Mapping) -> tuple[dict[int, int], dict[int, int], dict[int, int], dict[int, int],
                                               list[StoredOrder]]:
        """(open shares, filled by mine, working mine, working others) per leg; my working orders."""
        prefix = intent_prefix(intent["intent_key"])
        open_q: dict[int, int] = {}
        mine_f, mine_w, other_w = defaultdict(int), defaultdict(int), defaultdict(int)
        working = []
        for o in self.store.orders(allocation_id=intent["allocation_id"], position_id=intent["position_id"]):
            if o.purpose != "exit":
                continue
            rest = o.quantity - o.filled_quantity if o.status.working else 0
            if o.correlation_id.startswith(prefix):
                mine_f[o.leg] += o.filled_quantity
                mine_w[o.leg] += rest
                if rest:
                    working.append(o)
            else:
                other_w[o.leg] += rest
        for leg, q in self.open_quantities(intent["allocation_id"], intent["position_id"]).items():
            open_q[leg] = abs(int(q))
        return open_q, mine_f, mine_w, other_w, working

    def left(self, intent: Mapping, lots: Mapping[int, int]) -> tuple[dict[int, int], dict[int, int], list[StoredOrder]]:
        """(shares left to close per leg in whole lots, filled by the intent per leg, its working orders)."""
        open_q, mine_f, mine_w, other_w, working = self._book(intent)
        stored = {int(q["leg"]): int(q["quantity"]) for q in intent["quantities"]}
        out = {}
        for leg in stored:
            avail = open_q.get(leg, 0) - other_w[leg] - mine_w[leg]
            # never more than the intent's quantity less what its orders report filled (a guard should
            # fills ever lag behind the orders' filled quantities)
            want = min(stored[leg] - mine_f[leg] - mine_w[leg], avail)
            lot = max(int(lots.get(leg, 1)), 1)
            out[leg] = max(want, 0) // lot * lot
        return out, dict(mine_f), working

    # -- one drive --------------------------------------------------------------------------------
    def drive(self, intent: Mapping, legs: pl.DataFrame, *, claim: Callable[[int], bool],
              meta: Mapping) -> DriveResult:
        """Carry out ``intent`` (module docstring). ``legs``: the valuation's legs of its strategy
        (quotes, contract, lot size); ``claim(attempt)``: compare-and-set of the intent to PLACED
        with that next attempt number (False: another process took it, stop); ``meta``:
        position_no and the candidate strategy_id for the orders."""
        key = intent["intent_key"]
        lots = {int(r["leg"]): int(r["lot_size"]) for r in legs.select("leg", "lot_size").iter_rows(named=True)}
        attempt = int(intent["attempt"])
        submitted: list[str] = []
        left, filled, working = self.left(intent, lots)
        if working:  # a resumed intent: its own orders first (followed, then cancelled if still open)
            rows = self.desk.wait(working, self.config.fill_timeout)
            for r in rows:
                if r.status.working and r.broker_order_id:
                    self.desk.cancel(r)
            left, filled, _ = self.left(intent, lots)
        note = ""
        for k in range(self.max_attempts):
            if not any(left.values()):
                break
            urgency = intent["urgency"] if attempt == 0 and k == 0 else Urgency.HIGH.value
            try:
                plan = plan_exit({**intent, "strategy_id": intent["strategy_key"], "urgency": urgency},
                                 self._quantities(intent, left, legs), legs, freeze=self.freeze, attempt=attempt)
            except ExitPlanError as exc:
                note = str(exc)
                break
            if not claim(attempt + 1):
                return DriveResult(key, "PLACED", filled, left, submitted, attempt + 1,
                                   "taken over by another process")
            attempt += 1
            why = self._place(plan.orders, intent, meta, submitted)
            left, filled, _ = self.left(intent, lots)
            note = why or ""
        done = not any(left.values())
        state = "FILLED" if done else "PARTIAL" if any(filled.values()) else "FAILED"
        if not done and not note:
            note = "not filled"
        return DriveResult(key, state, filled, left, submitted, attempt, note)

    def _quantities(self, intent: Mapping, left: Mapping[int, int], legs: pl.DataFrame) -> pl.DataFrame:
        side = {int(q["leg"]): q["close_side"] for q in intent["quantities"]}
        sec = {int(q["leg"]): q.get("security_id") for q in intent["quantities"]}
        lot = {int(r["leg"]): int(r["lot_size"]) for r in legs.select("leg", "lot_size").iter_rows(named=True)}
        rows = [{"intent_key": intent["intent_key"], "strategy_id": intent["strategy_key"],
                 "allocation_id": intent["allocation_id"], "position_id": intent["position_id"], "leg": leg,
                 "security_id": sec[leg], "quantity": n, "lots": n // max(lot.get(leg, 1), 1), "close_side": side[leg]}
                for leg, n in sorted(left.items()) if n > 0]
        return pl.DataFrame(rows, schema=LEG_QUANTITY_SCHEMA)

    def _place(self, orders: Sequence[ExitOrder], intent: Mapping, meta: Mapping, submitted: list[str]) -> str | None:
        """Send the plan's orders side by side group (its order), each group awaited before the next;
        None when every order filled, else why not."""
        groups: list[list[ExitOrder]] = []
        for o in orders:
            if not groups or groups[-1][0].request.side is not o.request.side:
                groups.append([])
            groups[-1].append(o)
        for group in groups:
            self.audit([("order_request", o.request.correlation_id,
                         {"intent": intent["intent_key"], "leg": o.leg, "slice": o.slice_no,
                          "side": str(o.request.side), "quantity": o.request.quantity, "price": o.request.price,
                          "security_id": o.request.security_id}) for o in group])
            rows = {}
            for o in group:
                r = o.request
                m = OrderMeta(self.desk.broker.name, "exit", o.leg, o.slice_no,
                              int(r.correlation_id.rsplit("-", 1)[1]), intent["allocation_id"], intent["position_id"],
                              meta.get("position_no"), meta.get("strategy_id"), intent["intent_key"][:128])
                row = self.desk.submit(r, m)
                submitted.append(row.correlation_id)
                rows[row.correlation_id] = (o, row)
            rows = self._await(rows)
            self.audit([("order_response", cid, {"intent": intent["intent_key"], "status": str(r.status),
                                                 "filled": r.filled_quantity, "quantity": r.quantity,
                                                 "average_price": r.average_price, "reason": r.reason,
                                                 "error_code": r.error_code}) for cid, (_, r) in rows.items()])
            short = [r for _, r in rows.values() if r.status is not S.TRADED]
            if short:
                r = short[0]
                return (f"leg {r.leg} order {r.correlation_id} {r.status} ({r.filled_quantity}/{r.quantity} filled)"
                        + (f": {r.reason}" if r.reason else ""))
        return None

    def _await(self, rows: dict[str, tuple[ExitOrder, StoredOrder]]) -> dict[str, tuple[ExitOrder, StoredOrder]]:
        """Wait for fills, repricing working orders towards the market within the band; cancel what
        still works at the end."""
        cfg = self.config
        for k in range(cfg.max_reprices + 1):
            got = self.desk.wait([r for _, r in rows.values()], cfg.fill_timeout)
            rows = {r.correlation_id: (rows[r.correlation_id][0], r) for r in got}
            if not any(r.status.working for _, r in rows.values()) or k == cfg.max_reprices:
                break
            for cid, (o, r) in list(rows.items()):
                if r.status.working and r.broker_order_id:
                    rows[cid] = (o, self.desk.modify(r, self._reprice(o, k + 1)))
        for cid, (o, r) in list(rows.items()):
            if r.status.working and r.broker_order_id:
                rows[cid] = (o, self.desk.cancel(r))
        return rows

    def _reprice(self, o: ExitOrder, k: int) -> float:
        r = o.request
        ref = o.reference or r.price
        low, high = self.config.band(ref)
        step = max(r.tick_size, ref * self.config.reprice_step) * k
        price = min(r.price + step, high) if r.side is Side.BUY else max(r.price - step, low)
        return round_to_tick(price, r.tick_size, r.side)
