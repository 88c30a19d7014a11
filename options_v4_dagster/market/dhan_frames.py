"""Dhan's market-data answers -> frames: option chain, daily bars and market quotes (units in
:mod:`.dhan`). Every unreadable value is a :class:`DataError` naming the field, never a silent null."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from .. import calendar, universe
from ..errors import DataError, DataUnavailable
from .dhan_client import PROVIDER

IST = calendar.IST

#: The frame :meth:`~.dhan.DhanProvider.quotes` returns.
QUOTE_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.Utf8(), "segment": pl.Utf8(),
    **{c: pl.Float64() for c in ("ltp", "bid", "ask", "bid_qty", "ask_qty", "volume", "oi",
                                 "open", "high", "low", "close")},
    "last_trade_time": pl.Datetime("us", "UTC"), "fetched_at": pl.Datetime("us", "UTC"),
}


def number(value: Any, field: str, symbol: str, session: dt.date | None) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DataError(f"Dhan gave a boolean for {field}", symbol=symbol, session=session, field=field, source=PROVIDER)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"Dhan gave a non-numeric {field}: {value!r}", symbol=symbol, session=session,
                        field=field, source=PROVIDER) from None


#: Dhan's last trade times before this are placeholders (``01/01/1980 00:00:00``: never traded).
_EPOCH_FLOOR = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LTT_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def trade_time(value: Any, symbol: str) -> dt.datetime | None:
    """Dhan's ``last_trade_time`` -> tz-aware UTC: ``DD/MM/YYYY HH:MM:SS`` (or ISO) in IST unless it
    names a zone, or epoch seconds; empty or a pre-2000 placeholder -> None."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise DataError("Dhan gave a boolean for last_trade_time", symbol=symbol, field="last_trade_time",
                        source=PROVIDER)
    if isinstance(value, int | float):
        when = dt.datetime.fromtimestamp(float(value), dt.UTC)
    elif isinstance(value, str):
        text = value.strip()
        parsed = None
        for fmt in _LTT_FORMATS:
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                raise DataError(f"Dhan gave an unreadable last_trade_time: {value!r}", symbol=symbol,
                                field="last_trade_time", source=PROVIDER) from None
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)).astimezone(dt.UTC)
    else:
        raise DataError(f"Dhan gave a last_trade_time of type {type(value).__name__}", symbol=symbol,
                        field="last_trade_time", source=PROVIDER)
    return when if when >= _EPOCH_FLOOR else None


