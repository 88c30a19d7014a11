"""``options-v4 track-record``: the walk-forward paper track record of a range of sessions (a replay in a
warehouse of its own, then its statistics and calibration; see :mod:`options_v4_dagster.track_record`)."""

from __future__ import annotations

import sys
from pathlib import Path

from options_v4_dagster.errors import ConfigError

from .args import last_partition
from .output import console, new_table, print_json

#: sources whose past sessions can be replayed
SOURCES = ("simulated", "nse_files")


def register(sub, positive_int, capital_arg, date_arg, symbols_arg, existing_dir, risks) -> None:
    t = sub.add_parser("track-record", help="walk-forward paper track record: replay sessions through allocation, "
                       "paper execution and the exit rules; statistics and calibration")
    t.add_argument("--start", required=True, type=date_arg, help="first day YYYY-MM-DD")
    t.add_argument("--end", required=True, type=date_arg, help="last day YYYY-MM-DD")
    t.add_argument("--source", default="simulated", choices=SOURCES, help="market data (default simulated)")
    t.add_argument("--nse-dir", type=existing_dir, help="folder of NSE files for --source nse_files")
    t.add_argument("--capital", type=capital_arg, default=1_500_000.0, help="initial capital, INR (default 1500000)")
    t.add_argument("--cadence", default="weekly", choices=("daily", "weekly"),
                   help="entry sessions: every session, or the first of each week (default); exits every session")
    t.add_argument("--risk", default="moderate", choices=risks)
    t.add_argument("--symbols", type=symbols_arg, help="only these underlyings (comma-separated; default all)")
    t.add_argument("--out", help="HTML report file (default .data/track_record/report_<source>_<start>_<end>_<cadence>.html)")
    t.add_argument("--db", help="the replay's SQLite warehouse (replaced; default .data/track_record/replay_....db)")
    t.add_argument("--stored", action="store_true",
                   help="entry sessions use the strategy candidates the warehouse (DATABASE_URL) stores for them "
                   "(same source and risk), where it has them; the others are computed")
    t.add_argument("--json", action="store_true", help="the summary as JSON on stdout")
    t.set_defaults(func=cmd_track_record)


def _config(args):
    from options_v4_dagster import calendar
    from options_v4_dagster.track_record.replay import ReplayConfig

    if args.start > args.end:
        raise ConfigError(f"--start {args.start} is after --end {args.end}")
    last = last_partition()
    if args.end > last:
        raise ConfigError(f"--end {args.end} is after the last partition {last}: a future session has no market data")
    if not calendar.sessions_between(args.start, args.end):
        raise ConfigError(f"no NSE session from {args.start} to {args.end}")
    return ReplayConfig(args.start, args.end, source=args.source, capital=float(args.capital), cadence=args.cadence,
                        risk=args.risk, symbols=tuple(args.symbols) if args.symbols else None)


def _progress(rec) -> None:
    how = f"entry ({rec.inputs} candidates)" if rec.inputs else ("entry" if rec.entry else "exits")
    print(f"  {rec.session} {how}: equity INR {rec.equity:,.0f}, "
          f"{rec.open_strategies} open, +{rec.entered} entered, {rec.exits} exits, {rec.settled} legs settled "
          f"({sum(rec.seconds.values()):.1f}s)", file=sys.stderr, flush=True)


def cmd_track_record(args) -> int:
    from options_v4_dagster.market import get_provider
    from options_v4_dagster.track_record.charts import all_charts
    from options_v4_dagster.track_record.report import default_report_path, html_report, run

    cfg = _config(args)
    provider = get_provider(cfg.source, **({"data_dir": args.nse_dir} if args.nse_dir else {}))
    print(f"options-v4 track-record {cfg.start} .. {cfg.end}: source {cfg.source}, capital INR {cfg.capital:,.0f}, "
          f"cadence {cfg.cadence}, risk {cfg.risk}", file=sys.stderr, flush=True)
    stored = None
    if args.stored:
        from options_v4_dagster.store import Warehouse

        from .db import check_database

        check_database()
        stored = Warehouse.from_env()
    try:
        tr = run(cfg, provider, db_path=Path(args.db) if args.db else None, stored=stored, progress=_progress)
    finally:
        if stored is not None:
            stored.dispose()
    s = tr.summary
    if not tr.result.sessions:
        raise ConfigError(f"{cfg.source} holds no session from {cfg.start} to {cfg.end}")
    out = Path(args.out) if args.out else default_report_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html_report(s, all_charts(tr.result.equity_frame(), cfg.capital, s)))
    s["run"].update({"report": str(out), "warehouse": str(tr.db_path)})
    if args.json:
        print_json(s)
        return 0
    print_summary(s)
    return 0


