"""``options-v4 archive --before D``: move the contract-level rows (option_chain_data, option_greeks) of the
sessions before D to Parquet files under the archive root (``OPTIONS_V4_ARCHIVE_DIR``, default
``<OPTIONS_V4_HOME>/archive``); see :mod:`options_v4_dagster.store.archive`. polars and the store are
imported inside the command, so ``options-v4 --help`` stays light."""

from __future__ import annotations

import json

from .args import date_arg
from .output import console, new_table

#: the archived tables (store.archive.ARCHIVED_TABLES; repeated here to keep the parser import-light)
TABLES = ("option_chain_data", "option_greeks")


def register(sub) -> None:
    a = sub.add_parser("archive", help="move old sessions' contract-level rows (option_chain_data, option_greeks) "
                       "to Parquet files; reads fall back to them")
    a.add_argument("--before", required=True, type=date_arg, help="archive the sessions before this date YYYY-MM-DD")
    a.add_argument("--table", choices=TABLES, action="append", help="only this table (repeatable; default both)")
    a.add_argument("--dry-run", action="store_true", help="list the sessions that would be archived")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_archive)


def cmd_archive(args) -> int:
    from options_v4_dagster.store import Warehouse, archive

    wh = Warehouse.from_env()
    tables = tuple(args.table or TABLES)
    root = archive.archive_dir()
    if args.dry_run:
        todo = {t: [d.isoformat() for d in archive.sessions_with_rows(wh, t, args.before)] for t in tables}
        if args.json:
            print(json.dumps({"before": args.before.isoformat(), "root": str(root), "sessions": todo}))
        else:
            for t, days in todo.items():
                console.print(f"{t}: {len(days)} session(s) before {args.before} to archive"
                              + (f" ({days[0]} .. {days[-1]})" if days else ""))
        return 0
    if not args.json:
        console.print(f"options-v4 archive: sessions before [bold]{args.before}[/] of {', '.join(tables)} "
                      f"-> {root} (warehouse {wh.describe()})")
    try:
        results = archive.archive_before(wh, args.before, tables=tables, root=root,
                                         on_result=None if args.json else _progress)
    except archive.ArchiveError as exc:
        console.print(f"[red]archive failed:[/] {exc}")
        return 1
    moved = [r for r in results if r.status == "archived"]
    if args.json:
        print(json.dumps({"before": args.before.isoformat(), "root": str(root), "results": [
            {"table": r.table, "session": r.session.isoformat(), "status": r.status, "rows": r.rows,
             "file_bytes": r.file_bytes, "path": r.path} for r in results]}))
        return 0
    table = new_table(f"archived {len(moved)} session-table(s), {sum(r.rows for r in moved):,} rows, "
                      f"{sum(r.file_bytes for r in moved) / 1e6:,.1f} MB of Parquet",
                      ("table", "session", "status", "rows", "MB", "s"), left=("table", "session", "status"))
    for r in results:
        table.add_row(r.table, str(r.session), r.status, f"{r.rows:,}", f"{r.file_bytes / 1e6:.2f}", f"{r.seconds:.2f}")
    if results:
        console.print(table)
    else:
        console.print(f"nothing to archive before {args.before}")
    return 0


def _progress(r) -> None:
    console.print(f"  {r.table} {r.session}: {r.status} ({r.rows:,} rows, {r.seconds:.2f} s)")
