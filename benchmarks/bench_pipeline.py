"""Wall time of `options-v4 run` on a fresh instance and warehouse (the issue's 60 s target).

    .venv/bin/python benchmarks/bench_pipeline.py [--date 2025-07-17] [--source simulated] [--database-url URL]

Runs the installed CLI twice in subprocesses with DAGSTER_HOME and DATABASE_URL pointing at
empty scratch places (the second run shows re-materialization is idempotent), and prints the
wall time of each run, the underlyings and contracts stored, and whether the row counts match.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa


def counts(url: str, date: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        out = {
            "underlyings": c.execute(sa.text("select count(distinct symbol) from option_chain_data where trade_date = :d"),
                                     {"d": date}).scalar(),
            "contracts": c.execute(sa.text("select count(*) from option_chain_data where trade_date = :d"),
                                   {"d": date}).scalar(),
            "option_greeks": c.execute(sa.text("select count(*) from option_greeks where trade_date = :d"),
                                       {"d": date}).scalar(),
            "underlying_bars": c.execute(sa.text("select count(*) from underlying_bars")).scalar(),
        }
    eng.dispose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--date", default="2025-07-17")
    ap.add_argument("--source", default="simulated")
    ap.add_argument("--database-url", help="default: a SQLite file in a scratch folder")
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "options-v4"
    with tempfile.TemporaryDirectory(prefix="ov4bench_") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/warehouse.db"
        env = {**os.environ, "DAGSTER_HOME": f"{tmp}/dagster_home", "DATABASE_URL": url,
               "OPTIONS_V4_MARKET_DATA": args.source, "OPTIONS_V4_HOME": f"{tmp}/home"}
        results = []
        for attempt in (1, 2):
            t0 = time.perf_counter()
            proc = subprocess.run([str(exe), "run", "--date", args.date], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stdout[-3000:], proc.stderr[-3000:])
                return 1
            c = counts(url, args.date)
            results.append(c)
            print(f"run {attempt}: {wall:6.1f} s wall  underlyings={c['underlyings']} contracts={c['contracts']} "
                  f"option_greeks={c['option_greeks']} underlying_bars={c['underlying_bars']}")
        print(f"re-run leaves the same row counts: {results[0] == results[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
