"""Wall time of a 6-month walk-forward track record (issue 14's target: at most 10 minutes on this machine).

    .venv/bin/python benchmarks/bench_track_record.py [--start 2025-01-01] [--end 2025-06-30]
                                                      [--cadence weekly|daily] [--symbols S1,S2]

Runs ``options-v4 track-record --json`` in a subprocess with a scratch OPTIONS_V4_HOME (the replay's own
warehouse and report go there) and prints its wall time and CPU time (user + system of the child: the
figure other processes on a shared machine do not inflate), the machine's load average before and after,
the time per session, and the headline figures of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--start", default="2025-01-01")
    ap.add_argument("--end", default="2025-06-30")
    ap.add_argument("--cadence", default="weekly", choices=("daily", "weekly"))
    ap.add_argument("--symbols", help="only these underlyings (default: the whole universe)")
    args = ap.parse_args()
    exe = Path(sys.executable).parent / "options-v4"
    argv = [str(exe), "track-record", "--start", args.start, "--end", args.end, "--cadence", args.cadence, "--json"]
    if args.symbols:
        argv += ["--symbols", args.symbols]
    with tempfile.TemporaryDirectory(prefix="ov4bench_tr_") as tmp:
        env = {**os.environ, "OPTIONS_V4_HOME": f"{tmp}/home", "DAGSTER_HOME": f"{tmp}/dagster_home"}
        load0 = os.getloadavg()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        load1 = os.getloadavg()
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:])
        return 1
    s = json.loads(proc.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = s["sessions"]
    print(f"track record {args.start} .. {args.end} (simulated, cadence {args.cadence}, "
          f"{args.symbols or 'every underlying'}): {n} sessions, {s['entry_sessions']} entry sessions")
    print(f"wall {wall:7.1f} s ({wall / 60:.1f} min; target <= 10 min: {'met' if wall <= 600 else 'NOT met'}), "
          f"cpu {cpu:7.1f} s, {wall / max(n, 1):.2f} s wall / {cpu / max(n, 1):.2f} s cpu per session; "
          f"load average {load0[0]:.1f} -> {load1[0]:.1f} on {os.cpu_count()} cores")
    tc = s["trade_counts"]

    def pct(x):
        return "n/a" if x is None else f"{x:.2%}"

    print(f"total return {pct(s['total_return'])}, Sharpe {s['sharpe'] if s['sharpe'] is None else round(s['sharpe'], 2)}, "
          f"max drawdown {pct(s['max_drawdown'])}, win rate {pct(s['win_rate'])}, profit factor "
          f"{s['profit_factor'] if s['profit_factor'] is None else round(s['profit_factor'], 2)}; trades "
          f"{tc['closed']} closed, {tc['open']} open, {tc['unwound']} unwound; Brier {s['brier']['brier']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
