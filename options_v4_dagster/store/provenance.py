"""Queries of ``session_provenance``: which market-data source each asset's rows of a session came from."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from .protocol import WarehouseLike
from .schema import session_provenance
from .warehouse import Replace


def provenance_replace(session: dt.date, asset: str, source: str) -> Replace:
    """The asset's provenance row for the session, for the asset's own write transaction."""
    frame = pl.DataFrame([{"trade_date": session, "asset": asset, "source": source,
                           "written_at": dt.datetime.now(dt.UTC)}],
                         schema={"trade_date": pl.Date, "asset": pl.Utf8, "source": pl.Utf8,
                                 "written_at": pl.Datetime("us", "UTC")})
    return Replace.partition("session_provenance", session, frame, where={"asset": asset})


def sources_of(wh: WarehouseLike, session: dt.date, assets: Sequence[str] | None = None) -> dict[str, str]:
    """``{asset: source}`` recorded for the session (only ``assets`` when given)."""
    t = session_provenance
    stmt = sa.select(t.c.asset, t.c.source).where(t.c.trade_date == session)
    if assets is not None:
        stmt = stmt.where(t.c.asset.in_(list(assets)))
    rows = wh.read(stmt)
    return dict(rows.iter_rows()) if rows.height else {}
