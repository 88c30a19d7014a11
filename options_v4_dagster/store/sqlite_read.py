"""Reading SQLite rows straight into polars by their declared column types.

SQLAlchemy's result processing (a Python call per value to parse dates and tag timestamps with UTC)
cost more than SQLite itself on a session's 65,000 contracts: about 60% of a partition read. For a
``SELECT`` of table columns whose types are all known here, :func:`column_kinds` says how each column
is stored; :func:`frame_from_rows` builds the frame from the driver's raw rows and converts the stored
text (dates, UTC timestamps) and integers (booleans) with polars, column at a time. The frame equals
what the generic path gives (a column of nulls gets its declared type rather than ``Null``).
Anything else (text SQL, expressions, other types, a value SQLite stored against its column's
type) goes the generic way."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from .schema import UTCDateTime

#: how SQLite hands back each kind of column, and the polars type it is read into first
_STORED = {"float": pl.Float64, "int": pl.Int64, "str": pl.Utf8, "date": pl.Utf8, "utc": pl.Utf8, "bool": pl.Int64}


def _kind(t: sa.types.TypeEngine) -> str | None:
    if isinstance(t, UTCDateTime):
        return "utc"
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Date) and not isinstance(t, sa.DateTime):
        return "date"
    if isinstance(t, sa.Integer):
        return "int"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.String | sa.Enum) and not isinstance(t, sa.JSON):
        return "str"
    return None


_READ = {"float": pl.Float64, "int": pl.Int64, "str": pl.Utf8, "date": pl.Date,
         "utc": pl.Datetime("us", "UTC"), "bool": pl.Boolean}


def declared_dtypes(table: sa.Table, names: Sequence[str]) -> dict[str, pl.DataType] | None:
    """The polars type :func:`frame_from_rows` gives each of ``names`` (columns of ``table``); None when
    a read of them would take the generic path (a column of a type not known here)."""
    kinds = [_kind(table.c[n].type) for n in names]
    return None if any(k is None for k in kinds) else {n: _READ[k] for n, k in zip(names, kinds, strict=True)}


def column_kinds(stmt, names: Sequence[str]) -> list[str] | None:
    """Per result column its storage kind, or None when the statement is not a plain SELECT of known types."""
    if not isinstance(stmt, sa.Select):
        return None
    cols = list(stmt.selected_columns)
    if len(cols) != len(names):
        return None
    kinds = [_kind(c.type) for c in cols]
    return None if any(k is None for k in kinds) else kinds  # type: ignore[return-value]


def frame_from_rows(rows: list[tuple], names: Sequence[str], kinds: Sequence[str]) -> pl.DataFrame | None:
    """The frame of raw SQLite ``rows``; None when a value does not fit its column's declared type
    (SQLite keeps e.g. 12.5 in an INTEGER column: polars would truncate it to the declared Int64, so the
    types are inferred from every row and checked instead)."""
    try:
        frame = pl.DataFrame(rows, schema=list(names), orient="row", infer_schema_length=None)
    except (TypeError, ValueError, pl.exceptions.PolarsError):
        return None
    conv = []
    for n, k in zip(names, kinds, strict=True):
        stored, null = _STORED[k], frame.schema[n] == pl.Null
        if not null and frame.schema[n] != stored:
            return None
        col = pl.col(n).cast(stored) if null else pl.col(n)
        if k == "date":
            col = col.str.to_date("%Y-%m-%d")
        elif k == "utc":
            col = col.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", time_unit="us", time_zone="UTC")
        elif k == "bool":
            col = col.cast(pl.Boolean)
        elif not null:
            continue
        conv.append(col.alias(n))
    if not conv:
        return frame
    try:
        return frame.with_columns(conv)
    except pl.exceptions.PolarsError:  # text that is not a date/timestamp in SQLite's format
        return None
