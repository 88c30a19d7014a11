"""``options-v4``: the command line of Options V4 on Dagster (console script ``options_v4_dagster.cli:main``).

    options-v4 run [--date D] [--source S] [--nse-dir DIR]     the daily pipeline for one session
    options-v4 backfill --start D --end D [--job daily_pipeline|iv_collection|session_chains] [--source S] [--nse-dir DIR]
                       [--sessions-per-run N] [--submit [--wait]]   a range of sessions, in ranges per run
    options-v4 runs [--limit N]                                the latest Dagster runs
    options-v4 iv collect [--date D] [--source S] [--nse-dir DIR] | iv analyze [--date D]
    options-v4 iv show SYMBOL [--days N] [--out FILE]          a symbol's IV history: a table and a chart
    options-v4 strategies [--json]                             the strategy catalogue
    options-v4 analyze [--symbol S1,S2 | --universe] [--date D] [--risk R] [--source S] [--nse-dir DIR]
                       [--all] [--top N] [--json]              best strategy candidates per symbol
    options-v4 allocate CAPITAL [--date D] [--risk R] [--rules FILE] [--save] [--json]
    options-v4 industries [show | import FILE | reset] [--json]
    options-v4 approve ALLOCATION_ID [--positions 1,3,5] [--by NAME] [--json]
    options-v4 execute --allocation ID [--strategy-id N] [--broker paper|dhan] [--execute] [--capital C] [--json]
    options-v4 orders [--open] [--json] | positions [--all] [--json]
    options-v4 monitor once [--date D] [--alert-only | --execute] [--json]   one monitoring cycle
    options-v4 monitor poll [--interval MIN] [--alert-only | --execute] [--cycles N] [--date D]
    options-v4 monitor dashboard [--continuous] [--detailed] [--date D]
    options-v4 status [--date D] [--json]                      the session's health; 1 = needs a human
    options-v4 audit verify                                    check the audit log's hash chain
    options-v4 db upgrade | current | history                  warehouse schema migrations
    options-v4 sessions [--start D] [--end D]                  NSE trading sessions
    options-v4 archive --before D [--table T] [--dry-run] [--json]  old sessions' contract rows to Parquet
    options-v4 track-record --start D --end D [--source simulated|nse_files] [--capital C]
                       [--cadence daily|weekly] [--risk R] [--symbols S1,S2] [--json]   walk-forward paper track record

D is a session YYYY-MM-DD (default: the latest one), S a market-data source of
:data:`~options_v4_dagster.types.MARKET_SOURCES` (default ``OPTIONS_V4_MARKET_DATA`` or ``simulated``),
R a risk tolerance of :data:`~options_v4_dagster.types.RISK_TOLERANCES`.

``run``, ``backfill``, ``iv collect|analyze`` and ``allocate --save`` execute Dagster jobs in this
process against the instance in ``DAGSTER_HOME`` (default: ``.dagster_home`` in the checkout), so
every run shows in the Dagster UI; each start first marks the runs of killed ``options-v4``
processes failed. Exit status: 0 success, 1 a run or analysis that failed, 2 a bad argument or
setting (one line on stderr).

Modules: :mod:`.args` (argument validators), :mod:`.instance` (DAGSTER_HOME, run tags,
:func:`run_pipeline`), :mod:`.output` (console, tables, JSON, run summaries), and one per command
area: :mod:`.runs` (run, runs, sessions), :mod:`.backfill`, :mod:`.iv`, :mod:`.analyze` (strategies,
analyze), :mod:`.allocate` (allocate, industries), :mod:`.trading` (approve, execute, orders,
positions), :mod:`.monitor` (monitor once|poll|dashboard), :mod:`.status` (status, audit), :mod:`.db`. Dagster, polars and pandas are
imported inside the commands, so ``options-v4 --help`` does not load them.
"""

from __future__ import annotations

import argparse
import sys

