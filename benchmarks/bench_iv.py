"""Implied-volatility benchmark: options_v4_dagster.quant.black vs vollib (Let's Be Rational).

    .venv/bin/python benchmarks/bench_iv.py [--n 1000000] [--vollib-n 20000] [--repeat 3]

Builds ``n`` random options (a realistic mix of expiries, volatilities with a smile and
strikes spread over +-3.5 standard deviations, calls and puts, discounting at ~6.5%), prices
them with ``black76_price``, then times

* vollib's ``py_vollib.black.implied_volatility.implied_volatility``, one option at a time,
  on the first ``vollib-n`` options (the rate is options per second, so it scales), and
* ``implied_vol_black76`` on the whole batch in one call,

both on one core (thread pools pinned to 1 before numpy is imported), each timed ``repeat``
times with the median reported. It prints both rates,
the speed ratio, the round-trip accuracy (max |sigma_solved - sigma_true|) on the accuracy
domain (sigma in [0.01, 3], T in [1 day, 2 years], |ln(F/K)| <= 1, time value > 1e-6 of the
forward) for both, and the largest difference ours vs vollib.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from options_v4_dagster.quant.black import black76_price, implied_vol_black76  # noqa: E402


def make_batch(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random options resembling NSE F&O chains (index and stock underlyings)."""
    rng = np.random.default_rng(seed)
    # expiries: mostly weeklies/monthlies, some quarterlies and LEAPS-like
    bucket = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    days = np.select(
        [bucket == 0, bucket == 1],
        [rng.uniform(1, 35, n), rng.uniform(35, 120, n)],
        rng.uniform(120, 730, n),
    )
    T = days / 365.0
    F = np.exp(rng.uniform(math.log(50.0), math.log(60000.0), n))
    atm = rng.uniform(0.08, 0.80, n)
    z = rng.uniform(-3.5, 3.5, n)  # strike distance in standard deviations
    x = np.clip(z * atm * np.sqrt(T), -1.0, 1.0)  # ln(F/K)
    K = F * np.exp(-x)
    sigma = np.clip(atm * (1.0 + 0.08 * z * z - 0.05 * z), 0.01, 3.0)  # smile and skew
    is_call = rng.random(n) < 0.5
    r = 0.065
    df = np.exp(-r * T)
    price = black76_price(F, K, T, sigma, is_call, df)
    return {"F": F, "K": K, "T": T, "sigma": sigma, "is_call": is_call, "df": df, "r": np.full(n, r),
            "price": price, "x": x}


def accuracy_domain(b: dict[str, np.ndarray]) -> np.ndarray:
    intrinsic = np.maximum(np.where(b["is_call"], b["F"] - b["K"], b["K"] - b["F"]), 0.0)
    tv = b["price"] / b["df"] - intrinsic
    return ((b["sigma"] >= 0.01) & (b["sigma"] <= 3.0) & (b["T"] >= 1 / 365 - 1e-12) & (b["T"] <= 2.0)
            & (np.abs(np.log(b["F"] / b["K"])) <= 1.0) & (tv > 1e-6 * b["F"]))


def run_vollib(b: dict[str, np.ndarray], m: int) -> tuple[np.ndarray, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from py_vollib.black.implied_volatility import implied_volatility
    price, F, K, T, r = (b[k][:m].tolist() for k in ("price", "F", "K", "T", "r"))
    flags = ["c" if c else "p" for c in b["is_call"][:m]]
    out = np.full(m, np.nan)
    t0 = time.perf_counter()
    for i in range(m):
        try:
            out[i] = implied_volatility(price[i], F[i], K[i], r[i], T[i], flags[i])
        except Exception:  # noqa: BLE001 - vollib raises for prices it cannot invert
            pass
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="batch size for ours")
    ap.add_argument("--vollib-n", type=int, default=20_000, help="subsample timed with vollib")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (median reported)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    b = make_batch(args.n, args.seed)
    dom = accuracy_domain(b)
    m = min(args.vollib_n, args.n)

    implied_vol_black76(b["price"][:1000], b["F"][:1000], b["K"][:1000], b["T"][:1000],
                        b["is_call"][:1000], b["df"][:1000])  # warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = implied_vol_black76(b["price"], b["F"], b["K"], b["T"], b["is_call"], b["df"])
        times.append(time.perf_counter() - t0)
    t_ours = statistics.median(times)
    rate_ours = args.n / t_ours

    vol_times = []
    for _ in range(args.repeat):
        vol, t = run_vollib(b, m)
        vol_times.append(t)
    t_vol = statistics.median(vol_times)
    rate_vol = m / t_vol

    err_ours = np.abs(ours - b["sigma"])
    err_vol = np.abs(vol - b["sigma"][:m])
    diff = np.abs(ours[:m] - vol)
    dm = dom[:m]

    def mx(a: np.ndarray) -> float:
        return float(np.nanmax(a)) if a.size and not np.all(np.isnan(a)) else float("nan")

    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, one thread")
    print(f"batch: {args.n:,} options ({dom.mean():.1%} in the accuracy domain); vollib timed on {m:,}")
    print(f"vollib  (one at a time): {rate_vol:>14,.0f} options/s  (median {t_vol:.3f} s for {m:,}; "
          f"runs {', '.join(f'{t:.3f}' for t in vol_times)})")
    print(f"ours    (vectorized)   : {rate_ours:>14,.0f} options/s  (median {t_ours:.3f} s for {args.n:,}; "
          f"runs {', '.join(f'{t:.3f}' for t in times)})")
    print(f"speed ratio ours/vollib: {rate_ours / rate_vol:,.1f}x")
    print(f"round trip, accuracy domain, max |sigma - true|: ours {mx(err_ours[dom]):.2e} "
          f"(n={int(dom.sum()):,}), vollib {mx(err_vol[dm]):.2e} (n={int(dm.sum()):,})")
    print(f"round trip, whole batch, max |sigma - true|   : ours {mx(err_ours):.2e}, vollib {mx(err_vol):.2e}")
    print(f"ours vs vollib, max |difference|: {mx(diff[dm]):.2e} in the domain, {mx(diff):.2e} overall; "
          f"NaN ours {int(np.isnan(ours).sum())}, vollib failures {int(np.isnan(vol).sum())} of {m:,}")


if __name__ == "__main__":
    main()
