"""Lineage per warehouse table: the table name, the column schema read from the SQLAlchemy schema
(:mod:`options_v4_dagster.store.schema`), owners, tags, kinds and a code version, for every asset and
asset spec of the code location.

One asset (or asset spec of a multi-asset) per table: :func:`asset_attrs` gives the decorator arguments
of an ``@dg.asset`` writing one table, :func:`table_spec` the ``dg.AssetSpec`` of a table in a
``@dg.multi_asset`` or of a table written outside the asset graph (external: trading and monitoring
tables written by ops and the CLI). Nothing here builds an asset at import (the defs-folder loader
collects module-level definitions).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.store import metadata as warehouse_metadata

PACKAGE = Path(__file__).resolve().parents[1]
TABLE_NAME, COLUMN_SCHEMA = "dagster/table_name", "dagster/column_schema"


@dataclass(frozen=True)
class Domain:
    """A part of the system: its asset group, owner and the code its tables' rows come from (paths
    relative to the package, hashed into the code version)."""

    group: str
    owner: str
    code: tuple[str, ...]


_STORE = ("store/schema.py", "store/warehouse.py", "store/provenance.py")
MARKET_DATA = Domain("market_data", "team:market-data",
                     ("defs/market_data", "market", "universe.py", "calendar.py", "quant/regime.py", *_STORE))
VOLATILITY = Domain("volatility", "team:quant", ("defs/volatility", "quant", "reports/iv_chart.py", *_STORE))
STRATEGIES = Domain("strategies", "team:strategies",
                    ("defs/strategies", "strategies", "quant", "reports/payoff_chart.py", "store/strategies_queries.py",
                     *_STORE))
ALLOCATION = Domain("allocation", "team:portfolio", ("defs/allocation", "allocation", "store/allocations.py", *_STORE))
PIPELINE = Domain("pipeline_records", "team:platform", ("defs/common.py", "store/failures.py", *_STORE))
TRADING = Domain("trading", "team:trading",
                 ("defs/execution", "trading", "store/trading.py", "store/trading_schema.py", *_STORE))
MONITORING = Domain("monitoring", "team:trading",
                    ("defs/monitoring", "trading", "store/monitoring.py", "store/monitoring_schema.py",
                     "store/audit.py", *_STORE))

TRACK_RECORD = Domain("track_record", "team:quant",
                      ("defs/track_record", "track_record", "trading", "allocation", "strategies",
                       "store/track_record_queries.py", *_STORE))


@functools.cache
def code_version(paths: tuple[str, ...]) -> str:
    """The first 12 hex digits of a sha256 over the ``.py`` files under ``paths`` (relative to the
    package, sorted, names and contents): it changes when, and only when, that code changes."""
    h = hashlib.sha256()
    for rel in sorted(paths):
        p = PACKAGE / rel
        files = sorted(p.rglob("*.py")) if p.is_dir() else [p]
        for f in files:
            if "__pycache__" in f.parts:
                continue
            h.update(f.relative_to(PACKAGE).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def warehouse_kind() -> str:
    """The kind tag of the configured warehouse: supabase, postgres or sqlite ("sql" when the
    configuration is invalid: the definitions still load, the run fails with the config error)."""
    try:
        if config.warehouse_kind() == "supabase":
            return "supabase"
    except ConfigError:
        return "sql"
    url = os.environ.get("DATABASE_URL", "").strip().lower()
    return "postgres" if url.startswith("postgres") else "sqlite"


def _type_name(col: sa.Column) -> str:
    try:
        return col.type.compile(dialect=postgresql.dialect()).lower()
    except sa.exc.CompileError:  # a type PostgreSQL cannot render: its generic name
        return type(col.type).__name__.lower()


def table_schema(table: sa.Table) -> dg.TableSchema:
    """``table``'s columns (name, PostgreSQL type, comment, nullability, uniqueness, primary-key,
    foreign-key and default) and table constraints (primary key, unique, check, indexes)."""
    single_unique = {next(iter(c.columns)).name for c in table.constraints
                     if isinstance(c, sa.UniqueConstraint) and len(c.columns) == 1}
    pk = [c.name for c in table.primary_key.columns]
    columns = []
    for col in table.columns:
        other = []
        if col.primary_key:
            other.append("primary key" if len(pk) == 1 else f"part of the primary key ({', '.join(pk)})")
        other += [f"foreign key -> {fk.target_fullname}" for fk in col.foreign_keys]
        if col.default is not None and getattr(col.default, "is_scalar", False):
            other.append(f"default {col.default.arg!r}")
        elif col.default is not None:
            other.append("default: now (UTC)" if "now" in getattr(col.default.arg, "__name__", "") else "default")
        columns.append(dg.TableColumn(
            name=col.name, type=_type_name(col), description=col.comment,
            constraints=dg.TableColumnConstraints(nullable=bool(col.nullable) and not col.primary_key,
                                                  unique=bool(col.unique) or col.name in single_unique
                                                  or (col.primary_key and len(pk) == 1),
                                                  other=other or None)))
    table_other = [f"primary key ({', '.join(pk)})"] if pk else []
    for c in sorted(table.constraints, key=lambda c: str(c.name or "")):
        if isinstance(c, sa.UniqueConstraint):
            table_other.append(f"unique ({', '.join(col.name for col in c.columns)})")
        elif isinstance(c, sa.CheckConstraint):
            table_other.append(f"check ({c.sqltext})")
    for ix in sorted(table.indexes, key=lambda i: str(i.name)):
        table_other.append(f"{'unique ' if ix.unique else ''}index {ix.name} ({', '.join(c.name for c in ix.columns)})")
    return dg.TableSchema(columns=columns, constraints=dg.TableConstraints(other=table_other))


def table_metadata(table_name: str) -> dict:
    """``dagster/table_name`` and ``dagster/column_schema`` of a warehouse table (KeyError: not one)."""
    table = warehouse_metadata.tables[table_name]
    return {TABLE_NAME: dg.MetadataValue.text(table_name),
            COLUMN_SCHEMA: dg.MetadataValue.table_schema(table_schema(table))}


def table_comment(table_name: str) -> str:
    return warehouse_metadata.tables[table_name].comment or ""


def _tags(domain: Domain, grain: str, write: str) -> dict[str, str]:
    return {"domain": domain.group, "grain": grain, "write": write}


def asset_attrs(table_name: str, domain: Domain, *, grain: str, write: str = "partition_replace") -> dict:
    """The ``@dg.asset`` arguments of an asset writing the one table ``table_name``: metadata (table name,
    column schema), kinds (python, the warehouse, table), owners, tags (domain, grain: what a row is,
    write: how the asset writes it) and the code version of ``domain``."""
    return {"metadata": table_metadata(table_name), "kinds": {"python", warehouse_kind(), "table"},
            "owners": [domain.owner], "tags": _tags(domain, grain, write), "code_version": code_version(domain.code)}


def table_spec(key: str, table_name: str, domain: Domain, *, grain: str, write: str = "partition_replace",
               deps: Iterable = (), description: str | None = None,
               partitions_def: dg.PartitionsDefinition | None = None, external: bool = False,
               extra_tags: Mapping[str, str] | None = None) -> dg.AssetSpec:
    """The asset spec of the table ``table_name``: one of a ``@dg.multi_asset``'s specs, or with
    ``external`` a table the asset graph does not write (its kinds leave out python; written by ops,
    sensors or the CLI, named in ``description``)."""
    kinds = {warehouse_kind(), "table"} if external else {"python", warehouse_kind(), "table"}
    text = description or table_comment(table_name)
    return dg.AssetSpec(key, deps=list(deps), description=text, metadata=table_metadata(table_name),
                        group_name=domain.group, code_version=code_version(domain.code), owners=[domain.owner],
                        tags={**_tags(domain, grain, write), **(extra_tags or {})}, kinds=kinds,
                        partitions_def=partitions_def)
