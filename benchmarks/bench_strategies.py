"""Strategy creation over the whole simulated F&O universe for one session (the issue's 30 s target).

    .venv/bin/python benchmarks/bench_strategies.py [--date 2025-07-17] [--risk moderate] [--repeat 1]

Times each stage of what the strategy_candidates asset does, without Dagster or a warehouse:
chains -> IV surface (quant.surface.chain_iv), a year of bars -> technical signals, then
strategies.pipeline.create_candidates (build every catalogue strategy per underlying, payoff
analytics + POP + margin, scoring and ranking, exit levels). Prints the stage timings, how many
underlyings got candidates, and every build failure with its reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import polars as pl

from options_v4_dagster import universe
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.strategies import CATALOGUE, pipeline


def run(session: dt.date, risk: str) -> dict:
    t = {}
    t0 = time.perf_counter()
    market = SimulatedMarket()
    symbols = universe.symbols()
    market.warm()
    t["market_warm"] = time.perf_counter() - t0
    t1 = time.perf_counter()  # the figure test_simulated's full-universe test once asserted (< 6 s)
    chains, chain_failures = market.option_chains(symbols, session)
    t["chains"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    iv = surface.chain_iv(chains)
    t["iv_surface"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    served = chains.get_column("symbol").unique().sort().to_list()
    bars = pl.concat([market.daily_bars(s, session - dt.timedelta(days=400), session) for s in served])
    summary = surface.iv_summary(iv)
    rv = bars.group_by("symbol").agg(
        (pl.col("close").log().diff().tail(20).std() * (252 ** 0.5)).alias("h_rv_20"))
    ivs = summary.select("symbol", "atm_iv_30d").join(rv, on="symbol", how="left").with_columns(
        pl.lit(None, dtype=pl.Utf8).alias("iv_environment"))
    syms = pl.DataFrame({"symbol": served, "instrument": ["INDEX" if universe.is_index(s) else "STOCK" for s in served]})
    signals = pipeline.technical_frame(session, syms, bars, chains.select("symbol", "oi", "volume", "lot_size"), ivs)
    t["signals"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    result = pipeline.create_candidates(iv, signals, session, risk=risk)
    t["create_candidates"] = time.perf_counter() - t1
    t["analysis_total"] = t["iv_surface"] + t["signals"] + t["create_candidates"]
    with_cands = {rc.candidate.symbol for rc in result.ranked}
    return {"timings": t, "detail": result.timings, "served": len(served), "with_candidates": len(with_cands),
            "built": result.built, "passed": result.passed, "stored": len(result.ranked),
            "failures": result.failures, "chain_failures": chain_failures, "contracts": chains.height}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--date", default="2025-07-17")
    ap.add_argument("--risk", default="moderate", choices=("conservative", "moderate", "aggressive"))
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    session = dt.date.fromisoformat(args.date)
    for i in range(args.repeat):
        r = run(session, args.risk)
        t, d = r["timings"], r["detail"]
        print(f"run {i + 1}: {r['served']} underlyings, {r['contracts']:,} contracts, {len(CATALOGUE)} strategies "
              f"in the catalogue")
        print(f"  simulated market warm-up {t['market_warm']:.2f}s, then the full universe's chains in "
              f"{t['chains']:.2f}s (target < 6 s)")
        print(f"  chains {t['chains']:.2f}s | IV surface {t['iv_surface']:.2f}s | signals {t['signals']:.2f}s | "
              f"build {d['build']:.2f}s | analytics {d['analytics']:.2f}s | scoring {d['scoring']:.2f}s | "
              f"exit levels {d['exit_levels']:.2f}s")
        print(f"  analysis of the universe (IV surface + signals + candidates): {t['analysis_total']:.2f}s "
              f"(target <= 30 s)")
        print(f"  {r['built']:,} candidates built, {r['passed']:,} pass the {args.risk} filters, "
              f"{r['stored']:,} kept (top 5 per symbol); {r['with_candidates']}/{r['served']} underlyings "
              "with candidates")
        errors = [f for f in r["failures"] if f.kind == "error"]
        filtered = [f for f in r["failures"] if f.kind != "error"]
        print(f"  {len(errors)} build failures, {len(filtered)} underlyings with none passing the filters")
        for f in errors + filtered:
            print(f"    {f.symbol} {f.stage}: {f.reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
