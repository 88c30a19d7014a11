"""Warehouse adapter: one SQLAlchemy Core schema, SQLite by default, PostgreSQL via DATABASE_URL."""

from .schema import metadata
from .warehouse import Append, Replace, Warehouse, WriteResult

__all__ = ["Append", "Replace", "Warehouse", "WriteResult", "metadata"]
