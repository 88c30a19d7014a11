"""The Dhan path's pacing: orders placed through DhanBroker (real dhanhq SDK) against the local Dhan
stand-in, throttled by the shared order-rate limiter; then market-data calls (historical bars on the
data APIs, market quotes) from ``--data-processes`` processes through DhanProvider.from_env, which share
the machine's ledger of market/dhan_limits.py.

    .venv/bin/python benchmarks/bench_dhan_pacing.py [--orders 60] [--processes 1] [--margin-ms 0]
                                                     [--data-calls 10] [--data-processes 2]

Prints the most order requests that arrived at the stand-in within any 1-second window (Dhan's
limit is 10; must be <= 10), the total wall time and the orders per second achieved. With
``--processes 2`` the orders are split over that many processes sharing one limiter file (the way a
CLI run and a Dagster run would). The limiter file is a temporary one, so no earlier run's orders
count against this one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from options_v4_dagster.market.dhan_client import DhanClient  # noqa: E402
from options_v4_dagster.trading.dhan_broker import DhanBroker  # noqa: E402
from options_v4_dagster.trading.order_limiter import OrderRateLimiter  # noqa: E402
from options_v4_dagster.trading.orders import OrderRequest, Side  # noqa: E402
from options_v4_dagster_tests.dhan_order_standin import DhanOrderStandIn, max_in_window  # noqa: E402
from options_v4_dagster_tests.dhan_standin import DhanStandIn  # noqa: E402


def place_many(base_url: str, client_id: str, token: str, limiter_path: str, tag: str, n: int, margin_ms: int,
               start_at: float) -> float:
    broker = DhanBroker(DhanClient(client_id, token, base_url=base_url),
                        OrderRateLimiter(limiter_path, margin_ms=margin_ms, max_wait=60))
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(n):
        broker.place(OrderRequest(f"b{tag}-{i}", "40001", "NIFTY", dt.date(2025, 7, 31), 25000.0, "CE", Side.BUY,
                                  75, 120.0, lot_size=75))
    waited = sum(broker.limiter.waited)
    broker.close()
    return waited


def data_calls(env: dict, bars: int, quotes: int, start_at: float) -> float:
    import os

    os.environ.update(env)
    from options_v4_dagster.market.dhan import DhanProvider

    p = DhanProvider.from_env()
    time.sleep(max(0.0, start_at - time.time()))
    for i in range(max(bars, quotes)):
        if i < bars:
            p.daily_bars("NIFTY", dt.date(2025, 7, 7) - dt.timedelta(days=i), dt.date(2025, 7, 17))
        if i < quotes:
            p.quotes([str(40_000 + i)])
    waited = sum(p.rate_limits.limiter.waited) if p.rate_limits else 0.0
    p.close()
    return waited


def bench_data(calls: int, processes: int) -> bool:
    """Market-data calls from ``processes`` processes sharing the machine's ledger: the most arrivals at
    the stand-in within any second per API class (Dhan: data APIs 5, quotes 1)."""
    quotes = max(1, calls // 4)
    with DhanStandIn() as standin, tempfile.TemporaryDirectory() as tmp:
        env = {**standin.env(), "OPTIONS_V4_HOME": tmp}
        start_at = time.time() + 15.0
        with ProcessPoolExecutor(processes) as pool:
            futs = [pool.submit(data_calls, env, calls, quotes, start_at) for _ in range(processes)]
            waited = [f.result() for f in futs]
        total = time.time() - start_at
        bars = [r.at for r in standin.calls("/v2/charts/historical")]
        qts = [r.at for r in standin.calls("/v2/marketfeed/quote")]
    peak_bars, peak_quotes = max_in_window(bars, 1.0), max_in_window(qts, 1.0)
    ok = peak_bars <= 5 and peak_quotes <= 1
    print(f"market data:                {len(bars)} historical-bar and {len(qts)} quote requests from {processes} "
          f"processes (one shared ledger)")
    print(f"max data-API requests in any 1 s: {peak_bars} (Dhan's limit: 5) -> {'OK' if peak_bars <= 5 else 'EXCEEDED'}")
    print(f"max quote requests in any 1 s:    {peak_quotes} (Dhan's limit: 1) -> "
          f"{'OK' if peak_quotes <= 1 else 'EXCEEDED'}")
    print(f"market-data wall time:      {total:.2f} s ({len(bars) / total:.1f} data-API requests per s together); "
          f"waiting for the shared limit {sum(waited):.2f} s")
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=60)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--margin-ms", type=int, default=0)
    ap.add_argument("--data-calls", type=int, default=10, help="historical-bar calls per process (0: skip)")
    ap.add_argument("--data-processes", type=int, default=2)
    args = ap.parse_args()
    with DhanOrderStandIn() as standin, tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "orders.sqlite")
        share = [args.orders // args.processes + (i < args.orders % args.processes) for i in range(args.processes)]
        t0 = time.perf_counter()
        if args.processes == 1:
            waited = [place_many(standin.base_url, standin.client_id, standin.access_token, path, "0", share[0],
                                 args.margin_ms, 0.0)]
        else:
            start_at = time.time() + 15.0  # every process has imported the SDK by then
            with ProcessPoolExecutor(args.processes) as pool:
                futs = [pool.submit(place_many, standin.base_url, standin.client_id, standin.access_token, path,
                                    str(i), n, args.margin_ms, start_at) for i, n in enumerate(share)]
                waited = [f.result() for f in futs]
            t0 = start_at - time.time() + time.perf_counter()
        total = time.perf_counter() - t0
        times = standin.order_request_times()
        first_to_last = max(times) - min(times)
        peak = max_in_window(times, 1.0)
        standin.assert_no_key_twice()
    print(f"orders placed:              {len(times)} ({args.processes} process(es), one limiter file)")
    print(f"max orders in any 1 s:      {peak} (Dhan's limit: 10) -> {'OK' if peak <= 10 else 'EXCEEDED'}")
    print(f"total time:                 {total:.2f} s (first to last arrival {first_to_last:.2f} s)")
    print(f"orders / total time:        {len(times) / total:.1f} per s (bursts of at most 10 per sliding second)")
    print(f"time waiting for the limit: {sum(waited):.2f} s")
    data_ok = bench_data(args.data_calls, args.data_processes) if args.data_calls > 0 else True
    if peak > 10 or not data_ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
