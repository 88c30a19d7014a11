"""Retention: archiving full sessions of option_chain_data and option_greeks to Parquet, and reading them back.

    .venv/bin/python benchmarks/bench_archive.py [--sessions 3] [--database-url URL]

Builds one session of the whole simulated universe (every underlying's chain and its greeks), stores it
as ``--sessions`` consecutive sessions in a scratch warehouse (SQLite by default; a PostgreSQL URL
works, e.g. a scratch database), then archives them (``store.archive.archive_before``: Parquet write,
fsync, read-back verification, DELETE ... RETURNING checked against the file, manifest row) and prints
per table: rows per session, seconds to archive one session, Parquet MB per session, the read time of
``Warehouse.read_partition`` before (warehouse) and after (Parquet), whether the frames are identical,
and the figures extrapolated to a year of 250 sessions.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402
from polars.testing import assert_frame_equal  # noqa: E402

from options_v4_dagster import calendar, universe  # noqa: E402
from options_v4_dagster.market.simulated import SimulatedMarket  # noqa: E402
from options_v4_dagster.quant import surface  # noqa: E402
from options_v4_dagster.store import Replace, Warehouse, archive  # noqa: E402

KEYS = ["symbol", "expiry", "strike", "option_type"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--database-url", help="default: a scratch SQLite file")
    args = ap.parse_args()
    sessions = calendar.sessions_back(dt.date(2025, 7, 17), args.sessions)
    t0 = time.perf_counter()
    chain, _ = SimulatedMarket().option_chains(universe.symbols(), sessions[-1])
    greeks = surface.chain_iv(chain, surface.IVConfig())
    print(f"one simulated session: {chain.get_column('symbol').n_unique()} underlyings, {chain.height:,} contracts "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(args.database_url or f"sqlite:///{tmp}/wh.db")
        root = Path(tmp) / "archive"
        os.environ[archive.ENV_ARCHIVE_DIR] = str(root)  # where the reads look
        for d in sessions:
            wh.replace_together([Replace.partition(t, d, f.with_columns(pl.lit(d).alias("trade_date")))
                                 for t, f in (("option_chain_data", chain), ("option_greeks", greeks))])
        print(f"warehouse: {wh.dialect}; {len(sessions)} sessions {sessions[0]} .. {sessions[-1]}")
        for table in archive.ARCHIVED_TABLES:
            t = time.perf_counter()
            before = {d: wh.read_partition(table, d) for d in sessions}
            read_wh = (time.perf_counter() - t) / len(sessions)
            t = time.perf_counter()
            results = archive.archive_before(wh, sessions[-1] + dt.timedelta(days=1), tables=[table], root=root)
            per = (time.perf_counter() - t) / len(sessions)
            t = time.perf_counter()
            after = {d: wh.read_partition(table, d) for d in sessions}
            read_pq = (time.perf_counter() - t) / len(sessions)
            for d in sessions:
                assert_frame_equal(before[d].sort(KEYS), after[d].sort(KEYS), check_exact=True)
            rows = results[0].rows
            mb = sum(r.file_bytes for r in results) / len(results) / 1e6
            print(f"{table}: {rows:,} rows a session; archive {per:.2f} s a session ({rows / per:,.0f} rows/s), "
                  f"{mb:.2f} MB of Parquet a session; read_partition {read_wh:.2f} s from the warehouse, "
                  f"{read_pq:.2f} s from Parquet; frames identical: yes")
            print(f"  a year (250 sessions): {250 * rows / 1e6:.1f} M rows, archived in {250 * per / 60:.1f} min, "
                  f"{250 * mb / 1e3:.2f} GB of Parquet")
        t = time.perf_counter()
        again = archive.archive_before(wh, sessions[-1] + dt.timedelta(days=1), root=root)
        print(f"re-archiving: {len(again)} sessions to do, {time.perf_counter() - t:.3f} s (a no-op)")
        wh.dispose()


if __name__ == "__main__":
    main()
