"""Warehouse adapter for users who only have ``SUPABASE_URL`` and an API key (supabase-py).

It speaks to the project's PostgREST endpoint (``<url>/rest/v1``) with the same table names and
columns as :class:`~options_v4_dagster.store.warehouse.Warehouse` (apply ``sql/schema.sql`` to
the project first) and offers the subset of its interface that partitioned assets need:
:meth:`SupabaseWarehouse.replace_partition`, :meth:`~SupabaseWarehouse.read_partition` and
:meth:`~SupabaseWarehouse.count`.

Not transactional. PostgREST runs each HTTP request in its own transaction and has no
multi-statement transactions, so ``replace_partition`` is a DELETE request followed by INSERT
requests of at most ``chunk_size`` rows: if an insert fails after the delete, the session is left
partly written until the call is repeated (the call is idempotent, so repeating it repairs the
partition). Where atomic writes matter, use the project's direct Postgres connection string as
``DATABASE_URL`` instead (the :class:`Warehouse` deletes and inserts in one transaction).

Keys and row-level security: ``sql/postgres_extras.sql`` enables RLS with a read policy for the
``authenticated`` role only, so writes (and, on those tables, reads) need the service-role key
(``SUPABASE_SERVICE_ROLE_KEY``), which bypasses RLS. An anon key works only on tables without
RLS or with policies that allow it. Keys come from the environment and are never logged.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import httpx
import polars as pl
import sqlalchemy as sa
from postgrest.exceptions import APIError

from ..errors import ConfigError, ProviderError
from .schema import UTCDateTime, metadata
from .warehouse import Warehouse, WriteResult

INSERT_CHUNK = 5_000
PAGE_SIZE = 1_000  # Supabase's default max-rows per response; smaller server caps are handled too
PROVIDER = "supabase"


class SupabaseWarehouse:
    """Partition writes and reads through supabase-py. ``client``: an existing supabase ``Client``
    (tests pass one built on a stand-in transport); otherwise one is created from ``url``/``key``."""

    def __init__(self, url: str, key: str, client: Any = None, *, chunk_size: int = INSERT_CHUNK,
                 page_size: int = PAGE_SIZE) -> None:
        if client is None:
            if not url or not key:
                raise ConfigError("Supabase needs SUPABASE_URL and a key (SUPABASE_SERVICE_ROLE_KEY or "
                                  "SUPABASE_ANON_KEY)")
            from supabase import create_client

            client = create_client(url, key)
        self.url = url
        self.client = client
        self.chunk_size = int(chunk_size)
        self.page_size = int(page_size)

    @classmethod
    def from_env(cls) -> SupabaseWarehouse:
        """``SUPABASE_URL`` with ``SUPABASE_SERVICE_ROLE_KEY`` (preferred: writes bypass RLS) or
        ``SUPABASE_ANON_KEY``."""
        url = os.environ.get("SUPABASE_URL", "").strip()
        key = (os.environ.get("SUPABASE_SERVICE_ROLE_KEY") or os.environ.get("SUPABASE_ANON_KEY") or "").strip()
        if not url or not key:
            raise ConfigError("Supabase adapter: set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (or SUPABASE_ANON_KEY)")
        return cls(url, key)

    def describe(self) -> str:
        """Where the data goes (safe to log: no key)."""
        return f"supabase {self.url}"

    @staticmethod
    def table(name: str) -> sa.Table:
        if name not in metadata.tables:
            raise ValueError(f"unknown warehouse table {name!r}")
        return metadata.tables[name]

    # -- writes ---------------------------------------------------------------------------
    def replace_partition(self, table: str, trade_date: dt.date, frame: pl.DataFrame,
                          date_column: str = "trade_date", where: dict | None = None) -> WriteResult:
        """Delete the session's rows (narrowed by ``where`` column=value pairs) and insert
        ``frame`` in chunks. Idempotent, but not atomic: see the module docstring."""
        t = self.table(table)
        if frame.height and frame.get_column(date_column).cast(pl.Date).ne(trade_date).any():
            raise ValueError(f"{table}: frame holds rows outside session {trade_date}")
        start = time.perf_counter()
        rows = to_json_rows(t, Warehouse._prepare(t, frame))  # same checks and defaults as the Warehouse
        filters = {date_column: trade_date, **(where or {})}
        query = self.client.table(table).delete(count="exact", returning="minimal")
        for col, val in filters.items():
            query = query.eq(col, _filter_value(val))
        deleted = self._execute(query, table, f"delete of {_describe(filters)}").count or 0
        for i in range(0, len(rows), self.chunk_size):
            chunk = rows[i:i + self.chunk_size]
            self._execute(self.client.table(table).insert(chunk, returning="minimal"), table,
                          f"insert of rows {i}-{i + len(chunk) - 1} of {len(rows)} for {_describe(filters)} "
                          f"(the delete went through: the partition is incomplete until this call is repeated)")
        return WriteResult(table, int(deleted), len(rows), time.perf_counter() - start)

    # -- reads ----------------------------------------------------------------------------
    def read_partition(self, table: str, trade_date: dt.date, columns: Sequence[str] | None = None,
                       date_column: str = "trade_date") -> pl.DataFrame:
        """The session's rows as polars, typed like :meth:`Warehouse.read_partition` (dates as
        Date, timestamps as UTC Datetime). Pages through the server's row cap."""
        t = self.table(table)
        cols = list(columns) if columns else [c.name for c in t.columns]
        unknown = [c for c in cols if c not in t.c]
        if unknown:
            raise ValueError(f"{table}: unknown columns {unknown}")
        order = [c.name for c in t.primary_key.columns] or cols
        rows: list[dict] = []
        total: int | None = None
        while total is None or len(rows) < total:
            query = self.client.table(table).select(",".join(cols), count="exact" if total is None else None)
            query = query.eq(date_column, _filter_value(trade_date))
            for col in order:
                query = query.order(col)
            resp = self._execute(query.range(len(rows), len(rows) + self.page_size - 1), table,
                                 f"select of {date_column}={trade_date}")
            if total is None:
                total = resp.count if resp.count is not None else math.inf
            if not resp.data:
                break
            rows.extend(resp.data)
        return from_json_rows(t, cols, rows)

    def count(self, table: str, trade_date: dt.date | None = None, date_column: str = "trade_date") -> int:
        self.table(table)
        query = self.client.table(table).select("*", count="exact", head=True)
        if trade_date is not None:
            query = query.eq(date_column, _filter_value(trade_date))
        resp = self._execute(query, table, "count")
        if resp.count is None:
            raise ProviderError(f"{table}: count: the server sent no Content-Range count", provider=PROVIDER)
        return int(resp.count)

    # -- plumbing -------------------------------------------------------------------------
    @staticmethod
    def _execute(query, table: str, what: str):
        """Run a PostgREST request; its failures become :class:`ProviderError` naming the table."""
        try:
            return query.execute()
        except APIError as exc:
            detail = "; ".join(str(x) for x in (exc.message, exc.details, exc.hint) if x)
            code = str(exc.code) if exc.code else None
            status = int(code) if code and code.isdigit() and len(code) == 3 else None
            raise ProviderError(f"table {table}: {what} failed: {detail or 'no detail'}", provider=PROVIDER,
                                status=status, code=code, retryable=status in (429, 502, 503, 504)) from exc
        except httpx.HTTPError as exc:  # connection refused, timeout, ...
            raise ProviderError(f"table {table}: {what} failed: {exc.__class__.__name__}: {exc}",
                                provider=PROVIDER, retryable=True) from exc


