"""The replay's trades: one per executed strategy position, from its fills.

A trade's P&L is the sum of its fills (sells minus buys, INR) less every fee of those fills, plus, for
a trade still open at the end, its open legs at their last mark. ``status``: ``closed`` (every leg
closed by an exit or a settlement), ``open`` (open at the end of the replay, marked), ``unwound``
(the entry failed and its filled legs were unwound: a cost, never a strategy outcome).

Buckets follow optopsy's: DTE at entry (calendar days to the front expiry) in 7-day steps up to 60,
then 60+; the short legs' largest |delta| at entry in 0.1 steps ("none" without a short option leg).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from .. import calendar
from ..store.track_record_queries import (
    candidate_legs,
    chain_quotes_of,
    executed_strategies,
    exit_intent_rows,
    replay_fills,
)

__all__ = ["DTE_EDGES", "TRADE_SCHEMA", "delta_bucket", "dte_bucket", "trade_frame"]

DTE_EDGES = (0, 7, 14, 21, 30, 45, 60)
DELTA_STEP = 0.1

TRADE_SCHEMA: dict[str, pl.DataType] = {
    "trade": pl.Utf8, "allocation_id": pl.Utf8, "position_id": pl.Utf8, "strategy_id": pl.Utf8,
    "symbol": pl.Utf8, "strategy_name": pl.Utf8, "category": pl.Utf8, "conviction": pl.Utf8, "tier": pl.Utf8,
    "status": pl.Utf8, "state": pl.Utf8, "entry_date": pl.Date, "exit_date": pl.Date, "days_in_trade": pl.Int64,
    "exit_rule": pl.Utf8, "lots": pl.Int64, "capital_used": pl.Float64, "cash_flow": pl.Float64,
    "fees": pl.Float64, "open_value": pl.Float64, "pnl": pl.Float64, "traded_value": pl.Float64,
    "fills": pl.Int64, "pop": pl.Float64, "expected_value": pl.Float64, "dte": pl.Int64, "dte_bucket": pl.Utf8,
    "short_delta": pl.Float64, "delta_bucket": pl.Utf8, "stored_realized_pnl": pl.Float64,
    "spread_paid": pl.Float64,
}

_STATUS = {"CLOSED": "closed", "OPEN": "open", "PARTIALLY_EXITED": "open", "PARTIALLY_ESTABLISHED": "open",
           "PENDING": "open", "FAILED": "unwound", "UNWOUND": "unwound"}


def dte_bucket(dte: int | None) -> str | None:
    if dte is None:
        return None
    for lo, hi in zip(DTE_EDGES, DTE_EDGES[1:], strict=False):
        if lo <= dte < hi:
            return f"{lo}-{hi}"
    return f"{DTE_EDGES[-1]}+" if dte >= DTE_EDGES[-1] else None


def delta_bucket(delta: float | None) -> str:
    if delta is None:
        return "none"
    k = min(int(abs(delta) / DELTA_STEP + 1e-9), 9)
    return f"{k * DELTA_STEP:.1f}-{(k + 1) * DELTA_STEP:.1f}"


def _ist_date(ts: dt.datetime) -> dt.date:
    return ts.astimezone(calendar.IST).date()


def trade_frame(wh, marks: Mapping[str, float], end: dt.date) -> pl.DataFrame:
    """One row per executed strategy of the replay warehouse ``wh`` (:data:`TRADE_SCHEMA`); ``marks``:
    security id -> the last mark of an open leg (the replay's), ``end``: the last session replayed."""
    st = executed_strategies(wh)
    if st.height == 0:
        return pl.DataFrame(schema=TRADE_SCHEMA)
    fills = with_spread(replay_fills(wh), wh)
    legs = candidate_legs(wh, st.get_column("strategy_id").to_list())
    intents = exit_intent_rows(wh).filter(pl.col("state").is_in(["FILLED", "PARTIAL"]))
    rows = []
    for s in st.iter_rows(named=True):
        key = (s["allocation_id"], s["position_id"])
        f = fills.filter((pl.col("allocation_id") == key[0]) & (pl.col("position_id") == key[1]))
        rows.append(_trade(s, f, legs.filter(pl.col("strategy_id") == s["strategy_id"]),
                           intents.filter((pl.col("allocation_id") == key[0]) & (pl.col("position_id") == key[1])),
                           marks, end))
    return pl.DataFrame(rows, schema=TRADE_SCHEMA)


def with_spread(fills: pl.DataFrame, wh) -> pl.DataFrame:
    """``fills`` with ``spread_paid``: what each fill paid against the mid of its contract's quote that
    session (buy: price - mid, sell: mid - price, x quantity; 0 for a settlement or a fill without a
    two-sided quote)."""
    if fills.height == 0:
        return fills.with_columns(pl.lit(0.0).alias("spread_paid"))
    q = chain_quotes_of(wh, fills.get_column("security_id").unique().to_list())
    q = q.filter((pl.col("bid") > 0) & (pl.col("ask") > 0)).select(
        "trade_date", "security_id", ((pl.col("bid") + pl.col("ask")) / 2).alias("_mid"))
    f = fills.with_columns(pl.col("traded_at").dt.convert_time_zone(calendar.TZ_NAME).dt.date().alias("_day"))
    f = f.join(q, left_on=["_day", "security_id"], right_on=["trade_date", "security_id"], how="left")
    settled = pl.col("intent").fill_null("").str.contains(":settlement:")
    paid = pl.when(pl.col("side") == "BUY").then(pl.col("price") - pl.col("_mid")).otherwise(pl.col("_mid") - pl.col("price"))
    return f.with_columns(pl.when(settled | pl.col("_mid").is_null()).then(0.0).otherwise(paid * pl.col("quantity"))
                          .alias("spread_paid")).drop("_day", "_mid")


def _trade(s: dict, fills: pl.DataFrame, legs: pl.DataFrame, intents: pl.DataFrame, marks: Mapping[str, float],
           end: dt.date) -> dict:
    signed = [(1 if r["side"] == "SELL" else -1) * float(r["price"]) * int(r["quantity"])
              for r in fills.iter_rows(named=True)]
    net: dict[str, int] = {}
    for r in fills.iter_rows(named=True):
        net[r["security_id"]] = net.get(r["security_id"], 0) + (int(r["quantity"]) if r["side"] == "BUY"
                                                                 else -int(r["quantity"]))
    status = _STATUS.get(s["state"], "open")
    open_value = sum(q * float(marks.get(sid, 0.0)) for sid, q in net.items() if q) if status != "closed" else 0.0
    fees = float(fills.get_column("fees").sum()) if fills.height else 0.0
    cash_flow = float(sum(signed))
    entry_fills = fills.filter(pl.col("purpose") == "entry")
    entry_date = _ist_date(entry_fills.get_column("traded_at").min()) if entry_fills.height else s["trade_date"]
    exit_date = _ist_date(fills.get_column("traded_at").max()) if status != "open" and fills.height else None
    last = end if exit_date is None else exit_date
    rule = None
    if status == "closed" and intents.height:
        rule = intents.sort("trade_date", "intent_key").get_column("rule")[-1]
    elif status == "unwound":
        rule = "entry_unwound"
    options = legs.filter(pl.col("instrument").is_in(["CE", "PE"]))
    front = options.get_column("expiry").min() if options.height else None
    dte = (front - entry_date).days if front is not None and entry_date is not None else None
    shorts = options.filter((pl.col("side") == "SELL") & pl.col("delta").is_not_null())
    short_delta = float(shorts.get_column("delta").abs().max()) if shorts.height else None
    pnl = cash_flow - fees + open_value
    return {
        "trade": f"{s['allocation_id'][:8]}#{s['position_no']}", "allocation_id": s["allocation_id"],
        "position_id": s["position_id"], "strategy_id": s["strategy_id"], "symbol": s["symbol"],
        "strategy_name": s["strategy_name"], "category": s["category"], "conviction": s["conviction"],
        "tier": s["tier"], "status": status, "state": s["state"], "entry_date": entry_date, "exit_date": exit_date,
        "days_in_trade": (last - entry_date).days if entry_date is not None else None, "exit_rule": rule,
        "lots": s["lots"], "capital_used": s["capital_used"], "cash_flow": round(cash_flow, 2), "fees": round(fees, 2),
        "open_value": round(open_value, 2), "pnl": round(pnl, 2),
        "traded_value": round(float(sum(abs(x) for x in signed)), 2), "fills": fills.height, "pop": s["pop"],
        "expected_value": s["expected_value"], "dte": dte, "dte_bucket": dte_bucket(dte), "short_delta": short_delta,
        "delta_bucket": delta_bucket(short_delta), "stored_realized_pnl": s["status_realized_pnl"],
        "spread_paid": round(float(fills.get_column("spread_paid").sum()), 2) if fills.height else 0.0,
    }
