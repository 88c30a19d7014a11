"""The warehouse interface the assets and the store's query modules use.

:class:`~options_v4_dagster.store.warehouse.Warehouse` (SQLAlchemy: SQLite, PostgreSQL, Supabase's
PostgreSQL) is its one implementation. A PostgREST (supabase-py) implementation is not possible:
``replace_together`` is one transaction over several tables under ``pg_advisory_xact_lock``, and
PostgREST runs every HTTP request in a transaction of its own; and ``read`` takes SQLAlchemy selects
(joins, window functions) that PostgREST's query string cannot express. See README.md, Storage.

``runtime_checkable``: ``isinstance(obj, WarehouseLike)`` checks that the members exist (not their
signatures; a test compares those with :class:`Warehouse`'s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import polars as pl
    import sqlalchemy as sa

    from .warehouse import Append, Replace, WriteResult


@runtime_checkable
class WarehouseLike(Protocol):
    """Exactly what ``defs/``, ``store/*`` query functions and ``allocation/session.py`` call on a warehouse."""

    def replace_together(self, replaces: Iterable[Replace | Append]) -> list[WriteResult]:
        """Several replaces/appends in ONE transaction (all tables change or none)."""
        ...

    def replace_partition(self, table: str, trade_date: dt.date, frame: pl.DataFrame,
                          date_column: str = "trade_date", where: dict | None = None) -> WriteResult:
        """Replace one session's rows of one table with ``frame``, in one transaction."""
        ...

    def read(self, query: sa.Select | str, params: dict | None = None,
             schema_overrides: dict | None = None) -> pl.DataFrame:
        """Run a query into a polars frame."""
        ...

    def read_partition(self, table: str, trade_date: dt.date, columns: Sequence[str] | None = None,
                       date_column: str = "trade_date", symbols: Iterable[str] | None = None) -> pl.DataFrame:
        """One session's rows of one table (optionally some columns, some symbols)."""
        ...

    def count(self, table: str, trade_date: dt.date | None = None, date_column: str = "trade_date") -> int:
        """Rows of a table (of one session when ``trade_date`` is given)."""
        ...

    def table(self, name: str) -> sa.Table:
        """The SQLAlchemy table of that name (for building selects in ``store/``)."""
        ...

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine: the trading store (``store/trading.py``) runs its exactly-once
        compare-and-set updates in transactions of its own on it."""
        ...

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect's name (``sqlite``, ``postgresql``): what a reader that must give the
        same frames as ``read`` (the Parquet archive's) needs to know about how ``read`` types them."""
        ...