from options_v4_dagster import config
from options_v4_dagster.errors import OptionsV4Error
from options_v4_dagster.types import MARKET_SOURCES, RISK_TOLERANCES

from . import archive, realtime, track_record
from .allocate import cmd_allocate, cmd_industries
from .analyze import cmd_analyze, cmd_strategies
from .args import (
    DATE_HELP,
    capital_arg,
    date_arg,
    existing_dir,
    existing_file,
    last_partition,
    positions_arg,
    positive_int,
    session_arg,
    symbol_arg,
    symbols_arg,
)
from .backfill import cmd_backfill
from .db import check_database, cmd_db
from .instance import run_pipeline
from .iv import cmd_iv
from .monitor import cmd_monitor
from .runs import cmd_run, cmd_runs, cmd_sessions
from .status import cmd_audit, cmd_status
from .trading import cmd_approve, cmd_execute, cmd_orders, cmd_positions

__all__ = ["build_parser", "last_partition", "main", "run_pipeline"]


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line on stderr (no usage block), status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="options-v4", description="Options V4 on Dagster (NSE F&O options).")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="materialize the daily pipeline for one session through Dagster")
    r.add_argument("--date", type=session_arg, help=DATE_HELP)
    r.add_argument("--source", choices=MARKET_SOURCES,
                   help="market data (default: OPTIONS_V4_MARKET_DATA or simulated)")
    r.add_argument("--nse-dir", type=existing_dir,
                   help="folder of NSE files for --source nse_files (OPTIONS_V4_NSE_DATA_DIR)")
    r.set_defaults(func=cmd_run)

    iv = sub.add_parser("iv", help="implied-volatility collection, analysis and history")
    ivs = iv.add_subparsers(dest="iv_command", required=True)
    for name, text in (("collect", "collect the session's chains and compute IVs through iv_percentiles"),
                       ("analyze", "recompute option_greeks, iv_history and iv_percentiles from stored chains")):
        c = ivs.add_parser(name, help=text)
        c.add_argument("--date", type=session_arg, help=DATE_HELP)
        if name == "collect":
            c.add_argument("--source", choices=MARKET_SOURCES)
            c.add_argument("--nse-dir", type=existing_dir)
    show = ivs.add_parser("show", help="a symbol's IV history as a table and a chart file")
    show.add_argument("symbol", type=symbol_arg)
    show.add_argument("--days", type=positive_int, default=30, help="sessions shown in the table (default 30)")
    show.add_argument("--out", help="chart file (.html); default .data/charts/iv_SYMBOL.html")
    iv.set_defaults(func=cmd_iv)

    b = sub.add_parser("backfill", help="materialize a range of sessions: in this process, in runs of up to "
                       "--sessions-per-run sessions in order, or (--submit) as a Dagster backfill the daemon runs")
    b.add_argument("--start", required=True, type=date_arg)
    b.add_argument("--end", required=True, type=date_arg)
    b.add_argument("--job", default="daily_pipeline", choices=("daily_pipeline", "iv_collection", "session_chains"))
    b.add_argument("--source", choices=MARKET_SOURCES)
    b.add_argument("--nse-dir", type=existing_dir)
    b.add_argument("--sessions-per-run", type=positive_int, default=config.BACKFILL_SESSIONS_PER_RUN,
                   help="sessions per run in this process (default: the assets' backfill policy, "
                   f"{config.BACKFILL_SESSIONS_PER_RUN})")
    b.add_argument("--submit", action="store_true",
                   help="submit a Dagster asset backfill to the instance in DAGSTER_HOME; the daemon runs it")
    b.add_argument("--wait", action="store_true", help="with --submit: follow the backfill until it ends")
    b.set_defaults(func=cmd_backfill)

    st = sub.add_parser("strategies", help="list the strategy catalogue")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_strategies)

    an = sub.add_parser("analyze", help="best strategy candidates per symbol (from the market-data source)")
    an.add_argument("--symbol", type=symbols_arg, help="one symbol or a comma-separated list (default NIFTY)")
    an.add_argument("--universe", action="store_true", help="every underlying the source serves that day")
    an.add_argument("--date", type=session_arg, help=DATE_HELP + "; the same sessions as `run`")
    an.add_argument("--risk", default="moderate", choices=RISK_TOLERANCES)
    an.add_argument("--source", choices=MARKET_SOURCES)
    an.add_argument("--nse-dir", type=existing_dir)
    an.add_argument("--all", action="store_true", help="every catalogue strategy that can be built")
    an.add_argument("--top", type=positive_int, default=3, help="candidates per symbol (default 3)")
    an.add_argument("--json", action="store_true")
    an.set_defaults(func=cmd_analyze)

    al = sub.add_parser("allocate", help="allocate capital over a session's stored strategy candidates")
    al.add_argument("capital", type=capital_arg, help="INR, e.g. 1500000")
    al.add_argument("--date", type=session_arg, help="session YYYY-MM-DD (default: the latest session with candidates)")
    al.add_argument("--risk", choices=RISK_TOLERANCES,
                    help="which stored candidates (default: those of the session's run)")
    al.add_argument("--rules", type=existing_file, help="a market_conditions.yaml (default: the packaged one)")
    al.add_argument("--save", action="store_true", help="also materialize portfolio_allocation with this capital")
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_allocate)

    ind = sub.add_parser("industries", help="show, import (CSV/YAML) or reset the industry weights and views")
    ind.add_argument("action", nargs="?", default="show", choices=("show", "import", "reset"))
    ind.add_argument("file", nargs="?", type=existing_file)
    ind.add_argument("--json", action="store_true")
    ind.set_defaults(func=cmd_industries)

    ap = sub.add_parser("approve", help="approve an allocation snapshot (or some positions) for execution")
    ap.add_argument("allocation_id")
    ap.add_argument("--positions", type=positions_arg, help="position numbers, e.g. 1,3,5 (default: all)")
    ap.add_argument("--by", help="who approves (default: the login name)")
    ap.add_argument("--json", action="store_true")
    ap.set_defaults(func=cmd_approve)

    ex = sub.add_parser("execute", help="execute an approved allocation (paper by default); again places nothing")
    ex.add_argument("--allocation", required=True, help="the allocation_id (`options-v4 approve` it first)")
    ex.add_argument("--strategy-id", type=positions_arg, metavar="N",
                    help="only these position numbers (e.g. 3 or 1,3), as `execute` and `approve` number them")
    ex.add_argument("--broker", choices=("paper", "dhan"), help="default OPTIONS_V4_BROKER, else paper")
    ex.add_argument("--execute", action="store_true",
                    help="place live orders (needs --broker dhan, DHAN_CLIENT_ID/DHAN_ACCESS_TOKEN, OPTIONS_V4_LIVE=1)")
    ex.add_argument("--capital", type=capital_arg,
                    help="paper account capital in INR (default: the allocation's); open paper positions count against it")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_execute)

    od = sub.add_parser("orders", help="orders (newest first) with status, fills and average prices")
    od.add_argument("--open", action="store_true", help="only orders still working at the broker")
    od.add_argument("--json", action="store_true")
    od.set_defaults(func=cmd_orders)

    ps = sub.add_parser("positions", help="open positions per strategy and leg, with entry prices")
    ps.add_argument("--all", action="store_true", help="closed legs too")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_positions)

    _monitor_parsers(sub)

    rn = sub.add_parser("runs", help="the latest Dagster runs; marks runs of killed options-v4 processes failed")
    rn.add_argument("--limit", type=positive_int, default=10)
    rn.set_defaults(func=cmd_runs)

    db = sub.add_parser("db", help="warehouse schema migrations: upgrade, current revision, history")
    db.add_argument("db_command", choices=("upgrade", "current", "history"))
    db.set_defaults(func=cmd_db)

    s = sub.add_parser("sessions", help="list NSE trading sessions")
    s.add_argument("--start", type=date_arg)
    s.add_argument("--end", type=date_arg)
    s.set_defaults(func=cmd_sessions)
    archive.register(sub)
    track_record.register(sub, positive_int, capital_arg, date_arg, symbols_arg, existing_dir, RISK_TOLERANCES)
    return p


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number")
    return x


