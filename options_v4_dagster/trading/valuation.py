"""Valuation of open strategies and their legs at current quotes (pure domain: polars/numpy in,
polars out; the store layer produces the input frames, :mod:`.exit_rules` consumes the output).

Inputs (schemas below; extra columns are ignored, missing optional ones count as null):

* :data:`OPEN_LEGS_SCHEMA` -- one row per open leg (the ``positions`` table with quantity != 0,
  joined to the strategy id): signed ``quantity`` in shares (+ long, - short), ``average_price``
  of the open quantity, ``entry_quantity`` (shares filled by the entry: scale-outs are fractions of
  it), ``lot_size``, ``fees`` paid so far on the leg and ``realized_pnl`` before fees (as stored).
* :data:`STRATEGY_FACTS_SCHEMA` -- one row per strategy: ``max_loss`` / ``max_profit`` (INR of the
  whole position, null = unbounded), ``breakevens`` (underlying prices), ``capital`` (INR put up:
  the margin or the debit), ``entered_at`` (tz-aware).
* quotes -- a frame with :data:`QUOTES_SCHEMA` keyed by ``security_id`` (a broker id or a
  :func:`~.quotes.contract_key`; an optional ``contract_key`` column is a second way to match),
  or any :class:`~.quotes.QuoteBook` (turned into that frame by :func:`quotes_frame`).
* spot -- a ``{symbol: price}`` mapping or a frame with :data:`SPOT_SCHEMA`.

Legs come out sorted by strategy and leg; ``strategy_row`` is the row of their strategy in
``Valuation.strategies`` (same order). A repeated strategy id in the facts: the last row counts.

Implementation: one lazy polars query joins the quotes and spots to the sorted legs, the leg values
are numpy over all legs, and the per-strategy sums are ``reduceat`` over the sorted legs
(:mod:`.valuation_sums`).

Conventions:

* **Mark** = mid (both sides quoted), else the last price. **Close-out price** = what closing
  would get: a long leg sells at the bid, a short leg buys at the ask; with that side missing, the
  mark (``close_quote_missing`` is then true).
* Unrealized P&L ``(price - average_price) * quantity`` at the mark (``unrealized_mid``) and at the
  close-out price (``unrealized_close``). ``pnl_mid`` / ``pnl_close`` = unrealized + realized -
  fees (every fee paid so far; the exit's own charges are not estimated).
* **DTE** = calendar days from the IST date of ``as_of`` to the expiry; the time to expiry in years
  runs to the NSE close (15:30 IST) of the expiry day over 365 days; a leg is ``expired`` once
  ``as_of`` is at or past that close (then it settles, :mod:`.settlement`, and is not traded).
* **Greeks**: Black-76 on the forward ``F = S exp(r T)`` (``r`` = :data:`~..quant.surface.DEFAULT_RATE`),
  at the quote's ``iv`` (fraction) when given, else the IV implied from the mark (the strategies'
  convention, :mod:`..strategies.build`): spot delta and gamma, vega per vol point, theta per
  calendar day with the spot held; per share on the leg and times the signed quantity in the
  ``position_*`` columns (so a strategy's ``delta`` is in shares of the underlying).
* Breakevens: ``nearest_breakeven`` and ``breakeven_distance`` = spot - that breakeven (INR and as
  a share of spot); short strikes: the nearest short strike and ``|spot - K| / spot``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..calendar import IST
from ..quant.black import greeks_black76, implied_vol_black76
from ..quant.surface import DEFAULT_RATE
from .quotes import QuoteBook, contract_key_expr
from .valuation_sums import strategy_values

__all__ = [
    "LEG_VALUATION_COLUMNS", "OPEN_LEGS_SCHEMA", "QUOTES_SCHEMA", "SPOT_SCHEMA", "STRATEGY_FACTS_SCHEMA",
    "STRATEGY_VALUATION_COLUMNS", "Valuation", "conform", "conform_exprs", "quotes_frame", "value_positions",
]

OPEN_LEGS_SCHEMA: dict[str, pl.DataType] = {
    "strategy_id": pl.Utf8,
    "allocation_id": pl.Utf8,
    "position_id": pl.Utf8,
    "leg": pl.Int64,
    "symbol": pl.Utf8,
    "security_id": pl.Utf8,  # broker id or contract_key; null: the contract_key is used
    "expiry": pl.Date,
    "strike": pl.Float64,
    "option_type": pl.Utf8,  # CE / PE
    "quantity": pl.Int64,  # open shares, signed: + long, - short
    "average_price": pl.Float64,  # INR per share, average entry price of the open quantity
    "entry_quantity": pl.Int64,  # shares filled by the entry orders (unsigned)
    "lot_size": pl.Int64,
    "fees": pl.Float64,  # INR paid so far on the leg (entry and any exit fills)
    "realized_pnl": pl.Float64,  # INR before fees (average cost), as in the positions table
    "freeze_quantity": pl.Int64,  # optional: shares; null = from config/freeze_limits.yaml
    "tick_size": pl.Float64,  # optional: null = 0.05
}
_OPTIONAL_LEG = {"security_id", "entry_quantity", "fees", "realized_pnl", "freeze_quantity", "tick_size",
                 "allocation_id", "position_id"}

STRATEGY_FACTS_SCHEMA: dict[str, pl.DataType] = {
    "strategy_id": pl.Utf8,
    "symbol": pl.Utf8,
    "strategy_name": pl.Utf8,
    "state": pl.Utf8,  # OPEN / PARTIALLY_EXITED
    "max_loss": pl.Float64,  # INR, positive; null = unbounded
    "max_profit": pl.Float64,  # INR; null = unbounded
    "breakevens": pl.List(pl.Float64),  # underlying prices
    "capital": pl.Float64,  # INR put up (margin, or the debit of a long-only position)
    "entered_at": pl.Datetime("us", "UTC"),
}
_OPTIONAL_FACTS = {"strategy_name", "state", "max_loss", "max_profit", "breakevens", "capital"}

QUOTES_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.Utf8,
    "bid": pl.Float64,
    "ask": pl.Float64,
    "ltp": pl.Float64,
    "iv": pl.Float64,  # optional: fraction; null = implied from the mark
}
SPOT_SCHEMA: dict[str, pl.DataType] = {"symbol": pl.Utf8, "spot": pl.Float64}

LEG_VALUATION_COLUMNS = (
    "strategy_row", "quote_key", "bid", "ask", "ltp", "mid", "close_price", "close_quote_missing", "spot", "dte", "t_years",
    "expired", "entry_lots", "open_lots", "intrinsic", "itm", "spot_to_strike_pct", "iv", "delta", "gamma", "vega",
    "theta", "position_delta", "position_gamma", "position_vega", "position_theta", "unrealized_mid",
    "unrealized_close", "realized_net", "pnl_mid", "pnl_close",
)
STRATEGY_VALUATION_COLUMNS = (
    "strategy_id", "allocation_id", "position_id", "symbol", "strategy_name", "state", "legs", "spot",
    "front_expiry", "front_dte", "days_in_trade", "unrealized_mid", "unrealized_close", "realized_pnl", "fees",
    "realized_net", "pnl_mid", "pnl_close", "pnl_pct_max_loss", "pnl_mid_pct_max_loss", "pnl_pct_capital",
    "value_mid", "value_close", "delta", "gamma", "vega", "theta", "max_loss", "max_profit", "capital", "breakevens",
    "nearest_breakeven", "breakeven_distance", "breakeven_distance_pct", "nearest_short_strike",
    "short_strike_distance_pct", "quotes_missing", "expired_legs",
)

_SECONDS_PER_YEAR = 365.0 * 86400.0
_CLOSE_UTC = np.timedelta64(10 * 3600, "s")  # 15:30 IST = 10:00 UTC (IST has no daylight saving)


def conform_exprs(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], optional: Iterable[str] = (),
                  what: str = "frame") -> list[pl.Expr]:
    """The select expressions of :func:`conform` (to run inside a lazy query)."""
    opt = set(optional)
    missing = [c for c in schema if c not in frame.columns and c not in opt]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
    have = frame.schema
    return [(pl.col(c) if have[c] == t else pl.col(c).cast(t)) if c in have else pl.lit(None, t).alias(c)
            for c, t in schema.items()]


def conform(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], optional: Iterable[str] = (),
            what: str = "frame") -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns in its dtypes; optional columns it lacks are null.
    ValueError naming the required columns that are missing."""
    return frame.select(conform_exprs(frame, schema, optional, what))


