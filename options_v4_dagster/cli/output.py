"""What the CLI prints: the rich console, tables, JSON, and the summaries of a Dagster run and of a
session's stored allocation."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterable

from rich.console import Console
from rich.table import Table

# Tables stay readable when the output goes to a pipe or a file (rich would assume 80 columns).
console = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 100))


def new_table(title: str, columns: Iterable[str], *, right: Iterable[str] = (), left: Iterable[str] | None = None
              ) -> Table:
    """A table with these columns: those in ``right`` right-justified, or, when ``left`` is given, every
    column not in ``left``."""
    columns = list(columns)
    right = set(right) if left is None else set(columns) - set(left)
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="right" if col in right else "left")
    return table


def print_json(obj, default=None) -> None:
    """``obj`` as indented JSON on stdout (``default``: as for :func:`json.dumps`)."""
    print(json.dumps(obj, indent=2, default=default))


def summarize_run(result, instance, elapsed: float) -> int:
    """A Dagster run as a table (materializations with their row counts and notes, checks, failed steps);
    returns the exit status: 0 when the run succeeded, else 1."""
    import dagster as dg

    run_id = result.run_id
    records = instance.get_records_for_run(run_id).records
    starts: dict[str, float] = {}
    table = new_table(f"run {run_id[:8]}  ({'success' if result.success else 'FAILED'}, {elapsed:.1f}s)",
                      ("step", "status", "seconds", "rows", "notes"), right=("seconds", "rows"))
    for rec in records:
        ev = rec.event_log_entry.dagster_event
        if ev is None:
            continue
        key = ev.step_key or ""
        if ev.event_type == dg.DagsterEventType.STEP_START:
            starts[key] = rec.event_log_entry.timestamp
        elif ev.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            mat = ev.event_specific_data.materialization
            md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            rows = md.get("dagster/row_count", "")
            notes = []
            for k in ("symbols_served", "failed_symbols", "missing_symbols", "market_state", "source",
                      "symbols_with_candidates", "candidates_built", "build_failures", "market_rules"):
                if k in md:
                    notes.append(f"{k}={md[k]}")
            for k in ("deployment", "expected_monthly_return"):
                if k in md:  # a percentage text ("97.1%"); a fraction in runs recorded before it was one
                    notes.append(f"{k}={md[k]:.1%}" if isinstance(md[k], float) else f"{k}={md[k]}")
            secs = rec.event_log_entry.timestamp - starts.get(key, rec.event_log_entry.timestamp)
            table.add_row(mat.asset_key.to_user_string(), "materialized", f"{secs:.2f}", str(rows), ", ".join(notes))
        elif ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            data = ev.event_specific_data
            table.add_row(f"  check {data.check_name}", "passed" if data.passed else "FAILED", "", "",
                          (data.description or "")[:90])
        elif ev.event_type == dg.DagsterEventType.STEP_FAILURE:
            err = ev.event_specific_data.error
            while err is not None and err.cause is not None:
                err = err.cause
            msg = err.message.strip().splitlines()[-1] if err else ""
            table.add_row(key, "FAILED", "", "", msg[:120])
    console.print(table)
    return 0 if result.success else 1


def session_source(wh, session: dt.date) -> str:
    """The market-data source of a stored session (fno_universe, else option_chain_data): one name,
    ``"mixed: a, b"`` if rows of two sources are stored, or ``"unknown (...)"`` when nothing is stored."""
    from options_v4_dagster.store.market_queries import stored_sources

    for table in ("fno_universe", "option_chain_data"):
        names = stored_sources(wh, table, session)
        if names:
            return names[0] if len(names) == 1 else "mixed: " + ", ".join(names)
    return "unknown (no market data stored for the session)"


def trader_summary(wh, session: dt.date) -> None:
    """What a trader wants after `options-v4 run`: the proposed positions, deployment, the expected monthly
    return against the target, the data source and where to look next (read back from the warehouse)."""
    from options_v4_dagster.store.allocations import latest_snapshot

    source = session_source(wh, session)
    snap = latest_snapshot(wh, session)
    if snap is None:
        console.print(f"no allocation is stored for {session} (market data: {source}): see the failed steps above; "
                      f"`make dev` shows the run in the Dagster UI")
        return
    s, pos = snap.summary, snap.positions
    table = new_table(f"proposed positions {session} (allocation {snap.allocation_id[:12]}): capital INR "
                      f"{s['capital']:,.0f}, market data {source}, market state {s['market_state'] or 'n/a'}",
                      ("symbol", "strategy", "lots", "capital ₹", "POP", "EV ₹", "exp. return ₹/mo"),
                      left=("symbol", "strategy"))
    for r in pos.iter_rows(named=True):
        table.add_row(r["symbol"], r["strategy_name"], str(r["lots"]), f"{r['capital_used']:,.0f}",
                      "" if r["pop"] is None else f"{r['pop']:.0%}",
                      "" if r["expected_value"] is None else f"{r['expected_value']:,.0f}",
                      "" if r["expected_return"] is None else f"{r['expected_return']:,.0f}")
    console.print(table)
    emr, target = s["expected_monthly_return"], s["target_monthly_return"]
    verdict = ""
    if emr is not None and target is not None:
        verdict = " (meets the target)" if emr >= target else " (below the target)"
    console.print(f"{s['positions']} positions; deployed INR {s['capital_used']:,.0f} = {s['deployment']:.1%} of "
                  f"INR {s['capital']:,.0f}; expected monthly return "
                  f"{'n/a' if emr is None else f'{emr:.2%}'} vs target "
                  f"{'n/a' if target is None else f'{target:.0%}'}{verdict}; market data: {source}")
    console.print(f"next: `make dev` (Dagster UI, http://127.0.0.1:3000: asset pages, charts, checks); "
                  f"`options-v4 allocate <capital> --date {session}` (another capital); "
                  f"`options-v4 analyze --symbol NIFTY --date {session}`")