def chain_frame(data: Any, what: str, sym: str, und: universe.Underlying, expiry: dt.date, session: dt.date,
                snapshot: dt.datetime) -> pl.DataFrame:
    """One expiry's option chain answer (``data.oc`` keyed by strike, ``ce``/``pe`` quotes) as chain rows."""
    payload = data.get("data") if isinstance(data, dict) else None
    if not isinstance(payload, dict):
        raise DataError(f"{what}: answer has no data object", symbol=sym, session=session, field="data",
                        source=PROVIDER)
    oc = payload.get("oc")
    if not oc:
        raise DataUnavailable(f"Dhan returned an empty option chain for expiry {expiry}", symbol=sym,
                              session=session, field="oc", source=PROVIDER)
    if not isinstance(oc, dict):
        raise DataError(f"{what}: oc is not an object", symbol=sym, session=session, field="oc", source=PROVIDER)
    underlying = number(payload.get("last_price"), "underlying_price", sym, session)

    cols: dict[str, list] = {k: [] for k in (
        "strike", "option_type", "bid", "ask", "bid_qty", "ask_qty", "ltp", "volume", "oi", "prev_oi",
        "iv", "security_id")}
    fields = (("bid", "top_bid_price"), ("ask", "top_ask_price"), ("bid_qty", "top_bid_quantity"),
              ("ask_qty", "top_ask_quantity"), ("ltp", "last_price"), ("volume", "volume"), ("oi", "oi"),
              ("prev_oi", "previous_oi"), ("iv", "implied_volatility"))
    for key, entry in oc.items():
        try:
            strike = float(key)
        except ValueError:
            raise DataError(f"{what}: strike key {key!r} is not a number", symbol=sym, session=session,
                            field="strike", source=PROVIDER) from None
        if entry is None:
            continue
        if not isinstance(entry, dict):
            raise DataError(f"{what}: strike {key} is not an object", symbol=sym, session=session,
                            field="oc", source=PROVIDER)
        for side, option_type in (("ce", "CE"), ("pe", "PE")):
            quote = entry.get(side)
            if not quote:
                continue
            cols["strike"].append(strike)
            cols["option_type"].append(option_type)
            for col, src in fields:
                cols[col].append(number(quote.get(src), src, sym, session))
            sid = quote.get("security_id")
            cols["security_id"].append(None if sid in (None, "") else str(sid))
    if not cols["strike"]:
        raise DataUnavailable(f"Dhan's option chain for expiry {expiry} has no CE or PE quotes", symbol=sym,
                              session=session, field="oc", source=PROVIDER)

    lot = float(und.lot_size)
    schema = {k: pl.Float64 for k in cols} | {"option_type": pl.Utf8, "security_id": pl.Utf8}
    raw = pl.DataFrame(cols, schema=schema)

    def positive(c: str) -> pl.Expr:
        return pl.when(pl.col(c) > 0).then(pl.col(c)).otherwise(None)

    return raw.select(
        pl.lit(session, dtype=pl.Date).alias("trade_date"),
        pl.lit(sym).alias("symbol"),
        pl.lit(expiry, dtype=pl.Date).alias("expiry"),
        "strike",
        "option_type",
        positive("bid").alias("bid"),
        positive("ask").alias("ask"),
        pl.when(pl.col("bid") > 0).then(pl.col("bid_qty")).alias("bid_qty"),
        pl.when(pl.col("ask") > 0).then(pl.col("ask_qty")).alias("ask_qty"),
        positive("ltp").alias("ltp"),
        pl.lit(None, dtype=pl.Float64).alias("close"),
        (pl.col("volume") / lot).alias("volume"),
        (pl.col("oi") / lot).alias("oi"),
        ((pl.col("oi") - pl.col("prev_oi")) / lot).alias("oi_change"),
        (positive("iv") / 100.0).alias("exchange_iv"),
        pl.lit(underlying, dtype=pl.Float64).alias("underlying_price"),
        pl.lit(None, dtype=pl.Float64).alias("futures_price"),
        pl.lit(und.lot_size, dtype=pl.Int64).alias("lot_size"),
        "security_id",
        pl.lit(snapshot, dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
        pl.lit(PROVIDER).alias("source"),
    )


def bars_frame(data: Any, sym: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The historical answer (parallel open/high/low/close/volume/timestamp arrays) as bars in [start, end]."""
    if not isinstance(data, dict):
        raise DataError("Dhan's historical answer is not an object", symbol=sym, field="data", source=PROVIDER)
    names = ("open", "high", "low", "close", "volume", "timestamp")
    columns = {n: data.get(n) or [] for n in names}
    for n, values in columns.items():
        if not isinstance(values, list):
            raise DataError(f"Dhan's historical {n} is not an array", symbol=sym, field=n, source=PROVIDER)
    lengths = {n: len(v) for n, v in columns.items() if n != "volume" or v}
    if len(set(lengths.values())) > 1:
        raise DataError(f"Dhan's historical arrays differ in length: {lengths}", symbol=sym, field="timestamp",
                        source=PROVIDER)
    if not columns["timestamp"]:
        raise DataUnavailable(f"Dhan has no daily bars from {start} to {end}", symbol=sym, source=PROVIDER)
    if not columns["volume"]:
        columns["volume"] = [None] * len(columns["timestamp"])
    try:
        raw = pl.DataFrame(columns, schema={n: pl.Float64 for n in names}, strict=False)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:  # unconvertible values
        raise DataError(f"Dhan's historical arrays are not numeric ({exc.__class__.__name__})", symbol=sym,
                        field="close", source=PROVIDER) from exc
    bars = raw.select(
        pl.from_epoch((pl.col("timestamp") * 1_000_000).round().cast(pl.Int64), time_unit="us")
        .dt.replace_time_zone("UTC").dt.convert_time_zone(str(IST)).dt.date().alias("date"),
        pl.lit(sym).alias("symbol"),
        "open", "high", "low", "close", "volume",
        pl.lit(PROVIDER).alias("source"),
    ).filter(pl.col("date").is_between(start, end))
    if bars.height == 0:
        raise DataUnavailable(f"Dhan has no daily bars from {start} to {end}", symbol=sym, source=PROVIDER)
    return bars


def quote_segment(data: Any, what: str, segment: str) -> dict[str, Any]:
    """The answer's instruments of ``segment`` by security id ({} when Dhan answered none)."""
    payload = data.get("data") if isinstance(data, dict) else None
    if not isinstance(payload, dict):
        raise DataError(f"{what}: answer has no data object", field="data", source=PROVIDER)
    answered = payload.get(segment)
    if answered is None:
        return {}
    if not isinstance(answered, dict):
        raise DataError(f"{what}: data.{segment} is not an object", field=segment, source=PROVIDER)
    return {str(k).strip(): v for k, v in answered.items()}


def quote_row(item: dict, sid: str, segment: str, fetched: dt.datetime) -> dict[str, Any]:
    """One instrument's quote as a :data:`QUOTE_SCHEMA` row (0 prices -> null, a null bid/ask nulls its size)."""
    symbol = f"{segment}:{sid}"

    def num(value: Any, field: str) -> float | None:
        return number(value, field, symbol, None)

    def price(value: Any, field: str) -> float | None:
        x = num(value, field)
        return x if x is not None and x > 0 else None

    ohlc = item.get("ohlc") or {}
    depth = item.get("depth") or {}
    if not isinstance(ohlc, dict) or not isinstance(depth, dict):
        raise DataError("Dhan's quote has an ohlc or depth that is not an object", symbol=symbol,
                        field="ohlc" if not isinstance(ohlc, dict) else "depth", source=PROVIDER)

    def top(side: str) -> tuple[float | None, float | None]:
        levels = depth.get(side) or []
        if not isinstance(levels, list):
            raise DataError(f"Dhan's quote depth.{side} is not a list", symbol=symbol, field=f"depth.{side}",
                            source=PROVIDER)
        level = levels[0] if levels and isinstance(levels[0], dict) else {}
        p = price(level.get("price"), f"depth.{side}.price")
        return p, (num(level.get("quantity"), f"depth.{side}.quantity") if p is not None else None)

    bid, bid_qty = top("buy")
    ask, ask_qty = top("sell")
    return {
        "security_id": sid, "segment": segment,
        "ltp": price(item.get("last_price"), "last_price"),
        "bid": bid, "ask": ask, "bid_qty": bid_qty, "ask_qty": ask_qty,
        "volume": num(item.get("volume"), "volume"), "oi": num(item.get("oi"), "oi"),
        **{c: price(ohlc.get(c), f"ohlc.{c}") for c in ("open", "high", "low", "close")},
        "last_trade_time": trade_time(item.get("last_trade_time"), symbol),
        "fetched_at": fetched,
    }
