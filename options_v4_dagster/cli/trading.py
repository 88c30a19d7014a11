"""``options-v4 approve`` (mark an allocation snapshot, or some positions, for execution),
``options-v4 execute`` (the same entry point as the ``execute_allocation`` job:
:func:`~options_v4_dagster.trading.service.execute_approval`), ``options-v4 orders`` and
``options-v4 positions`` (what is open, with entry prices).

``execute`` runs on the broker of ``--broker`` (default ``OPTIONS_V4_BROKER``, else paper). An
allocation that was not approved is refused with a line naming ``options-v4 approve`` (approval is a
separate, recorded act, also for paper). Live orders need broker dhan with its credentials,
``OPTIONS_V4_LIVE=1`` and ``--execute``; anything less is refused before any order (exit 2).
"""

from __future__ import annotations

import datetime as dt
import getpass
import sys

from .output import console, new_table, print_json


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "options-v4"


def cmd_approve(args) -> int:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.trading_queries import approve, positions_by_number

    wh = Warehouse.from_env()
    pids = positions_by_number(wh, args.allocation_id, args.positions) if args.positions else None
    approval, created = approve(wh, args.allocation_id, pids, approved_by=args.by or _who())
    what = "every position" if approval.position_ids is None else \
        f"position(s) {','.join(str(n) for n in args.positions)}"
    if args.json:
        print_json({"approval_id": approval.approval_id, "allocation_id": approval.allocation_id,
                    "positions": args.positions or None, "approved_by": approval.approved_by,
                    "approved_at": approval.approved_at.isoformat(), "created": created})
        return 0
    when = f"{approval.approved_at:%Y-%m-%d %H:%M:%S} UTC"
    console.print(f"{'approved' if created else 'already approved'}: allocation {approval.allocation_id}, {what}, "
                  f"by {approval.approved_by} at {when}")
    console.print(f"approval {approval.approval_id}")
    console.print(f"next: `options-v4 execute --allocation {approval.allocation_id}` (or let "
                  "approved_allocations_sensor launch the execute_allocation job)")
    return 0


def _contract(leg) -> str:
    if leg.strike is None:
        return leg.instrument
    return f"{leg.strike:g} {leg.instrument} {leg.expiry or ''}".strip()


def execution_json(report) -> dict:
    """The report as ``--json`` prints it; ``strategy_id`` is the position number (what
    ``--strategy-id`` takes)."""
    return {
        "allocation_id": report.allocation_id,
        "strategies": [
            {"strategy_id": s.position_no, "symbol": s.symbol, "strategy_name": s.strategy_name, "state": s.state,
             "legs": [{"correlation_id": leg.correlation_id, "side": leg.side, "instrument": leg.instrument,
                       "strike": leg.strike, "expiry": leg.expiry.isoformat() if leg.expiry else None,
                       "quantity": leg.quantity, "status": leg.status, "filled_quantity": leg.filled_quantity,
                       "average_price": leg.average_price} for leg in s.legs]}
            for s in report.strategies],
        "orders_placed": report.orders_placed,
        "seconds": round(report.seconds, 3),
    }