def quotes_frame(book: QuoteBook, security_ids: Iterable[str]) -> pl.DataFrame:
    """The quotes of ``security_ids`` in ``book`` as a :data:`QUOTES_SCHEMA` frame (ids the book does
    not know are left out)."""
    rows = [q for q in (book.quote(s) for s in dict.fromkeys(security_ids)) if q is not None]
    return pl.DataFrame({
        "security_id": [q.security_id for q in rows], "bid": [q.bid for q in rows], "ask": [q.ask for q in rows],
        "ltp": [q.ltp for q in rows], "iv": [None] * len(rows),
    }, schema=QUOTES_SCHEMA)


def _spot_frame(spot: pl.DataFrame | Mapping[str, float]) -> pl.LazyFrame:
    if isinstance(spot, pl.DataFrame):
        return spot.lazy().select(conform_exprs(spot, SPOT_SCHEMA, what="spot")).with_columns(
            pl.col("symbol").str.to_uppercase())
    return pl.LazyFrame({"symbol": [s.upper() for s in spot], "spot": [float(v) for v in spot.values()]},
                        schema=SPOT_SCHEMA)


def _sorted(legs: pl.DataFrame) -> bool:
    """Whether ``legs`` is already sorted by strategy_id, leg (no nulls): then the query skips its sort."""
    sid, leg = legs.get_column("strategy_id"), legs.get_column("leg")
    if legs.height < 2 or sid.null_count() or leg.null_count() or not sid.is_sorted():
        return legs.height < 2
    same = (sid.slice(1) == sid.slice(0, legs.height - 1)).to_numpy()
    return bool((np.diff(leg.to_numpy())[same] >= 0).all())


