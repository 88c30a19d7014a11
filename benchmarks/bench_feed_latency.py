"""Tick-to-callback latency of the market feed: the stand-in feed (Dhan's binary format over a local
WebSocket) at ``--rate`` ticks/s → MarketFeedClient (parse, dispatch) → a callback that makes a
trivial exit decision (LTP at or above the leg's stop; every 0.1 s the stand-in is told to make one
leg's next tick cross it) and appends it to a list.

    .venv/bin/python benchmarks/bench_feed_latency.py [--rate 1000] [--seconds 10] [--instruments 50]
                                                      [--mode full|quote|ticker]

Latency of a tick = ``time.perf_counter()`` in the callback minus the stand-in's ``perf_counter()``
just before it sent that packet (one process, one monotonic clock; the packet is named by its
security id and cumulative volume). Printed after a 1 s warm-up: p50 / p99 / max latency, ticks/s
sent and received (sustained), packets lost, and the parser's cost per packet. The issue's target
(p99 ≤ 50 ms) is for tick → persisted exit intent; this measures the feed's share of it. The
callback is the place to plug the exit path in later.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from options_v4_dagster.trading.feed import MarketFeedClient, RequestCode, parse_frame  # noqa: E402
from options_v4_dagster.trading.feed.standin import StandInFeed  # noqa: E402

MODES = {"full": RequestCode.FULL, "quote": RequestCode.QUOTE, "ticker": RequestCode.TICKER}


def parser_cost(n: int = 100_000) -> dict[str, float]:
    head = struct.pack("<BHBIfHIfIIIIIIffff", 8, 162, 2, 52001, 101.25, 150, 1_752_743_700, 100.8, 987_650,
                       40_000, 45_000, 2_250_000, 2_400_000, 2_100_000, 98.0, 97.5, 104.0, 96.5)
    full = head + struct.pack("<IIHHff", 750, 600, 3, 4, 101.0, 101.5) * 5
    ticker = struct.pack("<BHBIfI", 2, 16, 2, 52001, 123.45, 1_752_743_700)
    out = {}
    for name, raw in (("full", full), ("ticker", ticker)):
        t0 = time.perf_counter()
        for _ in range(n):
            parse_frame(raw)
        out[name] = (time.perf_counter() - t0) / n * 1e6
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--instruments", type=int, default=50)
    ap.add_argument("--mode", choices=sorted(MODES), default="full")
    args = ap.parse_args()
    if args.mode == "ticker":
        sys.exit("ticker packets carry no volume to name a packet by: use --mode full or quote")
    prices = {str(60_000 + i): 50.0 + 5 * i for i in range(args.instruments)}
    stops = {sid: p * 1.5 for sid, p in prices.items()}  # a short leg's stop at 150% of its entry
    seen: list[tuple[str, int, float, bool]] = []

    def on_tick(tick) -> None:  # the trivial decision the exit path will replace
        if tick.volume is not None:
            seen.append((tick.security_id, tick.volume, time.perf_counter(), tick.ltp >= stops[tick.security_id]))

    with StandInFeed(prices, seed=1, rate=args.rate, record_sends=True) as feed:
        client = MarketFeedClient("1000", "bench-token", base_url=feed.url, on_tick=on_tick, mode=MODES[args.mode])
        client.subscribe(prices)
        client.start()
        if not client.wait_connected(10):
            sys.exit(f"no connection to the stand-in feed: {client.last_error}")
        time.sleep(1.0)  # warm-up
        n0, sent0, t0 = len(seen), feed.ticks_sent, time.perf_counter()
        forced = 0
        while time.perf_counter() - t0 < args.seconds:  # every 0.1 s one leg's next tick crosses its stop
            sid = list(prices)[forced % len(prices)]
            feed.set_price(sid, stops[sid] * 1.02)
            forced += 1
            time.sleep(0.1)
        n1, sent1, t1 = len(seen), feed.ticks_sent, time.perf_counter()
        client.stop()
        window = seen[n0:n1]
        sent_at = dict(feed.sent_at)
    lat = np.array([(got - sent_at[(sid, vol)]) * 1e3 for sid, vol, got, _ in window if (sid, vol) in sent_at])
    span = t1 - t0
    p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
    cost = parser_cost()
    print(f"stand-in feed at {args.rate:g} ticks/s over {args.instruments} instruments ({args.mode} packets), "
          f"{span:.1f} s measured after a 1 s warm-up")
    print(f"  ticks sent      {(sent1 - sent0) / span:8.0f} /s")
    print(f"  ticks received  {len(window) / span:8.0f} /s  (decisions made: {len(window)}, "
          f"legs seen crossing their stop: {len({sid for sid, *_, d in window if d})} of "
          f"{min(forced, len(prices))} forced)")
    print(f"  tick -> callback latency: p50 {p50:.3f} ms  p99 {p99:.3f} ms  max {lat.max() if lat.size else 0:.3f} ms  "
          f"(target for tick -> persisted intent: p99 <= 50 ms)")
    print(f"  client: {client.stats.packets} packets, {client.stats.parse_errors} parse errors, "
          f"{client.stats.connections} connection(s); parser {cost['full']:.2f} us per full packet, "
          f"{cost['ticker']:.2f} us per ticker packet")


if __name__ == "__main__":
    main()
