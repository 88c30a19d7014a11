"""``oc_json``: NSE option-chain API snapshots (``{"records": {"data": [...], "timestamp", ...}}``).

One underlying (the legs' ``underlying``) at one moment (``records.timestamp``, IST). Volume and OI
are already in contracts; bid/ask quantities are in shares, so their greatest common divisor per
expiry is the lot (:func:`qty_lots`). NSE writes 0 for a missing bid, ask or last price: null here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
from collections.abc import Callable

import numpy as np
import polars as pl

from ...errors import DataUnavailable
from .common import CLOSE_TIME, DAY_SCHEMA, IST, SRC_OC_JSON, NseFile, bad, dates

TS_RE = re.compile(rb'"timestamp"\s*:\s*"([^"]+)"')
UNDERLYING_RE = re.compile(rb'"underlying"\s*:\s*"([^"]+)"')

LEG_SCHEMA = {
    "strikePrice": pl.Float64, "expiryDate": pl.Utf8, "underlying": pl.Utf8, "openInterest": pl.Float64,
    "changeinOpenInterest": pl.Float64, "totalTradedVolume": pl.Float64, "impliedVolatility": pl.Float64,
    "lastPrice": pl.Float64, "totalBuyQuantity": pl.Float64, "totalSellQuantity": pl.Float64,
    "bidQty": pl.Float64, "bidprice": pl.Float64, "askQty": pl.Float64, "askPrice": pl.Float64,
    "underlyingValue": pl.Float64,
}

#: legs of a snapshot in chain units, and the lot per expiry read off its quantities
Snapshot = tuple[pl.DataFrame, dict[dt.date, int]]
#: (lot, lot_source, lot_file) of a symbol's expiry on a session when the files give none of their own
FallbackLot = Callable[[str, dt.date, dt.date], tuple[int | None, str | None, str | None]]


def parse_ts(text: str, rel: str, *, symbol: str | None = None, session: dt.date | None = None) -> dt.datetime:
    for fmt in ("%d-%b-%Y %H:%M:%S", "%d-%b-%Y %H:%M", "%d-%b-%Y"):
        try:
            t = dt.datetime.strptime(text.strip().title(), fmt)
            if fmt == "%d-%b-%Y":
                t = dt.datetime.combine(t.date(), CLOSE_TIME)
            return t.replace(tzinfo=IST)
        except ValueError:
            continue
    raise bad(f"{rel}: records.timestamp {text!r} is not a date like 17-Jul-2025 15:30:00", rel,
              "records.timestamp", symbol=symbol, session=session)


class Snapshots:
    """Parsed snapshots, each parsed once (``lock`` is shared with the provider's other caches)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._cache: dict[str, Snapshot] = {}
        self._prev_close: dict[str, float] = {}  # index snapshots: records.index.previousClose

    def get(self, f: NseFile) -> Snapshot:
        """Legs of a snapshot in chain units, and the lot per expiry read off its quantities."""
        with self._lock:
            if f.name not in self._cache:
                self._cache[f.name] = parse_snapshot(f, self._prev_close)
            return self._cache[f.name]

    def prev_close(self, f: NseFile) -> float | None:
        """``records.index.previousClose`` of an index snapshot already read with :meth:`get`."""
        return self._prev_close.get(f.name)


def parse_snapshot(f: NseFile, prev_close: dict[str, float]) -> Snapshot:
    """Parse ``f``; an index snapshot's ``records.index.previousClose`` goes into ``prev_close``."""
    rel = f.name
    try:
        doc = json.loads(f.path.read_bytes())
    except ValueError as exc:
        raise bad(f"{rel}: not valid JSON ({exc})", rel, "json", symbol=f.symbol, session=f.session) from None
    rec = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("data"), list):
        raise bad(f"{rel}: records.data is missing", rel, "records.data", symbol=f.symbol, session=f.session)
    ts = parse_ts(str(rec.get("timestamp", "")), rel)
    spot = rec.get("underlyingValue")
    index = rec.get("index")
    prev = index.get("previousClose") if isinstance(index, dict) else None
    if isinstance(prev, int | float) and prev > 0:
        prev_close[f.name] = float(prev)
    frames = []
    for opt in ("CE", "PE"):
        legs = [row[opt] for row in rec["data"] if isinstance(row, dict) and isinstance(row.get(opt), dict)]
        if legs:
            frames.append(legs_frame(legs, rel, f).with_columns(pl.lit(opt).alias("option_type")))
    if not frames:
        raise DataUnavailable(f"{rel}: snapshot has no legs", symbol=f.symbol, session=f.session)
    legs = pl.concat(frames, how="vertical")
    unds = legs.get_column("underlying").drop_nulls().unique().to_list()
    if len(unds) > 1:
        raise bad(f"{rel}: legs of several underlyings {sorted(unds)[:3]}", rel, "underlying")
    expiry = dates(legs, "expiryDate", rel, "expiry")
    if isinstance(spot, int | float) and not math.isfinite(spot):
        raise bad(f"{rel}: records.underlyingValue is {spot}", rel, "underlying_price", symbol=f.symbol,
                  session=f.session)
    if isinstance(spot, int | float) and spot < 0:
        raise bad(f"{rel}: records.underlyingValue is {spot}, not a positive price", rel, "underlying_price",
                  symbol=f.symbol, session=f.session)
    if not isinstance(spot, int | float) or spot <= 0:
        leg_spots = legs.get_column("underlyingValue").drop_nulls()
        if leg_spots.is_nan().any():
            raise bad(f"{rel}: legs' underlyingValue is NaN", rel, "underlying_price", symbol=f.symbol,
                      session=f.session)
        spot = leg_spots.max()
    if spot is None or spot <= 0:
        raise bad(f"{rel}: no positive underlyingValue", rel, "underlying_price", symbol=f.symbol,
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
    return out, qty_lots(legs.with_columns(expiry))


def legs_frame(legs: list[dict], rel: str, f: NseFile) -> pl.DataFrame:
    try:
        return pl.from_dicts(legs, schema=LEG_SCHEMA)
    except (pl.exceptions.PolarsError, TypeError, ValueError):  # a leg field of the wrong type: name it
        for name, dtype in LEG_SCHEMA.items():
            ok = (str,) if dtype == pl.Utf8 else (int, float)
            wrong = [leg[name] for leg in legs if leg.get(name) is not None
                     and (not isinstance(leg[name], ok) or isinstance(leg[name], bool))]
            if wrong:
                raise bad(f"{rel}: leg field {name!r} holds {wrong[0]!r}, not a {dtype}", rel, name,
                          symbol=f.symbol, session=f.session) from None
        raise


def qty_lots(legs: pl.DataFrame) -> dict[dt.date, int]:
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


def json_chain(f: NseFile, snapshot: Snapshot, session: dt.date, fo: pl.DataFrame | None,
               fo_file: NseFile | None, fallback_lot: FallbackLot) -> pl.DataFrame:
    """A snapshot's chain in :data:`DAY_SCHEMA`: lots from a same-day UDiFF, else the snapshot's own
    quantities, else ``fallback_lot``; ``close``, ``security_id`` and ``futures_price`` from a same-day
    bhavcopy ``fo`` when there is one."""
    legs, lots_by_qty = snapshot
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
        elif e in lots_by_qty:
            lots.append((e, lots_by_qty[e], "oc_json", f.name))
        else:
            lots.append((e, *fallback_lot(sym, e, session)))
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
    ).select(list(DAY_SCHEMA))
