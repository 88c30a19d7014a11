"""The warehouse: idempotent writes of polars frames and reads back into polars."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl
import sqlalchemy as sa

from .. import config
from . import archive, migrate, sqlite_read
from .migrate import UpgradeResult
from .migrate import advisory_lock_key as _lock_key
from .schema import metadata

_INSERT_CHUNK = 20_000


@dataclass
class WriteResult:
    table: str
    deleted: int
    inserted: int
    seconds: float



@dataclass(frozen=True, eq=False)
class Replace:
    """What one table of a :meth:`Warehouse.replace_together` transaction replaces with ``frame``.

    Build with :meth:`partition` (a session's rows, optionally narrowed by ``where``),
    :meth:`window` (the frame's date range, per key: daily bars) or :meth:`whole_table`.
    """

    table: str
    frame: pl.DataFrame
    scope: Literal["partition", "window", "table"]
    session: dt.date | None = None
    date_column: str = "trade_date"
    where: dict = field(default_factory=dict)
    key_column: str | None = None

    @classmethod
    def partition(cls, table: str, session: dt.date, frame: pl.DataFrame, *, date_column: str = "trade_date",
                  where: dict | None = None) -> Replace:
        return cls(table, frame, "partition", session, date_column, dict(where or {}))

    @classmethod
    def window(cls, table: str, frame: pl.DataFrame, *, date_column: str = "date",
               key_column: str | None = "symbol") -> Replace:
        return cls(table, frame, "window", None, date_column, {}, key_column)

    @classmethod
    def whole_table(cls, table: str, frame: pl.DataFrame) -> Replace:
        return cls(table, frame, "table")

    def delete_statement(self, t: sa.Table):
        if self.scope == "table":
            return sa.delete(t)
        if self.scope == "window":
            if self.frame.height == 0:
                return sa.delete(t).where(sa.false())
            col = self.frame.get_column(self.date_column)
            cond = t.c[self.date_column].between(col.min(), col.max())
            if self.key_column:
                cond = cond & t.c[self.key_column].in_(self.frame.get_column(self.key_column).unique().to_list())
            return sa.delete(t).where(cond)
        cond = t.c[self.date_column] == self.session
        for col, val in self.where.items():
            cond = cond & (t.c[col] == val)
        return sa.delete(t).where(cond)

    def lock_keys(self) -> list[tuple[int, bool]]:
        """Advisory-lock keys (64-bit) and whether each is taken exclusively."""
        if self.scope == "partition":
            return [(_lock_key(self.table), False), (_lock_key(self.table, self.session.isoformat()), True)]
        return [(_lock_key(self.table), True)]


@dataclass(frozen=True, eq=False)
class Append:
    """Rows a :meth:`Warehouse.replace_together` transaction inserts without deleting any (append-only
    tables). With ``unless`` (column=value pairs) nothing is inserted when the table already holds a
    row matching them (insert if absent: an immutable snapshot is written once); on PostgreSQL that
    check runs under an exclusive advisory lock on (table, unless), so two writers of the same
    snapshot insert it once."""

    table: str
    frame: pl.DataFrame
    unless: dict = field(default_factory=dict)
    scope: Literal["append"] = "append"

    def delete_statement(self, t: sa.Table):
        return None

    def exists_statement(self, t: sa.Table):
        if not self.unless:
            return None
        return sa.select(sa.literal(1)).select_from(t).where(
            sa.and_(*(t.c[c] == v for c, v in self.unless.items()))).limit(1)

    def lock_keys(self) -> list[tuple[int, bool]]:
        if not self.unless:
            return []
        return [(_lock_key(self.table, *(f"{c}={v}" for c, v in sorted(self.unless.items()))), True)]


class Warehouse:
    """SQLite file by default, PostgreSQL when the URL says so. Create with :meth:`from_env`."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        kwargs: dict = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        else:
            kwargs["pool_pre_ping"] = True
        self.engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        if create:
            self.migrate()

    @classmethod
    def from_env(cls, url: str | None = None) -> Warehouse:
        return cls(url or config.database_url())

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL with any password hidden (safe to log)."""
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> UpgradeResult:
        """Upgrade the schema to the newest migration (creating every table of an empty database,
        stamping one created by a release before migrations): see :mod:`.migrate`. On PostgreSQL
        under an advisory lock, so that two processes starting at once on an empty database do not
        both try to create the same table."""
        return migrate.upgrade(self.engine)

    def table(self, name: str) -> sa.Table:
        return metadata.tables[name]

    # -- writes ---------------------------------------------------------------------------
    def replace_together(self, replaces: Iterable[Replace | Append]) -> list[WriteResult]:
        """Apply several replaces (partition, window or whole table; see :class:`Replace`) and
        appends (:class:`Append`, insert if absent) in ONE transaction: either every table shows its new rows or none does. Every frame is validated
        before the transaction opens, so a bad frame changes nothing. On PostgreSQL the transaction
        first takes advisory locks on what it replaces (see :meth:`_lock`), so two runs replacing
        the same session wait for each other instead of racing. Results come in ``replaces`` order."""
        plans = [(r, self.table(r.table), r.delete_statement(self.table(r.table)), self._prepare_frame(r))
                 for r in replaces]
        results = []
        with self.engine.begin() as conn:
            self._lock(conn, [r for r, *_ in plans])
            for r, *_ in plans:  # a session written again is no longer archived (store/archive.py)
                if r.scope == "partition" and r.table in archive.ARCHIVED_TABLES and r.date_column == "trade_date":
                    archive.forget(conn, r.table, r.session)
            for r, t, delete_stmt, sub in plans:
                start = time.perf_counter()
                if isinstance(r, Append) and r.unless and conn.execute(r.exists_statement(t)).first():
                    results.append(WriteResult(t.name, 0, 0, time.perf_counter() - start))
                    continue
                deleted = (conn.execute(delete_stmt).rowcount or 0) if delete_stmt is not None else 0
                if sub.height:
                    try:
                        self._bulk_insert(conn, t, sub)
                    except conn.dialect.loaded_dbapi.Error as exc:  # same exception types as Core would raise
                        raise sa.exc.DBAPIError.instance(f"bulk insert into {t.name}", None, exc,
                                                         conn.dialect.loaded_dbapi.Error) from exc
                results.append(WriteResult(t.name, deleted, sub.height, time.perf_counter() - start))
        return results

    def replace_partition(self, table: str, trade_date: dt.date, frame: pl.DataFrame,
                          date_column: str = "trade_date", where: dict | None = None) -> WriteResult:
        """Delete the session's rows (optionally narrowed by ``where`` column=value pairs) and
        insert ``frame``, in one transaction. Re-running with the same frame changes nothing."""
        return self.replace_together([Replace.partition(table, trade_date, frame, date_column=date_column,
                                                        where=where)])[0]

    def replace_window(self, table: str, frame: pl.DataFrame, *, date_column: str = "date",
                       key_column: str | None = "symbol") -> WriteResult:
        """Replace the rows of the frame's date window (per key) with the frame: idempotent
        upsert of a range of daily bars."""
        if frame.height == 0:
            return WriteResult(table, 0, 0, 0.0)
        return self.replace_together([Replace.window(table, frame, date_column=date_column,
                                                     key_column=key_column)])[0]

    def replace_table(self, table: str, frame: pl.DataFrame) -> WriteResult:
        """Replace every row of an unpartitioned ("current") table with ``frame``, in one transaction."""
        return self.replace_together([Replace.whole_table(table, frame)])[0]

    def _prepare_frame(self, r: Replace | Append) -> pl.DataFrame:
        t = self.table(r.table)
        if r.scope == "partition" and r.frame.height and \
                r.frame.get_column(r.date_column).cast(pl.Date).ne(r.session).any():
            raise ValueError(f"{r.table}: frame holds rows outside session {r.session}")
        return self._prepare(t, r.frame) if r.frame.height else r.frame.clear()

    def _lock(self, conn: sa.Connection, replaces: Sequence[Replace | Append]) -> None:
        """PostgreSQL: transaction-scoped advisory locks, so that concurrent replaces of the same
        scope run one after the other (under READ COMMITTED two delete+insert of one session would
        both insert and one would fail with a unique violation). A partition replace takes the
        (table, session) lock exclusively and the table's lock shared; a window or whole-table
        replace takes the table's lock exclusively. All locks of one transaction are taken in
        ascending key order, so two transactions never wait for each other in a cycle. SQLite
        needs none: its writers are serialized by the database lock (busy timeout 60 s)."""
        if self.dialect != "postgresql":
            return
        modes: dict[int, bool] = {}  # key -> exclusive
        for r in replaces:
            for key, exclusive in r.lock_keys():
                modes[key] = modes.get(key, False) or exclusive
        for key in sorted(modes):
            fn = "pg_advisory_xact_lock" if modes[key] else "pg_advisory_xact_lock_shared"
            conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": key})

    @staticmethod
    def _prepare(t: sa.Table, frame: pl.DataFrame) -> pl.DataFrame:
        cols = [c.name for c in t.columns if c.name in frame.columns]
        missing = [c.name for c in t.columns
                   if c.name not in frame.columns and not c.nullable and c.default is None]
        if missing:
            raise ValueError(f"{t.name}: frame lacks required columns {missing}")
        sub = frame.select(cols)
        for c in t.columns:
            if c.name in sub.columns and c.default is None and not c.nullable and sub.get_column(c.name).null_count():
                raise ValueError(f"{t.name}: column {c.name} has null values but is NOT NULL")
        for c in t.columns:  # defaults (e.g. recorded_at) are filled here: the bulk path bypasses Core
            if c.name not in sub.columns and c.default is not None and not c.nullable:
                sub = sub.with_columns(pl.lit(c.default.arg(None) if callable(c.default.arg) else c.default.arg)
                                       .alias(c.name))
        for name, dtype in sub.schema.items():
            if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
                raise ValueError(f"{t.name}: naive timestamp column {name}; the warehouse stores tz-aware timestamps only")
        # NaN -> NULL: the warehouse has no NaN semantics.
        return sub.with_columns(pl.col(pl.Float64, pl.Float32).fill_nan(None))

    def _bulk_insert(self, conn: sa.Connection, t: sa.Table, sub: pl.DataFrame) -> None:
        """Insert through the driver: COPY on PostgreSQL, executemany on SQLite (both inside the
        caller's transaction). Values are stored exactly as SQLAlchemy's own types store them."""
        cols = sub.columns
        dbapi = conn.connection.dbapi_connection
        if self.dialect == "postgresql":
            ident = conn.dialect.identifier_preparer
            col_sql = ", ".join(ident.quote(c) for c in cols)
            with dbapi.cursor() as cur, cur.copy(f"COPY {ident.quote(t.name)} ({col_sql}) FROM STDIN") as copy:
                for row in sub.iter_rows():
                    copy.write_row(row)
            return
        if self.dialect == "sqlite":
            conv = []
            for name, dtype in sub.schema.items():
                if dtype == pl.Date:
                    conv.append(pl.col(name).dt.strftime("%Y-%m-%d"))
                elif isinstance(dtype, pl.Datetime):
                    conv.append(pl.col(name).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%6f"))
            if conv:
                sub = sub.with_columns(conv)
            sql = f'INSERT INTO "{t.name}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) ' \
                  f"VALUES ({', '.join('?' * len(cols))})"
            cur = dbapi.cursor()
            try:
                cur.executemany(sql, sub.rows())
            finally:
                cur.close()
            return
        rows = sub.to_dicts()  # any other database: SQLAlchemy Core
        for i in range(0, len(rows), _INSERT_CHUNK):
            conn.execute(t.insert(), rows[i:i + _INSERT_CHUNK])

    # -- reads ----------------------------------------------------------------------------
    def read(self, query: sa.Select | str, params: dict | None = None,
             schema_overrides: dict | None = None) -> pl.DataFrame:
        """Run a query into a polars frame. Plain-text SQL on SQLite returns dates as text: columns
        named in ``schema_overrides`` (or named ``date``/``trade_date``/``expiry``) are parsed."""
        with self.engine.connect() as conn:
            stmt = sa.text(query) if isinstance(query, str) else query
            res = conn.execute(stmt, params or {})
            cols = list(res.keys())
            kinds = sqlite_read.column_kinds(stmt, cols) if self.dialect == "sqlite" else None
            # SQLite, a SELECT of known column types: the driver's rows, converted by polars (sqlite_read.py)
            data = res.cursor.fetchall() if kinds is not None and res.cursor is not None else res.fetchall()
            fast = sqlite_read.frame_from_rows(data, cols, kinds) if kinds is not None and data else None
            if kinds is not None and data and fast is None:  # a value off its declared type: the generic way
                data = conn.execute(stmt, params or {}).fetchall()
        overrides = dict(schema_overrides or {})
        if fast is not None:
            return _cast(fast, {c: d for c, d in overrides.items() if c in fast.columns and fast.schema[c] != d})
        for c in cols:
            if c in ("date", "trade_date", "expiry") and c not in overrides:
                overrides[c] = pl.Date
        if not data:
            return pl.DataFrame(schema={c: overrides.get(c, pl.Null) for c in cols})
        frame = pl.DataFrame(data, schema=cols, orient="row", infer_schema_length=None)
        return _cast(frame, overrides)

    def read_partition(self, table: str, trade_date: dt.date, columns: Sequence[str] | None = None,
                       date_column: str = "trade_date", symbols: Iterable[str] | None = None) -> pl.DataFrame:
        t = self.table(table)
        sel_cols = [t.c[c] for c in columns] if columns else list(t.c)
        stmt = sa.select(*sel_cols).where(t.c[date_column] == trade_date)
        if symbols is not None:
            symbols = list(symbols)
            stmt = stmt.where(t.c.symbol.in_(symbols))
        out = self.read(stmt)
        if out.height == 0 and date_column == "trade_date":  # an archived session: its Parquet file
            return archive.fallback(self, out, table, trade_date, columns, symbols)
        return out

    def count(self, table: str, trade_date: dt.date | None = None, date_column: str = "trade_date") -> int:
        t = self.table(table)
        stmt = sa.select(sa.func.count()).select_from(t)
        if trade_date is not None:
            stmt = stmt.where(t.c[date_column] == trade_date)
        with self.engine.connect() as conn:
            n = int(conn.execute(stmt).scalar_one())
        if n == 0 and trade_date is not None and date_column == "trade_date":
            n = archive.archived_count(self, table, trade_date) or 0
        return n

    def dispose(self) -> None:
        self.engine.dispose()


def _cast(frame: pl.DataFrame, overrides: dict) -> pl.DataFrame:
    """Apply ``schema_overrides`` (text dates and timestamps parsed); timestamps to UTC."""
    casts = []
    for c, dtype in overrides.items():
        if c not in frame.columns or frame.schema[c] == dtype:
            continue
        if frame.schema[c] == pl.Utf8 and dtype == pl.Date:
            casts.append(pl.col(c).str.to_date().alias(c))
        elif frame.schema[c] == pl.Utf8 and isinstance(dtype, pl.Datetime):
            casts.append(pl.col(c).str.to_datetime(time_zone="UTC").alias(c))
        else:
            casts.append(pl.col(c).cast(dtype).alias(c))
    # tz-aware timestamps come back as UTC whatever zone the driver attached (Etc/UTC, +00:00)
    for c, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime) and dtype.time_zone not in (None, "UTC") and c not in overrides:
            casts.append(pl.col(c).dt.convert_time_zone("UTC").alias(c))
    return frame.with_columns(casts) if casts else frame


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
