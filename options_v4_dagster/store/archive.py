"""Retention: old sessions' contract-level rows (option_chain_data, option_greeks) moved from the warehouse
to Parquet files, one per table and session, readable through the same read functions.

Layout (hive style, under :func:`archive_dir`: ``OPTIONS_V4_ARCHIVE_DIR``, default
``<OPTIONS_V4_HOME>/archive``)::

    option_chain_data/session=2025-07-17/part-<first 16 hex of the checksum>.parquet
    option_greeks/session=2025-07-17/part-....parquet

Each file holds the session's rows in canonical form (the table's columns typed as the warehouse
reads them, sorted by the primary key). The manifest table ``archived_sessions`` names the file, its
row count and checksum (sha256 of the canonical rows), and is the index every read consults.

:func:`archive_session` is exactly-once and safe to kill at any point:

1. read the session's rows (none and a manifest row: already archived, a no-op);
2. write the file to a temporary name, fsync it, rename it atomically to its final name (derived
   from the checksum, so a re-run writes the same name) and fsync the folder;
3. read the file back and compare its row count and checksum with the warehouse rows;
4. in ONE transaction (on PostgreSQL under the same advisory lock as a re-materialization of the
   session): delete the rows with ``DELETE ... RETURNING``, compare the deleted rows' count and checksum
   with the file's again (a session re-materialized meanwhile rolls back, nothing lost), and write the
   manifest row.

A kill before step 4 commits leaves the rows in the warehouse and at most a complete file without a
manifest row (or a temporary file): the reads use the warehouse, and a re-run rewrites the same file
and completes. A kill after the commit leaves an archived session: a re-run does nothing.

Reads (:func:`read_archived`) fall back to the file only for a session that has a manifest row and no
rows in the table; ``Warehouse.read_partition`` / ``count``, ``session_quote_book``, ``session_quotes``,
``underlying_closes``, ``stored_sources`` and ``latest_chain_session`` do so transparently. Any later
write of the session (a re-materialization: ``Replace.partition`` of the table) deletes its manifest row
in its own transaction (:func:`forget`), so the warehouse rows are the session's again; the stale file
is removed when the session is archived again. The per-symbol summaries (historical_iv_summary,
iv_percentiles, ...) stay in the warehouse.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl
import sqlalchemy as sa

from ..errors import OptionsV4Error
from . import sqlite_read
from .archive_schema import archived_sessions
from .migrate import advisory_lock_key
from .schema import UTCDateTime

if TYPE_CHECKING:
    from .warehouse import Warehouse

#: the contract-level tables that are archived (their per-symbol summaries stay in the warehouse)
ARCHIVED_TABLES = ("option_chain_data", "option_greeks")
ENV_ARCHIVE_DIR = "OPTIONS_V4_ARCHIVE_DIR"
#: columns the warehouse's reads parse as dates whatever they hold (Warehouse.read)
_DATE_NAMES = ("date", "trade_date", "expiry")
M = archived_sessions


class ArchiveError(OptionsV4Error):
    """An archive that could not be verified (nothing was deleted) or an archived file that is missing."""


@dataclass(frozen=True)
class ArchiveResult:
    table: str
    session: dt.date
    status: Literal["archived", "already", "empty"]
    rows: int
    file_bytes: int
    path: str | None  # relative to the archive root
    seconds: float


def archive_dir() -> Path:
    """The archive root: ``OPTIONS_V4_ARCHIVE_DIR``, else ``<OPTIONS_V4_HOME>/archive``."""
    from .. import config

    env = os.environ.get(ENV_ARCHIVE_DIR, "").strip()
    return Path(env).expanduser().resolve() if env else config.home_dir() / "archive"


# -- canonical form ----------------------------------------------------------------------------------

def _dtype(col: sa.Column) -> pl.DataType:
    t = col.type
    if isinstance(t, (UTCDateTime, sa.DateTime)):
        return pl.Datetime("us", "UTC")
    if isinstance(t, sa.Date):
        return pl.Date
    if isinstance(t, sa.Boolean):
        return pl.Boolean
    if isinstance(t, sa.Integer):
        return pl.Int64
    if isinstance(t, sa.Float):
        return pl.Float64
    return pl.String


def canonical_schema(t: sa.Table) -> dict[str, pl.DataType]:
    return {c.name: _dtype(c) for c in t.columns}


def canonical(frame: pl.DataFrame, t: sa.Table) -> pl.DataFrame:
    """The table's columns in table order, typed as the archive stores them, sorted by the primary key."""
    schema = canonical_schema(t)
    out = frame.select([pl.col(c).cast(d) for c, d in schema.items()])
    return out.sort([c.name for c in t.primary_key.columns])


