""":class:`NseFilesProvider`: one session's chains assembled from the folder's snapshots and
bhavcopies (see the package doc for the choices), daily bars from its index and equity files."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ... import calendar
from ...errors import DataError, DataUnavailable
from ..base import Failure, MarketDataProvider, empty_chain, normalize_chain
from . import bhavcopy
from .bars import DailyBars
from .bhavcopy import Bhavcopies
from .common import CHAIN_KINDS, DAY_SCHEMA, NseFile
from .discovery import Inventory
from .lots import LotTables, mktlots
from .oc_json import Snapshots, json_chain

log = logging.getLogger(__name__)


@dataclass
class _Day:
    frame: pl.DataFrame  # chain columns + lot_source, lot_file, underlying_source, chain_file
    by_symbol: dict[str, pl.DataFrame]
    errors: dict[str, DataError]  # per symbol
    day_error: DataError | None = None  # the bhavcopy of the day could not be read


class NseFilesProvider(MarketDataProvider):
    """Option chains and daily bars replayed from a folder of real NSE files (see the package doc)."""

    name = "nse_files"
    carry_rate = 0.07  # simple annual carry for legacy days whose only underlying price is a future

    def __init__(self, data_dir: str | Path, *, carry_rate: float | None = None, **_ignored: object) -> None:
        self.inventory = Inventory(data_dir)
        self.data_dir = self.inventory.data_dir
        if carry_rate is not None:
            self.carry_rate = float(carry_rate)
        self._lock = self.inventory.lock
        self.unrecognized = self.inventory.unrecognized
        self.file_errors = self.inventory.file_errors  # files that should have been readable but are not
        # per broken file: (kind it should have been or None, sessions it concerns, symbol it concerns or None)
        self.file_error_scope = self.inventory.file_error_scope
        self._snapshots = Snapshots(self._lock)
        self._bhavcopies = Bhavcopies(self._lock)
        self._lots = LotTables(self.inventory, self._bhavcopies, self._snapshots)
        self._bars = DailyBars(self.inventory)
        self._day_cache: dict[dt.date, _Day] = {}

    # --- inventory -------------------------------------------------------------------------

    def files(self) -> list[NseFile]:
        """Every recognised file, scanned once (see :mod:`.discovery`)."""
        return self.inventory.files()

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
                out[f.name] = self._snapshots.get(f)[0].height
            elif f.kind in ("fo_bhav", "fo_udiff"):
                out[f.name] = self._bhavcopies.get(f).height
            elif f.kind in ("eq_bhav", "index_history"):
                out[f.name] = self._bars.bars_file(f).height
            elif f.kind == "fo_mktlots":
                out[f.name] = len(mktlots(f).by_month)
        return out

    # --- sessions and symbols ----------------------------------------------------------------

    def sessions_available(self) -> list[dt.date]:
        """Sessions the folder holds option data for (snapshots or F&O bhavcopies), sorted."""
        days = {f.session for f in self.inventory.of_kind(*CHAIN_KINDS) if f.session}
        days |= {d for kind, ds, _s in self.file_error_scope.values() if kind in CHAIN_KINDS for d in ds}
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
        broken = self.inventory.broken_files_for(session, symbol)
        if broken:
            raise DataError(f"no readable option data, and {broken[0]} could hold it: "
                            f"{self.file_errors[broken[0]].reason}", symbol=symbol, session=session,
                            source=broken[0], field=self.file_errors[broken[0]].field)
        raise DataUnavailable("the NSE files hold no option chain", symbol=symbol, session=session)

    def _day(self, session: dt.date) -> _Day:
        with self._lock:
            if session not in self._day_cache:
                self._day_cache[session] = self._build_day(session)
            return self._day_cache[session]

    def _build_day(self, session: dt.date) -> _Day:
        snaps: dict[str, NseFile] = {}
        for f in self.inventory.of_kind("oc_json"):
            if f.session == session and f.symbol:
                cur = snaps.get(f.symbol)
                if cur is None or (f.snapshot_ts, f.name) > (cur.snapshot_ts, cur.name):
                    snaps[f.symbol] = f
        fo_files = sorted((f for f in self.inventory.of_kind("fo_udiff", "fo_bhav") if f.session == session),
                          key=lambda f: (f.kind != "fo_udiff", f.name))
        if len(fo_files) > 1:
            log.info("nse_files: %s has %d F&O bhavcopies; using %s", session, len(fo_files), fo_files[0].name)
        fo_file = fo_files[0] if fo_files else None
        fo: pl.DataFrame | None = None
        day_error: DataError | None = None
        if fo_file is not None:
            try:
                fo = self._bhavcopies.get(fo_file)
            except DataError as exc:
                day_error = DataError(exc.reason, source=exc.source, field=exc.field, session=session)
        errors: dict[str, DataError] = {}
        for rel in self.inventory.broken_files_for(session, None):
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
                parts.append(json_chain(f, self._snapshots.get(f), session, fo, fo_file, self._lots.fallback_lot))
            except DataError as exc:
                errors[sym] = DataError(exc.reason, source=exc.source or f.name, field=exc.field, symbol=sym,
                                        session=session)
        if fo is not None and fo_file is not None:
            parts.append(self._bhav_chain(fo, fo_file, session, exclude=set(snaps)))
        frame = pl.concat(parts, how="vertical") if parts else pl.DataFrame(schema=DAY_SCHEMA)
        by_symbol = {k[0]: v for k, v in frame.partition_by("symbol", as_dict=True).items()} if frame.height else {}
        return _Day(frame=frame, by_symbol=by_symbol, errors=errors, day_error=day_error)

    def _bhav_chain(self, fo: pl.DataFrame, f: NseFile, session: dt.date, exclude: set[str]) -> pl.DataFrame:
        opts = bhavcopy.options(fo, exclude)
        if f.kind == "fo_udiff":
            opts = bhavcopy.udiff_lots_and_spot(opts, f)
        else:
            lots = self._lots.legacy_lots(f, session)
            spot = self._legacy_spot(fo, session, opts.get_column("symbol").unique().sort().to_list())
            opts = opts.join(lots, on=["symbol", "expiry"], how="left").join(spot, on="symbol", how="left")
        return bhavcopy.chain_frame(opts, fo, f, session)

    def _legacy_spot(self, fo: pl.DataFrame, session: dt.date, symbols: list[str]) -> pl.DataFrame:
        """Underlying price per symbol of a legacy bhavcopy day, and where it came from."""
        snaps = {f.symbol: f for f in self.inventory.of_kind("oc_json") if f.session == session}
        bars = self._bars.closes_on(session, symbols)
        futs = bhavcopy.near_futures(fo, session)
        rows = []
        for sym in symbols:
            if sym in snaps:
                try:
                    rows.append((sym, self._snapshots.get(snaps[sym])[0].get_column("underlying_price")[0], "oc_json"))
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
        later = sorted((f for f in self.inventory.of_kind("oc_json") if f.symbol == symbol and f.session
                        and session < f.session <= session + dt.timedelta(days=10)), key=lambda f: f.session)
        if not later:
            return None
        f = later[0]
        if calendar.previous_session(f.session) != session:
            return None
        try:
            self._snapshots.get(f)
        except DataError:
            return None
        return self._snapshots.prev_close(f)

    # --- daily bars ---------------------------------------------------------------------------

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        return self._bars.daily_bars(symbol, start, end)
