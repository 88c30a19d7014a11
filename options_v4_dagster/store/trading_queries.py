"""Approvals of allocation snapshots, the execution plan of an approved snapshot, and the reads of
``options-v4 orders`` / ``options-v4 positions``.

Positions are numbered 1.. within a snapshot in ``position_id`` order (:func:`position_numbers`): the
number is what ``options-v4 approve ID --positions 1,3,5`` takes and what the correlation ids carry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from ..errors import OptionsV4Error
from ..trading.broker import OrderRejected
from ..trading.orders import OrderStatus, Side
from ..trading.plan import AllocationPlan, LegPlan, PositionPlan
from ..trading.quotes import ChainQuoteBook, contract_key
from ..trading.rules import TICK_SIZE, InstrumentSpec, load_freeze_limits
from . import archive
from .instruments import (
    contract_of,
    instrument_specs,
    instruments_count,
    session_instruments,
    specs_by_contract,
)
from .schema import (
    allocation_approvals,
    option_chain_data,
    orders,
    portfolio_allocation,
    portfolio_allocation_summary,
    positions,
    strategies,
    strategy_details,
    strategy_execution_status,
)
from .trading import insert_ignore
from .warehouse import Warehouse

ALL_POSITIONS = "*"


class ApprovalError(OptionsV4Error):
    """An approval names an allocation or positions that do not exist, or a plan cannot be built."""


@dataclass(frozen=True)
class Approval:
    approval_id: str
    allocation_id: str
    position_ids: tuple[str, ...] | None  # None = every position of the snapshot
    approved_by: str
    approved_at: dt.datetime


def approval_key(allocation_id: str, position_ids: Sequence[str] | None) -> tuple[str, str, str | None]:
    """(approval_id, position_set, position_ids JSON) of an approval: the same allocation and
    position set always give the same id (the sensor's run key)."""
    ids = sorted(set(position_ids)) if position_ids else None
    pset = ALL_POSITIONS if ids is None else hashlib.sha256(json.dumps(ids).encode()).hexdigest()
    aid = "ap-" + hashlib.sha256(f"{allocation_id}\n{pset}".encode()).hexdigest()[:24]
    return aid, pset, None if ids is None else json.dumps(ids)


def position_numbers(wh: Warehouse, allocation_id: str) -> dict[str, int]:
    """position_id -> 1-based number within the snapshot (position_id order)."""
    p = portfolio_allocation
    ids = wh.read(sa.select(p.c.position_id).where(p.c.allocation_id == allocation_id).order_by(p.c.position_id))
    return {pid: i for i, pid in enumerate(ids.get_column("position_id").to_list(), 1)} if ids.height else {}


def positions_by_number(wh: Warehouse, allocation_id: str, numbers: Sequence[int]) -> list[str]:
    """The position_ids of ``numbers`` (see :func:`position_numbers`); ApprovalError naming unknown ones."""
    by_no = {n: pid for pid, n in position_numbers(wh, allocation_id).items()}
    missing = [n for n in numbers if n not in by_no]
    if missing:
        raise ApprovalError(f"allocation {allocation_id} has no position(s) {missing} (it has 1..{len(by_no)})")
    return [by_no[n] for n in numbers]


def approve(wh: Warehouse, allocation_id: str, position_ids: Sequence[str] | None = None, *, approved_by: str,
            at: dt.datetime | None = None) -> tuple[Approval, bool]:
    """Approve a snapshot (or some of its positions) for execution; idempotent: the same allocation
    and position set return the stored approval with ``created`` False."""
    known = position_numbers(wh, allocation_id)
    if not known:
        s = portfolio_allocation_summary
        exists = wh.read(sa.select(s.c.allocation_id).where(s.c.allocation_id == allocation_id)).height
        raise ApprovalError(f"allocation {allocation_id} " + ("has no positions" if exists else "does not exist"))
    unknown = sorted(set(position_ids or ()) - set(known))
    if unknown:
        raise ApprovalError(f"allocation {allocation_id} has no position(s) {unknown}")
    aid, pset, ids_json = approval_key(allocation_id, position_ids)
    values = dict(approval_id=aid, allocation_id=allocation_id, position_set=pset, position_ids=ids_json,
                  approved_by=approved_by, approved_at=at or dt.datetime.now(dt.UTC))
    with wh.engine.begin() as conn:
        created = insert_ignore(conn, allocation_approvals, values, ["approval_id"]) == 1
    approval = get_approval(wh, aid)
    assert approval is not None
    return approval, created


def _approval(row: dict) -> Approval:
    ids = json.loads(row["position_ids"]) if row["position_ids"] else None
    return Approval(row["approval_id"], row["allocation_id"], tuple(ids) if ids else None, row["approved_by"],
                    row["approved_at"])


def get_approval(wh: Warehouse, approval_id: str) -> Approval | None:
    t = allocation_approvals
    with wh.engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.approval_id == approval_id)).first()
    return _approval(dict(row._mapping)) if row else None


