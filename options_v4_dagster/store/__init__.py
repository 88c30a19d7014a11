"""Warehouse adapter: one SQLAlchemy Core schema, SQLite by default, PostgreSQL via DATABASE_URL."""

from .schema import metadata
from .warehouse import Replace, Warehouse, WriteResult

__all__ = ["Replace", "Warehouse", "WriteResult", "metadata"]
