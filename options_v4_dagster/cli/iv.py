"""``options-v4 iv collect|analyze|show``: the implied-volatility jobs for one session, and a symbol's IV
history as a table and chart files."""

from __future__ import annotations

import time

from .args import parse_session
from .instance import run_pipeline
from .output import console, new_table, summarize_run


def cmd_iv(args) -> int:
    if args.iv_command == "show":
        return _iv_show(args)
    session = parse_session(args.date)
    job = "iv_collection" if args.iv_command == "collect" else "iv_analysis"
    console.print(f"options-v4 iv {args.iv_command}: session [bold]{session}[/] (job {job})")
    t0 = time.perf_counter()
    result, instance = run_pipeline(session, getattr(args, "source", None), getattr(args, "nse_dir", None),
                                    job_name=job)
    return summarize_run(result, instance, time.perf_counter() - t0)


def _iv_show(args) -> int:
    import polars as pl

    from options_v4_dagster import calendar
    from options_v4_dagster.reports import iv_chart
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.market_queries import universe_sources_between
    from options_v4_dagster.store.volatility_queries import symbol_iv_history

    wh = Warehouse.from_env()
    sym = args.symbol.upper()
    hist = symbol_iv_history(wh, sym)
    if hist.height == 0:
        console.print(f"[red]error:[/] no IV history for {sym} in {wh.describe()}; run `options-v4 iv collect` "
                      "or a backfill first")
        return 2
    shown = hist.tail(args.days)
    first, last = shown.get_column("trade_date").min(), shown.get_column("trade_date").max()
    sources = universe_sources_between(wh, first, last)
    dates = shown.get_column("trade_date").to_list()
    gaps = {int(i) for i in iv_chart.gap_starts(dates)}
    used = sorted({v for v in sources.values()}) or ["unknown"]
    table = new_table(f"{sym}: 30-day ATM IV (last {shown.height} of {hist.height} sessions), "
                      f"market data: {', '.join(used)}",
                      ("session", "spot", "IV30 %", "near %", "skew25 pts", "RV20 %", "IV pct", "IV rank", "hist",
                       "env", "source"), left=("session", "env", "source"))

    def pct(v, scale=100.0, nd=2):
        return "" if v is None else f"{v * scale:.{nd}f}"

    for i, r in enumerate(shown.iter_rows(named=True)):
        if i in gaps:
            missing = len(calendar.sessions_between(dates[i - 1], dates[i])) - 2
            table.add_row(f"[yellow]gap: {missing} sessions without data ({dates[i - 1]} .. {dates[i]})[/]",
                          *[""] * 10)
        table.add_row(str(r["trade_date"]), pct(r["spot"], 1.0), pct(r["atm_iv_30d"]), pct(r["atm_iv_near"]),
                      pct(r["skew_25d"]), pct(r["rv_20"]), pct(r["iv_percentile"], 1.0, 1),
                      pct(r["iv_rank"], 1.0, 1), "" if r["history_days"] is None else str(r["history_days"]),
                      r["iv_environment"] or (r["reason"] or "")[:40], sources.get(r["trade_date"], "unknown"))
    console.print(table)
    if gaps:
        console.print(f"{len(gaps)} gap(s) of more than {iv_chart.MAX_GAP_SESSIONS} sessions in the table; the chart "
                      "breaks its lines there")
    path = iv_chart.write_iv_chart(sym, hist.with_columns(pl.col("trade_date").cast(pl.Date)), args.out)
    console.print(f"chart: {path}")
    if hist.get_column("atm_iv_30d").is_not_null().sum() >= 2:  # static PNG beside the HTML
        png_path = path.with_suffix(".png")
        png_path.write_bytes(iv_chart.iv_png(sym, hist.with_columns(pl.col("trade_date").cast(pl.Date))))
        console.print(f"chart: {png_path}")
    return 0
