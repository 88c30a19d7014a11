"""Daily bars: NSE index exports (``index_history``) and equity bhavcopies (``eq_bhav``).

* ``index_history`` — ``Date ,Open ,High ,Low ,Close ...``; the file name says which index
  (``nifty50`` -> NIFTY, ``indiavix`` -> INDIAVIX); volume from ``Shares Traded`` (0 for India VIX);
* ``eq_bhav`` — equity bhavcopies and histories assembled from them (``SYMBOL,SERIES,...,TOTTRDQTY``;
  ``EQ`` series only).

A symbol's bars come from its index exports if it has any, else from the equity files; a broken
export of an index makes its bars an error rather than a shorter history.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

import polars as pl

from ...errors import DataError, DataUnavailable
from ..base import normalize_bars
from .common import BARS_RAW, SRC_EQUITY, SRC_INDEX, NseFile, dates, num, read_csv

if TYPE_CHECKING:
    from .discovery import Inventory

log = logging.getLogger(__name__)

EQ_COLS = ("SYMBOL", "SERIES", "OPEN", "HIGH", "LOW", "CLOSE", "TOTTRDQTY")
INDEX_COLS = ("Date", "Open", "High", "Low", "Close")


def parse_bars(f: NseFile) -> pl.DataFrame:
    """An index export or equity file as :data:`BARS_RAW` rows (rows without a date or close dropped)."""
    df = read_csv(f)
    n = f.name
    if f.kind == "index_history":
        vol = next((c for c in df.columns if c.lower().startswith("shares traded")), None)
        if f.symbol == "INDIAVIX":
            volume = pl.Series("volume", [0.0] * df.height)
        elif vol:
            volume = num(df, vol, n, "volume")
        else:
            volume = pl.Series("volume", [None] * df.height, dtype=pl.Float64)
        out = pl.DataFrame([
            dates(df, "Date", n, "date"),
            pl.Series("symbol", [f.symbol] * df.height, dtype=pl.Utf8),
            num(df, "Open", n, "open"), num(df, "High", n, "high"), num(df, "Low", n, "low"),
            num(df, "Close", n, "close"), volume,
            pl.Series("source", [SRC_INDEX] * df.height, dtype=pl.Utf8),
            pl.Series("file", [n] * df.height, dtype=pl.Utf8),
        ])
    else:
        series = df.get_column("SERIES").str.strip_chars().str.to_uppercase()
        df = df.filter(series == "EQ")
        date_col = "DATE" if "DATE" in df.columns else "TIMESTAMP"
        out = pl.DataFrame([
            dates(df, date_col, n, "date"),
            df.get_column("SYMBOL").str.strip_chars().str.to_uppercase().alias("symbol"),
            num(df, "OPEN", n, "open"), num(df, "HIGH", n, "high"), num(df, "LOW", n, "low"),
            num(df, "CLOSE", n, "close"), num(df, "TOTTRDQTY", n, "volume"),
            pl.Series("source", [SRC_EQUITY] * df.height, dtype=pl.Utf8),
            pl.Series("file", [n] * df.height, dtype=pl.Utf8),
        ])
    return out.filter(pl.col("date").is_not_null() & pl.col("close").is_not_null())


class DailyBars:
    """Bars per file and per symbol, each built once (the inventory's lock guards the cache)."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self._lock = inventory.lock
        self._cache: dict[str, pl.DataFrame] = {}  # "file:<name>" -> a file's bars, symbol -> its bars

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        sym = symbol.upper().replace(" ", "")
        frame = self.bars_for(sym)
        out = frame.filter((pl.col("date") >= start) & (pl.col("date") <= end))
        wrong = out.filter(pl.any_horizontal(pl.col(c).is_nan() for c in ("open", "high", "low", "close"))
                           | (pl.col("close") <= 0))
        if wrong.height:
            row = wrong.row(0, named=True)
            col = "Close" if row["source"] == SRC_INDEX else "CLOSE"
            raise DataError(f"{row['file']}: column {col!r} holds {row['close']} on {row['date']} "
                            f"({wrong.height} bad bars; NaN open/high/low counted too)", symbol=sym,
                            source=row["file"], field=col)
        if out.height == 0:
            broken = self._inventory.broken_bars_files(sym)
            errors = self._inventory.file_errors
            if broken:
                raise DataError(f"no readable daily bars, and {broken[0]} could hold them: "
                                f"{errors[broken[0]].reason}", symbol=sym, source=broken[0],
                                field=errors[broken[0]].field)
            raise DataUnavailable(f"no daily bars in the NSE files between {start} and {end}", symbol=sym)
        return normalize_bars(out, symbol=sym)

    def bars_for(self, sym: str) -> pl.DataFrame:
        with self._lock:
            if sym in self._cache:
                return self._cache[sym]
        inv = self._inventory
        index_files = [f for f in inv.of_kind("index_history") if f.symbol == sym]
        broken = [rel for rel, (kind, _d, s) in inv.file_error_scope.items() if kind == "index_history" and s == sym]
        if broken:  # an export of this index cannot be read: its bars would be incomplete
            exc = inv.file_errors[broken[0]]
            raise DataError(exc.reason, symbol=sym, source=broken[0], field=exc.field)
        if index_files:
            frames = [self.bars_file(f) for f in index_files]
        else:
            frames = [self.bars_file(f).filter(pl.col("symbol") == sym) for f in inv.of_kind("eq_bhav")]
        frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=BARS_RAW)
        frame = frame.unique(["date"], keep="last", maintain_order=True).sort("date")
        with self._lock:
            self._cache[sym] = frame
        return frame

    def bars_file(self, f: NseFile) -> pl.DataFrame:
        key = "file:" + f.name
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        out = parse_bars(f)
        with self._lock:
            self._cache[key] = out
        return out

    def closes_on(self, session: dt.date, symbols: list[str]) -> dict[str, tuple[float, str]]:
        """That day's close per symbol from index exports and equity files in the folder."""
        out: dict[str, tuple[float, str]] = {}
        idx = {f.symbol for f in self._inventory.of_kind("index_history")}
        for sym in symbols:
            if sym in idx:
                try:
                    hit = self.bars_for(sym).filter(pl.col("date") == session)
                except DataError as exc:  # a broken export: the next source of a spot is used (and recorded)
                    log.warning("nse_files: %s close of %s not taken from its export: %s", session, sym, exc)
                    continue
                if hit.height:
                    out[sym] = (hit.get_column("close")[0], "index_history")
        rest = [s for s in symbols if s not in out and s not in idx]
        if rest:
            for f in self._inventory.of_kind("eq_bhav"):
                hits = self.bars_file(f).filter((pl.col("date") == session) & pl.col("symbol").is_in(rest))
                for sym, close in hits.select("symbol", "close").iter_rows():
                    out.setdefault(sym, (close, "eq_bhav"))
        return out