def checksum(frame: pl.DataFrame) -> str:
    """sha256 of a canonical frame's rows (CSV with full float precision; the same on every back-end)."""
    return hashlib.sha256(frame.write_csv(datetime_format="%Y-%m-%dT%H:%M:%S%.6f%z").encode()).hexdigest()


def _rows_frame(rows: Sequence, cols: Sequence[str], t: sa.Table) -> pl.DataFrame:
    schema = canonical_schema(t)
    frame = pl.DataFrame([tuple(r) for r in rows], schema=list(cols), orient="row", infer_schema_length=None)
    casts = []
    for c in frame.columns:
        if isinstance(frame.schema[c], pl.Datetime) and frame.schema[c].time_zone not in (None, "UTC"):
            casts.append(pl.col(c).dt.convert_time_zone("UTC"))
    return canonical(frame.with_columns(casts) if casts else frame, t) if rows else \
        pl.DataFrame(schema=schema)


def as_read(frame: pl.DataFrame, wh: Warehouse | None = None, table: str | None = None) -> pl.DataFrame:
    """A frame as ``Warehouse.read`` gives the same rows: a column without a value has no type (Null),
    except the date columns it always parses; an empty result has only those typed. On SQLite a read of
    columns of known types is built by :mod:`.sqlite_read`, which gives such a column its declared type."""
    if frame.height == 0:
        return pl.DataFrame(schema={c: (pl.Date if c in _DATE_NAMES else pl.Null) for c in frame.columns})
    nulls = [c for c in frame.columns if c not in _DATE_NAMES and frame.get_column(c).null_count() == frame.height]
    if not nulls:
        return frame
    declared = sqlite_read.declared_dtypes(wh.table(table), frame.columns) \
        if wh is not None and table is not None and wh.dialect == "sqlite" else None
    if declared is not None:
        return frame.with_columns([pl.lit(None, dtype=declared[c]).alias(c) for c in nulls])
    return frame.with_columns([pl.lit(None).alias(c) for c in nulls])


# -- the manifest ----------------------------------------------------------------------------------

def manifest(wh: Warehouse, table: str | None = None, *, before: dt.date | None = None) -> pl.DataFrame:
    """The manifest rows (table_name, trade_date, path, row_count, checksum, file_bytes, archived_at)."""
    q = sa.select(M)
    if table is not None:
        q = q.where(M.c.table_name == table)
    if before is not None:
        q = q.where(M.c.trade_date < before)
    return wh.read(q.order_by(M.c.table_name, M.c.trade_date))


def _entry(wh: Warehouse, table: str, session: dt.date) -> dict | None:
    with wh.engine.connect() as conn:
        row = conn.execute(sa.select(M).where(M.c.table_name == table, M.c.trade_date == session)).first()
    return dict(row._mapping) if row is not None else None


def forget(conn: sa.Connection, table: str, session: dt.date) -> None:
    """Inside a transaction that writes the session's rows: the session is no longer archived."""
    if table in ARCHIVED_TABLES:
        conn.execute(sa.delete(M).where(M.c.table_name == table, M.c.trade_date == session))


# -- archiving -------------------------------------------------------------------------------------