def pending_approvals(wh: Warehouse) -> list[Approval]:
    """Approvals with at least one approved position that has no execution row yet, oldest first."""
    t, p, e = allocation_approvals, portfolio_allocation, strategy_execution_status
    with wh.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(t.c.approved_at, t.c.approval_id))]
        if not rows:
            return []
        aids = sorted({r["allocation_id"] for r in rows})
        todo: dict[str, set[str]] = {}
        for aid, pid in conn.execute(
                sa.select(p.c.allocation_id, p.c.position_id).where(p.c.allocation_id.in_(aids)).where(
                    ~sa.exists().where(e.c.allocation_id == p.c.allocation_id, e.c.position_id == p.c.position_id))):
            todo.setdefault(aid, set()).add(pid)
    out = []
    for r in rows:
        a = _approval(r)
        left = todo.get(a.allocation_id, set())
        if left if a.position_ids is None else left & set(a.position_ids):
            out.append(a)
    return out


# -- the execution plan ---------------------------------------------------------------------------

def _contract_id(symbol: str, expiry, instrument: str, strike) -> str:
    """The id of a contract without a broker security id: :func:`~..trading.quotes.contract_key` for
    an option (what :func:`session_quote_book` keys such contracts by), ``SYMBOL-YYYYMMDD-FUT|EQ`` else."""
    if instrument in ("CE", "PE") and expiry is not None and strike is not None:
        return contract_key(symbol, expiry, strike, instrument)
    return f"{symbol.upper()}-{expiry:%Y%m%d}-{instrument}" if expiry else f"{symbol.upper()}-{instrument}"


def allocation_plan(wh: Warehouse, allocation_id: str, position_ids: Sequence[str] | None = None, *,
                    approval_id: str | None = None, tick_size: float = TICK_SIZE,
                    freeze_quantity: Callable[[str, int], int | None] | None = None) -> AllocationPlan:
    """The positions of a snapshot (all, or ``position_ids``) with their legs from strategy_details.

    Each leg's security id, lot size, tick size and freeze quantity come from the session's
    ``instruments`` rows (:mod:`.instruments`): quantity = the leg's lots per position lot (its
    strategy_details quantity / the candidate's lots / the candidate's lot size) x the allocated lots
    x the instrument's lot size. An option leg the instruments do not list is an ApprovalError; a FUT /
    EQ leg of a source without such rows falls back (below) and the plan says so.

    Fallback, only for a session without instruments rows (``plan.instrument_source`` "fallback",
    ``plan.instrument_note`` says why): quantity = per-lot quantity x the allocated lots; the lot size
    of the allocation, ``tick_size``, ``freeze_quantity`` ((symbol, lot size) -> the freeze limit in
    shares, None: no slicing; default the packaged ``config/freeze_limits.yaml``), the candidate's
    security id, else the :func:`~..trading.quotes.contract_key`."""
    s = portfolio_allocation_summary
    summ = wh.read(sa.select(s.c.trade_date, s.c.capital).where(s.c.allocation_id == allocation_id))
    if summ.height == 0:
        raise ApprovalError(f"allocation {allocation_id} does not exist")
    session = summ.item(0, "trade_date")
    numbers = position_numbers(wh, allocation_id)
    p, st, d = portfolio_allocation, strategies, strategy_details
    q = (sa.select(p.c.position_id, p.c.strategy_id, p.c.symbol, p.c.strategy_name, p.c.lots,
                   p.c.lot_size.label("alloc_lot_size"), st.c.lots.label("cand_lots"),
                   st.c.lot_size.label("cand_lot_size"), d.c.leg, d.c.side, d.c.instrument, d.c.strike, d.c.expiry,
                   d.c.quantity, d.c.price, d.c.security_id)
         .select_from(p.outerjoin(st, st.c.strategy_id == p.c.strategy_id)
                      .outerjoin(d, d.c.strategy_id == p.c.strategy_id))
         .where(p.c.allocation_id == allocation_id).order_by(p.c.position_id, d.c.leg))
    if position_ids is not None:
        q = q.where(p.c.position_id.in_(list(position_ids)))
    rows = wh.read(q).to_dicts()
    by_pos: dict[str, list[dict]] = {}
    for r in rows:
        by_pos.setdefault(r["position_id"], []).append(r)
    listed = instruments_count(wh, session) > 0
    specs = specs_by_contract(session_instruments(wh, session, sorted({r["symbol"] for r in rows}))) if listed else {}
    fallback = _Fallback(tick_size, freeze_quantity or load_freeze_limits().freeze_quantity)
    plans = []
    for pid, legs in by_pos.items():
        r0 = legs[0]
        where = f"{allocation_id}/{pid}"
        if r0["leg"] is None:
            raise ApprovalError(f"{where}: no legs stored for strategy {r0['strategy_id']} "
                                "(strategy_details of its session were replaced or never written)")
        leg_plans = tuple(_leg_plan(where, r0, r, specs.get(contract_of(r0["symbol"], r["expiry"], r["strike"],
                                                                        r["instrument"])), listed, fallback)
                          for r in legs)
        plans.append(PositionPlan(allocation_id, pid, numbers[pid], r0["strategy_id"], r0["symbol"],
                                  r0["strategy_name"], int(r0["lots"]), leg_plans))
    source, note = _instrument_source(session, listed, [leg for pos in plans for leg in pos.legs])
    return AllocationPlan(allocation_id, session, tuple(plans), approval_id, summ.item(0, "capital"),
                          instrument_source=source, instrument_note=note)


