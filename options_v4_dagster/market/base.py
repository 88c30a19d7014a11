"""The contract every market-data provider keeps: frame schemas and the provider interface.

Units (stored as-is in the warehouse):
- prices in INR per share; ``strike`` in INR;
- ``volume`` and ``oi`` in **contracts** (lots), as NSE's option chain shows them (OI may be
  fractional in NSE's 2025 files); multiply by ``lot_size`` for shares;
- ``exchange_iv`` is the source's own implied volatility as a fraction (NSE's or Dhan's), null
  when the source has none or shows 0;
- ``snapshot_ts`` is the tz-aware time the quotes refer to (15:30 IST for end-of-day data).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING

import polars as pl

from ..errors import DataError, DataUnavailable, ProviderError
from ..types import Failure  # noqa: F401  (re-exported: providers return it)

if TYPE_CHECKING:
    from ..trading.rules import FreezeLimits

CHAIN_SCHEMA: dict[str, pl.DataType] = {
    "trade_date": pl.Date,
    "symbol": pl.Utf8,
    "expiry": pl.Date,
    "strike": pl.Float64,
    "option_type": pl.Utf8,  # CE / PE
    "bid": pl.Float64,
    "ask": pl.Float64,
    "bid_qty": pl.Float64,  # shares (NSE shows quantities, not lots)
    "ask_qty": pl.Float64,
    "ltp": pl.Float64,
    "close": pl.Float64,  # the exchange's closing / settlement price where the source has one
    "volume": pl.Float64,  # contracts
    "oi": pl.Float64,  # contracts
    "oi_change": pl.Float64,
    "exchange_iv": pl.Float64,  # fraction
    "underlying_price": pl.Float64,
    "futures_price": pl.Float64,
    "lot_size": pl.Int64,
    "security_id": pl.Utf8,
    "snapshot_ts": pl.Datetime("us", "UTC"),
    "source": pl.Utf8,
}
CHAIN_KEY = ("trade_date", "symbol", "expiry", "strike", "option_type")
CHAIN_REQUIRED = ("trade_date", "symbol", "expiry", "strike", "option_type", "underlying_price", "lot_size")

BARS_SCHEMA: dict[str, pl.DataType] = {
    "date": pl.Date,
    "symbol": pl.Utf8,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Float64,  # shares for stocks, shares traded for indices, 0 for India VIX
    "source": pl.Utf8,
}


def empty_chain() -> pl.DataFrame:
    return pl.DataFrame(schema=CHAIN_SCHEMA)


def empty_bars() -> pl.DataFrame:
    return pl.DataFrame(schema=BARS_SCHEMA)


def _conform(df: pl.DataFrame, schema: dict[str, pl.DataType], what: str, symbol: str | None,
             session: dt.date | None) -> pl.DataFrame:
    cols = []
    for name, dtype in schema.items():
        if name in df.columns:
            try:
                cols.append(df.get_column(name).cast(dtype, strict=True).alias(name))
            except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:  # polars' cast errors
                raise DataError(f"{what}: column cannot be read as {dtype} ({exc.__class__.__name__})",
                                symbol=symbol, session=session, field=name) from exc
        else:
            cols.append(pl.Series(name, [None] * df.height, dtype=dtype))
    return pl.DataFrame(cols)


def normalize_chain(df: pl.DataFrame, *, symbol: str | None = None, session: dt.date | None = None) -> pl.DataFrame:
    """Cast a provider's chain to :data:`CHAIN_SCHEMA` and validate it.

    Raises :class:`DataError` naming the field for: a required column missing or null, an
    option type other than CE/PE, a non-positive strike or underlying price, negative prices,
    or duplicate (expiry, strike, option_type) rows.
    """
    out = _conform(df, CHAIN_SCHEMA, "option chain", symbol, session)
    if out.height == 0:
        raise DataUnavailable("option chain is empty", symbol=symbol, session=session)
    for name in CHAIN_REQUIRED:
        nulls = out.get_column(name).null_count()
        if nulls:
            raise DataError(f"option chain has {nulls} rows without {name}", symbol=symbol, session=session,
                            field=name)
    bad_type = out.filter(~pl.col("option_type").is_in(["CE", "PE"]))
    if bad_type.height:
        raise DataError(f"option_type must be CE or PE, got {bad_type['option_type'][0]!r}", symbol=symbol,
                        session=session, field="option_type")
    # NaN is not null in polars and compares as the largest value: reject it (and infinities) first
    for name, dtype in CHAIN_SCHEMA.items():
        if dtype == pl.Float64:
            col = out.get_column(name)
            bad = out.filter(col.is_nan() | col.is_infinite())
            if bad.height:
                raise DataError(f"{name} is {bad[name][0]} on {bad.height} rows (first {bad['expiry'][0]} "
                                f"{bad['strike'][0]} {bad['option_type'][0]})", symbol=symbol or bad["symbol"][0],
                                session=session, field=name)
    for name in ("strike", "underlying_price"):
        if (out.get_column(name) <= 0).any():
            raise DataError(f"{name} must be positive", symbol=symbol, session=session, field=name)
    for name in ("bid", "ask", "ltp", "close", "volume", "oi"):
        neg = out.filter(pl.col(name) < 0)
        if neg.height:
            raise DataError(f"{name} is negative ({neg[name][0]}) on {neg.height} rows", symbol=symbol or
                            neg["symbol"][0], session=session, field=name)
    unpriced = (out.group_by("symbol").agg(pl.all_horizontal(pl.col(c).is_null() for c in ("bid", "ask", "ltp", "close"))
                                           .all().alias("none")).filter(pl.col("none")))
    if unpriced.height:
        raise DataError("no contract has a bid, ask, last or close price", symbol=symbol or unpriced["symbol"][0],
                        session=session, field="bid")
    if (out.get_column("lot_size") <= 0).any():
        raise DataError("lot_size must be positive", symbol=symbol, session=session, field="lot_size")
    dup = out.select(CHAIN_KEY).is_duplicated()
    if dup.any():
        first = out.filter(dup).row(0, named=True)
        raise DataError(f"duplicate contract {first['expiry']} {first['strike']} {first['option_type']}",
                        symbol=symbol or first["symbol"], session=session, field="strike")
    return out.sort(["symbol", "expiry", "strike", "option_type"])


def normalize_bars(df: pl.DataFrame, *, symbol: str | None = None) -> pl.DataFrame:
    out = _conform(df, BARS_SCHEMA, "daily bars", symbol, None)
    for name in ("date", "symbol", "close"):
        if out.get_column(name).null_count():
            raise DataError(f"daily bars have rows without {name}", symbol=symbol, field=name)
    for name in ("open", "high", "low", "close"):
        col = out.get_column(name)
        if (col.is_nan() | col.is_infinite()).any():
            raise DataError(f"{name} is NaN or infinite", symbol=symbol, field=name)
    if (out.get_column("close") <= 0).any():
        raise DataError("close must be positive", symbol=symbol, field="close")
    return out.unique(subset=["symbol", "date"], keep="last").sort(["symbol", "date"])


class MarketDataProvider(ABC):
    """One source of option chains and daily bars. Implementations raise :class:`DataUnavailable`
    when the source holds nothing for a symbol/session, :class:`DataError` for bad data and
    :class:`ProviderError` for transport failures after retries; never an empty frame silently."""

    name: str = "abstract"

    def symbols_for(self, session: dt.date, universe_symbols: Iterable[str]) -> list[str]:
        """The universe symbols this provider is expected to serve on ``session``."""
        return list(universe_symbols)

    @abstractmethod
    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        """All listed contracts of ``symbol`` expiring within ``horizon_days`` of ``session``,
        in :data:`CHAIN_SCHEMA` (see :func:`normalize_chain`)."""

    @abstractmethod
    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Daily OHLCV in [start, end] for an underlying, ``NIFTY`` or ``INDIAVIX``, in :data:`BARS_SCHEMA`."""

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90
                      ) -> tuple[pl.DataFrame, list[Failure]]:
        """Chains for many symbols; one symbol's failure is recorded, not raised."""
        frames, failures = [], []
        for sym in symbols:
            try:
                frames.append(self.option_chain(sym, session, horizon_days=horizon_days))
            except (DataError, ProviderError) as exc:  # recorded per symbol by design; a bug fails loudly
                failures.append(Failure.from_exception(sym, "option_chain", exc))
        return (pl.concat(frames, how="vertical") if frames else empty_chain()), failures

    def instruments(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90,
                    freeze: FreezeLimits | None = None) -> tuple[pl.DataFrame, list[Failure]]:
        """The session's tradable contracts of ``symbols`` as ``market.instruments.INSTRUMENTS_SCHEMA``
        rows, and the symbols that failed. Default: derived from the session's option chains
        (:func:`~.instruments.chain_instruments`: the chain's security ids, lots, tick 0.05, freeze
        limits from ``freeze``); a broker with a scrip master overrides it."""
        from .instruments import chain_instruments

        chain, failures = self.option_chains(symbols, session, horizon_days=horizon_days)
        return chain_instruments(chain, freeze=freeze, source=self.name), failures

    def close(self) -> None:  # noqa: B027 - optional hook: providers holding connections override it
        """Release connections; nothing to release by default."""
