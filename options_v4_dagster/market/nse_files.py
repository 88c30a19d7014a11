"""``nse_files``: replay real NSE files from a folder (option chains, F&O bhavcopies, index and equity history).

Files are found by walking ``data_dir`` recursively and recognised by their name and header, never by
a fixed path:

* ``oc_json`` — NSE option-chain API snapshots (``{"records": {"data": [...], "timestamp", ...}}``);
  one underlying (the legs' ``underlying``) at one moment (``records.timestamp``, IST);
* ``fo_bhav`` — legacy F&O bhavcopy ``foDDMONYYYYbhav.csv`` (``INSTRUMENT,SYMBOL,EXPIRY_DT,...``);
* ``fo_udiff`` — UDiFF F&O bhavcopy ``BhavCopy_NSE_FO_*.csv`` (plain or inside a ``.zip``);
* ``eq_bhav`` — equity bhavcopies and histories assembled from them (``SYMBOL,SERIES,...,TOTTRDQTY``);
* ``index_history`` — NSE index exports (``Date ,Open ,High ,Low ,Close ...``; the file name says
  which index: ``nifty50`` -> NIFTY, ``indiavix`` -> INDIAVIX);
* ``fo_mktlots`` — NSE ``fo_mktlots.csv`` lot tables (one column per contract month).

Anything else (README, Dhan scrip masters, index constituent lists) is logged and ignored. A file
that should be one of the above but cannot be read raises :class:`DataError` naming the file and
field, for the symbol/session it concerns; a broken file whose name carries the session's date turns
a "nothing for this session" answer into that error instead of :class:`DataUnavailable`.

Units and choices (see :data:`CHAIN_SCHEMA`):

* ``volume``/``oi``/``oi_change`` in contracts. The option-chain JSON already has contracts (OI may be
  fractional in NSE's 2025 files). Bhavcopies hold OI in **shares** (legacy ``OPEN_INT``/``CHG_IN_OI``,
  UDiFF ``OpnIntrst``/``ChngInOpnIntrst``: multiples of ``NewBrdLotQty``), divided here by the lot
  size; their volume (``CONTRACTS``, ``TtlTradgVol``) is already in contracts (UDiFF ``TtlTrfVal`` =
  ``TtlTradgVol`` x lot x (strike + premium)).
* ``bid_qty``/``ask_qty`` as NSE shows them: shares (always whole lots).
* NSE writes 0 for a missing bid, ask or last price: those become null (and their quantity too).
  Legacy bhavcopy rows with ``CONTRACTS`` = 0 carry a stale ``CLOSE``: ``close`` keeps it, ``ltp``
  is null. UDiFF ``LastPric`` 0 (no trade) -> null.
* ``lot_size`` per contract (lots change between contract months, e.g. BANKNIFTY 25 -> 15 for the
  Jul-2023 series), resolved in this order and recorded (:meth:`NseFilesProvider.lot_size_sources`):
  1. ``udiff``: a same-day UDiFF bhavcopy's ``NewBrdLotQty``;
  2. ``oc_json``: a same-day option-chain snapshot — NSE quotes bid/ask/total quantities in shares,
     so their greatest common divisor per expiry is the lot (HDFCBANK 550 on 2025-07-17, before
     its bonus; BANKNIFTY 25, and 15 for the Jul-2023 expiry, on 2023-05-03);
  3. for a legacy bhavcopy day: the lot table nearest in time (``udiff``/``oc_json``/``fo_mktlots``,
     the contract month's column) when it agrees within 2.5% with the lot implied by the file's own
     turnover (``VAL_INLAKH`` x 1e5 / (``CONTRACTS`` x (strike + average price))); otherwise that
     implied lot snapped to a divisor of the contracts' share OI (``fo_bhav_turnover``);
  4. otherwise the nearest lot table, then the universe table (``universe``).
* ``underlying_price``: JSON ``underlyingValue``; UDiFF ``UndrlygPric``. The legacy bhavcopy has
  none: a same-day snapshot's ``underlyingValue``, else that day's close from an index export or an
  equity bhavcopy in the folder, else the near-month future's close discounted at
  :attr:`NseFilesProvider.carry_rate` (7%/yr simple; on the two UDiFF days its median error against
  NSE's ``UndrlygPric`` is 0.11-0.16% vs 0.36-0.37% undiscounted). Recorded per symbol.
* ``futures_price``: the close of the future with the same expiry (null for weekly expiries).
* ``close``: the bhavcopy closing price (also joined onto snapshot rows when a same-day bhavcopy exists);
  ``security_id``: UDiFF ``FinInstrmId`` (NSE's token) when a same-day UDiFF exists.
* A session served by a snapshot and a bhavcopy: the snapshot wins for its symbol (it has quotes).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
import re
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from .. import calendar
from .. import universe as fno
from ..errors import ConfigError, DataError, DataUnavailable
from .base import Failure, MarketDataProvider, empty_chain, normalize_bars, normalize_chain

log = logging.getLogger(__name__)

IST = calendar.IST
CLOSE_TIME = dt.time(15, 30)

# Values of the 16-character ``source`` column.
SRC_OC_JSON = "nse_oc_json"
SRC_UDIFF = "nse_fo_udiff"
SRC_FO_BHAV = "nse_fo_bhav"
SRC_INDEX = "nse_index"
SRC_EQUITY = "nse_eq_bhav"

KIND_PRIORITY = {"udiff": 0, "oc_json": 1, "fo_mktlots": 2}  # tie-break of lot tables at equal distance
LOT_AGREEMENT = 0.025  # a reference lot within 2.5% of the turnover-implied lot is taken as confirmed
LOT_SNAP = 0.03

_LEGACY_COLS = ("INSTRUMENT", "SYMBOL", "EXPIRY_DT", "STRIKE_PR", "OPTION_TYP", "OPEN", "HIGH", "LOW", "CLOSE",
                "CONTRACTS", "VAL_INLAKH", "OPEN_INT", "CHG_IN_OI", "TIMESTAMP")
_UDIFF_COLS = ("TradDt", "FinInstrmTp", "FinInstrmId", "TckrSymb", "XpryDt", "StrkPric", "OptnTp", "OpnPric",
               "HghPric", "LwPric", "ClsPric", "LastPric", "UndrlygPric", "OpnIntrst", "ChngInOpnIntrst",
               "TtlTradgVol", "TtlTrfVal", "NewBrdLotQty")
_EQ_COLS = ("SYMBOL", "SERIES", "OPEN", "HIGH", "LOW", "CLOSE", "TOTTRDQTY")
_INDEX_COLS = ("Date", "Open", "High", "Low", "Close")
_MONTH_COL = re.compile(r"^[A-Z]{3}-\d{2}$")
_TS_RE = re.compile(rb'"timestamp"\s*:\s*"([^"]+)"')
_UNDERLYING_RE = re.compile(rb'"underlying"\s*:\s*"([^"]+)"')
_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                        "NOV", "DEC"), start=1)}

_LEG_SCHEMA = {
    "strikePrice": pl.Float64, "expiryDate": pl.Utf8, "underlying": pl.Utf8, "openInterest": pl.Float64,
    "changeinOpenInterest": pl.Float64, "totalTradedVolume": pl.Float64, "impliedVolatility": pl.Float64,
    "lastPrice": pl.Float64, "totalBuyQuantity": pl.Float64, "totalSellQuantity": pl.Float64,
    "bidQty": pl.Float64, "bidprice": pl.Float64, "askQty": pl.Float64, "askPrice": pl.Float64,
    "underlyingValue": pl.Float64,
}


# --- small helpers -------------------------------------------------------------------------

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


@dataclass
class _LotTable:
    date: dt.date
    kind: str
    file: str
    by_expiry: dict[str, dict[dt.date, int]] = field(default_factory=dict)
    by_month: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)

    def lookup(self, symbol: str, expiry: dt.date) -> int | None:
        exact = self.by_expiry.get(symbol, {}).get(expiry)
        if exact:
            return exact
        months = self.by_month.get(symbol)
        if not months:
            return None
        key = (expiry.year, expiry.month)
        if key in months:
            return months[key]
        target = expiry.year * 12 + expiry.month
        best = min(months, key=lambda ym: (abs(ym[0] * 12 + ym[1] - target), ym))
        return months[best]


@dataclass
class _Day:
    frame: pl.DataFrame  # chain columns + lot_source, lot_file, underlying_source, chain_file
    by_symbol: dict[str, pl.DataFrame]
    errors: dict[str, DataError]  # per symbol
    day_error: DataError | None = None  # the bhavcopy of the day could not be read


def _bad(msg: str, file: str, field_: str | None = None, *, symbol: str | None = None,
         session: dt.date | None = None) -> DataError:
    return DataError(msg, source=file, field=field_, symbol=symbol, session=session)


def _num(df: pl.DataFrame, col: str, file: str, alias: str | None = None) -> pl.Series:
    """A string column as Float64 (commas, blanks and '-' allowed); DataError naming file and column."""
    raw = pl.col(col).str.strip_chars().str.replace_all(",", "")
    t = df.select(pl.when(raw.is_in(["", "-"])).then(None).otherwise(raw).alias("s"))
    t = t.with_columns(pl.col("s").cast(pl.Float64, strict=False).alias("v"))
    bad = t.filter(pl.col("v").is_null() & pl.col("s").is_not_null())
    if bad.height:
        raise _bad(f"{file}: column {col!r} holds a non-number {bad.get_column('s')[0]!r}", file, col)
    return t.get_column("v").alias(alias or col)


def _dates(df: pl.DataFrame, col: str, file: str, alias: str | None = None) -> pl.Series:
    """Dates as NSE writes them: 2025-09-11, 11-Sep-2025, 11-SEP-2025, 11-09-2025, 11 Sep 2025."""
    s = pl.col(col).str.strip_chars()
    t = s.str.to_titlecase()
    out = df.select(s.alias("s"), pl.coalesce(
        s.str.strptime(pl.Date, "%Y-%m-%d", strict=False),
        t.str.strptime(pl.Date, "%d-%b-%Y", strict=False),
        s.str.strptime(pl.Date, "%d-%m-%Y", strict=False),
        t.str.strptime(pl.Date, "%d %b %Y", strict=False),
    ).alias("d"))
    bad = out.filter(pl.col("d").is_null() & pl.col("s").is_not_null() & (pl.col("s") != ""))
    if bad.height:
        raise _bad(f"{file}: column {col!r} holds an unreadable date {bad.get_column('s')[0]!r}", file, col)
    return out.get_column("d").alias(alias or col)


def _parse_day(text: str) -> dt.date | None:
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%d-%b-%Y", "%d-%m-%Y", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text.title() if "b" in fmt else text, fmt).date()
        except ValueError:
            continue
    return None


def _date_hints(name: str) -> set[dt.date]:
    """Dates a file name carries (2025-07-17, 20250717, 03MAY2023, 17-Jul-2025)."""
    out: set[dt.date] = set()
    for y, m, d in re.findall(r"(20\d\d)-?(\d\d)-?(\d\d)", name):
        try:
            out.add(dt.date(int(y), int(m), int(d)))
        except ValueError:
            pass
    for d, mon, y in re.findall(r"(\d\d)-?([A-Za-z]{3})-?(20\d\d)", name):
        m = _MONTHS.get(mon.upper())
        if m:
            try:
                out.add(dt.date(int(y), m, int(d)))
            except ValueError:
                pass
    return out


_CHAIN_KINDS = ("oc_json", "fo_bhav", "fo_udiff")


def _guess_kind(low_name: str) -> str | None:
    """The kind a file that cannot be read was meant to be, from its name (None: unknown)."""
    if low_name.endswith(".json"):
        return "oc_json"
    if re.search(r"bhavcopy_nse_fo|^fo\d\d[a-z]{3}\d{4}bhav", low_name):
        return "fo_udiff" if "bhavcopy_nse_fo" in low_name else "fo_bhav"
    if "mktlots" in low_name:
        return "fo_mktlots"
    if re.search(r"cm_bhav|_eq_|^cm\d\d", low_name):
        return "eq_bhav"
    if _index_symbol(low_name):
        return "index_history"
    return None


def _name_symbol(filename: str) -> str | None:
    """The one F&O underlying a file name names (``reliance_option_chain.json`` -> RELIANCE), else None."""
    known = set(fno.symbols())
    tokens = {t for t in re.split(r"[^A-Z0-9&-]+", Path(filename).stem.upper()) if t}
    hits = sorted(tokens & known)
    return hits[0] if len(hits) == 1 else None


def _index_symbol(filename: str) -> str | None:
    compact = re.sub(r"[^a-z0-9]", "", filename.lower())
    for token, sym in (("vix", "INDIAVIX"), ("niftybank", "BANKNIFTY"), ("banknifty", "BANKNIFTY"),
                       ("finnifty", "FINNIFTY"), ("niftyfin", "FINNIFTY"), ("midcpnifty", "MIDCPNIFTY"),
                       ("midselect", "MIDCPNIFTY"), ("next50", "NIFTYNXT50"), ("nxt50", "NIFTYNXT50"),
                       ("nifty50", "NIFTY")):
        if token in compact:
            return sym
    return None


def _snap_lot(est: float, share_gcd: int) -> int:
    """The lot implied by turnover, snapped to the closest divisor of the contracts' share OI."""
    if share_gcd > 0:
        divs: set[int] = set()
        for i in range(1, math.isqrt(share_gcd) + 1):
            if share_gcd % i == 0:
                divs.update((i, share_gcd // i))
        best = min(divs, key=lambda d: abs(d / est - 1.0))
        if abs(best / est - 1.0) <= LOT_SNAP:
            return int(best)
    return max(1, round(est))


def _universe_lot(symbol: str) -> int | None:
    try:
        return fno.get(symbol).lot_size
    except DataError:
        return None


# --- the provider -----------------------------------------------------------------------------

class NseFilesProvider(MarketDataProvider):
    """Option chains and daily bars replayed from a folder of real NSE files (see the module doc)."""

    name = "nse_files"
    carry_rate = 0.07  # simple annual carry for legacy days whose only underlying price is a future

    def __init__(self, data_dir: str | Path, *, carry_rate: float | None = None, **_ignored: object) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        if carry_rate is not None:
            self.carry_rate = float(carry_rate)
        self._lock = threading.RLock()
        self._files: list[NseFile] | None = None
        self.unrecognized: list[str] = []
        self.file_errors: dict[str, DataError] = {}  # files that should have been readable but are not
        # per broken file: (kind it should have been or None, sessions it concerns, symbol it concerns or None)
        self.file_error_scope: dict[str, tuple[str | None, frozenset[dt.date], str | None]] = {}
        self._oc_cache: dict[str, tuple[pl.DataFrame, dict[dt.date, int]]] = {}
        self._oc_prev_close: dict[str, float] = {}  # index snapshots: records.index.previousClose
        self._fo_cache: dict[str, pl.DataFrame] = {}
        self._fo_lot_stats: dict[str, pl.DataFrame] = {}
        self._table_cache: dict[str, _LotTable] = {}
        self._day_cache: dict[dt.date, _Day] = {}
        self._bars_cache: dict[str, pl.DataFrame] = {}

    # --- inventory -------------------------------------------------------------------------

    def files(self) -> list[NseFile]:
        """Every recognised file, scanned once: CSV headers and first rows, zip member names, and the
        timestamp/underlying of each JSON snapshot (found by a byte search; the legs are parsed on use)."""
        with self._lock:
            if self._files is None:
                self._files = self._scan()
            return self._files

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.data_dir))
        except ValueError:
            return str(path)

    def _scan(self) -> list[NseFile]:
        if not self.data_dir.is_dir():
            raise ConfigError(f"NSE data folder {self.data_dir} does not exist (set OPTIONS_V4_NSE_DATA_DIR)")
        out: list[NseFile] = []
        for path in sorted(p for p in self.data_dir.rglob("*") if p.is_file()):
            rel = self._rel(path)
            low = path.name.lower()
            try:
                if low.endswith(".json"):
                    f = self._scan_json(path, rel)
                    if f:
                        out.append(f)
                elif low.endswith(".zip"):
                    with zipfile.ZipFile(path) as zf:
                        members = [m for m in zf.namelist() if m.lower().endswith(".csv")]
                    for m in members:
                        f = self._scan_csv(path, f"{rel}!{m}", m)
                        if f:
                            out.append(f)
                    if not members:
                        self._ignore(rel, "zip without a csv member")
                elif low.endswith(".csv"):
                    f = self._scan_csv(path, rel, None)
                    if f:
                        out.append(f)
                else:
                    self._ignore(rel, "not a csv, zip or json file")
            except DataError as exc:
                self._broken(path, rel, exc)
            except (OSError, zipfile.BadZipFile, UnicodeDecodeError, EOFError) as exc:
                self._broken(path, rel, _bad(f"{rel}: cannot be read ({type(exc).__name__}: {exc})", rel, "file"))
        kinds: dict[str, int] = {}
        for f in out:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        log.info("nse_files: %s recognised %s; %d ignored, %d unreadable", self.data_dir, kinds,
                 len(self.unrecognized), len(self.file_errors))
        return out

    def _broken(self, path: Path, rel: str, exc: DataError) -> None:
        """Record a file that should be readable but is not, with the sessions and symbol it concerns
        (from the error itself, else from the path's dates and the file name), so that a session or
        symbol it would have served reports this error instead of "missing"."""
        low = path.name.lower()
        kind = getattr(exc, "kind", None) or _guess_kind(low)
        sessions = frozenset([exc.session] if exc.session else _date_hints(rel))
        symbol = exc.symbol
        if symbol is None and kind == "index_history":
            symbol = _index_symbol(path.name)
        if symbol is None and kind == "oc_json":
            symbol = _name_symbol(path.name)
        self.file_errors[rel] = exc
        self.file_error_scope[rel] = (kind, sessions, symbol)
        log.warning("nse_files: %s", exc)

    def _ignore(self, rel: str, why: str) -> None:
        self.unrecognized.append(rel)
        log.info("nse_files: ignoring %s (%s)", rel, why)

    def _scan_json(self, path: Path, rel: str) -> NseFile | None:
        raw = path.read_bytes()
        m_ts, m_und = _TS_RE.search(raw), _UNDERLYING_RE.search(raw)
        named = _name_symbol(path.name)
        hints = _date_hints(rel)
        content_sym = m_und.group(1).decode("utf-8", "replace").strip().upper() if m_und else None
        sym = named or content_sym
        one_day = next(iter(hints)) if len(hints) == 1 else None
        if m_ts and m_und and b'"records"' in raw:
            ts = self._parse_ts(m_ts.group(1).decode("utf-8", "replace"), rel, symbol=sym, session=one_day)
            if named and content_sym != named:
                raise _bad(f"{rel}: the file name says {named} but its legs are of {content_sym}", rel, "underlying",
                           symbol=named, session=one_day or ts.date())
            if hints and ts.date() not in hints:
                raise _bad(f"{rel}: records.timestamp {ts:%d-%b-%Y %H:%M} is not the session "
                           f"{'/'.join(str(d) for d in sorted(hints))} its path names", rel, "records.timestamp",
                           symbol=sym, session=one_day)
            return NseFile(path, rel, "oc_json", session=ts.date(), symbol=content_sym, snapshot_ts=ts)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            what = "empty" if not raw.strip() else f"not valid JSON ({exc})"
            raise _bad(f"{rel}: {what}", rel, "json", symbol=sym, session=one_day) from None
        rec = doc.get("records") if isinstance(doc, dict) else None
        if isinstance(rec, dict) and "data" in rec:
            if not rec.get("data"):
                self._ignore(rel, "option-chain snapshot without legs")
                return None
            raise _bad(f"{rel}: option-chain snapshot without records.timestamp or legs' underlying", rel,
                       "records.timestamp", symbol=sym, session=one_day)
        self._ignore(rel, "JSON that is not an NSE option-chain snapshot")
        return None

    @staticmethod
    def _parse_ts(text: str, rel: str, *, symbol: str | None = None, session: dt.date | None = None) -> dt.datetime:
        for fmt in ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%d-%b-%Y"):
            try:
                t = dt.datetime.strptime(text.strip().title(), fmt)
                if fmt == "%d-%b-%Y":
                    t = dt.datetime.combine(t.date(), CLOSE_TIME)
                return t.replace(tzinfo=IST)
            except ValueError:
                continue
        raise _bad(f"{rel}: records.timestamp {text!r} is not a date like 17-Jul-2025 15:30:00", rel,
                   "records.timestamp", symbol=symbol, session=session)

    def _head(self, path: Path, member: str | None) -> tuple[list[str], list[str]]:
        if member is None:
            with path.open("rb") as fh:
                lines = [fh.readline(), fh.readline()]
        else:
            with zipfile.ZipFile(path) as zf, zf.open(member) as fh:
                lines = [fh.readline(), fh.readline()]
        rows = list(csv.reader([ln.decode("utf-8-sig", "replace") for ln in lines if ln]))
        header = [c.replace("\ufeff", "").strip() for c in rows[0]] if rows else []
        first = [c.strip() for c in rows[1]] if len(rows) > 1 else []
        return header, first

    def _scan_csv(self, path: Path, rel: str, member: str | None) -> NseFile | None:
        header, first = self._head(path, member)
        cols = set(header)
        upper = [c.upper() for c in header]

        hints = _date_hints(Path(member or rel).name) | _date_hints(Path(rel.split("!")[0]).name)

        def first_date(col: str) -> dt.date:
            d = _parse_day(first[header.index(col)]) if first and len(first) > header.index(col) else None
            if d is None:
                raise _bad(f"{rel}: no readable {col} in the first row", rel, col,
                           session=next(iter(hints)) if len(hints) == 1 else None)
            if hints and d not in hints:
                raise _bad(f"{rel}: {col} {d} is not the session {'/'.join(str(h) for h in sorted(hints))} its name "
                           "says", rel, col, session=next(iter(hints)) if len(hints) == 1 else None)
            return d

        if set(_LEGACY_COLS) <= cols:
            return NseFile(path, rel, "fo_bhav", member, session=first_date("TIMESTAMP"))
        if set(_UDIFF_COLS) <= cols:
            return NseFile(path, rel, "fo_udiff", member, session=first_date("TradDt"))
        if set(_EQ_COLS) <= cols and ("TIMESTAMP" in cols or "DATE" in cols):
            return NseFile(path, rel, "eq_bhav", member)
        if len(upper) > 2 and upper[0] == "UNDERLYING" and upper[1] == "SYMBOL" and _MONTH_COL.match(upper[2]):
            mon, yy = upper[2].split("-")
            return NseFile(path, rel, "fo_mktlots", member, table_date=dt.date(2000 + int(yy), _MONTHS[mon], 1))
        if set(_INDEX_COLS) <= cols:
            sym = _index_symbol(Path(member or path.name).name)
            if sym:
                return NseFile(path, rel, "index_history", member, symbol=sym)
            self._ignore(rel, "index export whose file name does not say which index")
            return None
        # a header that lacks only a few columns of a known kind is that kind, damaged: an error, not "ignored"
        near = []
        for kind, need in (("fo_bhav", _LEGACY_COLS), ("fo_udiff", _UDIFF_COLS), ("eq_bhav", _EQ_COLS),
                           ("index_history", _INDEX_COLS)):
            missing = [c for c in need if c not in cols]
            if 1 <= len(missing) <= max(2, len(need) // 3) and len(need) - len(missing) >= 3:
                near.append((len(missing) / len(need), kind, missing))
        if near:
            _frac, kind, missing = min(near)
            err = _bad(f"{rel}: looks like {kind} but has no column {', '.join(missing)}", rel, missing[0],
                       session=next(iter(hints)) if len(hints) == 1 else None)
            err.kind = kind  # type: ignore[attr-defined]
            raise err
        self._ignore(rel, "unrecognised csv header")
        return None

    def _of_kind(self, *kinds: str) -> list[NseFile]:
        return [f for f in self.files() if f.kind in kinds]

    def parse_all(self) -> dict[str, int]:
        """Parse every recognised file fully; rows (or legs, or table symbols) per file.

        Raises :class:`DataError` naming the first file that cannot be read (scan errors included).
        """
        files = self.files()
        if self.file_errors:
            raise next(iter(self.file_errors.values()))
        out: dict[str, int] = {}
        for f in files:
            if f.kind == "oc_json":
                out[f.name] = self._oc(f)[0].height
            elif f.kind in ("fo_bhav", "fo_udiff"):
                out[f.name] = self._fo(f).height
            elif f.kind in ("eq_bhav", "index_history"):
                out[f.name] = self._bars_file(f).height
            elif f.kind == "fo_mktlots":
                out[f.name] = len(self._mktlots(f).by_month)
        return out

    # --- sessions and symbols ----------------------------------------------------------------

    def sessions_available(self) -> list[dt.date]:
        """Sessions the folder holds option data for (snapshots or F&O bhavcopies), sorted."""
        days = {f.session for f in self._of_kind("oc_json", "fo_bhav", "fo_udiff") if f.session}
        days |= {d for kind, ds, _s in self.file_error_scope.values() if kind in _CHAIN_KINDS for d in ds}
        return sorted(days)

    def available_symbols(self, session: dt.date) -> list[str]:
        """Every underlying with options in the folder's files for ``session`` (sorted), including those
        whose file is broken. Raises the :class:`DataError` of a broken F&O bhavcopy of the session: the
        session's symbols cannot be known, so the answer is never "nothing"."""
        day = self._day(session)
        if day.day_error is not None:
            raise day.day_error
        return sorted(set(day.by_symbol) | set(day.errors))

    def symbols_for(self, session: dt.date, universe_symbols: Iterable[str]) -> list[str]:
        """The universe symbols the folder serves on ``session``, in the universe's order."""
        have = set(self.available_symbols(session))
        return [s for s in universe_symbols if s in have]

    def lot_sizes(self, session: dt.date) -> dict[str, int]:
        """Lot size in force per symbol on ``session`` (that of its nearest expiry)."""
        frame = self._day(session).frame
        if frame.height == 0:
            return {}
        near = (frame.filter(pl.col("lot_size").is_not_null()).sort("expiry")
                .group_by("symbol", maintain_order=True).agg(pl.col("lot_size").first()))
        return dict(near.iter_rows())

    def lot_size_sources(self, symbol: str, session: dt.date) -> pl.DataFrame:
        """Per expiry of ``symbol`` on ``session``: lot_size, lot_source (udiff, oc_json, fo_mktlots,
        fo_bhav_turnover, universe) and lot_file."""
        part = self._symbol_frame(symbol.upper(), session)
        return (part.group_by("expiry").agg(pl.col("lot_size").first(), pl.col("lot_source").first(),
                                            pl.col("lot_file").first()).sort("expiry"))

    def chain_provenance(self, symbol: str, session: dt.date) -> dict[str, object]:
        """Where the chain of ``symbol`` on ``session`` comes from: files and the origin of spot and lots."""
        part = self._symbol_frame(symbol.upper(), session)
        return {
            "source": part.get_column("source")[0],
            "chain_file": part.get_column("chain_file")[0],
            "underlying_source": part.get_column("underlying_source")[0],
            "lot_sources": sorted(set(part.get_column("lot_source").drop_nulls().to_list())),
        }

    # --- option chains ----------------------------------------------------------------------

    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        symbol = symbol.upper()
        part = self._symbol_frame(symbol, session)
        limit = session + dt.timedelta(days=horizon_days)
        part = part.filter((pl.col("expiry") >= session) & (pl.col("expiry") <= limit))
        if part.height == 0:
            raise DataUnavailable(f"no expiry within {horizon_days} days in the NSE files", symbol=symbol,
                                  session=session)
        return normalize_chain(part, symbol=symbol, session=session)

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90
                      ) -> tuple[pl.DataFrame, list[Failure]]:
        """Chains of many symbols from the session's files, normalised in one pass (per symbol only
        when that pass finds bad data, so one symbol's failure stays its own)."""
        symbols = [s.upper() for s in symbols]
        day = self._day(session)
        limit = session + dt.timedelta(days=horizon_days)
        frames, rest = [], []
        for sym in symbols:
            part = None if sym in day.errors else day.by_symbol.get(sym)
            if part is not None:
                part = part.filter((pl.col("expiry") >= session) & (pl.col("expiry") <= limit))
            if part is not None and part.height:
                frames.append(part)
            else:
                rest.append(sym)
        try:
            chain = normalize_chain(pl.concat(frames, how="vertical"), session=session) if frames else empty_chain()
        except DataError:  # some symbol's data is bad: per symbol, so that only its own chain is refused
            chain, failures = super().option_chains(symbols, session, horizon_days=horizon_days)
            return chain.sort(["symbol", "expiry", "strike", "option_type"]), failures
        failures = []
        for sym in rest:  # raises the symbol's own reason (missing, unreadable file, nothing in horizon)
            try:
                self.option_chain(sym, session, horizon_days=horizon_days)
            except DataError as exc:  # recorded per symbol by design
                failures.append(Failure.from_exception(sym, "option_chain", exc))
        return chain, failures

    def _symbol_frame(self, symbol: str, session: dt.date) -> pl.DataFrame:
        day = self._day(session)
        if symbol in day.errors:
            raise day.errors[symbol]
        part = day.by_symbol.get(symbol)
        if part is not None:
            return part
        if day.day_error is not None:
            raise DataError(day.day_error.reason, symbol=symbol, session=session, source=day.day_error.source,
                            field=day.day_error.field)
        broken = self._broken_files_for(session, symbol)
        if broken:
            raise DataError(f"no readable option data, and {broken[0]} could hold it: "
                            f"{self.file_errors[broken[0]].reason}", symbol=symbol, session=session,
                            source=broken[0], field=self.file_errors[broken[0]].field)
        raise DataUnavailable("the NSE files hold no option chain", symbol=symbol, session=session)

    def _broken_files_for(self, session: dt.date, symbol: str | None, kinds: Iterable[str | None] = (
            *_CHAIN_KINDS, None)) -> list[str]:
        """Broken files that would have served ``symbol`` (any symbol when None) on ``session``."""
        self.files()
        kinds = set(kinds)
        out = []
        for rel, (kind, sessions, sym) in self.file_error_scope.items():
            if kind not in kinds:
                continue
            if (session in sessions or not sessions) and (sym is None or symbol is None or sym == symbol):
                out.append(rel)
        return out

    def _day(self, session: dt.date) -> _Day:
        with self._lock:
            if session not in self._day_cache:
                self._day_cache[session] = self._build_day(session)
            return self._day_cache[session]

    def _build_day(self, session: dt.date) -> _Day:
        snaps: dict[str, NseFile] = {}
        for f in self._of_kind("oc_json"):
            if f.session == session and f.symbol:
                cur = snaps.get(f.symbol)
                if cur is None or (f.snapshot_ts, f.name) > (cur.snapshot_ts, cur.name):
                    snaps[f.symbol] = f
        fo_files = sorted((f for f in self._of_kind("fo_udiff", "fo_bhav") if f.session == session),
                          key=lambda f: (f.kind != "fo_udiff", f.name))
        if len(fo_files) > 1:
            log.info("nse_files: %s has %d F&O bhavcopies; using %s", session, len(fo_files), fo_files[0].name)
        fo_file = fo_files[0] if fo_files else None
        fo: pl.DataFrame | None = None
        day_error: DataError | None = None
        if fo_file is not None:
            try:
                fo = self._fo(fo_file)
            except DataError as exc:
                day_error = DataError(exc.reason, source=exc.source, field=exc.field, session=session)
        errors: dict[str, DataError] = {}
        for rel in self._broken_files_for(session, None):
            kind, sessions, sym = self.file_error_scope[rel]
            exc = self.file_errors[rel]
            if session not in sessions:
                continue
            if sym is not None:  # one underlying's snapshot
                errors.setdefault(sym, DataError(exc.reason, source=rel, field=exc.field, symbol=sym, session=session))
            elif day_error is None and fo_file is None:  # the session's bhavcopy (all its symbols)
                day_error = DataError(exc.reason, source=rel, field=exc.field, session=session)
        parts: list[pl.DataFrame] = []
        for sym, f in sorted(snaps.items()):
            if sym in errors:  # another file for this symbol and session is broken: no silent substitute
                continue
            try:
                parts.append(self._json_chain(f, session, fo, fo_file))
            except DataError as exc:
                errors[sym] = DataError(exc.reason, source=exc.source or f.name, field=exc.field, symbol=sym,
                                        session=session)
        if fo is not None and fo_file is not None:
            parts.append(self._bhav_chain(fo, fo_file, session, exclude=set(snaps)))
        frame = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=_DAY_SCHEMA)
        by_symbol = {k[0]: v for k, v in frame.partition_by("symbol", as_dict=True).items()} if frame.height else {}
        return _Day(frame=frame, by_symbol=by_symbol, errors=errors, day_error=day_error)

    # --- option-chain JSON --------------------------------------------------------------------

    def _oc(self, f: NseFile) -> tuple[pl.DataFrame, dict[dt.date, int]]:
        """Legs of a snapshot in chain units, and the lot per expiry read off its quantities."""
        with self._lock:
            if f.name not in self._oc_cache:
                self._oc_cache[f.name] = self._parse_oc(f)
            return self._oc_cache[f.name]

    def _parse_oc(self, f: NseFile) -> tuple[pl.DataFrame, dict[dt.date, int]]:
        rel = f.name
        try:
            doc = json.loads(f.path.read_bytes())
        except ValueError as exc:
            raise _bad(f"{rel}: not valid JSON ({exc})", rel, "json", symbol=f.symbol, session=f.session) from None
        rec = doc.get("records") if isinstance(doc, dict) else None
        if not isinstance(rec, dict) or not isinstance(rec.get("data"), list):
            raise _bad(f"{rel}: records.data is missing", rel, "records.data", symbol=f.symbol, session=f.session)
        ts = self._parse_ts(str(rec.get("timestamp", "")), rel)
        spot = rec.get("underlyingValue")
        index = rec.get("index")
        prev = index.get("previousClose") if isinstance(index, dict) else None
        if isinstance(prev, int | float) and prev > 0:
            self._oc_prev_close[f.name] = float(prev)
        frames = []
        for opt in ("CE", "PE"):
            legs = [row[opt] for row in rec["data"] if isinstance(row, dict) and isinstance(row.get(opt), dict)]
            if legs:
                frames.append(self._legs_frame(legs, rel, f).with_columns(pl.lit(opt).alias("option_type")))
        if not frames:
            raise DataUnavailable(f"{rel}: snapshot has no legs", symbol=f.symbol, session=f.session)
        legs = pl.concat(frames, how="vertical")
        unds = legs.get_column("underlying").drop_nulls().unique().to_list()
        if len(unds) > 1:
            raise _bad(f"{rel}: legs of several underlyings {sorted(unds)[:3]}", rel, "underlying")
        expiry = _dates(legs, "expiryDate", rel, "expiry")
        if isinstance(spot, int | float) and not math.isfinite(spot):
            raise _bad(f"{rel}: records.underlyingValue is {spot}", rel, "underlying_price", symbol=f.symbol,
                       session=f.session)
        if isinstance(spot, int | float) and spot < 0:
            raise _bad(f"{rel}: records.underlyingValue is {spot}, not a positive price", rel, "underlying_price",
                       symbol=f.symbol, session=f.session)
        if not isinstance(spot, int | float) or spot <= 0:
            leg_spots = legs.get_column("underlyingValue").drop_nulls()
            if leg_spots.is_nan().any():
                raise _bad(f"{rel}: legs' underlyingValue is NaN", rel, "underlying_price", symbol=f.symbol,
                           session=f.session)
            spot = leg_spots.max()
        if spot is None or spot <= 0:
            raise _bad(f"{rel}: no positive underlyingValue", rel, "underlying_price", symbol=f.symbol,
                       session=f.session)

        def quote(col: str) -> pl.Expr:  # NSE writes 0 for "no quote"; negative or NaN stays and is rejected
            return pl.when(pl.col(col) == 0).then(None).otherwise(pl.col(col))

        out = legs.with_columns(expiry).select(
            pl.lit(f.symbol).alias("symbol"),
            "expiry",
            pl.col("strikePrice").alias("strike"),
            "option_type",
            quote("bidprice").alias("bid"),
            quote("askPrice").alias("ask"),
            pl.when(pl.col("bidprice") != 0).then(pl.col("bidQty")).alias("bid_qty"),
            pl.when(pl.col("askPrice") != 0).then(pl.col("askQty")).alias("ask_qty"),
            quote("lastPrice").alias("ltp"),
            pl.col("totalTradedVolume").alias("volume"),
            pl.col("openInterest").alias("oi"),
            pl.col("changeinOpenInterest").alias("oi_change"),
            (pl.when(pl.col("impliedVolatility") > 0).then(pl.col("impliedVolatility")) / 100.0).alias("exchange_iv"),
            pl.lit(float(spot)).alias("underlying_price"),
            pl.lit(ts.astimezone(dt.UTC), dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
        )
        return out, self._qty_lots(legs.with_columns(expiry))

    @staticmethod
    def _legs_frame(legs: list[dict], rel: str, f: NseFile) -> pl.DataFrame:
        try:
            return pl.from_dicts(legs, schema=_LEG_SCHEMA)
        except (pl.exceptions.PolarsError, TypeError, ValueError):  # a leg field of the wrong type: name it
            for name, dtype in _LEG_SCHEMA.items():
                ok = (str,) if dtype == pl.Utf8 else (int, float)
                bad = [leg[name] for leg in legs if leg.get(name) is not None
                       and (not isinstance(leg[name], ok) or isinstance(leg[name], bool))]
                if bad:
                    raise _bad(f"{rel}: leg field {name!r} holds {bad[0]!r}, not a {dtype}", rel, name,
                               symbol=f.symbol, session=f.session) from None
            raise

    @staticmethod
    def _qty_lots(legs: pl.DataFrame) -> dict[dt.date, int]:
        """Lot per expiry: gcd of the share quantities NSE quotes (bid/ask/total buy/sell)."""
        q = (legs.select("expiry", pl.concat_list("bidQty", "askQty", "totalBuyQuantity", "totalSellQuantity")
                         .alias("q")).explode("q")
             .filter((pl.col("q") > 0) & (pl.col("q") == pl.col("q").floor()) & pl.col("expiry").is_not_null()))
        if q.height == 0:
            return {}
        per: dict[dt.date, tuple[int, int]] = {}
        for (exp,), grp in q.partition_by("expiry", as_dict=True).items():
            vals = grp.get_column("q").cast(pl.Int64).to_numpy()
            per[exp] = (int(np.gcd.reduce(vals)), len(vals))
        base = max(per.values(), key=lambda gn: gn[1])[0]
        return {exp: (base if g % base == 0 else g) for exp, (g, _n) in per.items()}

    def _json_chain(self, f: NseFile, session: dt.date, fo: pl.DataFrame | None,
                    fo_file: NseFile | None) -> pl.DataFrame:
        legs, qty_lots = self._oc(f)
        sym = f.symbol or ""
        expiries = legs.get_column("expiry").unique().to_list()
        lots: list[tuple[dt.date, int | None, str | None, str | None]] = []
        udiff_lots: dict[dt.date, int] = {}
        if fo is not None and fo_file is not None and fo_file.kind == "fo_udiff":
            u = fo.filter(pl.col("symbol") == sym).group_by("expiry").agg(pl.col("lot").drop_nulls().first())
            udiff_lots = {e: int(v) for e, v in u.iter_rows() if v}
        udiff_mode = max(set(udiff_lots.values()), key=list(udiff_lots.values()).count) if udiff_lots else None
        for e in expiries:
            if e in udiff_lots or udiff_mode:
                lots.append((e, udiff_lots.get(e, udiff_mode), "udiff", fo_file.name if fo_file else None))
            elif e in qty_lots:
                lots.append((e, qty_lots[e], "oc_json", f.name))
            else:
                lots.append((e, *self._fallback_lot(sym, e, session)))
        lot_frame = pl.DataFrame(lots, schema={"expiry": pl.Date, "lot_size": pl.Int64, "lot_source": pl.Utf8,
                                               "lot_file": pl.Utf8}, orient="row")
        out = legs.join(lot_frame, on="expiry", how="left")
        if fo is not None and fo_file is not None:
            mine = fo.filter(pl.col("symbol") == sym)
            opts = mine.filter(pl.col("instrument") == "OPT").select(
                "expiry", "strike", "option_type", "close", "security_id").unique(
                ["expiry", "strike", "option_type"], keep="first")
            futs = mine.filter(pl.col("instrument") == "FUT").group_by("expiry").agg(
                pl.col("close").first().alias("futures_price"))
            out = out.join(opts, on=["expiry", "strike", "option_type"], how="left").join(futs, on="expiry",
                                                                                          how="left")
            chain_file = f"{f.name};{fo_file.name}"
        else:
            out = out.with_columns(pl.lit(None, pl.Float64).alias("close"), pl.lit(None, pl.Utf8).alias("security_id"),
                                   pl.lit(None, pl.Float64).alias("futures_price"))
            chain_file = f.name
        return out.with_columns(
            pl.lit(session).alias("trade_date"),
            pl.lit(SRC_OC_JSON).alias("source"),
            pl.lit(chain_file).alias("chain_file"),
            pl.lit("oc_json").alias("underlying_source"),
        ).select(list(_DAY_SCHEMA))

    # --- F&O bhavcopies ----------------------------------------------------------------------

    def _fo(self, f: NseFile) -> pl.DataFrame:
        with self._lock:
            if f.name not in self._fo_cache:
                self._fo_cache[f.name] = self._parse_fo(f)
            return self._fo_cache[f.name]

    def _read_csv(self, f: NseFile) -> pl.DataFrame:
        try:
            if f.member is None:
                src: Path | io.BytesIO = f.path
            else:
                with zipfile.ZipFile(f.path) as zf:
                    src = io.BytesIO(zf.read(f.member))
            df = pl.read_csv(src, infer_schema_length=0, truncate_ragged_lines=True, encoding="utf8-lossy")
        except (OSError, zipfile.BadZipFile, pl.exceptions.PolarsError) as exc:
            raise _bad(f"{f.name}: cannot be read as CSV ({type(exc).__name__}: {exc})", f.name, "file") from None
        return df.rename({c: c.replace("\ufeff", "").strip() for c in df.columns})

    def _parse_fo(self, f: NseFile) -> pl.DataFrame:
        """A bhavcopy as rows: symbol, instrument (OPT/FUT), expiry, strike, option_type, open/high/low,
        close, ltp, volume (contracts), oi_sh / oi_chg_sh (shares), turnover (INR), underlying, lot,
        security_id."""
        df = self._read_csv(f)
        n = f.name
        if f.kind == "fo_bhav":
            inst = df.get_column("INSTRUMENT").str.strip_chars().str.to_uppercase()
            keep = inst.is_in(["OPTIDX", "OPTSTK", "FUTIDX", "FUTSTK"])
            df, inst = df.filter(keep), inst.filter(keep)
            sessions = _dates(df, "TIMESTAMP", n).unique().drop_nulls()
            vol = _num(df, "CONTRACTS", n, "volume")
            close = _num(df, "CLOSE", n, "close")
            out = pl.DataFrame([
                df.get_column("SYMBOL").str.strip_chars().str.to_uppercase().alias("symbol"),
                inst.str.slice(0, 3).alias("instrument"),
                _dates(df, "EXPIRY_DT", n, "expiry"),
                _num(df, "STRIKE_PR", n, "strike"),
                df.get_column("OPTION_TYP").str.strip_chars().str.to_uppercase().alias("option_type"),
                _num(df, "OPEN", n, "open"), _num(df, "HIGH", n, "high"), _num(df, "LOW", n, "low"),
                close.alias("close"),
                close.alias("ltp"),
                vol,
                _num(df, "OPEN_INT", n, "oi_sh"),
                _num(df, "CHG_IN_OI", n, "oi_chg_sh"),
                (_num(df, "VAL_INLAKH", n) * 1e5).alias("turnover"),
                pl.Series("underlying", [None] * df.height, dtype=pl.Float64),
                pl.Series("lot", [None] * df.height, dtype=pl.Int64),
                pl.Series("security_id", [None] * df.height, dtype=pl.Utf8),
            ]).with_columns(pl.when(pl.col("volume") > 0).then(pl.col("close")).alias("ltp"))
        else:
            tp = df.get_column("FinInstrmTp").str.strip_chars().str.to_uppercase()
            keep = tp.is_in(["IDO", "STO", "IDF", "STF"])
            df, tp = df.filter(keep), tp.filter(keep)
            sessions = _dates(df, "TradDt", n).unique().drop_nulls()
            lot = _num(df, "NewBrdLotQty", n, "lot")
            if (lot.fill_null(0) <= 0).any():
                raise _bad(f"{n}: NewBrdLotQty must be a positive number on every row", n, "NewBrdLotQty")
            ltp = _num(df, "LastPric", n, "ltp")
            out = pl.DataFrame([
                df.get_column("TckrSymb").str.strip_chars().str.to_uppercase().alias("symbol"),
                tp.replace_strict({"IDO": "OPT", "STO": "OPT", "IDF": "FUT", "STF": "FUT"}).alias("instrument"),
                _dates(df, "XpryDt", n, "expiry"),
                _num(df, "StrkPric", n, "strike").fill_null(0.0),
                df.get_column("OptnTp").str.strip_chars().str.to_uppercase().fill_null("XX").alias("option_type"),
                _num(df, "OpnPric", n, "open"), _num(df, "HghPric", n, "high"), _num(df, "LwPric", n, "low"),
                _num(df, "ClsPric", n, "close"),
                ltp,
                _num(df, "TtlTradgVol", n, "volume"),
                _num(df, "OpnIntrst", n, "oi_sh"),
                _num(df, "ChngInOpnIntrst", n, "oi_chg_sh"),
                _num(df, "TtlTrfVal", n, "turnover"),
                _num(df, "UndrlygPric", n, "underlying"),
                lot.cast(pl.Int64),
                df.get_column("FinInstrmId").str.strip_chars().alias("security_id"),
            ])
        if sessions.len() > 1 or (sessions.len() == 1 and f.session and sessions[0] != f.session):
            raise _bad(f"{n}: rows of several trade dates {sessions.sort().to_list()[:3]}", n,
                       "TIMESTAMP" if f.kind == "fo_bhav" else "TradDt")
        for col in ("symbol", "expiry"):
            if out.get_column(col).null_count():
                raise _bad(f"{n}: rows without {col}", n, col)
        return out.with_columns(
            pl.when(pl.col(c) == 0).then(None).otherwise(pl.col(c)).alias(c) for c in ("close", "ltp")
        )

    def _fo_lots(self, f: NseFile) -> pl.DataFrame:
        """Legacy bhavcopy: per (symbol, expiry) the turnover-implied lot and the gcd of its share OI."""
        with self._lock:
            if f.name in self._fo_lot_stats:
                return self._fo_lot_stats[f.name]
        fo = self._fo(f)
        avg = pl.mean_horizontal(*(pl.when(pl.col(c) > 0).then(pl.col(c)) for c in ("open", "high", "low", "close")))
        est = (fo.filter((pl.col("volume") > 0) & (pl.col("turnover") > 0))
               .with_columns((pl.col("turnover") / (pl.col("volume") * (pl.col("strike") + avg))).alias("est"))
               .group_by("symbol", "expiry").agg(pl.col("est").median()))
        ints = (fo.select("symbol", "expiry", pl.concat_list(pl.col("oi_sh").abs(), pl.col("oi_chg_sh").abs())
                          .alias("q")).explode("q").filter(pl.col("q") > 0)
                .group_by("symbol", "expiry").agg(pl.col("q").cast(pl.Int64)))
        gcds = pl.DataFrame({
            "symbol": ints.get_column("symbol"), "expiry": ints.get_column("expiry"),
            "share_gcd": [int(np.gcd.reduce(np.asarray(v, dtype=np.int64))) for v in ints.get_column("q").to_list()],
        }, schema={"symbol": pl.Utf8, "expiry": pl.Date, "share_gcd": pl.Int64})
        keys = fo.select("symbol", "expiry").unique()
        stats = keys.join(est, on=["symbol", "expiry"], how="left").join(gcds, on=["symbol", "expiry"], how="left")
        stats = stats.with_columns(pl.col("share_gcd").fill_null(0)).sort("symbol", "expiry")
        with self._lock:
            self._fo_lot_stats[f.name] = stats
        return stats

    def _legacy_lots(self, f: NseFile, session: dt.date) -> pl.DataFrame:
        stats = self._fo_lots(f)
        rows: list[tuple] = []
        inferred: dict[str, list[int]] = {}
        pending: list[tuple[str, dt.date, int]] = []
        for sym, exp, est, g in stats.iter_rows():
            ref = self._table_lot(sym, exp, session)
            if est is not None and est > 0:
                if ref and abs(ref[0] / est - 1.0) <= LOT_AGREEMENT:
                    rows.append((sym, exp, *ref))
                    inferred.setdefault(sym, []).append(ref[0])
                else:
                    lot = _snap_lot(est, g)
                    rows.append((sym, exp, lot, "fo_bhav_turnover", f.name))
                    inferred.setdefault(sym, []).append(lot)
            else:
                pending.append((sym, exp, g))
        for sym, exp, g in pending:  # contracts without trades: a reference lot the share OI agrees with
            ref = self._table_lot(sym, exp, session)
            sibling = [v for v in inferred.get(sym, []) if g == 0 or g % v == 0]
            if ref and (g == 0 or g % ref[0] == 0):
                rows.append((sym, exp, *ref))
            elif sibling:
                rows.append((sym, exp, sibling[0], "fo_bhav_turnover", f.name))
            elif ref:
                rows.append((sym, exp, *ref))
            else:
                rows.append((sym, exp, *self._fallback_lot(sym, exp, session)))
        return pl.DataFrame(rows, schema={"symbol": pl.Utf8, "expiry": pl.Date, "lot_size": pl.Int64,
                                          "lot_source": pl.Utf8, "lot_file": pl.Utf8}, orient="row")

    def _legacy_spot(self, fo: pl.DataFrame, session: dt.date, symbols: list[str]) -> pl.DataFrame:
        """Underlying price per symbol of a legacy bhavcopy day, and where it came from."""
        snaps = {f.symbol: f for f in self._of_kind("oc_json") if f.session == session}
        bars = self._closes_on(session, symbols)
        fut = (fo.filter((pl.col("instrument") == "FUT") & (pl.col("expiry") >= session) & pl.col("close").is_not_null())
               .sort("expiry").group_by("symbol", maintain_order=True).agg(pl.col("expiry").first(),
                                                                           pl.col("close").first()))
        futs = {s: (e, c) for s, e, c in fut.iter_rows()}
        rows = []
        for sym in symbols:
            if sym in snaps:
                try:
                    rows.append((sym, self._oc(snaps[sym])[0].get_column("underlying_price")[0], "oc_json"))
                    continue
                except DataError:
                    pass
            prev = self._prev_close_from_snapshot(sym, session)
            if sym in bars:
                rows.append((sym, bars[sym][0], bars[sym][1]))
            elif prev is not None:
                rows.append((sym, prev, "oc_json_prev_close"))
            elif sym in futs:
                exp, close = futs[sym]
                days = (exp - session).days
                rows.append((sym, close / (1.0 + self.carry_rate * days / 365.0), "futures_carry"))
            else:
                rows.append((sym, None, None))
        return pl.DataFrame(rows, schema={"symbol": pl.Utf8, "underlying_price": pl.Float64,
                                          "underlying_source": pl.Utf8}, orient="row")

    def _prev_close_from_snapshot(self, symbol: str, session: dt.date) -> float | None:
        """``session``'s close of an index, read from the next session's snapshot (``index.previousClose``)."""
        later = sorted((f for f in self._of_kind("oc_json") if f.symbol == symbol and f.session
                        and session < f.session <= session + dt.timedelta(days=10)), key=lambda f: f.session)
        if not later:
            return None
        from ..calendar import previous_session

        f = later[0]
        if previous_session(f.session) != session:
            return None
        try:
            self._oc(f)
        except DataError:
            return None
        return self._oc_prev_close.get(f.name)

    def _bhav_chain(self, fo: pl.DataFrame, f: NseFile, session: dt.date, exclude: set[str]) -> pl.DataFrame:
        opts = fo.filter((pl.col("instrument") == "OPT") & ~pl.col("symbol").is_in(list(exclude)))
        futs = fo.filter(pl.col("instrument") == "FUT").group_by("symbol", "expiry").agg(
            pl.col("close").first().alias("futures_price"))
        if f.kind == "fo_udiff":
            opts = opts.with_columns(pl.col("lot").alias("lot_size"), pl.lit("udiff").alias("lot_source"),
                                     pl.lit(f.name).alias("lot_file"), pl.col("underlying").alias("underlying_price"),
                                     pl.lit("udiff").alias("underlying_source"))
            src = SRC_UDIFF
        else:
            lots = self._legacy_lots(f, session)
            spot = self._legacy_spot(fo, session, opts.get_column("symbol").unique().sort().to_list())
            opts = opts.join(lots, on=["symbol", "expiry"], how="left").join(spot, on="symbol", how="left")
            src = SRC_FO_BHAV
        lot = pl.col("lot_size").cast(pl.Float64)
        return opts.join(futs, on=["symbol", "expiry"], how="left").with_columns(
            pl.lit(session).alias("trade_date"),
            pl.lit(None, pl.Float64).alias("bid"), pl.lit(None, pl.Float64).alias("ask"),
            pl.lit(None, pl.Float64).alias("bid_qty"), pl.lit(None, pl.Float64).alias("ask_qty"),
            (pl.col("oi_sh") / lot).alias("oi"),
            (pl.col("oi_chg_sh") / lot).alias("oi_change"),
            pl.lit(None, pl.Float64).alias("exchange_iv"),
            pl.lit(dt.datetime.combine(session, CLOSE_TIME, tzinfo=IST).astimezone(dt.UTC),
                   dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
            pl.lit(src).alias("source"),
            pl.lit(f.name).alias("chain_file"),
        ).select(list(_DAY_SCHEMA))

    # --- lot tables -------------------------------------------------------------------------

    def _lot_candidates(self) -> list[tuple[dt.date, str, NseFile]]:
        out = []
        for f in self.files():
            if f.kind == "fo_udiff" and f.session:
                out.append((f.session, "udiff", f))
            elif f.kind == "oc_json" and f.session:
                out.append((f.session, "oc_json", f))
            elif f.kind == "fo_mktlots" and f.table_date:
                out.append((f.table_date, "fo_mktlots", f))
        return out

    def _table(self, kind: str, f: NseFile) -> _LotTable | None:
        with self._lock:
            if f.name in self._table_cache:
                return self._table_cache[f.name]
        try:
            if kind == "fo_mktlots":
                table = self._mktlots(f)
            elif kind == "udiff":
                fo = self._fo(f)
                per = fo.filter(pl.col("lot").is_not_null()).group_by("symbol", "expiry").agg(pl.col("lot").first())
                table = _LotTable(f.session or dt.date.min, "udiff", f.name)
                for sym, exp, lot in per.iter_rows():
                    table.by_expiry.setdefault(sym, {})[exp] = int(lot)
                    table.by_month.setdefault(sym, {})[(exp.year, exp.month)] = int(lot)
            else:
                _legs, lots = self._oc(f)
                table = _LotTable(f.session or dt.date.min, "oc_json", f.name)
                if lots and f.symbol:
                    table.by_expiry[f.symbol] = dict(lots)
                    table.by_month[f.symbol] = {(e.year, e.month): v for e, v in sorted(lots.items())}
        except DataError as exc:
            log.warning("nse_files: lot table %s unusable: %s", f.name, exc)
            table = None
        with self._lock:
            self._table_cache[f.name] = table  # type: ignore[assignment]
        return table

    def _mktlots(self, f: NseFile) -> _LotTable:
        df = self._read_csv(f)
        cols = df.columns
        months = []
        for c in cols[2:]:
            if _MONTH_COL.match(c.upper()):
                mon, yy = c.upper().split("-")
                months.append((c, (2000 + int(yy), _MONTHS[mon])))
        table = _LotTable(f.table_date or dt.date.min, "fo_mktlots", f.name)
        sym_col = cols[1]
        for row in df.iter_rows(named=True):  # ~220 rows
            sym = (row[sym_col] or "").strip().upper()
            if not sym or sym == "SYMBOL":
                continue
            per = {}
            for c, ym in months:
                raw = (row.get(c) or "").strip()
                if not raw:
                    continue
                try:
                    per[ym] = int(float(raw))
                except ValueError:
                    raise _bad(f"{f.name}: lot {raw!r} of {sym} in column {c} is not a number", f.name, c,
                               symbol=sym) from None
            if per:
                table.by_month[sym] = per
        if not table.by_month:
            raise _bad(f"{f.name}: no lot sizes", f.name, sym_col)
        return table

    def _table_lot(self, symbol: str, expiry: dt.date, session: dt.date) -> tuple[int, str, str] | None:
        """The lot of ``symbol``'s ``expiry`` contract in the lot table nearest in time to ``session``."""
        cands = sorted(self._lot_candidates(), key=lambda c: (abs((c[0] - session).days), KIND_PRIORITY[c[1]],
                                                              c[2].name))
        for _d, kind, f in cands:
            if kind == "oc_json" and f.symbol != symbol:
                continue
            table = self._table(kind, f)
            if table is None:
                continue
            lot = table.lookup(symbol, expiry)
            if lot:
                return lot, kind, f.name
        return None

    def _fallback_lot(self, symbol: str, expiry: dt.date, session: dt.date) -> tuple[int | None, str | None,
                                                                                    str | None]:
        ref = self._table_lot(symbol, expiry, session)
        if ref:
            return ref
        lot = _universe_lot(symbol)
        return (lot, "universe", "fno_universe.csv") if lot else (None, None, None)

    # --- daily bars ---------------------------------------------------------------------------

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        sym = symbol.upper().replace(" ", "")
        frame = self._bars_for(sym)
        out = frame.filter((pl.col("date") >= start) & (pl.col("date") <= end))
        bad = out.filter(pl.any_horizontal(pl.col(c).is_nan() for c in ("open", "high", "low", "close"))
                         | (pl.col("close") <= 0))
        if bad.height:
            row = bad.row(0, named=True)
            col = "Close" if row["source"] == SRC_INDEX else "CLOSE"
            raise DataError(f"{row['file']}: column {col!r} holds {row['close']} on {row['date']} "
                            f"({bad.height} bad bars; NaN open/high/low counted too)", symbol=sym,
                            source=row["file"], field=col)
        if out.height == 0:
            broken = self._broken_bars_files(sym)
            if broken:
                raise DataError(f"no readable daily bars, and {broken[0]} could hold them: "
                                f"{self.file_errors[broken[0]].reason}", symbol=sym, source=broken[0],
                                field=self.file_errors[broken[0]].field)
            raise DataUnavailable(f"no daily bars in the NSE files between {start} and {end}", symbol=sym)
        return normalize_bars(out, symbol=sym)

    def _broken_bars_files(self, sym: str) -> list[str]:
        """Broken index exports of ``sym`` or broken equity files (for a stock) that could hold its bars."""
        self.files()
        is_index = fno.is_index(sym) or sym == fno.VIX_SYMBOL
        return [rel for rel, (kind, _d, s) in self.file_error_scope.items()
                if (kind == "index_history" and s == sym) or (kind == "eq_bhav" and not is_index)]

    def _bars_for(self, sym: str) -> pl.DataFrame:
        with self._lock:
            if sym in self._bars_cache:
                return self._bars_cache[sym]
        index_files = [f for f in self._of_kind("index_history") if f.symbol == sym]
        broken = [rel for rel, (kind, _d, s) in self.file_error_scope.items() if kind == "index_history" and s == sym]
        if broken:  # an export of this index cannot be read: its bars would be incomplete
            exc = self.file_errors[broken[0]]
            raise DataError(exc.reason, symbol=sym, source=broken[0], field=exc.field)
        if index_files:
            frames = [self._bars_file(f) for f in index_files]
        else:
            frames = [self._bars_file(f).filter(pl.col("symbol") == sym) for f in self._of_kind("eq_bhav")]
        frame = pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=_BARS_RAW)
        frame = frame.unique(["date"], keep="last", maintain_order=True).sort("date")
        with self._lock:
            self._bars_cache[sym] = frame
        return frame

    def _bars_file(self, f: NseFile) -> pl.DataFrame:
        key = "file:" + f.name
        with self._lock:
            if key in self._bars_cache:
                return self._bars_cache[key]
        df = self._read_csv(f)
        n = f.name
        if f.kind == "index_history":
            vol = next((c for c in df.columns if c.lower().startswith("shares traded")), None)
            if f.symbol == "INDIAVIX":
                volume = pl.Series("volume", [0.0] * df.height)
            elif vol:
                volume = _num(df, vol, n, "volume")
            else:
                volume = pl.Series("volume", [None] * df.height, dtype=pl.Float64)
            out = pl.DataFrame([
                _dates(df, "Date", n, "date"),
                pl.Series("symbol", [f.symbol] * df.height, dtype=pl.Utf8),
                _num(df, "Open", n, "open"), _num(df, "High", n, "high"), _num(df, "Low", n, "low"),
                _num(df, "Close", n, "close"), volume,
                pl.Series("source", [SRC_INDEX] * df.height, dtype=pl.Utf8),
                pl.Series("file", [n] * df.height, dtype=pl.Utf8),
            ])
        else:
            series = df.get_column("SERIES").str.strip_chars().str.to_uppercase()
            df = df.filter(series == "EQ")
            date_col = "DATE" if "DATE" in df.columns else "TIMESTAMP"
            out = pl.DataFrame([
                _dates(df, date_col, n, "date"),
                df.get_column("SYMBOL").str.strip_chars().str.to_uppercase().alias("symbol"),
                _num(df, "OPEN", n, "open"), _num(df, "HIGH", n, "high"), _num(df, "LOW", n, "low"),
                _num(df, "CLOSE", n, "close"), _num(df, "TOTTRDQTY", n, "volume"),
                pl.Series("source", [SRC_EQUITY] * df.height, dtype=pl.Utf8),
                pl.Series("file", [n] * df.height, dtype=pl.Utf8),
            ])
        out = out.filter(pl.col("date").is_not_null() & pl.col("close").is_not_null())
        with self._lock:
            self._bars_cache[key] = out
        return out

    def _closes_on(self, session: dt.date, symbols: list[str]) -> dict[str, tuple[float, str]]:
        """That day's close per symbol from index exports and equity files in the folder."""
        out: dict[str, tuple[float, str]] = {}
        idx = {f.symbol for f in self._of_kind("index_history")}
        for sym in symbols:
            if sym in idx:
                try:
                    hit = self._bars_for(sym).filter(pl.col("date") == session)
                except DataError as exc:  # a broken export: the next source of a spot is used (and recorded)
                    log.warning("nse_files: %s close of %s not taken from its export: %s", session, sym, exc)
                    continue
                if hit.height:
                    out[sym] = (hit.get_column("close")[0], "index_history")
        rest = [s for s in symbols if s not in out and s not in idx]
        if rest:
            for f in self._of_kind("eq_bhav"):
                hits = self._bars_file(f).filter((pl.col("date") == session) & pl.col("symbol").is_in(rest))
                for sym, close in hits.select("symbol", "close").iter_rows():
                    out.setdefault(sym, (close, "eq_bhav"))
        return out


_DAY_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": pl.Date, "symbol": pl.Utf8, "expiry": pl.Date, "strike": pl.Float64, "option_type": pl.Utf8,
    "bid": pl.Float64, "ask": pl.Float64, "bid_qty": pl.Float64, "ask_qty": pl.Float64, "ltp": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "oi": pl.Float64, "oi_change": pl.Float64,
    "exchange_iv": pl.Float64, "underlying_price": pl.Float64, "futures_price": pl.Float64,
    "lot_size": pl.Int64, "security_id": pl.Utf8, "snapshot_ts": pl.Datetime("us", "UTC"), "source": pl.Utf8,
    "lot_source": pl.Utf8, "lot_file": pl.Utf8, "underlying_source": pl.Utf8, "chain_file": pl.Utf8,
}
_BARS_RAW: dict[str, pl.DataType] = {
    "date": pl.Date, "symbol": pl.Utf8, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
    "close": pl.Float64, "volume": pl.Float64, "source": pl.Utf8, "file": pl.Utf8,
}