@dataclass
class _Fallback:
    """Today's values for a leg without an instruments row (see :func:`allocation_plan`)."""

    tick_size: float
    freeze_quantity: Callable[[str, int], int | None]


def _leg_plan(where: str, r0: dict, r: dict, spec: InstrumentSpec | None, listed: bool,
              fallback: _Fallback) -> LegPlan:
    cand_lots = int(r0["cand_lots"] or 1)
    lot = int(r0["alloc_lot_size"] or r0["cand_lot_size"] or 1)
    per_lot, rest = divmod(int(r["quantity"]), cand_lots)
    if rest:
        raise ApprovalError(f"{where} leg {r['leg']}: quantity {r['quantity']} is not a multiple of the "
                            f"candidate's {cand_lots} lots")
    sec = r["security_id"]
    common = dict(leg=int(r["leg"]), side=Side(r["side"]), instrument=r["instrument"], strike=r["strike"],
                  expiry=r["expiry"], price=float(r["price"] or 0.0))
    if spec is not None:
        cand_lot = int(r0["cand_lot_size"] or lot)
        lots_per_lot, rest = divmod(per_lot, cand_lot)
        if rest:
            raise ApprovalError(f"{where} leg {r['leg']}: {per_lot} shares per lot is not a multiple of the "
                                f"candidate's lot size {cand_lot}")
        key = contract_key(r0["symbol"], r["expiry"], r["strike"], r["instrument"]) \
            if r["instrument"] in ("CE", "PE") else None
        return LegPlan(**common, quantity=lots_per_lot * int(r0["lots"]) * spec.lot_size,
                       security_id=spec.security_id, lot_size=spec.lot_size, tick_size=spec.tick_size,
                       freeze_quantity=spec.freeze_quantity, security_id_known=spec.security_id != key,
                       instrument_source="instruments")
    if listed and r["instrument"] in ("CE", "PE"):
        raise ApprovalError(f"{where} leg {r['leg']}: {r0['symbol']} {r['expiry']} {r['strike']} {r['instrument']} "
                            "is not among the session's instruments (re-materialize instruments for the session)")
    try:
        freeze = fallback.freeze_quantity(r0["symbol"], lot)
    except OrderRejected as exc:
        raise ApprovalError(f"{where}: {exc}") from exc
    return LegPlan(**common, quantity=per_lot * int(r0["lots"]),
                   security_id=sec or _contract_id(r0["symbol"], r["expiry"], r["instrument"], r["strike"]),
                   lot_size=lot, tick_size=fallback.tick_size, freeze_quantity=freeze,
                   security_id_known=sec is not None, instrument_source="fallback")