def _quoted_legs(legs: pl.DataFrame, quotes: pl.DataFrame | QuoteBook, spot: pl.DataFrame | Mapping[str, float]
                 ) -> pl.DataFrame:
    """The conformed legs with ``quote_key``, bid, ask, ltp, iv, spot and ``strategy_row``, sorted by
    strategy and leg: one lazy query (the contract key is built only when some leg or quote needs it)."""
    exprs = [e.str.to_uppercase().alias(c) if c in ("symbol", "option_type") else e for e, c in
             zip(conform_exprs(legs, OPEN_LEGS_SCHEMA, _OPTIONAL_LEG, "open legs"), OPEN_LEGS_SCHEMA, strict=True)]
    second = isinstance(quotes, pl.DataFrame) and "contract_key" in quotes.columns
    by_id = "security_id" in legs.columns and not legs.get_column("security_id").null_count() and (
        isinstance(quotes, pl.DataFrame) and not second)
    lg = legs.lazy().select(exprs)
    if not _sorted(legs):
        lg = lg.sort("strategy_id", "leg")
    lg = lg.with_columns(pl.col("security_id").alias("quote_key")) if by_id else lg.with_columns(
        contract_key_expr().alias("_ck")).with_columns(pl.coalesce(pl.col("security_id"), pl.col("_ck")).alias("quote_key"))
    if not isinstance(quotes, pl.DataFrame):
        keys = lg.select("quote_key", "_ck").collect()
        quotes = quotes_frame(quotes, keys.get_column("quote_key").to_list() + keys.get_column("_ck").to_list())
    q = quotes.lazy().select(conform_exprs(quotes, QUOTES_SCHEMA, {"iv"}, "quotes")).unique("security_id", keep="last")
    out = lg.join(q, left_on="quote_key", right_on="security_id", how="left", maintain_order="left")
    if second:  # second match: legs whose id the quotes do not carry
        q2 = quotes.with_columns(pl.col("contract_key").alias("security_id"))
        q2 = q2.lazy().select(conform_exprs(q2, QUOTES_SCHEMA, {"iv"}, "quotes")).unique(
            "security_id", keep="last").rename({c: f"{c}_2" for c in QUOTES_SCHEMA if c != "security_id"})
        out = out.join(q2, left_on="_ck", right_on="security_id", how="left", maintain_order="left").with_columns(
            *[pl.when(pl.all_horizontal(pl.col(c).is_null() for c in ("bid", "ask", "ltp")))
              .then(pl.col(f"{c}_2")).otherwise(pl.col(c)).alias(c) for c in ("bid", "ask", "ltp", "iv")]
        ).drop([f"{c}_2" for c in ("bid", "ask", "ltp", "iv")])
    out = out.drop("_ck", strict=False).join(_spot_frame(spot), on="symbol", how="left", maintain_order="left")
    return out.with_columns(
        (pl.col("strategy_id").is_first_distinct().cum_sum() - 1).cast(pl.Int64).alias("strategy_row")).collect()


def _positive(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a, np.nan)


@dataclass(frozen=True)
class Valuation:
    """Per leg (:data:`LEG_VALUATION_COLUMNS` after the input's) and per strategy
    (:data:`STRATEGY_VALUATION_COLUMNS`), valued at ``as_of``."""

    legs: pl.DataFrame
    strategies: pl.DataFrame
    as_of: dt.datetime

    @property
    def session(self) -> dt.date:
        return self.as_of.astimezone(IST).date()


