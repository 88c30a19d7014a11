"""Lot sizes: ``fo_mktlots`` tables and the lot of every contract, inferred where a file does not say.

A lot table is a file that gives lots per symbol and contract (month): a UDiFF bhavcopy
(``NewBrdLotQty``), an option-chain snapshot (gcd of its share quantities) or NSE's ``fo_mktlots.csv``
(one column per contract month). A legacy bhavcopy has no lots: the lot table nearest in time is taken
when it agrees within :data:`LOT_AGREEMENT` with the lot implied by the file's own turnover
(``VAL_INLAKH`` x 1e5 / (``CONTRACTS`` x (strike + average price))), else that implied lot snapped to a
divisor of the contracts' share OI (``fo_bhav_turnover``); last resort: the universe table.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from ... import universe as fno
from ...errors import DataError
from .bhavcopy import Bhavcopies
from .common import MONTH_COL, MONTHS, NseFile, bad, read_csv
from .discovery import Inventory
from .oc_json import Snapshots

log = logging.getLogger(__name__)

KIND_PRIORITY = {"udiff": 0, "oc_json": 1, "fo_mktlots": 2}  # tie-break of lot tables at equal distance
LOT_AGREEMENT = 0.025  # a reference lot within 2.5% of the turnover-implied lot is taken as confirmed
LOT_SNAP = 0.03


@dataclass
class LotTable:
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


def snap_lot(est: float, share_gcd: int) -> int:
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


def universe_lot(symbol: str) -> int | None:
    try:
        return fno.get(symbol).lot_size
    except DataError:
        return None


def mktlots(f: NseFile) -> LotTable:
    """An NSE ``fo_mktlots.csv``: per symbol, the lot of each contract month column."""
    df = read_csv(f)
    cols = df.columns
    months = []
    for c in cols[2:]:
        if MONTH_COL.match(c.upper()):
            mon, yy = c.upper().split("-")
            months.append((c, (2000 + int(yy), MONTHS[mon])))
    table = LotTable(f.table_date or dt.date.min, "fo_mktlots", f.name)
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
                raise bad(f"{f.name}: lot {raw!r} of {sym} in column {c} is not a number", f.name, c,
                          symbol=sym) from None
        if per:
            table.by_month[sym] = per
    if not table.by_month:
        raise bad(f"{f.name}: no lot sizes", f.name, sym_col)
    return table


def turnover_lots(fo: pl.DataFrame) -> pl.DataFrame:
    """Legacy bhavcopy: per (symbol, expiry) the turnover-implied lot and the gcd of its share OI."""
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
    return stats.with_columns(pl.col("share_gcd").fill_null(0)).sort("symbol", "expiry")


class LotTables:
    """The folder's lot tables (each read once) and the lots of contracts whose own file has none."""

    def __init__(self, inventory: Inventory, bhavcopies: Bhavcopies, snapshots: Snapshots) -> None:
        self._inventory = inventory
        self._bhavcopies = bhavcopies
        self._snapshots = snapshots
        self._lock = inventory.lock
        self._tables: dict[str, LotTable] = {}
        self._stats: dict[str, pl.DataFrame] = {}

    def candidates(self) -> list[tuple[dt.date, str, NseFile]]:
        out = []
        for f in self._inventory.files():
            if f.kind == "fo_udiff" and f.session:
                out.append((f.session, "udiff", f))
            elif f.kind == "oc_json" and f.session:
                out.append((f.session, "oc_json", f))
            elif f.kind == "fo_mktlots" and f.table_date:
                out.append((f.table_date, "fo_mktlots", f))
        return out

    def table(self, kind: str, f: NseFile) -> LotTable | None:
        with self._lock:
            if f.name in self._tables:
                return self._tables[f.name]
        try:
            if kind == "fo_mktlots":
                table = mktlots(f)
            elif kind == "udiff":
                fo = self._bhavcopies.get(f)
                per = fo.filter(pl.col("lot").is_not_null()).group_by("symbol", "expiry").agg(pl.col("lot").first())
                table = LotTable(f.session or dt.date.min, "udiff", f.name)
                for sym, exp, lot in per.iter_rows():
                    table.by_expiry.setdefault(sym, {})[exp] = int(lot)
                    table.by_month.setdefault(sym, {})[(exp.year, exp.month)] = int(lot)
            else:
                _legs, lots = self._snapshots.get(f)
                table = LotTable(f.session or dt.date.min, "oc_json", f.name)
                if lots and f.symbol:
                    table.by_expiry[f.symbol] = dict(lots)
                    table.by_month[f.symbol] = {(e.year, e.month): v for e, v in sorted(lots.items())}
        except DataError as exc:
            log.warning("nse_files: lot table %s unusable: %s", f.name, exc)
            table = None
        with self._lock:
            self._tables[f.name] = table  # type: ignore[assignment]
        return table

    def table_lot(self, symbol: str, expiry: dt.date, session: dt.date) -> tuple[int, str, str] | None:
        """The lot of ``symbol``'s ``expiry`` contract in the lot table nearest in time to ``session``."""
        cands = sorted(self.candidates(), key=lambda c: (abs((c[0] - session).days), KIND_PRIORITY[c[1]],
                                                         c[2].name))
        for _d, kind, f in cands:
            if kind == "oc_json" and f.symbol != symbol:
                continue
            table = self.table(kind, f)
            if table is None:
                continue
            lot = table.lookup(symbol, expiry)
            if lot:
                return lot, kind, f.name
        return None

    def fallback_lot(self, symbol: str, expiry: dt.date, session: dt.date) -> tuple[int | None, str | None,
                                                                                   str | None]:
        ref = self.table_lot(symbol, expiry, session)
        if ref:
            return ref
        lot = universe_lot(symbol)
        return (lot, "universe", "fno_universe.csv") if lot else (None, None, None)

    def _turnover_lots(self, f: NseFile) -> pl.DataFrame:
        with self._lock:
            if f.name in self._stats:
                return self._stats[f.name]
        stats = turnover_lots(self._bhavcopies.get(f))
        with self._lock:
            self._stats[f.name] = stats
        return stats

    def legacy_lots(self, f: NseFile, session: dt.date) -> pl.DataFrame:
        """lot_size, lot_source and lot_file per (symbol, expiry) of a legacy bhavcopy."""
        stats = self._turnover_lots(f)
        rows: list[tuple] = []
        inferred: dict[str, list[int]] = {}
        pending: list[tuple[str, dt.date, int]] = []
        for sym, exp, est, g in stats.iter_rows():
            ref = self.table_lot(sym, exp, session)
            if est is not None and est > 0:
                if ref and abs(ref[0] / est - 1.0) <= LOT_AGREEMENT:
                    rows.append((sym, exp, *ref))
                    inferred.setdefault(sym, []).append(ref[0])
                else:
                    lot = snap_lot(est, g)
                    rows.append((sym, exp, lot, "fo_bhav_turnover", f.name))
                    inferred.setdefault(sym, []).append(lot)
            else:
                pending.append((sym, exp, g))
        for sym, exp, g in pending:  # contracts without trades: a reference lot the share OI agrees with
            ref = self.table_lot(sym, exp, session)
            sibling = [v for v in inferred.get(sym, []) if g == 0 or g % v == 0]
            if ref and (g == 0 or g % ref[0] == 0):
                rows.append((sym, exp, *ref))
            elif sibling:
                rows.append((sym, exp, sibling[0], "fo_bhav_turnover", f.name))
            elif ref:
                rows.append((sym, exp, *ref))
            else:
                rows.append((sym, exp, *self.fallback_lot(sym, exp, session)))
        return pl.DataFrame(rows, schema={"symbol": pl.Utf8, "expiry": pl.Date, "lot_size": pl.Int64,
                                          "lot_source": pl.Utf8, "lot_file": pl.Utf8}, orient="row")
