"""The paper broker alone: orders per second placing 25 four-leg strategies (iron condors).

    .venv/bin/python benchmarks/bench_paper_broker.py [--date 2025-07-17] [--strategies 25] [--repeat 3]

Quotes: the simulated market's chains of five underlyings made into one ChainQuoteBook (its build
time is printed too). Each iron condor buys its wings first (limits at the ask), then sells the
body (limits at the bid), two lots a leg, through PaperBroker.place with funds, bands, freeze
limits, charges and events on. The clock is a ManualClock stepping 0.1 s per request, i.e. paced
at Dhan's 10 orders/s, so the rate limiter never refuses: the figure is the broker's own
processing rate, not what a paced execution achieves (at 10/s, 100 orders take 10 s of wall time
on a live account). The end-to-end execution benchmark lives with the executor.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import polars as pl

from options_v4_dagster.calendar import IST
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.trading.orders import OrderRequest, OrderStatus, Side, entry_correlation_id
from options_v4_dagster.trading.paper import ManualClock, PaperBroker, PaperConfig
from options_v4_dagster.trading.quotes import ChainQuoteBook

SYMBOLS = ("NIFTY", "BANKNIFTY", "RELIANCE", "INFY", "HDFCBANK")


def condor_legs(chain: pl.DataFrame, symbol: str, offset: int) -> list[dict]:
    """Wings 2 strikes outside a short strangle ``offset + 2`` strikes from the money, front
    expiry at least a week out; every leg with a two-sided quote."""
    c = chain.filter(pl.col("symbol") == symbol)
    session = c["trade_date"][0]
    expiry = c.filter(pl.col("expiry") >= session + dt.timedelta(days=7))["expiry"].min()
    c = c.filter((pl.col("expiry") == expiry) & pl.col("bid").is_not_null() & pl.col("ask").is_not_null())
    spot = c["underlying_price"][0]
    strikes = sorted(set(c["strike"].to_list()))
    atm = min(range(len(strikes)), key=lambda i: abs(strikes[i] - spot))
    k = offset + 2
    plan = [(strikes[atm - k - 2], "PE", Side.BUY), (strikes[atm + k + 2], "CE", Side.BUY),
            (strikes[atm - k], "PE", Side.SELL), (strikes[atm + k], "CE", Side.SELL)]
    rows = []
    for strike, ot, side in plan:
        r = c.filter((pl.col("strike") == strike) & (pl.col("option_type") == ot)).row(0, named=True)
        rows.append({**r, "side": side})
    return rows


def run(chain: pl.DataFrame, n: int, seed: int) -> dict:
    t0 = time.perf_counter()
    book = ChainQuoteBook(chain)
    t_book = time.perf_counter() - t0
    requests = []
    for i in range(n):
        legs = condor_legs(chain, SYMBOLS[i % len(SYMBOLS)], i // len(SYMBOLS))
        for leg_no, r in enumerate(legs):
            sid = book.security_id(r["symbol"], r["expiry"], r["strike"], r["option_type"])
            price = r["ask"] if r["side"] is Side.BUY else r["bid"]
            requests.append(OrderRequest(entry_correlation_id("bench-0001", i + 1, leg_no), sid, r["symbol"],
                                         r["expiry"], r["strike"], r["option_type"], r["side"], 2 * r["lot_size"],
                                         price, lot_size=r["lot_size"]))
    broker = PaperBroker(book, PaperConfig(capital=50_000_000.0, seed=seed),
                         clock=ManualClock(dt.datetime(2025, 7, 17, 10, 0, tzinfo=IST), step=0.1))
    t1 = time.perf_counter()
    results = [broker.place(r) for r in requests]
    t_place = time.perf_counter() - t1
    status = {s: sum(o.status is s for o in results) for s in OrderStatus if any(o.status is s for o in results)}
    return {"book_s": t_book, "contracts": len(book), "orders": len(requests), "place_s": t_place,
            "status": status, "events": len(broker.events), "funds": broker.funds()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--date", default="2025-07-17")
    ap.add_argument("--strategies", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    session = dt.date.fromisoformat(args.date)
    t0 = time.perf_counter()
    market = SimulatedMarket()
    chain, failures = market.option_chains(list(SYMBOLS), session)
    if failures:
        print(f"chain failures: {failures}")
    print(f"simulated chains of {', '.join(SYMBOLS)} on {session}: {chain.height:,} contracts "
          f"in {time.perf_counter() - t0:.2f}s")
    for i in range(args.repeat):
        r = run(chain, args.strategies, seed=i)
        print(f"run {i + 1}: ChainQuoteBook of {r['contracts']:,} contracts built in {r['book_s'] * 1000:.1f} ms; "
              f"{args.strategies} four-leg strategies = {r['orders']} orders placed in {r['place_s'] * 1000:.1f} ms "
              f"= {r['orders'] / r['place_s']:,.0f} orders/s ({r['place_s'] / args.strategies * 1000:.2f} ms per "
              f"strategy); statuses {', '.join(f'{k}={v}' for k, v in r['status'].items())}; {r['events']} events; "
              f"used margin {r['funds'].used_margin:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
