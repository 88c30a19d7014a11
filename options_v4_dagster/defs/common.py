"""Helpers shared by the asset modules: failure recording and metadata formatting."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence

import dagster as dg
import polars as pl

from options_v4_dagster.defs.formatting import Formatter, number_cell
from options_v4_dagster.errors import MixedSources
from options_v4_dagster.store import Replace, WarehouseLike, WriteResult
from options_v4_dagster.store.provenance import provenance_replace, sources_of
from options_v4_dagster.types import MARKET_SOURCES, RISK_TOLERANCES, Failure

# Run config takes the closed vocabularies of types.py. Dagster's config schema accepts a bare
# ``Literal`` (as an enum: ``risk_tolerance: RiskTolerance``) but not ``RiskTolerance | None``
# (dagster 1.13: "Unable to resolve config type"), so an optional choice is a ``StrEnum`` of the same
# values: the launchpad offers them, anything else fails validation, and a member is its string.
MarketSourceChoice = enum.StrEnum("MarketSourceChoice", [(v, v) for v in MARKET_SOURCES])
RiskToleranceChoice = enum.StrEnum("RiskToleranceChoice", [(v, v) for v in RISK_TOLERANCES])


def record_failures(wh: WarehouseLike, session: dt.date, asset: str, failures: Sequence[Failure],
                    *data: Replace, source: str | None = None) -> list[WriteResult]:
    """Replace this asset's failure rows for the session together with the asset's own table
    replaces ``data`` (and, with ``source``, its session_provenance row), in one transaction
    (idempotent): a run killed mid-write leaves the session's previous rows and failures, never a
    mix. Results: ``data``'s in order, then the failures'."""
    extra = [provenance_replace(session, asset, source)] if source is not None else []
    return wh.replace_together([*data, failures_replace(session, asset, failures), *extra])[:len(data) + 1]


def upstream_source(wh: WarehouseLike, session: dt.date, asset: str, upstream: Sequence[str]) -> str:
    """The one market-data source of the ``upstream`` assets' rows for the session.

    Raises :class:`MixedSources` when they disagree (e.g. chains replayed from nse_files while the
    bars are still the simulated ones): a session's downstream rows are never a mix of two sources.
    Upstream assets that have not recorded a source yet are ignored; with none, "unknown"."""
    by_asset = sources_of(wh, session, upstream)
    sources = sorted(set(by_asset.values()))
    if len(sources) > 1:
        detail = ", ".join(f"{a}={s}" for a, s in sorted(by_asset.items()))
        raise MixedSources(f"{asset} {session}: its inputs come from different market-data sources ({detail}); "
                           "re-run the session's upstream assets with one source (options-v4 run --date "
                           f"{session} --source ...)")
    return sources[0] if sources else "unknown"


def failures_replace(session: dt.date, asset: str, failures: Sequence[Failure]) -> Replace:
    """The replace of this asset's pipeline_failures rows for the session (for a
    :meth:`Warehouse.replace_together` with the asset's data)."""
    now = dt.datetime.now(dt.UTC)
    frame = pl.DataFrame(
        [{"trade_date": session, "asset": asset, "symbol": f.symbol, "stage": f.stage, "kind": f.kind,
          "reason": f.reason[:2000], "recorded_at": now} for f in _dedupe(failures)],
        schema={"trade_date": pl.Date, "asset": pl.Utf8, "symbol": pl.Utf8, "stage": pl.Utf8, "kind": pl.Utf8,
                "reason": pl.Utf8, "recorded_at": pl.Datetime("us", "UTC")},
    )
    return Replace.partition("pipeline_failures", session, frame, where={"asset": asset})


def _dedupe(failures: Sequence[Failure]) -> list[Failure]:
    seen, out = set(), []
    for f in failures:
        if (f.symbol, f.stage) not in seen:
            seen.add((f.symbol, f.stage))
            out.append(f)
    return out


def failures_metadata(failures: Sequence[Failure], limit: int = 25) -> dict:
    errors = [f for f in failures if f.kind == "error"]
    missing = [f for f in failures if f.kind != "error"]
    md = "_none_"
    if failures:
        lines = ["| symbol | stage | kind | reason |", "|---|---|---|---|"]
        for f in list(errors)[:limit] + list(missing)[: max(0, limit - len(errors))]:
            lines.append(f"| {f.symbol} | {f.stage} | {f.kind} | {f.reason.replace('|', '/')[:160]} |")
        if len(failures) > limit:
            lines.append(f"| … | | | {len(failures) - limit} more in table pipeline_failures |")
        md = "\n".join(lines)
    return {
        "failed_symbols": dg.MetadataValue.int(len(errors)),
        "missing_symbols": dg.MetadataValue.int(len(missing)),
        "failures": dg.MetadataValue.md(md),
    }


def frame_markdown(frame: pl.DataFrame, limit: int = 20, floatfmt: str = "{:,.2f}",
                   formats: Mapping[str, Formatter] | None = None) -> str:
    """The first ``limit`` rows as a markdown table. Numbers for people: a float column whose shown values
    are all whole numbers (contracts, OI, lots) without decimals, other floats with ``floatfmt``, integers
    grouped; ``formats`` maps a column to its own formatter (e.g. :func:`formatting.inr_text`)."""
    if frame.height == 0:
        return "_empty_"
    cols = frame.columns
    head = frame.head(limit)
    formats = formats or {}
    whole = {c: head.schema[c].is_float() and all(v is None or v != v or float(v).is_integer()
                                                   for v in head.get_column(c).to_list())
             for c in cols}
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        cells = [("" if v is None else formats[c](v)) if c in formats else number_cell(v, whole[c], floatfmt)
                 for c, v in zip(cols, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if frame.height > limit:
        lines.append(f"| … {frame.height - limit} more rows |" + " |" * (len(cols) - 1))
    return "\n".join(lines)
