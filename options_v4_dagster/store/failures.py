"""Reads of ``pipeline_failures``: the per-symbol failures and gaps the assets recorded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from .protocol import WarehouseLike
from .schema import pipeline_failures


def missing_session_reason(wh: WarehouseLike, session: dt.date) -> str | None:
    """The reason the universe recorded the session as missing (a "missing" failure row of asset
    ``universe``: the source holds no data that day), or None when it recorded no such gap."""
    t = pipeline_failures
    rows = wh.read(sa.select(t.c.reason).where(t.c.trade_date == session, t.c.asset == "universe",
                                               t.c.kind == "missing"))
    return rows.get_column("reason")[0] if rows.height else None


def failure_counts(wh: WarehouseLike, session: dt.date, assets: Sequence[str]) -> pl.DataFrame:
    """Failure rows of the session per (asset, kind) for the given assets: columns asset, kind, n,
    ordered by asset."""
    t = pipeline_failures
    return wh.read(sa.select(t.c.asset, t.c.kind, sa.func.count().label("n"))
                   .where(t.c.trade_date == session, t.c.asset.in_(list(assets)))
                   .group_by(t.c.asset, t.c.kind).order_by(t.c.asset))
