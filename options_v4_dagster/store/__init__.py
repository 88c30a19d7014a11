"""Warehouse adapter: one SQLAlchemy Core schema, SQLite by default, PostgreSQL (or Supabase's
PostgreSQL) via DATABASE_URL / OPTIONS_V4_WAREHOUSE=supabase. :class:`WarehouseLike` is the interface
the assets and query modules use."""

from .protocol import WarehouseLike
from .schema import metadata
from .warehouse import Append, Replace, Warehouse, WriteResult

__all__ = ["Append", "Replace", "Warehouse", "WarehouseLike", "WriteResult", "metadata"]