def sessions_with_rows(wh: Warehouse, table: str, before: dt.date) -> list[dt.date]:
    """Sessions before ``before`` with rows of ``table`` in the warehouse, oldest first."""
    t = wh.table(table)
    rows = wh.read(sa.select(t.c.trade_date).distinct().where(t.c.trade_date < before).order_by(t.c.trade_date))
    return rows.get_column("trade_date").to_list() if rows.height else []


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(frame: pl.DataFrame, final: Path) -> int:
    """Write ``frame`` to ``final`` atomically (temporary name, fsync, rename, fsync of the folder)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        _fsync(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync(final.parent)
    return final.stat().st_size


def _delete_rows(wh: Warehouse, table: str, session: dt.date, entry: dict) -> int:
    """Step 4: delete the session's rows if they are exactly the file's, and write the manifest row,
    in one transaction. Returns the rows deleted (0: another archiver had already done it)."""
    t = wh.table(table)
    with wh.engine.begin() as conn:
        _lock_session(conn, table, session)
        res = conn.execute(sa.delete(t).where(t.c.trade_date == session).returning(*t.columns))
        cols, rows = list(res.keys()), res.fetchall()
        if not rows:
            current = conn.execute(sa.select(M.c.checksum).where(M.c.table_name == table,
                                                                  M.c.trade_date == session)).scalar()
            if current == entry["checksum"]:
                return 0
        got = _rows_frame(rows, cols, t)
        if len(rows) != entry["row_count"] or checksum(got) != entry["checksum"]:
            raise ArchiveError(f"{table} {session}: the warehouse rows changed while archiving ({len(rows)} rows "
                               f"now, {entry['row_count']} in the file): nothing deleted; run the archive again")
        _record(conn, entry)
    return len(rows)


def _lock_session(conn: sa.Connection, table: str, session: dt.date) -> None:
    """PostgreSQL: the advisory locks a re-materialization of the session takes (``Replace.partition``: the
    table's shared, the session's exclusive, in ascending key order), so the two run one after the other."""
    if conn.dialect.name != "postgresql":
        return
    locks = sorted([(advisory_lock_key(table), "pg_advisory_xact_lock_shared"),
                    (advisory_lock_key(table, session.isoformat()), "pg_advisory_xact_lock")])
    for key, fn in locks:
        conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": key})


def _record(conn: sa.Connection, entry: dict) -> None:
    """The manifest row, in the transaction that deleted the rows."""
    conn.execute(sa.delete(M).where(M.c.table_name == entry["table_name"], M.c.trade_date == entry["trade_date"]))
    conn.execute(sa.insert(M).values(**entry))


def archive_session(wh: Warehouse, table: str, session: dt.date, *, root: Path | None = None) -> ArchiveResult:
    """Move one session of ``table`` to its Parquet file (see the module docstring). Idempotent."""
    if table not in ARCHIVED_TABLES:
        raise ValueError(f"{table} is not archived (only {', '.join(ARCHIVED_TABLES)})")
    root = Path(root) if root is not None else archive_dir()
    t0 = time.perf_counter()
    t = wh.table(table)
    current = wh.read(sa.select(t).where(t.c.trade_date == session))
    if current.height == 0:
        entry = _entry(wh, table, session)
        status = "already" if entry is not None else "empty"
        return ArchiveResult(table, session, status, entry["row_count"] if entry else 0,
                             entry["file_bytes"] if entry else 0, entry["path"] if entry else None,
                             time.perf_counter() - t0)
    rows = canonical(current, t)
    digest = checksum(rows)
    rel = f"{table}/session={session.isoformat()}/part-{digest[:16]}.parquet"
    size = _write_file(rows, root / rel)
    back = canonical(pl.read_parquet(root / rel), t)
    if back.height != rows.height or checksum(back) != digest:
        (root / rel).unlink(missing_ok=True)
        raise ArchiveError(f"{table} {session}: {root / rel} does not read back as written "
                           f"({back.height} of {rows.height} rows): nothing deleted")
    entry = {"table_name": table, "trade_date": session, "path": rel, "row_count": rows.height,
             "checksum": digest, "file_bytes": size, "archived_at": dt.datetime.now(dt.UTC)}
    deleted = _delete_rows(wh, table, session, entry)
    for stale in (root / rel).parent.glob("*.parquet"):  # a file of an earlier archive of the session
        if stale.name != (root / rel).name:
            stale.unlink(missing_ok=True)
    return ArchiveResult(table, session, "archived" if deleted else "already", rows.height, size, rel,
                         time.perf_counter() - t0)


def archive_before(wh: Warehouse, before: dt.date, *, tables: Iterable[str] = ARCHIVED_TABLES,
                   root: Path | None = None,
                   on_result: Callable[[ArchiveResult], None] | None = None) -> list[ArchiveResult]:
    """Archive every session before ``before`` of each table, oldest first (each session on its own)."""
    out = []
    for table in tables:
        for session in sessions_with_rows(wh, table, before):
            res = archive_session(wh, table, session, root=root)
            out.append(res)
            if on_result is not None:
                on_result(res)
    return out


# -- reads -----------------------------------------------------------------------------------------

def _archived_path(wh: Warehouse, table: str, session: dt.date, root: Path | None) -> tuple[Path, dict] | None:
    entry = _entry(wh, table, session)
    if entry is None:
        return None
    path = (Path(root) if root is not None else archive_dir()) / entry["path"]
    if not path.is_file():
        raise ArchiveError(f"{table} {session} is archived to {path}, which does not exist (is {ENV_ARCHIVE_DIR} "
                           f"the archive root it was written to?)")
    return path, entry


def read_archived(wh: Warehouse, table: str, session: dt.date, columns: Sequence[str] | None = None,
                  symbols: Iterable[str] | None = None, *, root: Path | None = None) -> pl.DataFrame | None:
    """The session's archived rows (some columns, some symbols) as ``Warehouse.read_partition`` gave them
    before archiving; None when the session is not archived."""
    if table not in ARCHIVED_TABLES:
        return None
    found = _archived_path(wh, table, session, root)
    if found is None:
        return None
    path, entry = found
    lf = pl.scan_parquet(path)
    if symbols is not None:
        lf = lf.filter(pl.col("symbol").is_in(list(symbols)))
    frame = lf.select(list(columns) if columns else pl.all()).collect()
    if symbols is None and frame.height != entry["row_count"]:
        raise ArchiveError(f"{path} holds {frame.height} rows, the manifest {entry['row_count']}")
    return as_read(frame, wh, table)


def fallback(wh: Warehouse, frame: pl.DataFrame, table: str, session: dt.date,
             columns: Sequence[str] | None = None, symbols: Iterable[str] | None = None) -> pl.DataFrame:
    """``frame`` (a read of the session from the warehouse), or the archived rows when it is empty."""
    if frame.height:
        return frame
    archived = read_archived(wh, table, session, columns, symbols)
    return frame if archived is None else archived


def archived_count(wh: Warehouse, table: str, session: dt.date) -> int | None:
    entry = _entry(wh, table, session) if table in ARCHIVED_TABLES else None
    return None if entry is None else int(entry["row_count"])


def archived_sources(wh: Warehouse, table: str, session: dt.date) -> list[str]:
    frame = read_archived(wh, table, session, ["source"]) if table == "option_chain_data" else None
    return sorted(frame.get_column("source").unique().to_list()) if frame is not None and frame.height else []


def underlying_prices(wh: Warehouse, symbols: Sequence[str], dates: Sequence[dt.date]) -> list[tuple[str, dt.date, float]]:
    """(symbol, session, max underlying price) from the archived chains of those sessions."""
    m = manifest(wh, "option_chain_data")
    archived = set(m.get_column("trade_date").to_list()) & set(dates) if m.height else set()
    out = []
    for d in sorted(archived):
        chain = read_archived(wh, "option_chain_data", d, ["symbol", "underlying_price"], symbols)
        if chain is None or chain.height == 0:
            continue
        agg = chain.group_by("symbol").agg(pl.col("underlying_price").max())
        out += [(s, d, float(px)) for s, px in agg.iter_rows() if px is not None]
    return out


def latest_archived(wh: Warehouse, table: str, *, until: dt.date | None = None) -> dt.date | None:
    q = sa.select(sa.func.max(M.c.trade_date)).where(M.c.table_name == table)
    if until is not None:
        q = q.where(M.c.trade_date <= until)
    with wh.engine.connect() as conn:
        return conn.execute(q).scalar()
