"""An exit decision turned into the orders that carry it out (domain planning only: no broker, no
store; the exit path sends them through :class:`~.placement.OrderDesk` like entries).

Per leg of the decision (:data:`~.decisions.LEG_QUANTITY_SCHEMA` rows of its intent):

* **Side**: the opposite of the open position -- sell-to-close a long leg, buy-to-close a short.
* **Quantity**: the decision's whole lots, sliced by :func:`~.rules.slices` into orders each
  strictly below the freeze quantity (the leg's own ``freeze_quantity``, else
  ``config/freeze_limits.yaml`` through :class:`~.rules.FreezeLimits`, else unsliced).
* **Limit price**: the close-out quote (bid to sell, ask to buy; the mark when that side is empty)
  kept inside NSE's price protection band around the reference (last price, else mid) and rounded
  to the tick on the safe side (:func:`~.rules.round_to_tick`). A ``HIGH`` urgency exit (stop, daily
  limit, settlement cut-off, last-day time exit) is priced at the band edge instead -- a protected
  marketable limit that still fills at the best available price. A leg with neither quote nor last
  price cannot be priced: :class:`ExitPlanError`.
* **Correlation ids**: :func:`~.orders.exit_correlation_id` ``(intent_key, leg, slice, attempt)`` --
  the same intent always yields the same ids, so a retry or a second monitor places nothing new.

**Leg order -- close risk first**: buy-to-close orders (the short legs) go first, then the
sell-to-close ones (the long legs): buying back a short never increases margin and never leaves a
naked short, whereas selling the long wing first would. Only when the buy-backs cost more than the
``available_funds`` given (margin requires it) do the long legs go first, to raise the cash; the
plan's ``leg_order`` and ``notes`` say which rule applied. Within a side: by leg number, then slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from ..errors import OptionsV4Error
from .decisions import Action, Urgency
from .exit_rules import ExitEvaluation
from .orders import OrderRequest, Side, exit_correlation_id
from .rules import TICK_SIZE, FreezeLimits, market_limit_price, protection_band, round_to_tick, slices
from .valuation import Valuation

__all__ = ["ExitOrder", "ExitPlan", "ExitPlanError", "plan_exit", "plan_exits"]


class ExitPlanError(OptionsV4Error):
    """An exit decision cannot be turned into orders (a leg without any price)."""


@dataclass(frozen=True)
class ExitOrder:
    request: OrderRequest
    intent_key: str
    strategy_id: str
    allocation_id: str | None
    position_id: str | None
    leg: int
    slice_no: int
    reference: float | None  # the band's reference price (last, else mid)
    quote: float | None  # the close-out quote (bid to sell, ask to buy)


@dataclass(frozen=True)
class ExitPlan:
    intent_key: str
    strategy_id: str
    action: str
    rule: str
    urgency: str
    orders: tuple[ExitOrder, ...]
    leg_order: str  # shorts_first / longs_first
    notes: tuple[str, ...] = ()

    @property
    def requests(self) -> list[OrderRequest]:
        return [o.request for o in self.orders]


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def _price(side: Side, quote: float | None, mark: float | None, reference: float | None, urgent: bool,
           tick: float) -> float | None:
    if reference is None:
        reference = mark if mark is not None else quote
    if reference is None:
        return None
    if urgent:
        return market_limit_price(side, reference, tick)
    low, high = protection_band(reference)
    p = quote if quote is not None else mark if mark is not None else reference
    p = min(p, high) if side is Side.BUY else max(p, low)
    return round_to_tick(p, tick, side)


def plan_exit(decision: Mapping, leg_quantities: pl.DataFrame, legs: pl.DataFrame, *,
              freeze: FreezeLimits | None = None, available_funds: float | None = None,
              attempt: int = 0) -> ExitPlan:
    """The orders of one exit ``decision`` (a :data:`~.decisions.DECISION_SCHEMA` row as a dict):
    ``leg_quantities`` its legs (rows of its intent), ``legs`` the valuation's legs (quotes,
    contract, lot size). See the module docstring."""
    key = decision["intent_key"]
    if decision["action"] not in (Action.EXIT_ALL.value, Action.EXIT_PARTIAL.value):
        raise ExitPlanError(f"{key}: {decision['action']} is not an exit")
    urgent = decision["urgency"] == Urgency.HIGH.value
    q = leg_quantities.filter(pl.col("intent_key") == key).join(
        legs.drop("security_id", "quantity", "allocation_id", "position_id", strict=False), on=["strategy_id", "leg"],
        how="left")
    orders: list[ExitOrder] = []
    for r in q.sort("leg").iter_rows(named=True):
        side = Side(r["close_side"])
        tick = _num(r.get("tick_size")) or TICK_SIZE
        ltp, mid = _num(r.get("ltp")), _num(r.get("mid"))
        quote = _num(r.get("bid")) if side is Side.SELL else _num(r.get("ask"))
        reference = ltp if ltp is not None else mid
        price = _price(side, quote, mid, reference, urgent, tick)
        if price is None:
            raise ExitPlanError(f"{key}: leg {r['leg']} ({r.get('symbol')} {r.get('strike')} {r.get('option_type')}) "
                                "has no quote and no last price: cannot price the exit")
        lot = int(r["lot_size"])
        fq = r.get("freeze_quantity")
        if fq is None and freeze is not None:
            fq = freeze.freeze_quantity(r["symbol"], lot)
        for i, n in enumerate(slices(int(r["quantity"]), lot, fq)):
            req = OrderRequest(exit_correlation_id(key, int(r["leg"]), i, attempt), r["security_id"], r["symbol"],
                               r["expiry"], float(r["strike"]), r["option_type"], side, n, price, lot_size=lot,
                               tick_size=tick)
            orders.append(ExitOrder(req, key, r["strategy_id"], r["allocation_id"], r["position_id"], int(r["leg"]), i,
                                    reference, quote))
    buy_cost = sum(o.request.price * o.request.quantity for o in orders if o.request.side is Side.BUY)
    notes: list[str] = []
    shorts_first = available_funds is None or buy_cost <= available_funds
    if not shorts_first:
        notes.append(f"buying back the short legs needs INR {buy_cost:,.0f} but only INR {available_funds:,.0f} is "
                     "available: selling the long legs first to raise it")
    first = Side.BUY if shorts_first else Side.SELL
    orders.sort(key=lambda o: (o.request.side is not first, o.leg, o.slice_no))
    return ExitPlan(key, decision["strategy_id"], decision["action"], decision["rule"], decision["urgency"],
                    tuple(orders), "shorts_first" if shorts_first else "longs_first", tuple(notes))


def plan_exits(evaluation: ExitEvaluation, valuation: Valuation, *, freeze: FreezeLimits | None = None,
               available_funds: Mapping[str, float] | None = None, attempt: int = 0) -> list[ExitPlan]:
    """:func:`plan_exit` for every actionable decision of ``evaluation`` (``available_funds``:
    per strategy id, when margin may constrain the leg order)."""
    funds = available_funds or {}
    return [plan_exit(d, evaluation.leg_quantities, valuation.legs, freeze=freeze,
                      available_funds=funds.get(d["strategy_id"]), attempt=attempt)
            for d in evaluation.actionable.iter_rows(named=True)]