def _leg_values(legs: pl.DataFrame, as_of: dt.datetime, rate: float) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    """The numeric leg columns (numpy, one pass over all legs) and the arrays the strategy sums use."""
    g = {c: legs.get_column(c).to_numpy() for c in ("bid", "ask", "ltp", "iv", "strike", "spot", "average_price")}
    bid, ask, ltp = (_positive(g[c].astype(float)) for c in ("bid", "ask", "ltp"))
    K, S = g["strike"].astype(float), g["spot"].astype(float)
    avg = g["average_price"].astype(float)
    q = legs.get_column("quantity").to_numpy().astype(float)
    lot = legs.get_column("lot_size").to_numpy().astype(float)
    ce = legs.get_column("option_type") == "CE"  # upper-cased by the query
    is_call = (ce.fill_null(False) if ce.null_count() else ce).to_numpy()
    expiry = legs.get_column("expiry").to_numpy().astype("datetime64[s]")
    now = np.datetime64(as_of.astimezone(dt.UTC).replace(tzinfo=None), "s")
    today = np.datetime64(as_of.astimezone(IST).date(), "D")
    dte = (expiry.astype("datetime64[D]") - today).astype(np.int64)
    T = (expiry + _CLOSE_UTC - now).astype(np.int64) / _SECONDS_PER_YEAR
    expired = T <= 0
    with np.errstate(all="ignore"):
        mid = np.where(np.isfinite(bid) & np.isfinite(ask), (bid + ask) / 2.0, ltp)
        side_px = np.where(q > 0, bid, ask)
        missing = ~np.isfinite(side_px)
        close = np.where(missing, mid, side_px)
        F = S * np.exp(rate * T)
        df = np.exp(-rate * T)
        iv = g["iv"].astype(float)
        iv = np.where(np.isfinite(iv) & (iv > 0), iv, implied_vol_black76(mid, F, K, T, is_call, df))
        iv = np.where(iv > 0, iv, np.nan)
        gr = greeks_black76(F, K, T, iv, is_call, df, S=S)
        carry = F / S
        delta, gamma = gr["delta"] * carry, gr["gamma"] * carry * carry
        vega, theta = gr["vega"] / 100.0, gr["theta"]
        intrinsic = np.maximum(np.where(is_call, S - K, K - S), 0.0)
        fees = np.nan_to_num(legs.get_column("fees").to_numpy().astype(float))
        realized = np.nan_to_num(legs.get_column("realized_pnl").to_numpy().astype(float))
        entry = legs.get_column("entry_quantity").to_numpy().astype(float)
        entry = np.where(np.isfinite(entry) & (entry > 0), entry, np.abs(q))
        u_mid, u_close = (mid - avg) * q, (close - avg) * q
        cols = {
            "mid": mid, "close_price": close, "close_quote_missing": missing, "dte": dte, "t_years": T,
            "expired": expired, "entry_lots": np.floor(entry / lot + 1e-9).astype(np.int64),
            "open_lots": np.floor(np.abs(q) / lot + 1e-9).astype(np.int64), "intrinsic": intrinsic,
            "itm": intrinsic > 0, "spot_to_strike_pct": (S - K) / S, "iv": iv, "delta": delta, "gamma": gamma,
            "vega": vega, "theta": theta, "position_delta": delta * q, "position_gamma": gamma * q,
            "position_vega": vega * q, "position_theta": theta * q, "unrealized_mid": u_mid,
            "unrealized_close": u_close, "realized_net": realized - fees, "pnl_mid": u_mid + realized - fees,
            "pnl_close": u_close + realized - fees,
        }
    frame = legs.with_columns(
        pl.Series("bid", bid), pl.Series("ask", ask), pl.Series("ltp", ltp),  # NaN where missing, as before
        pl.Series("fees", fees), pl.Series("realized_pnl", realized),
        *[pl.Series(k, v, nan_to_null=v.dtype.kind == "f") for k, v in cols.items()])
    arrays = cols | {"quantity": q, "strike": K, "spot": S, "fees": fees, "realized_pnl": realized,
                     "expiry": expiry.astype("datetime64[D]").astype(np.int64),
                     "strategy_row": legs.get_column("strategy_row").to_numpy()}
    return frame, arrays


def value_positions(legs: pl.DataFrame, strategies: pl.DataFrame, quotes: pl.DataFrame | QuoteBook,
                    spot: pl.DataFrame | Mapping[str, float], as_of: dt.datetime, *,
                    rate: float = DEFAULT_RATE) -> Valuation:
    """Value every open leg and strategy at ``quotes`` and ``spot`` at ``as_of`` (tz-aware); see the
    module docstring for inputs and conventions. A leg without a quote gets null prices and P&L
    (its strategy's ``quotes_missing`` counts it); its strategy's sums skip it."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be tz-aware")
    facts = conform(strategies, STRATEGY_FACTS_SCHEMA, _OPTIONAL_FACTS, "strategy facts")  # a repeated id: the last
    lg, arrays = _leg_values(_quoted_legs(legs, quotes, spot), as_of, rate)
    return Valuation(lg, strategy_values(lg, arrays, facts, as_of, STRATEGY_VALUATION_COLUMNS), as_of)