def _pct(x) -> str:
    return "" if x is None else f"{x:.1%}"


def _inr(x) -> str:
    return "" if x is None else f"{x:,.0f}"


def print_summary(s: dict) -> None:
    from options_v4_dagster.track_record.report import headline_rows

    c = s["config"]
    t = new_table(f"track record {c['start']} .. {c['end']} ({c['source']}, cadence {c['cadence']}, risk {c['risk']})",
                  ("figure", "value"))
    for k, v in headline_rows(s):
        t.add_row(k, v)
    console.print(t)
    m = new_table("monthly returns (target 4%)", ("month", "return", "meets target"), right=("return",))
    for r in s["monthly_returns"]:
        m.add_row(r["month"], _pct(r["return"]), "yes" if r["meets_target"] else "no")
    console.print(m)
    cal = new_table("POP calibration: closed trades by predicted POP (Wilson 95% interval)",
                    ("POP bucket", "trades", "predicted", "realized", "95% interval"), left=("POP bucket",))
    for r in s["calibration"]:
        cal.add_row(r["pop_bucket"], str(r["n"]), _pct(r["predicted"]), _pct(r["realized"]),
                    f"{_pct(r['ci_low'])} .. {_pct(r['ci_high'])}")
    console.print(cal)
    ev = s["ev_calibration"]
    e = new_table(f"EV calibration: predicted EV vs realized P&L per closed trade (correlation "
                  f"{'n/a' if ev['correlation'] is None else format(ev['correlation'], '.2f')})",
                  ("EV quintile", "trades", "predicted EV ₹", "realized P&L ₹"), left=("EV quintile",))
    for r in ev["buckets"]:
        e.add_row(r["ev_bucket"], str(r["n"]), _inr(r["predicted"]), _inr(r["realized"]))
    console.print(e)
    x = new_table("exit rules", ("rule", "fired", "trades closed", "win rate", "avg P&L ₹", "P&L ₹"), left=("rule",))
    for r in s["exit_rules"]:
        x.add_row(r["rule"], str(r["fired"]), str(r["trades_closed"]), _pct(r["win_rate"]), _inr(r["average_pnl"]),
                  _inr(r["pnl"]))
    console.print(x)
    for key, col, title in (("by_strategy", "strategy_name", "strategy"), ("by_category", "category", "category"),
                            ("by_conviction", "conviction", "conviction"), ("by_dte", "dte_bucket", "DTE at entry"),
                            ("by_short_delta", "delta_bucket", "short-leg |delta|")):
        b = new_table(f"by {title}", (title, "closed", "open", "win rate", "P&L ₹", "avg P&L ₹", "open P&L ₹", "PF",
                                      "avg days"), left=(title,))
        for r in s[key]:
            b.add_row(str(r[col]), str(r["trades"]), str(r["open"]), _pct(r["win_rate"]), _inr(r["pnl"]),
                      _inr(r["average_pnl"]), _inr(r["open_pnl"]),
                      "" if r["profit_factor"] is None else f"{r['profit_factor']:.2f}",
                      "" if r["average_days"] is None else f"{r['average_days']:.1f}")
        console.print(b)
    console.print(f"report: {s['run']['report']}; the replay's warehouse (orders, fills, positions): "
                  f"{s['run']['warehouse']}; {len(s['notes'])} notes in the report; {s['run']['seconds']:.0f}s")