def _describe(filters: dict) -> str:
    return ", ".join(f"{k}={_filter_value(v)}" for k, v in filters.items())


def _filter_value(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive timestamp {value!r} in a filter")
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def to_json_rows(t: sa.Table, frame: pl.DataFrame) -> list[dict]:
    """JSON-ready rows: dates ISO (``2025-07-17``), timestamps ISO in UTC with the offset
    (``2025-07-17T10:00:00.000000+00:00``), NaN as null. Infinite floats are refused (JSON has none)."""
    conv = []
    for name, dtype in frame.schema.items():
        if dtype == pl.Date:
            conv.append(pl.col(name).dt.strftime("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                raise ValueError(f"{t.name}: naive timestamp column {name}")
            conv.append(pl.col(name).dt.convert_time_zone("UTC").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
        elif dtype in (pl.Float32, pl.Float64):
            if frame.get_column(name).is_infinite().any():
                raise ValueError(f"{t.name}: column {name} has infinite values, which JSON cannot carry")
            conv.append(pl.col(name).fill_nan(None))
        elif dtype == pl.Time:
            conv.append(pl.col(name).cast(pl.Utf8))
    return (frame.with_columns(conv) if conv else frame).to_dicts()


def _polars_type(col: sa.Column) -> pl.DataType:
    typ = col.type
    if isinstance(typ, UTCDateTime | sa.DateTime):
        return pl.Datetime("us", "UTC")
    if isinstance(typ, sa.Date):
        return pl.Date
    if isinstance(typ, sa.Boolean):
        return pl.Boolean
    if isinstance(typ, sa.Integer):
        return pl.Int64
    if isinstance(typ, sa.Float | sa.Numeric):
        return pl.Float64
    return pl.Utf8


def from_json_rows(t: sa.Table, cols: list[str], rows: list[dict]) -> pl.DataFrame:
    """PostgREST JSON rows into polars with the table's types."""
    target = {c: _polars_type(t.c[c]) for c in cols}
    wire = {c: (pl.Utf8 if dtype in (pl.Date,) or isinstance(dtype, pl.Datetime) else dtype)
            for c, dtype in target.items()}
    frame = pl.DataFrame(rows, schema=wire, strict=False)  # strict=False: a float8 of 25000 arrives as 25000
    casts = []
    for c, dtype in target.items():
        if dtype == pl.Date:
            casts.append(pl.col(c).str.slice(0, 10).str.to_date("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            # PostgREST sends timestamptz as 2025-07-17T10:00:00+00:00 (fraction optional)
            casts.append(pl.col(c).str.replace(r"Z$", "+00:00")
                         .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", time_zone="UTC"))
    return frame.with_columns(casts) if casts else frame
