"""The warehouse: idempotent writes of polars frames and reads back into polars."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from .. import config
from .schema import metadata

_INSERT_CHUNK = 20_000


@dataclass
class WriteResult:
    table: str
    deleted: int
    inserted: int
    seconds: float


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
            self.create_all()

    @classmethod
    def from_env(cls, url: str | None = None) -> Warehouse:
        return cls(url or config.database_url())

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def describe(self) -> str:
        """The URL with any password hidden (safe to log)."""
        return self.engine.url.render_as_string(hide_password=True)

    def create_all(self) -> None:
        metadata.create_all(self.engine)

    def table(self, name: str) -> sa.Table:
        return metadata.tables[name]

    # -- writes ---------------------------------------------------------------------------
    def replace_partition(self, table: str, trade_date: dt.date, frame: pl.DataFrame,
                          date_column: str = "trade_date", where: dict | None = None) -> WriteResult:
        """Delete the session's rows (optionally narrowed by ``where`` column=value pairs) and
        insert ``frame``, in one transaction. Re-running with the same frame changes nothing."""
        t = self.table(table)
        if frame.height and frame.get_column(date_column).cast(pl.Date).ne(trade_date).any():
            raise ValueError(f"{table}: frame holds rows outside session {trade_date}")
        cond = t.c[date_column] == trade_date
        for col, val in (where or {}).items():
            cond = cond & (t.c[col] == val)
        return self._delete_insert(t, sa.delete(t).where(cond), frame)

    def replace_window(self, table: str, frame: pl.DataFrame, *, date_column: str = "date",
                       key_column: str | None = "symbol") -> WriteResult:
        """Replace the rows of the frame's date window (per key) with the frame: idempotent
        upsert of a range of daily bars."""
        t = self.table(table)
        if frame.height == 0:
            return WriteResult(table, 0, 0, 0.0)
        lo, hi = frame.get_column(date_column).min(), frame.get_column(date_column).max()
        cond = t.c[date_column].between(lo, hi)
        if key_column:
            keys = frame.get_column(key_column).unique().to_list()
            cond = cond & t.c[key_column].in_(keys)
        return self._delete_insert(t, sa.delete(t).where(cond), frame)

    def replace_table(self, table: str, frame: pl.DataFrame) -> WriteResult:
        """Replace every row of an unpartitioned ("current") table with ``frame``, in one transaction."""
        t = self.table(table)
        return self._delete_insert(t, sa.delete(t), frame)

    def _delete_insert(self, t: sa.Table, delete_stmt, frame: pl.DataFrame) -> WriteResult:
        start = time.perf_counter()
        sub = self._prepare(t, frame) if frame.height else frame.clear()
        with self.engine.begin() as conn:
            deleted = conn.execute(delete_stmt).rowcount or 0
            if sub.height:
                try:
                    self._bulk_insert(conn, t, sub)
                except conn.dialect.loaded_dbapi.Error as exc:  # same exception types as Core would raise
                    raise sa.exc.DBAPIError.instance(f"bulk insert into {t.name}", None, exc,
                                                     conn.dialect.loaded_dbapi.Error) from exc
        return WriteResult(t.name, deleted, sub.height, time.perf_counter() - start)

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
            data = res.fetchall()
        overrides = dict(schema_overrides or {})
        for c in cols:
            if c in ("date", "trade_date", "expiry") and c not in overrides:
                overrides[c] = pl.Date
        if not data:
            return pl.DataFrame(schema={c: overrides.get(c, pl.Null) for c in cols})
        frame = pl.DataFrame(data, schema=cols, orient="row", infer_schema_length=None)
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

    def read_partition(self, table: str, trade_date: dt.date, columns: Sequence[str] | None = None,
                       date_column: str = "trade_date", symbols: Iterable[str] | None = None) -> pl.DataFrame:
        t = self.table(table)
        sel_cols = [t.c[c] for c in columns] if columns else list(t.c)
        stmt = sa.select(*sel_cols).where(t.c[date_column] == trade_date)
        if symbols is not None:
            stmt = stmt.where(t.c.symbol.in_(list(symbols)))
        return self.read(stmt)

    def count(self, table: str, trade_date: dt.date | None = None, date_column: str = "trade_date") -> int:
        t = self.table(table)
        stmt = sa.select(sa.func.count()).select_from(t)
        if trade_date is not None:
            stmt = stmt.where(t.c[date_column] == trade_date)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