def _instrument_source(session: dt.date, listed: bool, legs: Sequence[LegPlan]) -> tuple[str, str | None]:
    """The plan's ``instrument_source`` ("instruments", "fallback" or "mixed") and a note on the fallback."""
    how = ("security ids from strategy_details (else contract keys), lot sizes from the allocation, the default "
           "tick size and freeze limits from config/freeze_limits.yaml")
    if not listed:
        return "fallback", f"no instruments rows for {session}: {how}"
    loose = sorted({f"{leg.instrument} leg {leg.leg}" for leg in legs if leg.instrument_source == "fallback"})
    if not loose:
        return "instruments", None
    return "mixed", f"{', '.join(loose)} not listed in the instruments of {session} (no FUT/EQ rows): {how}"


def session_quote_book(wh: Warehouse, session: dt.date, symbols: Sequence[str] | None = None) -> ChainQuoteBook:
    """The stored quotes of ``session`` (option_chain_data; the underlyings ``symbols``, default all)
    as a :class:`~..trading.quotes.ChainQuoteBook`: the paper broker executes a session's allocation
    at these, so a past session replays at its stored quotes. Contracts are keyed by their stored
    security id, else their :func:`~..trading.quotes.contract_key` (as :func:`allocation_plan`). The book
    carries the session's instruments (:func:`.instruments.instrument_specs`; empty without rows), which
    ``trading.replay.paper_execution`` gives the paper broker. ApprovalError when the session has no
    stored chain for them."""
    c = option_chain_data
    q = sa.select(c.c.symbol, c.c.expiry, c.c.strike, c.c.option_type, c.c.bid, c.c.ask, c.c.bid_qty, c.c.ask_qty,
                  c.c.ltp, c.c.security_id, c.c.snapshot_ts).where(c.c.trade_date == session)
    if symbols is not None:
        q = q.where(c.c.symbol.in_(sorted(set(symbols))))
    chain = archive.fallback(wh, wh.read(q), "option_chain_data", session, [col.name for col in q.selected_columns],
                             None if symbols is None else sorted(set(symbols)))
    if chain.height == 0:
        raise ApprovalError(f"no stored option chain for {session}"
                            + (f" ({', '.join(sorted(set(symbols)))})" if symbols is not None else ""))
    return ChainQuoteBook(chain, instruments=instrument_specs(wh, session, symbols))


# -- reads for the CLI ----------------------------------------------------------------------------

def orders_frame(wh: Warehouse, *, allocation_id: str | None = None, open_only: bool = False) -> pl.DataFrame:
    """Orders (newest first), optionally of one allocation or only those still working."""
    o = orders
    q = sa.select(o.c.correlation_id, o.c.allocation_id, o.c.position_no, o.c.strategy_id, o.c.leg, o.c.slice_no,
                  o.c.attempt, o.c.purpose, o.c.broker, o.c.symbol, o.c.option_type, o.c.strike, o.c.expiry,
                  o.c.side, o.c.quantity, o.c.price, o.c.status, o.c.filled_quantity, o.c.average_price,
                  o.c.broker_order_id, o.c.reason, o.c.adopted, o.c.created_at, o.c.updated_at)
    if allocation_id is not None:
        q = q.where(o.c.allocation_id == allocation_id)
    if open_only:
        q = q.where(o.c.status.in_([str(s) for s in OrderStatus if s.working or s is OrderStatus.INITIALIZED]))
    return wh.read(q.order_by(o.c.created_at.desc(), o.c.correlation_id))


def positions_frame(wh: Warehouse, *, open_only: bool = True, allocation_id: str | None = None) -> pl.DataFrame:
    """Positions per leg with entry prices, realized P&L and the strategy's execution state."""
    p, e = positions, strategy_execution_status
    q = (sa.select(p.c.allocation_id, p.c.position_id, e.c.position_no, p.c.strategy_id, e.c.strategy_name,
                   e.c.state, p.c.leg, p.c.symbol, p.c.option_type, p.c.strike, p.c.expiry, p.c.entry_side,
                   p.c.quantity, p.c.average_price, p.c.entry_quantity, p.c.entry_price, p.c.realized_pnl,
                   p.c.fees, p.c.opened_at, p.c.closed_at)
         .select_from(p.outerjoin(e, (e.c.allocation_id == p.c.allocation_id) & (e.c.position_id == p.c.position_id))))
    if open_only:
        q = q.where(p.c.quantity != 0)
    if allocation_id is not None:
        q = q.where(p.c.allocation_id == allocation_id)
    return wh.read(q.order_by(p.c.allocation_id, e.c.position_no, p.c.leg))


def execution_states(wh: Warehouse, allocation_id: str) -> pl.DataFrame:
    e = strategy_execution_status
    return wh.read(sa.select(e).where(e.c.allocation_id == allocation_id).order_by(e.c.position_no))
