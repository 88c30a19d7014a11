"""The Dhan path's pacing: orders placed through DhanBroker (real dhanhq SDK) against the local Dhan
stand-in, throttled by the shared order-rate limiter.

    .venv/bin/python benchmarks/bench_dhan_pacing.py [--orders 60] [--processes 1] [--margin-ms 0]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=60)
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--margin-ms", type=int, default=0)
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
    if peak > 10:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
