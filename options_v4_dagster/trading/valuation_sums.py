"""Per-strategy sums of the leg valuation (the strategy half of :func:`.valuation.value_positions`),
on numpy arrays: the legs come sorted by strategy, so every sum, minimum and "nearest" is a
``reduceat`` / sort over contiguous groups; polars only joins the strategy facts and assembles the frame.
Column meanings: :mod:`.valuation`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import repeat

import numpy as np
import polars as pl
import pyarrow.compute as pc

from ..calendar import IST

__all__ = ["strategy_values"]

_NONE = np.iinfo(np.int64).max
_IST_OFFSET = np.timedelta64(330, "m")  # IST has no daylight saving


def _reduce(ufunc: np.ufunc, x: np.ndarray, first: np.ndarray) -> np.ndarray:
    return ufunc.reduceat(x, first) if first.size else np.zeros(0, dtype=x.dtype)


def _f(x: np.ndarray, name: str) -> pl.Series:
    return pl.Series(name, x, dtype=pl.Float64, nan_to_null=True)


def _nearest_breakeven(breakevens: pl.Series, spot: np.ndarray) -> np.ndarray:
    """Per strategy, the breakeven nearest to the spot (the first one without a spot); NaN for no
    breakevens or a list holding a null."""
    arr = breakevens.to_arrow()
    lens = pc.list_value_length(arr).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat_a = pc.list_flatten(arr)
    flat = flat_a.to_numpy(zero_copy_only=False).astype(float)
    out = np.full(spot.size, np.nan)
    has = np.flatnonzero(lens > 0)
    if has.size == 0:
        return out
    rep = np.repeat(np.arange(spot.size), lens)
    start = (np.cumsum(lens) - lens)[has]
    with np.errstate(invalid="ignore"):
        d = np.abs(spot[rep] - flat)
    pick = np.lexsort((d, rep))[start]  # stable: NaN distances (no spot) keep the list order
    out[has] = flat[pick]
    null = pc.is_null(flat_a).to_numpy(zero_copy_only=False).astype(np.int64)
    out[has[np.add.reduceat(null, start) > 0]] = np.nan
    return out


def _aligned(facts: pl.DataFrame, sids: pl.Series) -> pl.DataFrame:
    """``facts`` in the order of ``sids`` (the last row of a repeated id; a null row for a missing one)."""
    fid = facts.get_column("strategy_id")
    if fid.len() == sids.len() and fid.equals(sids):
        return facts
    row = dict(zip(fid.to_list(), range(fid.len()), strict=True))
    idx = np.fromiter(map(row.get, sids.to_list(), repeat(facts.height)), np.int64, sids.len())
    if (idx == facts.height).any():
        facts = pl.concat([facts, facts.clear(1)])
    return facts[idx]


def strategy_values(lg: pl.DataFrame, a: dict[str, np.ndarray], facts: pl.DataFrame, as_of: dt.datetime,
                    columns: Sequence[str]) -> pl.DataFrame:
    """One row per strategy of the legs ``lg`` (sorted by ``strategy_row``; ``a`` their numeric
    columns as arrays) joined to ``facts``, with exactly ``columns``."""
    row, q = a["strategy_row"], a["quantity"]
    first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if row.size else np.zeros(0, dtype=np.int64)
    live = ~a["expired"]

    def total(x: np.ndarray) -> np.ndarray:
        return _reduce(np.add, np.nan_to_num(x), first)

    def live_min(x: np.ndarray) -> np.ndarray:
        return _reduce(np.minimum, np.where(live, x, _NONE), first)

    with np.errstate(invalid="ignore"):
        sd = np.where((q < 0) & live, np.abs(a["strike"] - a["spot"]), np.nan)
    near = np.lexsort((sd, row))[first]  # per strategy, the live short leg nearest the spot (NaN last)
    ids = lg.select("strategy_id", "allocation_id", "position_id", pl.col("symbol").alias("_sym"))[first]
    sums = {c: _f(total(a[c]), c) for c in ("unrealized_mid", "unrealized_close", "realized_pnl", "fees",
                                            "realized_net", "pnl_mid", "pnl_close")}
    agg = pl.DataFrame([
        *ids, pl.Series("legs", np.diff(np.r_[first, row.size]).astype(np.uint32)),
        pl.Series("front_expiry", np.where((e := live_min(a["expiry"])) == _NONE, np.iinfo(np.int64).min, e)
                  .astype("datetime64[D]")),  # the int64 minimum is NaT: null
        pl.Series("front_dte", np.where((d := live_min(a["dte"])) == _NONE, np.nan, d), nan_to_null=True).cast(pl.Int64),
        _f(a["spot"][first], "spot"), *sums.values(),
        _f(total(a["mid"] * q), "value_mid"), _f(total(a["close_price"] * q), "value_close"),
        *[_f(total(np.where(live, a[f"position_{g}"], 0.0)), g) for g in ("delta", "gamma", "vega", "theta")],
        _f(np.where(np.isfinite(sd[near]), a["strike"][near], np.nan), "nearest_short_strike"),
        pl.Series("quotes_missing", _reduce(np.add, np.isnan(a["mid"]).astype(np.uint32), first).astype(np.uint32)),
        pl.Series("expired_legs", _reduce(np.add, a["expired"].astype(np.uint32), first).astype(np.uint32)),
    ])
    s = pl.DataFrame([*agg, *_aligned(facts, agg.get_column("strategy_id")).drop("strategy_id")])
    s = s.with_columns(pl.coalesce("symbol", "_sym").alias("symbol"))

    def col(c: str) -> np.ndarray:
        return s.get_column(c).to_numpy().astype(float)

    spot, pnl_close, pnl_mid = col("spot"), col("pnl_close"), col("pnl_mid")
    ml, cap = col("max_loss"), col("capital")
    nb = _nearest_breakeven(s.get_column("breakevens"), spot)
    nss = col("nearest_short_strike")
    entered = s.get_column("entered_at").to_numpy()  # UTC
    today = np.datetime64(as_of.astimezone(IST).date(), "D")
    days = (today - (entered + _IST_OFFSET).astype("datetime64[D]")).astype("timedelta64[D]")
    with np.errstate(divide="ignore", invalid="ignore"):
        ml_ = np.where(ml > 0, ml, np.nan)
        new = {
            "days_in_trade": pl.Series("days_in_trade", days.astype(np.int64), dtype=pl.Int64).scatter(
                np.flatnonzero(np.isnat(days)), None),
            "pnl_pct_max_loss": _f(pnl_close / ml_, "pnl_pct_max_loss"),
            "pnl_mid_pct_max_loss": _f(pnl_mid / ml_, "pnl_mid_pct_max_loss"),
            "pnl_pct_capital": _f(pnl_close / np.where(cap > 0, cap, np.nan), "pnl_pct_capital"),
            "nearest_breakeven": _f(nb, "nearest_breakeven"),
            "breakeven_distance": _f(spot - nb, "breakeven_distance"),
            "breakeven_distance_pct": _f((spot - nb) / spot, "breakeven_distance_pct"),
            "short_strike_distance_pct": _f(np.abs(spot - nss) / spot, "short_strike_distance_pct"),
        }
    return pl.DataFrame([new[c] if c in new else s.get_column(c) for c in columns])
