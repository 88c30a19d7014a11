"""Finding the files: walk ``data_dir`` recursively and recognise each file by its name and header,
never by a fixed path (CSV headers and first rows, zip member names, and each JSON snapshot's
timestamp and underlying found by a byte search; the data is parsed on use).

Anything unrecognised is logged and ignored. A file that should be one of the known kinds but cannot
be read is recorded (:attr:`Inventory.file_errors`) with the sessions and symbol it concerns, so that
what it would have served reports that error instead of "missing".
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import re
import threading
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ... import universe as fno
from ...errors import ConfigError, DataError
from .bars import EQ_COLS, INDEX_COLS
from .bhavcopy import LEGACY_COLS, UDIFF_COLS
from .common import (
    CHAIN_KINDS,
    MONTH_COL,
    MONTHS,
    NseFile,
    bad,
    date_hints,
    index_symbol,
    name_symbol,
    parse_day,
)
from .oc_json import TS_RE, UNDERLYING_RE, parse_ts

log = logging.getLogger(__name__)


def guess_kind(low_name: str) -> str | None:
    """The kind a file that cannot be read was meant to be, from its name (None: unknown)."""
    if low_name.endswith(".json"):
        return "oc_json"
    if re.search(r"bhavcopy_nse_fo|^fo\d\d[a-z]{3}\d{4}bhav", low_name):
        return "fo_udiff" if "bhavcopy_nse_fo" in low_name else "fo_bhav"
    if "mktlots" in low_name:
        return "fo_mktlots"
    if re.search(r"cm_bhav|_eq_|^cm\d\d", low_name):
        return "eq_bhav"
    if index_symbol(low_name):
        return "index_history"
    return None


class Inventory:
    """The recognised files of one folder, scanned once, and the files that could not be read."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.lock = threading.RLock()
        self._files: list[NseFile] | None = None
        self.unrecognized: list[str] = []
        self.file_errors: dict[str, DataError] = {}  # files that should have been readable but are not
        # per broken file: (kind it should have been or None, sessions it concerns, symbol it concerns or None)
        self.file_error_scope: dict[str, tuple[str | None, frozenset[dt.date], str | None]] = {}

    def files(self) -> list[NseFile]:
        """Every recognised file, scanned once: CSV headers and first rows, zip member names, and the
        timestamp/underlying of each JSON snapshot (found by a byte search; the legs are parsed on use)."""
        with self.lock:
            if self._files is None:
                self._files = self._scan()
            return self._files

    def of_kind(self, *kinds: str) -> list[NseFile]:
        return [f for f in self.files() if f.kind in kinds]

    def broken_files_for(self, session: dt.date, symbol: str | None, kinds: Iterable[str | None] = (
            *CHAIN_KINDS, None)) -> list[str]:
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

    def broken_bars_files(self, sym: str) -> list[str]:
        """Broken index exports of ``sym`` or broken equity files (for a stock) that could hold its bars."""
        self.files()
        is_index = fno.is_index(sym) or sym == fno.VIX_SYMBOL
        return [rel for rel, (kind, _d, s) in self.file_error_scope.items()
                if (kind == "index_history" and s == sym) or (kind == "eq_bhav" and not is_index)]

    # --- scanning ------------------------------------------------------------------------------

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
                self._broken(path, rel, bad(f"{rel}: cannot be read ({type(exc).__name__}: {exc})", rel, "file"))
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
        kind = getattr(exc, "kind", None) or guess_kind(low)
        sessions = frozenset([exc.session] if exc.session else date_hints(rel))
        symbol = exc.symbol
        if symbol is None and kind == "index_history":
            symbol = index_symbol(path.name)
        if symbol is None and kind == "oc_json":
            symbol = name_symbol(path.name)
        self.file_errors[rel] = exc
        self.file_error_scope[rel] = (kind, sessions, symbol)
        log.warning("nse_files: %s", exc)

    def _ignore(self, rel: str, why: str) -> None:
        self.unrecognized.append(rel)
        log.info("nse_files: ignoring %s (%s)", rel, why)

    def _scan_json(self, path: Path, rel: str) -> NseFile | None:
        raw = path.read_bytes()
        m_ts, m_und = TS_RE.search(raw), UNDERLYING_RE.search(raw)
        named = name_symbol(path.name)
        hints = date_hints(rel)
        content_sym = m_und.group(1).decode("utf-8", "replace").strip().upper() if m_und else None
        sym = named or content_sym
        one_day = next(iter(hints)) if len(hints) == 1 else None
        if m_ts and m_und and b'"records"' in raw:
            ts = parse_ts(m_ts.group(1).decode("utf-8", "replace"), rel, symbol=sym, session=one_day)
            if named and content_sym != named:
                raise bad(f"{rel}: the file name says {named} but its legs are of {content_sym}", rel, "underlying",
                          symbol=named, session=one_day or ts.date())
            if hints and ts.date() not in hints:
                raise bad(f"{rel}: records.timestamp {ts:%d-%b-%Y %H:%M} is not the session "
                          f"{'/'.join(str(d) for d in sorted(hints))} its path names", rel, "records.timestamp",
                          symbol=sym, session=one_day)
            return NseFile(path, rel, "oc_json", session=ts.date(), symbol=content_sym, snapshot_ts=ts)
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            what = "empty" if not raw.strip() else f"not valid JSON ({exc})"
            raise bad(f"{rel}: {what}", rel, "json", symbol=sym, session=one_day) from None
        rec = doc.get("records") if isinstance(doc, dict) else None
        if isinstance(rec, dict) and "data" in rec:
            if not rec.get("data"):
                self._ignore(rel, "option-chain snapshot without legs")
                return None
            raise bad(f"{rel}: option-chain snapshot without records.timestamp or legs' underlying", rel,
                      "records.timestamp", symbol=sym, session=one_day)
        self._ignore(rel, "JSON that is not an NSE option-chain snapshot")
        return None

    @staticmethod
    def _head(path: Path, member: str | None) -> tuple[list[str], list[str]]:
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

        hints = date_hints(Path(member or rel).name) | date_hints(Path(rel.split("!")[0]).name)

        def first_date(col: str) -> dt.date:
            d = parse_day(first[header.index(col)]) if first and len(first) > header.index(col) else None
            if d is None:
                raise bad(f"{rel}: no readable {col} in the first row", rel, col,
                          session=next(iter(hints)) if len(hints) == 1 else None)
            if hints and d not in hints:
                raise bad(f"{rel}: {col} {d} is not the session {'/'.join(str(h) for h in sorted(hints))} its name "
                          "says", rel, col, session=next(iter(hints)) if len(hints) == 1 else None)
            return d

        if set(LEGACY_COLS) <= cols:
            return NseFile(path, rel, "fo_bhav", member, session=first_date("TIMESTAMP"))
        if set(UDIFF_COLS) <= cols:
            return NseFile(path, rel, "fo_udiff", member, session=first_date("TradDt"))
        if set(EQ_COLS) <= cols and ("TIMESTAMP" in cols or "DATE" in cols):
            return NseFile(path, rel, "eq_bhav", member)
        if len(upper) > 2 and upper[0] == "UNDERLYING" and upper[1] == "SYMBOL" and MONTH_COL.match(upper[2]):
            mon, yy = upper[2].split("-")
            return NseFile(path, rel, "fo_mktlots", member, table_date=dt.date(2000 + int(yy), MONTHS[mon], 1))
        if set(INDEX_COLS) <= cols:
            sym = index_symbol(Path(member or path.name).name)
            if sym:
                return NseFile(path, rel, "index_history", member, symbol=sym)
            self._ignore(rel, "index export whose file name does not say which index")
            return None
        # a header that lacks only a few columns of a known kind is that kind, damaged: an error, not "ignored"
        near = []
        for kind, need in (("fo_bhav", LEGACY_COLS), ("fo_udiff", UDIFF_COLS), ("eq_bhav", EQ_COLS),
                           ("index_history", INDEX_COLS)):
            missing = [c for c in need if c not in cols]
            if 1 <= len(missing) <= max(2, len(need) // 3) and len(need) - len(missing) >= 3:
                near.append((len(missing) / len(need), kind, missing))
        if near:
            _frac, kind, missing = min(near)
            err = bad(f"{rel}: looks like {kind} but has no column {', '.join(missing)}", rel, missing[0],
                      session=next(iter(hints)) if len(hints) == 1 else None)
            err.kind = kind  # type: ignore[attr-defined]
            raise err
        self._ignore(rel, "unrecognised csv header")
        return None
