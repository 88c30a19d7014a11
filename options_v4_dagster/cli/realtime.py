"""``options-v4 monitor realtime [--feed dhan|standin] [--execute] [--alert-only] [--once] [--interval S]
[--date D] [--seconds N] [--snapshot-every S]``: the real-time monitor (:class:`~options_v4_dagster.trading.realtime.RealtimeMonitor`)
in the foreground, printing ticks, evaluations, intents and feed events.

``--feed standin`` (the default when no Dhan credentials are set) starts the stand-in feed on
127.0.0.1, seeded from the open legs' stored quotes (their entry price where the session has no
stored chain), with REST fallback from the stand-in's own prices: a new user watches it work
offline. ``--feed dhan`` reads DHAN_CLIENT_ID / DHAN_ACCESS_TOKEN (never printed) and falls back to
Dhan's quote API (<= 1,000 ids per request, 1 request/s) while the feed is down. ``--date D`` replays
a past session: the cycles' clock runs from 15:25 IST of D. Modes: simulation (default; paper
exits), ``--alert-only``, live (``--execute`` with broker dhan, credentials and ``OPTIONS_V4_LIVE=1``,
exactly as for entries; refused with exit 2 otherwise).

Wiring (by the owner of ``cli/monitor.py``): ``realtime.register(monitor_subparsers)`` adds the
``realtime`` sub-command with ``func=cmd_realtime``.
"""

from __future__ import annotations

import datetime as dt
import sys
import time

from .args import session_arg
from .output import console


def register(subparsers) -> None:
    p = subparsers.add_parser("realtime", help="the real-time monitor: market feed ticks -> exits (Ctrl-C stops it)")
    p.add_argument("--feed", choices=("dhan", "standin"), default=None,
                   help="dhan (DHAN_CLIENT_ID / DHAN_ACCESS_TOKEN) or standin (offline; the default without credentials)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--execute", action="store_true", help="live exits on Dhan (needs OPTIONS_V4_LIVE=1 and credentials)")
    g.add_argument("--alert-only", action="store_true", help="decisions and alerts, no orders")
    p.add_argument("--once", action="store_true", help="one evaluation of every open position, then exit")
    p.add_argument("--interval", type=float, default=0.5, help="at most one cycle per S seconds (default 0.5)")
    p.add_argument("--date", type=session_arg, default=None, help="replay a past session (default: today)")
    p.add_argument("--seconds", type=float, default=None, help="stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--rate", type=float, default=20.0, help="stand-in ticks per second (default 20)")
    p.add_argument("--snapshot-every", type=float, default=5.0,
                   help="write strategy_monitoring snapshots every S seconds (default 5; intents are written at once)")
    p.set_defaults(func=cmd_realtime)


def _clock(session: dt.date | None):
    from options_v4_dagster.trading.monitor import default_as_of

    if session is None or session >= dt.datetime.now(dt.UTC).date():
        return None
    base, t0 = default_as_of(session)[1], time.monotonic()
    return lambda: base + dt.timedelta(seconds=time.monotonic() - t0)


def _stored_prices(wh, as_of: dt.datetime, session: dt.date) -> tuple[dict[str, float], dict[str, float]]:
    """Security id -> a starting price (the stored chain's mid, else the entry price) of every open
    leg with an exchange id; symbol -> the chain's spot."""
    from options_v4_dagster.store import monitoring as ms

    legs = ms.monitor_inputs(wh, as_of).legs
    sq = ms.session_quotes(wh, session, legs.get_column("symbol").unique().to_list()) if legs.height else None
    prices = {str(s): float(p) for s, p in legs.select("security_id", "average_price").iter_rows()
              if s is not None and str(s).isdigit() and p}
    if sq is not None:
        for s, b, a, lt in sq.quotes.select("security_id", "bid", "ask", "ltp").iter_rows():
            mid = (b + a) / 2 if b and a else lt
            if s in prices and mid:
                prices[s] = float(mid)
    return prices, dict(sq.spot) if sq is not None else {}


def _printer():
    shown = {"tick": 0.0}

    def on_event(kind: str, p: dict) -> None:
        if kind == "cycle":
            if p["exits_placed"] or p["alerts"] or time.monotonic() - shown["tick"] > 5:
                shown["tick"] = time.monotonic()
                feed = "[green]feed[/]" if p["feed_up"] else "[yellow]REST[/]"
                alerts = " ".join(f"{u}:{n}" for u, n in sorted(p["alerts"].items())) or "-"
                console.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {p['ticks']} ticks; eval {p['keys']} strategies via {feed} "
                              f"in {p['seconds'] * 1e3:.0f} ms; alerts {alerts}; exits placed {p['exits_placed']}")
        elif kind == "intent":
            colour = "red" if p["state"] in ("FAILED", "PARTIAL") else "bold magenta"
            console.print(f"[{colour}]intent {p['intent_key']}[/] {p['state']}"
                          f"{' (new)' if p['created'] else ''} orders {p['orders']} {p['note'] or ''}")
        elif kind == "feed":
            console.print(f"[cyan]feed {p['event']}[/] " + ", ".join(f"{k}={v}" for k, v in p.items() if k != "event"))
        elif kind == "positions":
            console.print(f"watching {p['strategies']} strategies; subscribed {p['subscribed']} more instruments"
                          + (f"; new: {', '.join(p['new'])}" if p["new"] else ""))
    return on_event


