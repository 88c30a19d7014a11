"""The F&O universe: index and stock underlyings with lot size, strike step, industry, Dhan id.

The table ships with the package (``reference/fno_universe.csv``), regenerated from NSE and Dhan
reference files by ``scripts/build_universe.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl

from .errors import DataError

UNIVERSE_CSV = Path(__file__).resolve().parent / "reference" / "fno_universe.csv"
INDEX_SYMBOLS = ("NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "NIFTYNXT50")
VIX_SYMBOL = "INDIAVIX"


@dataclass(frozen=True)
class Underlying:
    symbol: str
    name: str
    instrument: str  # INDEX or STOCK
    lot_size: int
    strike_step: float | None
    industry: str
    dhan_security_id: str | None
    dhan_segment: str | None
    reference_price: float | None

    @property
    def is_index(self) -> bool:
        return self.instrument == "INDEX"


@lru_cache(maxsize=1)
def universe_frame() -> pl.DataFrame:
    df = pl.read_csv(
        UNIVERSE_CSV,
        schema_overrides={"dhan_security_id": pl.Utf8, "strike_step": pl.Float64, "reference_price": pl.Float64,
                          "lot_size": pl.Int64},
    )
    return df.with_columns(
        pl.col("weekly_expiry").cast(pl.Utf8).str.to_lowercase().eq("true"),
        pl.col("reference_date").cast(pl.Utf8).str.to_date(strict=False),
    )


@lru_cache(maxsize=1)
def _by_symbol() -> dict[str, Underlying]:
    out = {}
    for r in universe_frame().iter_rows(named=True):
        out[r["symbol"]] = Underlying(
            symbol=r["symbol"], name=r["name"], instrument=r["instrument"], lot_size=int(r["lot_size"]),
            strike_step=r["strike_step"], industry=r["industry"],
            dhan_security_id=r["dhan_security_id"] or None, dhan_segment=r["dhan_segment"] or None,
            reference_price=r["reference_price"],
        )
    return out


def symbols() -> list[str]:
    """All F&O underlyings, indices first, in the file's order."""
    return list(_by_symbol())


def get(symbol: str) -> Underlying:
    try:
        return _by_symbol()[symbol.upper()]
    except KeyError:
        raise DataError("not an NSE F&O underlying in the universe table", symbol=symbol, field="symbol") from None


def is_index(symbol: str) -> bool:
    return symbol.upper() in INDEX_SYMBOLS


def session_universe(served: list[str], session: dt.date, source: str, lots: dict[str, int]) -> pl.DataFrame:
    """Rows of ``fno_universe`` for the symbols a source serves on the session: the reference table's
    fields, with the source's lot sizes where it states them. A symbol missing from the reference table
    is kept (industry "Unclassified") only when the source states its lot size."""
    rows = []
    for sym in served:
        try:
            u = get(sym)
            rows.append({"symbol": sym, "name": u.name, "instrument": u.instrument,
                         "lot_size": lots.get(sym, u.lot_size), "strike_step": u.strike_step,
                         "industry": u.industry, "dhan_security_id": u.dhan_security_id,
                         "dhan_segment": u.dhan_segment})
        except DataError:  # a symbol the source serves but the reference table lacks
            if sym not in lots:
                continue
            rows.append({"symbol": sym, "name": sym, "instrument": "INDEX" if is_index(sym) else "STOCK",
                         "lot_size": lots[sym], "strike_step": None, "industry": "Unclassified",
                         "dhan_security_id": None, "dhan_segment": None})
    frame = pl.DataFrame(rows, schema={"symbol": pl.Utf8, "name": pl.Utf8, "instrument": pl.Utf8,
                                       "lot_size": pl.Int64, "strike_step": pl.Float64, "industry": pl.Utf8,
                                       "dhan_security_id": pl.Utf8, "dhan_segment": pl.Utf8})
    return frame.with_columns(pl.lit(session).alias("trade_date"), pl.lit(source).alias("source"))
