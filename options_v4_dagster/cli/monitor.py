"""``options-v4 monitor once|poll|dashboard``: the monitoring cycle the ``monitor_positions`` job runs
(:func:`~options_v4_dagster.trading.monitor.monitor_cycle`, source ``cli``) from the terminal.

Modes: simulation (default: the paper broker at the session's stored quotes), ``--alert-only``
(decisions and alerts, no orders), ``--execute`` (live on Dhan: needs DHAN_CLIENT_ID /
DHAN_ACCESS_TOKEN and OPTIONS_V4_LIVE=1, as for entries, and the NSE market open). Every exit is an
intent ``strategy_key:rule:level`` written before its orders, so a second cycle at the same date and
prices places nothing. ``once`` exits 1 when an exit was left PARTIAL or FAILED (escalated).
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from .output import console, new_table, print_json


def _mode(args) -> tuple[str, bool]:
    if args.execute:
        return "live", True
    return ("alert_only" if args.alert_only else "simulation"), False


def _cycle(args, session: dt.date | None):
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.trading.monitor import monitor_cycle
    from options_v4_dagster.trading.service import DhanCredentials

    mode, live = _mode(args)
    return monitor_cycle(Warehouse.from_env(), session, mode=mode, source="cli", live=live,
                         credentials=DhanCredentials.from_env() if live else None)


def _f(v, fmt: str = "{:,.0f}") -> str:
    return "" if v is None else fmt.format(v)


def _pct(v) -> str:
    """A share (pnl_pct_of_max_loss is a fraction: -0.25 = a quarter of the max loss) as a percentage."""
    return "" if v is None else f"{100 * v:.1f}"


def _pnl(v) -> str:
    if v is None:
        return ""
    return f"[green]{v:,.0f}[/green]" if v > 0 else (f"[red]{v:,.0f}[/red]" if v < 0 else "0")


_URGENCY = {"HIGH": "bold red", "MEDIUM": "yellow", "NORMAL": "cyan"}


def _print_report(report) -> None:
    table = new_table(f"monitor {report.date} ({report.mode}) at {report.as_of:%Y-%m-%d %H:%M} UTC",
                      ("strategy", "symbol", "name", "state", "P&L", "% max loss", "DTE", "actions"),
                      right=("P&L", "% max loss", "DTE"))
    for p in report.positions:
        acts = "; ".join(f"[{_URGENCY.get(a.urgency, '')}]{a.action}[/] {a.rule}"
                         + (f" x{a.quantity}" if a.quantity else "") for a in p.actions if a.action != "HOLD")
        table.add_row(p.strategy_key, p.symbol, p.strategy_name or "", p.state, _pnl(p.pnl),
                      _pct(p.pnl_pct_of_max_loss), _f(p.dte, "{}"), acts or "HOLD")
    console.print(table)
    for i in report.intents:
        console.print(f"  intent {i.intent_key}: {i.state}" + (" (new)" if i.created else "")
                      + (f" — {i.note}" if i.note else ""))
    for m in report.messages:
        console.print(m)
    alerts = ", ".join(f"{u} {n}" for u, n in sorted(report.alerts.items())) or "none"
    console.print(f"{len(report.positions)} position(s), alerts: {alerts}, exits placed: {report.exits_placed}, "
                  f"settled legs: {len(report.settled)} ({report.seconds:.2f}s)")


def cmd_monitor_once(args) -> int:
    report = _cycle(args, args.date)
    if args.json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    for i in report.escalated:
        print(f"exit {i.intent_key} left {i.state}: {i.note}", file=sys.stderr)
    return 1 if report.escalated else 0


def cmd_monitor_poll(args) -> int:
    n = 0
    try:
        while True:
            report = _cycle(args, args.date)
            n += 1
            alerts = ", ".join(f"{u} {k}" for u, k in sorted(report.alerts.items())) or "none"
            console.print(f"{dt.datetime.now(dt.UTC):%H:%M:%S} UTC cycle {n} ({report.mode}, {report.date}): "
                          f"{len(report.positions)} position(s), alerts: {alerts}, "
                          f"exits placed: {report.exits_placed}")
            for i in report.escalated:
                console.print(f"  [bold red]exit {i.intent_key} left {i.state}[/]: {i.note}")
            if args.cycles and n >= args.cycles:
                return 0
            time.sleep(args.interval * 60)
    except KeyboardInterrupt:
        console.print(f"stopped after {n} cycle(s)")
        return 0


def _dashboard(view, detailed: bool):
    import polars as pl
    from rich.console import Group
    from rich.panel import Panel

    parts = []
    st = view.strategies
    acts = {}
    if view.decisions.height:
        for r in view.decisions.filter(pl.col("action") != "HOLD").iter_rows(named=True):
            acts.setdefault(r["strategy_id"], []).append(r)
    t = new_table(f"positions at {view.as_of:%Y-%m-%d %H:%M} UTC (session {view.session})",
                  ("strategy", "symbol", "name", "state", "P&L", "% max loss", "DTE", "exit rules"),
                  right=("P&L", "% max loss", "DTE"))
    has_val = "pnl_close" in st.columns
    for r in st.iter_rows(named=True):
        fired = acts.get(r["strategy_key"], [])
        rules = "; ".join(f"[{_URGENCY.get(a['urgency'], '')}]{a['action']} {a['rule']}[/]" for a in fired) or "HOLD"
        t.add_row(r["strategy_key"], r["symbol"], r["strategy_name"] or "", r["state"],
                  _pnl(r["pnl_close"] if has_val else None),
                  _pct(r.get("pnl_pct_max_loss") if has_val else None),
                  _f(r.get("front_dte") if has_val else None, "{}"), rules)
    parts.append(t)
    if detailed and view.legs.height:
        lt = new_table("legs", ("strategy", "leg", "contract", "qty", "entry", "mid", "close at", "P&L"),
                       right=("leg", "qty", "entry", "mid", "close at", "P&L"))
        for r in view.legs.sort("strategy_id", "leg").iter_rows(named=True):
            contract = f"{r['symbol']} {r['strike']:g} {r['option_type']} {r['expiry']}"
            lt.add_row(r["strategy_id"], str(r["leg"]), contract, str(r["quantity"]), _f(r["average_price"], "{:,.2f}"),
                       _f(r["mid"], "{:,.2f}"), _f(r["close_price"], "{:,.2f}"), _pnl(r["pnl_close"]))
        parts.append(lt)
    alerts = [a for v in acts.values() for a in v]
    for a in sorted(alerts, key=lambda a: ("HIGH", "MEDIUM", "NORMAL").index(a["urgency"])
                    if a["urgency"] in ("HIGH", "MEDIUM", "NORMAL") else 3):
        parts.append(f"[{_URGENCY.get(a['urgency'], '')}]{a['urgency']}[/] {a['strategy_id']}: {a['action']} "
                     f"{a['rule']} — {a['reason']}")
    total = float(st.get_column("pnl_close").fill_null(0.0).sum()) if has_val and st.height else 0.0
    up = int((st.get_column("pnl_close") > 0).sum()) if has_val and st.height else 0
    down = int((st.get_column("pnl_close") < 0).sum()) if has_val and st.height else 0
    parts.append(Panel(f"open: {st.height}  (up {up}, down {down})   open P&L: {_pnl(total) or '0'}   "
                       f"closed: {view.closed.get('wins', 0)} win(s), {view.closed.get('losses', 0)} loss(es)   "
                       f"alerts: {len(alerts)}", title="portfolio"))
    parts.extend(view.messages)
    return Group(*parts)


def cmd_monitor_dashboard(args) -> int:
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.trading.dashboard import dashboard_view

    wh = Warehouse.from_env()
    if not args.continuous:
        console.print(_dashboard(dashboard_view(wh, args.date), args.detailed))
        return 0
    from rich.live import Live

    try:
        with Live(_dashboard(dashboard_view(wh, args.date), args.detailed), console=console,
                  refresh_per_second=1, screen=False) as live:
            while True:
                time.sleep(args.refresh)
                live.update(_dashboard(dashboard_view(wh, args.date), args.detailed))
    except KeyboardInterrupt:
        return 0


def cmd_monitor(args) -> int:
    from .realtime import cmd_realtime

    return {"once": cmd_monitor_once, "poll": cmd_monitor_poll, "dashboard": cmd_monitor_dashboard,
            "realtime": cmd_realtime}[args.monitor_command](args)