def cmd_realtime(args) -> int:
    import polars as pl

    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.trading.feed import MarketFeedClient
    from options_v4_dagster.trading.realtime import RealtimeMonitor
    from options_v4_dagster.trading.service import DhanCredentials, LiveTradingRefused, check_live

    mode = "alert_only" if args.alert_only else ("live" if args.execute else "simulation")
    creds = DhanCredentials.from_env()
    feed_kind = args.feed or ("dhan" if creds.complete else "standin")
    if mode == "live":
        try:
            check_live("dhan", live=True, credentials=creds, env=None)
        except LiveTradingRefused as exc:
            console.print(f"[red]refused:[/] {exc}")
            return 2
    if feed_kind == "dhan" and not creds.complete:
        console.print("[red]--feed dhan needs DHAN_CLIENT_ID and DHAN_ACCESS_TOKEN[/]")
        return 2
    wh = Warehouse.from_env()
    clock = _clock(args.date)
    as_of = clock() if clock else dt.datetime.now(dt.UTC)
    session = args.date or as_of.date()
    prices, spot = _stored_prices(wh, as_of, session)
    standin = None
    if feed_kind == "standin":
        from options_v4_dagster.trading.feed.standin import StandInFeed

        standin = StandInFeed(prices, rate=args.rate, sigma=0.6).start()
        url, client_id, token = standin.url, "standin", "standin"

        def rest(ids):
            rows = [(s, st.price) for s in ids if (st := standin.market.states.get(s)) is not None]
            return pl.DataFrame({"security_id": [s for s, _ in rows], "bid": [p - 0.05 for _, p in rows],
                                 "ask": [p + 0.05 for _, p in rows], "ltp": [p for _, p in rows]})
        console.print(f"stand-in feed at {url}: {len(prices)} instruments from the stored quotes, {args.rate:g} ticks/s")
    else:
        from options_v4_dagster.market.dhan import DhanProvider

        url, client_id, token = None, creds.client_id, creds.access_token
        provider = DhanProvider(creds.client_id, creds.access_token)

        def rest(ids):
            return provider.quotes([s for s in ids if s.isdigit()])

    def factory(**cb):
        kw = {"base_url": url} if url else {}
        return MarketFeedClient(client_id, token, **kw, **cb)

    try:
        mon = RealtimeMonitor(wh, factory, mode=mode, live=mode == "live", rest_quotes=rest, interval=args.interval,
                              clock=clock, spot=spot, credentials=creds if mode == "live" else None,
                              on_event=_printer(), snapshot_every=args.snapshot_every)
    except LiveTradingRefused as exc:
        console.print(f"[red]refused:[/] {exc}")
        return 2
    console.print(f"real-time monitor: mode {mode}, feed {feed_kind}, session {session}, interval {args.interval:g} s"
                  + ("; Ctrl-C stops it" if not args.once else ""))
    try:
        if args.once:
            report = mon.run_once()
            n = 0 if report is None else len(report.positions)
            console.print(f"one evaluation: {n} positions, exits placed {0 if report is None else report.exits_placed}")
        else:
            until = time.monotonic() + args.seconds if args.seconds else None
            try:
                mon.run(until=until)
            except KeyboardInterrupt:
                mon.stop()
            s = mon.stats
            console.print(f"stopped: {s.ticks} ticks, {s.cycles} cycles ({s.rest_cycles} on REST), "
                          f"{s.intents_created} intents, {s.exits_placed} exit orders, "
                          f"{s.connects} connects / {s.disconnects} disconnects")
    finally:
        if standin is not None:
            standin.stop()
        wh.dispose()
    return 0 if getattr(mon.feed, "fatal", None) is None else 1


if __name__ == "__main__":  # pragma: no cover - `python -m options_v4_dagster.cli.realtime ...` before the wiring
    import argparse

    ap = argparse.ArgumentParser(prog="options-v4 monitor")
    register(ap.add_subparsers(dest="cmd", required=True))
    a = ap.parse_args()
    sys.exit(a.func(a))