def _monitor_parsers(sub) -> None:
    mo = sub.add_parser("monitor", help="monitor open positions: one cycle, the polling loop, the dashboard, "
                        "the real-time monitor")
    mos = mo.add_subparsers(dest="monitor_command", required=True)
    for name, text in (("once", "one monitoring cycle: value, evaluate exit rules, place due exits once"),
                       ("poll", "the polling loop: one cycle every --interval minutes until Ctrl-C")):
        c = mos.add_parser(name, help=text)
        c.add_argument("--date", type=session_arg, help="session YYYY-MM-DD (default: today; a past one replays "
                       "its stored chain at 15:25 IST)")
        how = c.add_mutually_exclusive_group()
        how.add_argument("--alert-only", action="store_true", help="decisions and alerts, no orders")
        how.add_argument("--execute", action="store_true",
                         help="live exits on Dhan (needs DHAN_CLIENT_ID/DHAN_ACCESS_TOKEN and OPTIONS_V4_LIVE=1)")
        if name == "once":
            c.add_argument("--json", action="store_true")
        else:
            c.add_argument("--interval", type=_positive_float, default=5.0, help="minutes between cycles (default 5)")
            c.add_argument("--cycles", type=positive_int, help="stop after N cycles (default: until Ctrl-C)")
    d = mos.add_parser("dashboard", help="positions, legs, P&L, exit-rule status and alerts (read-only)")
    d.add_argument("--date", type=session_arg, help="session whose quotes value the positions (default: today)")
    d.add_argument("--continuous", action="store_true", help="refresh until Ctrl-C")
    d.add_argument("--detailed", action="store_true", help="also every leg with entry and current prices")
    d.add_argument("--refresh", type=_positive_float, default=5.0, help="seconds between refreshes (default 5)")
    realtime.register(mos)
    mo.set_defaults(func=cmd_monitor)

    st = sub.add_parser("status", help="the session's health on one screen; exit 1 when something needs a human")
    st.add_argument("--date", type=session_arg, help=DATE_HELP)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    au = sub.add_parser("audit", help="the audit log of orders, exit decisions, intents and mode changes")
    au.add_argument("audit_command", choices=("verify",))
    au.set_defaults(func=cmd_audit)


#: Commands that read or write the warehouse: its URL is checked (one connection) before they start.
USES_WAREHOUSE = frozenset({"run", "iv", "backfill", "analyze", "allocate", "industries", "db", "approve",
                            "execute", "orders", "positions", "monitor", "status", "audit", "archive"})
#: Commands that read market data: OPTIONS_V4_MARKET_DATA is checked when --source is not given.
USES_MARKET = frozenset({"run", "iv", "backfill", "analyze"})


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 success, 1 a run or analysis that failed, 2 a bad argument or setting (one line on stderr).

    Only the project's typed errors are turned into that line; anything else is a bug and keeps its traceback."""
    prog = "options-v4"
    try:
        args = build_parser().parse_args(argv)
        prog = f"options-v4 {args.command}"
        config.partition_start()
        if args.command in USES_MARKET and getattr(args, "iv_command", None) != "show":
            config.market_source(getattr(args, "source", None))
        if args.command in USES_WAREHOUSE:
            check_database()
        return int(args.func(args) or 0)
    except SystemExit as exc:  # argparse: --help (0) or a bad argument (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except OptionsV4Error as exc:
        return _fail(prog, str(exc))


if __name__ == "__main__":
    sys.exit(main())
