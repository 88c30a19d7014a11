"""Serving a whole real NSE session from files: the UDiFF bhavcopy of 2025-09-11 (214 underlyings).

    .venv/bin/python benchmarks/bench_nse_files.py [--nse-dir DIR]

Prints the cold time (folder scan, unzip and parse included) and the warm time (cached day).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from options_v4_dagster import config
from options_v4_dagster.market.nse_files import NseFilesProvider

D = dt.date(2025, 9, 11)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--nse-dir", default=None)
    args = ap.parse_args()
    p = NseFilesProvider(config.nse_data_dir(args.nse_dir))
    t0 = time.perf_counter()
    symbols = p.available_symbols(D)
    chain, failures = p.option_chains(symbols, D)
    cold = time.perf_counter() - t0
    t1 = time.perf_counter()
    p.option_chains(symbols, D)
    warm = time.perf_counter() - t1
    print(f"nse_files {D}: {len(symbols)} symbols, {chain.height:,} contracts, {len(failures)} failures; "
          f"cold {cold:.3f}s, warm {warm:.3f}s")


if __name__ == "__main__":
    main()
