"""Warehouse adapter: one SQLAlchemy Core schema, SQLite by default, PostgreSQL via DATABASE_URL."""

from .schema import metadata
from .warehouse import Warehouse

__all__ = ["Warehouse", "metadata"]
