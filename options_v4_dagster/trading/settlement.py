"""Settlement at expiry and the physical-settlement cut-off (pure domain).

* **Index options** (NIFTY, BANKNIFTY, ...) are cash-settled: at expiry every leg closes at its
  intrinsic value against the index's closing price on the expiry day.
* **Stock options** are physically settled on NSE: an in-the-money leg at expiry becomes a delivery
  of the underlying shares at the strike (long call / short put receive, short call / long put
  deliver). Brokers square such positions off before expiry and so does this system:
  :func:`cutoff_decisions` gives an ``EXIT_ALL`` (rule ``physical_settlement_cutoff``, HIGH) for
  every strategy holding a stock option leg that is in the money -- or within ``near_atm_pct`` of
  the strike when ``close_near_atm`` (a last-hour move can put it in the money) -- from the
  ``stock_cutoff_sessions``-th NSE session before the expiry (1 = the session before; 0 = the expiry
  day itself) onwards. ``close_all_stock_options`` closes every stock option leg regardless.
* A leg still open at its expiry close (15:30 IST) settles in :func:`settle_expired` at intrinsic
  value against the underlying's close: one record per leg with the quantity, settlement price,
  realized P&L (gross, average cost) and the STT on exercise (``stt_exercise_rate`` of the intrinsic
  value of long in-the-money legs); stock legs carry the ``delivery_quantity`` (shares, + receive,
  - deliver) that a missed cut-off leaves to a human. A leg whose underlying has no close gets no
  record (it is listed in ``missing_close``): a missing input never settles a position at a guess.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from .. import calendar
from ..universe import INDEX_SYMBOLS
from .decisions import PRECEDENCE, Action, Rule, Urgency
from .exit_config import SettlementRule
from .valuation import OPEN_LEGS_SCHEMA, Valuation, conform

__all__ = ["SETTLEMENT_SCHEMA", "SettlementResult", "cutoff_decisions", "cutoff_session", "settle_expired"]

SETTLEMENT_SCHEMA: dict[str, pl.DataType] = {
    "strategy_id": pl.Utf8, "allocation_id": pl.Utf8, "position_id": pl.Utf8, "leg": pl.Int64,
    "symbol": pl.Utf8, "security_id": pl.Utf8, "expiry": pl.Date, "strike": pl.Float64, "option_type": pl.Utf8,
    "quantity": pl.Int64,  # signed shares settled (the open quantity)
    "average_price": pl.Float64,
    "underlying_close": pl.Float64,
    "settlement_price": pl.Float64,  # intrinsic value per share
    "itm": pl.Boolean,
    "method": pl.Utf8,  # cash / physical
    "delivery_quantity": pl.Int64,  # shares of the underlying: + receive, - deliver (physical, ITM); else 0
    "realized_pnl": pl.Float64,  # (settlement_price - average_price) x quantity, before charges
    "stt": pl.Float64,  # STT on exercise (long ITM legs)
    "realized_pnl_net": pl.Float64,
}


@dataclass(frozen=True)
class SettlementResult:
    records: pl.DataFrame  # SETTLEMENT_SCHEMA
    missing_close: list[str]  # symbols with expired legs but no underlying close


def _expiry_close_utc(expiry: pl.Expr) -> pl.Expr:
    return (expiry.cast(pl.Datetime("us")) + pl.duration(hours=15, minutes=30)).dt.replace_time_zone(
        calendar.TZ_NAME).dt.convert_time_zone("UTC")


def settle_expired(legs: pl.DataFrame, closes: Mapping[str, float] | pl.DataFrame, as_of: dt.datetime,
                   config: SettlementRule | None = None) -> SettlementResult:
    """Settlement records of the legs of ``legs`` (:data:`~.valuation.OPEN_LEGS_SCHEMA`) whose expiry
    close is at or before ``as_of`` (tz-aware), against ``closes`` (symbol -> the underlying's close
    on the expiry day, or a frame ``symbol``, ``close``)."""
    cfg = config or SettlementRule()
    lg = conform(legs, OPEN_LEGS_SCHEMA, set(OPEN_LEGS_SCHEMA) - {"symbol", "expiry", "strike", "option_type",
                                                                  "quantity", "average_price", "strategy_id", "leg"},
                 "open legs").with_columns(pl.col("symbol").str.to_uppercase(), pl.col("option_type").str.to_uppercase())
    if isinstance(closes, pl.DataFrame):
        cl = closes.select(pl.col("symbol").str.to_uppercase(), pl.col("close").cast(pl.Float64))
    else:
        cl = pl.DataFrame({"symbol": [s.upper() for s in closes], "close": [float(v) for v in closes.values()]},
                          schema={"symbol": pl.Utf8, "close": pl.Float64})
    now = pl.lit(as_of).dt.convert_time_zone("UTC")
    exp = lg.filter((_expiry_close_utc(pl.col("expiry")) <= now) & (pl.col("quantity") != 0)).join(
        cl, on="symbol", how="left")
    missing = sorted(set(exp.filter(pl.col("close").is_null()).get_column("symbol").to_list()))
    exp = exp.filter(pl.col("close").is_not_null())
    is_call = pl.col("option_type") == "CE"
    intrinsic = pl.max_horizontal(pl.when(is_call).then(pl.col("close") - pl.col("strike"))
                                  .otherwise(pl.col("strike") - pl.col("close")), pl.lit(0.0))
    out = exp.with_columns(intrinsic.alias("settlement_price"), pl.col("close").alias("underlying_close"),
                           pl.col("symbol").is_in(list(INDEX_SYMBOLS)).alias("_index")).with_columns(
        (pl.col("settlement_price") > 0).alias("itm"),
        pl.when(pl.col("_index")).then(pl.lit("cash")).otherwise(pl.lit("physical")).alias("method"),
        ((pl.col("settlement_price") - pl.col("average_price")) * pl.col("quantity")).alias("realized_pnl"),
        pl.when(pl.col("quantity") > 0).then(
            (cfg.stt_exercise_rate * pl.col("settlement_price") * pl.col("quantity")).round(2)).otherwise(0.0)
        .alias("stt"),
    ).with_columns(
        pl.when(~pl.col("_index") & pl.col("itm")).then(
            pl.when(is_call).then(pl.col("quantity")).otherwise(-pl.col("quantity"))).otherwise(0)
        .alias("delivery_quantity"),
        (pl.col("realized_pnl") - pl.col("stt")).alias("realized_pnl_net"),
    )
    return SettlementResult(out.select(list(SETTLEMENT_SCHEMA)).cast(SETTLEMENT_SCHEMA), missing)


def cutoff_session(expiry: dt.date, sessions_before: int) -> dt.date:
    """The ``sessions_before``-th NSE session before ``expiry`` (0: the expiry day itself)."""
    d = expiry
    for _ in range(sessions_before):
        d = calendar.previous_session(d)
    return d


def cutoff_decisions(valuation: Valuation, config: SettlementRule | None = None) -> pl.DataFrame:
    """``EXIT_ALL`` decisions (rule ``physical_settlement_cutoff``, level = the leg's expiry) for the
    strategies holding a stock option leg at risk of delivery on or after its cut-off session (the
    module docstring); one per strategy (its earliest such expiry). Columns of
    :data:`~.decisions.DECISION_SCHEMA` without ``primary`` / ``actionable``."""
    cfg = config or SettlementRule()
    symbol = valuation.legs.get_column("symbol")
    stock = np.ones(symbol.len(), dtype=bool)
    for index in INDEX_SYMBOLS:  # direct comparisons: cheap when every leg is an index option
        stock &= (symbol != index).fill_null(False).to_numpy() if symbol.null_count() else (symbol != index).to_numpy()
    if not stock.any():
        return pl.DataFrame()
    legs = valuation.legs.filter(pl.lit(pl.Series(stock)) & ~pl.col("expired") & (pl.col("quantity") != 0))
    rule = Rule.PHYSICAL_SETTLEMENT_CUTOFF
    if legs.height == 0:
        return pl.DataFrame()
    expiries = legs.get_column("expiry").unique().to_list()
    cut = pl.DataFrame({"expiry": expiries, "cutoff": [cutoff_session(e, cfg.stock_cutoff_sessions) for e in expiries]},
                       schema={"expiry": pl.Date, "cutoff": pl.Date})
    near = pl.col("spot_to_strike_pct").abs() <= cfg.near_atm_pct
    risk = pl.lit(True) if cfg.close_all_stock_options else (
        pl.col("itm") | (near if cfg.close_near_atm else pl.lit(False)))
    hit = legs.join(cut, on="expiry").filter((pl.col("cutoff") <= valuation.session) & risk.fill_null(True))
    if hit.height == 0:
        return pl.DataFrame()
    first = hit.sort("expiry", "leg").group_by("strategy_id", maintain_order=True).first()
    why = pl.when(pl.col("itm")).then(pl.lit("in the money")).otherwise(pl.lit("near the money"))
    return first.select(
        "strategy_id", pl.lit(Action.EXIT_ALL.value).alias("action"), pl.lit(Urgency.HIGH.value).alias("urgency"),
        pl.lit(rule.value).alias("rule"), pl.col("expiry").dt.to_string("%Y-%m-%d").alias("level"),
        pl.concat_str([pl.col("strategy_id"), pl.lit(rule.value), pl.col("expiry").dt.to_string("%Y-%m-%d")],
                      separator=":").alias("intent_key"),
        pl.col("spot").alias("value"), pl.col("strike").alias("threshold"), pl.lit(0, pl.Int64).alias("lots"),
        pl.format("stock option {} {} {} expiring {} is {} and physically settled: closing before expiry "
                  "(cut-off session {})", pl.col("symbol"), pl.col("strike"), pl.col("option_type"),
                  pl.col("expiry"), why, pl.col("cutoff")).alias("reason"),
        pl.lit(PRECEDENCE[rule] * 10, pl.Int64).alias("precedence"))