def cmd_execute(args) -> int:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.trading.service import DhanCredentials, default_broker, execute_approval

    broker = args.broker or default_broker()
    wh = Warehouse.from_env()
    report = execute_approval(wh, allocation_id=args.allocation, position_numbers=args.strategy_id,
                              broker=broker, live=args.execute, capital=args.capital,
                              credentials=DhanCredentials.from_env() if broker == "dhan" else None)
    summary = (f"nothing placed: every position was already executed ({report.seconds:.2f}s)"
               if report.orders_placed == 0 and report.nothing_to_do else
               f"{report.orders_placed} order(s) placed on {broker} in {report.seconds:.2f}s")
    if args.json:
        print_json(execution_json(report))
        for m in [*report.messages, summary]:
            print(m, file=sys.stderr)
        return 0
    table = new_table(f"allocation {report.allocation_id} on {broker}",
                      ("#", "symbol", "strategy", "state", "leg", "side", "contract", "qty", "correlation id",
                       "status", "filled", "avg price"), right=("#", "leg", "qty", "filled", "avg price"))
    cid = max((len(leg.correlation_id) for s in report.strategies for leg in s.legs), default=1)
    table.columns[8].min_width, table.columns[8].no_wrap = cid, True  # the id whole, whatever the width
    table.columns[2].max_width = 18
    for s in report.strategies:
        for leg in s.legs:
            table.add_row(str(s.position_no), s.symbol, s.strategy_name, s.state, str(leg.leg), leg.side,
                          _contract(leg), str(leg.quantity), leg.correlation_id or "-", leg.status,
                          str(leg.filled_quantity), "" if leg.average_price is None else f"{leg.average_price:,.2f}")
    console.print(table)
    for s in report.strategies:
        if s.reason:
            console.print(f"  #{s.position_no} {s.symbol} {s.strategy_name}: {s.state}: {s.reason}")
    for m in report.messages:
        console.print(m)
    states: dict[str, int] = {}
    for s in report.strategies:
        states[s.state] = states.get(s.state, 0) + 1
    console.print(summary + "; states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    return 0


def _jsonable(rows: list[dict]) -> list[dict]:
    return [{k: v.isoformat() if isinstance(v, dt.date | dt.datetime) else v for k, v in r.items()} for r in rows]


def _num(v, fmt: str = "{:,.2f}") -> str:
    return "" if v is None else fmt.format(v)


def cmd_orders(args) -> int:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.trading_queries import orders_frame

    frame = orders_frame(Warehouse.from_env(), open_only=args.open)
    if args.json:
        print_json(_jsonable(frame.to_dicts()))
        return 0
    table = new_table(f"{'open ' if args.open else ''}orders ({frame.height}, newest first)",
                      ("created", "correlation id", "broker", "#", "leg", "side", "symbol", "contract", "qty",
                       "price", "status", "filled", "avg price", "reason"),
                      right=("#", "leg", "qty", "price", "filled", "avg price"))
    for r in frame.iter_rows(named=True):
        contract = f"{r['strike']:g} {r['option_type']} {r['expiry'] or ''}" if r["strike"] is not None else \
            str(r["option_type"] or "")
        table.add_row(f"{r['created_at']:%Y-%m-%d %H:%M:%S}", r["correlation_id"], r["broker"],
                      _num(r["position_no"], "{}"), str(r["leg"]), r["side"], r["symbol"], contract,
                      str(r["quantity"]), _num(r["price"]), r["status"], str(r["filled_quantity"]),
                      _num(r["average_price"]), (r["reason"] or "")[:60])
    console.print(table)
    return 0


def cmd_positions(args) -> int:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.trading_queries import positions_frame

    frame = positions_frame(Warehouse.from_env(), open_only=not args.all)
    if args.json:
        print_json(_jsonable(frame.to_dicts()))
        return 0
    table = new_table(f"{'all' if args.all else 'open'} positions ({frame.height} legs)",
                      ("allocation", "#", "symbol", "strategy", "state", "leg", "contract", "qty", "entry price",
                       "avg open", "realized P&L", "fees"),
                      right=("#", "leg", "qty", "entry price", "avg open", "realized P&L", "fees"))
    for r in frame.iter_rows(named=True):
        contract = f"{r['strike']:g} {r['option_type']} {r['expiry'] or ''}" if r["strike"] is not None else \
            str(r["option_type"] or "")
        table.add_row(r["allocation_id"][:12], _num(r["position_no"], "{}"), r["symbol"], r["strategy_name"] or "",
                      r["state"] or "", str(r["leg"]), contract, str(r["quantity"]), _num(r["entry_price"]),
                      _num(r["average_price"]), _num(r["realized_pnl"]), _num(r["fees"]))
    console.print(table)
    return 0
