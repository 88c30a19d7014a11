"""Reads of the current industry tables (industry_allocations_current, stock_industry_mapping):
the industry weights and views an allocation starts from."""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from .protocol import WarehouseLike
from .schema import industry_allocations_current, stock_industry_mapping


def current_industry_weights(wh: WarehouseLike) -> pl.DataFrame:
    """The current industry rows: industry, weight, position_type, source (empty when never written)."""
    t = industry_allocations_current
    return wh.read(sa.select(t.c.industry, t.c.weight, t.c.position_type, t.c.source))


def symbol_industries(wh: WarehouseLike) -> pl.DataFrame:
    """The stored symbol -> industry mapping: symbol, industry."""
    t = stock_industry_mapping
    return wh.read(sa.select(t.c.symbol, t.c.industry))
