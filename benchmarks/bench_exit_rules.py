"""Exit evaluation of 10,000 open legs (the issue's target: <= 10 ms), median and p90 of repeats.

    .venv/bin/python benchmarks/bench_exit_rules.py [--legs 10000] [--repeat 41]

Prepared beforehand and timed separately: the stored exit levels decoded (``prepare_levels``, once
per monitor start) and the valuation of every leg at the quotes (``value_positions``, per quote
update: IVs and greeks included). Timed: ``evaluate_exits`` over all strategies (every rule,
precedence, intent keys, reasons, executed-intent filtering and the per-leg exit quantities), with
a mix of positions where profit targets, stops, scale-outs, trailing stops, time exits and alerts
fire. The steady state reuses the prepared levels' alignment to the open strategies (cached on
them while the set of open strategies does not change); "first evaluation" is one with fresh
prepared levels. The legs come unsorted (the valuation sorts them) unless ``--sorted-legs``. Timings depend on the machine's
load: the load average is printed with them.

Measured (2 shared cores, 5 runs under load average 11-12): evaluate_exits median 7.7-9.8 ms, p90
8.7-59 ms (the spikes are preemption); first evaluation 17-29 ms. Before the evaluation kept its
polars work on the calling thread and its per-strategy state on the prepared levels: median 12.2 ms
(p90 16.5) under load 3.9 and 24-65 ms under load 10. ``scripts/exit_golden.py`` checks that such
changes leave every output row identical.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time

import numpy as np
import polars as pl

from options_v4_dagster.trading.exit_config import load_exit_rules
from options_v4_dagster.trading.exit_rules import evaluate_exits, prepare_levels
from options_v4_dagster.trading.quotes import contract_key
from options_v4_dagster.trading.valuation import value_positions

AS_OF = dt.datetime(2025, 7, 21, 6, 0, tzinfo=dt.UTC)
EXPIRIES = [dt.date(2025, 7, 24), dt.date(2025, 7, 31), dt.date(2025, 8, 28)]


def scenario(n_legs: int, seed: int = 7):
    """Two-leg call spreads (half) and four-leg iron condors (half) on NIFTY around 25,000."""
    rng = np.random.default_rng(seed)
    legs, facts, lv, quotes = [], [], [], {}
    i = 0
    while len(legs) < n_legs:
        sid = f"20250717-NIFTY-s{i}-moderate"
        exp = EXPIRIES[i % 3]
        lots = int(rng.integers(1, 12))
        base = 25000 + 50 * int(rng.integers(-10, 10))
        if i % 2:
            spec = [(base, "CE", 1), (base + 200, "CE", -1)]
        else:
            spec = [(base - 400, "PE", 1), (base - 200, "PE", -1), (base + 200, "CE", -1), (base + 400, "CE", 1)]
        for j, (k, typ, sign) in enumerate(spec, 1):
            entry = float(rng.uniform(20, 250))
            mid = entry * float(rng.uniform(0.4, 1.8))
            key = contract_key("NIFTY", exp, k, typ)
            quotes.setdefault(key, (mid - 1, mid + 1, mid))
            legs.append({"strategy_id": sid, "allocation_id": "A", "position_id": f"P{i}", "leg": j, "symbol": "NIFTY",
                         "expiry": exp, "strike": float(k), "option_type": typ, "quantity": sign * lots * 75,
                         "average_price": entry, "entry_quantity": lots * 75, "lot_size": 75, "fees": 40.0,
                         "realized_pnl": 0.0})
        ml = 6000.0 * lots
        facts.append({"strategy_id": sid, "symbol": "NIFTY", "max_loss": ml, "max_profit": 1.5 * ml,
                      "breakevens": [base - 150.0, base + 150.0], "capital": ml,
                      "entered_at": dt.datetime(2025, 7, 17, 4, 0, tzinfo=dt.UTC)})
        t = 0.5 * 1.5 * ml
        lv.append({"strategy_id": sid, "profit_target": t, "stop_loss": 0.5 * ml, "time_exit_dte": 7,
                   "time_exit_date": exp - dt.timedelta(days=7), "trailing_activation": 0.5 * t,
                   "trailing_distance": 0.25 * t,
                   "scale_out": json.dumps([{"at_pct": p, "pnl": p * 1.5 * ml, "close_fraction": f}
                                            for p, f in ((0.25, 0.33), (0.5, 0.33), (0.75, 0.34))]),
                   "adjustments": json.dumps([{"trigger": "breakeven_breached", "side": "below",
                                               "breakeven": base - 150.0, "price": base - 150.0}]
                                             + [{"trigger": "short_delta", "instrument": typ, "strike": float(k),
                                                 "expiry": exp.isoformat(), "threshold": 0.45}
                                                for k, typ, sign in spec if sign < 0])})
        i += 1
    q = pl.DataFrame({"security_id": list(quotes), "bid": [v[0] for v in quotes.values()],
                      "ask": [v[1] for v in quotes.values()], "ltp": [v[2] for v in quotes.values()]})
    hw = {f["strategy_id"]: float(rng.uniform(0, 8000)) for f in facts}
    return pl.DataFrame(legs), pl.DataFrame(facts), pl.DataFrame(lv), q, hw


def timed(fn, repeat: int) -> tuple[float, float, object]:
    """(median ms, p90 ms, last result) of ``repeat`` calls."""
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1000, times[min(len(times) - 1, int(0.9 * len(times)))] * 1000, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--legs", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=41)
    ap.add_argument("--sorted-legs", action="store_true", help="legs come sorted by strategy and leg (the valuation "
                    "then skips its sort), as a store query ordered that way returns them")
    a = ap.parse_args()
    legs, facts, lv, q, hw = scenario(a.legs)
    if a.sorted_legs:
        legs = legs.sort("strategy_id", "leg")
    cfg = load_exit_rules()
    load_before = os.getloadavg()
    t_prep, _, prepared = timed(lambda: prepare_levels(lv), max(3, a.repeat // 4))
    t_val, p_val, v = timed(lambda: value_positions(legs, facts, q, {"NIFTY": 25000.0}, AS_OF), a.repeat)
    executed = {f"{s}:scale_out:25" for s in facts["strategy_id"].to_list()[::5]}
    t_first = statistics.median([_time_first(v, lv, cfg, executed, hw) for _ in range(max(3, a.repeat // 4))])
    evaluate_exits(v, prepared, config=cfg, executed_intents=executed, high_water=hw)  # warm-up
    t_ev, p_ev, ev = timed(lambda: evaluate_exits(v, prepared, config=cfg, executed_intents=executed, high_water=hw),
                           a.repeat)
    load_after = os.getloadavg()
    counts = ev.decisions.filter(pl.col("primary")).group_by("rule").len().sort("rule")
    print(f"{legs.height} legs, {facts.height} strategies, {ev.decisions.height} decision rows; fired (primary): "
          + ", ".join(f"{r} {n}" for r, n in counts.iter_rows()))
    print(f"actionable exits {ev.actionable.height}, exit legs {ev.leg_quantities.height}")
    print(f"prepare_levels (once)         median {t_prep:8.2f} ms")
    print(f"value_positions               median {t_val:8.2f} ms   p90 {p_val:8.2f} ms")
    print(f"evaluate_exits, first         median {t_first:8.2f} ms")
    print(f"evaluate_exits                median {t_ev:8.2f} ms   p90 {p_ev:8.2f} ms   (target <= 10 ms: "
          f"{'met' if t_ev <= 10 else 'NOT met'})")
    print(f"load average (1/5/15 min) before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}; {os.cpu_count()} CPUs; {a.repeat} repeats")


def _time_first(v, lv, cfg, executed, hw) -> float:
    """ms of one evaluation with freshly prepared levels (prepare_levels itself not counted)."""
    prepared = prepare_levels(lv)
    t0 = time.perf_counter()
    evaluate_exits(v, prepared, config=cfg, executed_intents=executed, high_water=hw)
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    main()
