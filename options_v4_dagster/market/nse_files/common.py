"""What every part of ``nse_files`` shares: the recognised-file record, the ``source`` values, the
day frame's schema, and readers of NSE's numbers, dates and file names that name the file and column
of a value they cannot read."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ... import calendar
from ... import universe as fno
from ...errors import DataError

IST = calendar.IST
CLOSE_TIME = dt.time(15, 30)

# Values of the 16-character ``source`` column.
SRC_OC_JSON = "nse_oc_json"
SRC_UDIFF = "nse_fo_udiff"
SRC_FO_BHAV = "nse_fo_bhav"
SRC_INDEX = "nse_index"
SRC_EQUITY = "nse_eq_bhav"

#: kinds of file that hold option chains
CHAIN_KINDS = ("oc_json", "fo_bhav", "fo_udiff")

MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                      "NOV", "DEC"), start=1)}
#: a contract-month column of ``fo_mktlots.csv`` (``JUL-25``)
MONTH_COL = re.compile(r"^[A-Z]{3}-\d{2}$")

#: One session's chains as the provider keeps them: chain columns plus where each value came from.
DAY_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": pl.Date, "symbol": pl.Utf8, "expiry": pl.Date, "strike": pl.Float64, "option_type": pl.Utf8,
    "bid": pl.Float64, "ask": pl.Float64, "bid_qty": pl.Float64, "ask_qty": pl.Float64, "ltp": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "oi": pl.Float64, "oi_change": pl.Float64,
    "exchange_iv": pl.Float64, "underlying_price": pl.Float64, "futures_price": pl.Float64,
    "lot_size": pl.Int64, "security_id": pl.Utf8, "snapshot_ts": pl.Datetime("us", "UTC"), "source": pl.Utf8,
    "lot_source": pl.Utf8, "lot_file": pl.Utf8, "underlying_source": pl.Utf8, "chain_file": pl.Utf8,
}
#: Daily bars of one file before normalisation (with the file they came from).
BARS_RAW: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": pl.Utf8, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "source": pl.Utf8, "file": pl.Utf8,
}


@dataclass(frozen=True)
class NseFile:
    """One recognised file (or zip member)."""

    path: Path
    name: str  # path relative to the data folder (``!member`` for a zip member)
    kind: str  # oc_json, fo_bhav, fo_udiff, eq_bhav, index_history, fo_mktlots
    member: str | None = None
    session: dt.date | None = None
    symbol: str | None = None
    snapshot_ts: dt.datetime | None = None  # oc_json: IST-aware snapshot time
    table_date: dt.date | None = None  # fo_mktlots: first day of the first contract month


def bad(msg: str, file: str, field_: str | None = None, *, symbol: str | None = None,
        session: dt.date | None = None) -> DataError:
    return DataError(msg, source=file, field=field_, symbol=symbol, session=session)


def num(df: pl.DataFrame, col: str, file: str, alias: str | None = None) -> pl.Series:
    """A string column as Float64 (commas, blanks and '-' allowed); DataError naming file and column."""
    raw = pl.col(col).str.strip_chars().str.replace_all(",", "")
    t = df.select(pl.when(raw.is_in(["", "-"])).then(None).otherwise(raw).alias("s"))
    t = t.with_columns(pl.col("s").cast(pl.Float64, strict=False).alias("v"))
    wrong = t.filter(pl.col("v").is_null() & pl.col("s").is_not_null())
    if wrong.height:
        raise bad(f"{file}: column {col!r} holds a non-number {wrong.get_column('s')[0]!r}", file, col)
    return t.get_column("v").alias(alias or col)


def dates(df: pl.DataFrame, col: str, file: str, alias: str | None = None) -> pl.Series:
    """Dates as NSE writes them: 2025-09-11, 11-Sep-2025, 11-SEP-2025, 11-09-2025, 11 Sep 2025."""
    s = pl.col(col).str.strip_chars()
    t = s.str.to_titlecase()
    out = df.select(s.alias("s"), pl.coalesce(
        s.str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        t.str.strptime(pl.Date, "%d-%b-%Y", strict=False),
        s.str.strptime(pl.Date, "%d-%m-%Y", strict=False),
        t.str.strptime(pl.Date, "%d %b %Y", strict=False),
    ).alias("d"))
    wrong = out.filter(pl.col("d").is_null() & pl.col("s").is_not_null() & (pl.col("s") != ""))
    if wrong.height:
        raise bad(f"{file}: column {col!r} holds an unreadable date {wrong.get_column('s')[0]!r}", file, col)
    return out.get_column("d").alias(alias or col)


def parse_day(text: str) -> dt.date | None:
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d-%b-%Y", "%d-%m-%Y", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text.title() if "b" in fmt else text, fmt).date()
        except ValueError:
            continue
    return None


def date_hints(name: str) -> set[dt.date]:
    """Dates a file name carries (2025-07-17, 20250717, 03MAY2023, 17-Jul-2025)."""
    out: set[dt.date] = set()
    for y, m, d in re.findall(r"(20\d\d)-?(\d\d)-?(\d\d)", name):
        try:
            out.add(dt.date(int(y), int(m), int(d)))
        except ValueError:
            pass
    for d, mon, y in re.findall(r"(\d\d)-?([A-Za-z]{3})-?(20\d\d)", name):
        m = MONTHS.get(mon.upper())
        if m:
            try:
                out.add(dt.date(int(y), m, int(d)))
            except ValueError:
                pass
    return out


def name_symbol(filename: str) -> str | None:
    """The one F&O underlying a file name names (``reliance_option_chain.json`` -> RELIANCE), else None."""
    known = set(fno.symbols())
    tokens = {t for t in re.split(r"[^A-Z0-9&-]+", Path(filename).stem.upper()) if t}
    hits = sorted(tokens & known)
    return hits[0] if len(hits) == 1 else None


def index_symbol(filename: str) -> str | None:
    compact = re.sub(r"[^a-z0-9]", "", filename.lower())
    for token, sym in (("vix", "INDIAVIX"), ("niftybank", "BANKNIFTY"), ("banknifty", "BANKNIFTY"),
                       ("finnifty", "FINNIFTY"), ("niftyfin", "FINNIFTY"), ("midcpnifty", "MIDCPNIFTY"),
                       ("midselect", "MIDCPNIFTY"), ("next50", "NIFTYNXT50"), ("nxt50", "NIFTYNXT50"),
                       ("nifty50", "NIFTY")):
        if token in compact:
            return sym
    return None


def read_csv(f: NseFile) -> pl.DataFrame:
    """A recognised CSV (or zip member) with every column as text and trimmed column names."""
    try:
        if f.member is None:
            src: Path | io.BytesIO = f.path
        else:
            with zipfile.ZipFile(f.path) as zf:
                src = io.BytesIO(zf.read(f.member))
        df = pl.read_csv(src, infer_schema_length=0, truncate_ragged_lines=True, encoding="utf8-lossy")
    except (OSError, zipfile.BadZipFile, pl.exceptions.PolarsError) as exc:
        raise bad(f"{f.name}: cannot be read as CSV ({type(exc).__name__}: {exc})", f.name, "file") from None
    return df.rename({c: c.replace("\ufeff", "").strip() for c in df.columns})
