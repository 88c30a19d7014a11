"""Top-of-book quotes for the paper broker: :class:`Quote`, the :class:`QuoteBook` protocol, a book
built from an option chain (:class:`ChainQuoteBook`) and a plain mapping one (:class:`StaticQuoteBook`).

Units as in the chain (``market/base.py``): prices in INR per share, ``bid_qty`` / ``ask_qty`` in
shares. A bid or ask of 0 (NSE shows 0 for "no order on that side") is stored as ``None``.

Contracts without a broker ``security_id`` get a deterministic one from :func:`contract_key`
(``NIFTY-20250731-25000-CE``): the same function (and its polars twin :func:`contract_key_expr`)
is what every other module uses to name a contract without a broker id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl

if TYPE_CHECKING:
    from .rules import InstrumentSpec

__all__ = ["ChainQuoteBook", "Quote", "QuoteBook", "StaticQuoteBook", "contract_key", "contract_key_expr"]


def _strike_text(strike: float) -> str:
    return repr(float(strike)).removesuffix(".0")


def contract_key(symbol: str, expiry: dt.date, strike: float, option_type: str) -> str:
    """Deterministic id of an option contract: ``SYMBOL-YYYYMMDD-STRIKE-CE|PE`` (strike without a
    trailing ``.0``: ``25000``, ``2512.5``). Equal to :func:`contract_key_expr` row by row."""
    return f"{symbol.upper()}-{expiry:%Y%m%d}-{_strike_text(strike)}-{option_type.upper()}"


def contract_key_expr(symbol: str = "symbol", expiry: str = "expiry", strike: str = "strike",
                      option_type: str = "option_type") -> pl.Expr:
    """:func:`contract_key` as a polars expression over the named columns (vectorized)."""
    return pl.concat_str([
        pl.col(symbol).str.to_uppercase(), pl.col(expiry).dt.strftime("%Y%m%d"),
        pl.col(strike).cast(pl.Float64).cast(pl.Utf8).str.strip_suffix(".0"),
        pl.col(option_type).str.to_uppercase(),
    ], separator="-")


@dataclass(frozen=True, slots=True)
class Quote:
    """Best bid and ask of one contract. Missing sides / prices are ``None``."""

    security_id: str
    bid: float | None
    ask: float | None
    bid_qty: int | None  # shares
    ask_qty: int | None
    ltp: float | None
    ts: dt.datetime | None = None

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0

    @property
    def reference(self) -> float | None:
        """The price protection reference: the last traded price, else the mid (NSE uses the
        average of the last 30 s of trades, which a snapshot does not have)."""
        return self.ltp if self.ltp is not None else self.mid


@runtime_checkable
class QuoteBook(Protocol):
    def quote(self, security_id: str) -> Quote | None: ...


class StaticQuoteBook:
    """A book over a mapping of quotes (tests, hand-made scenarios)."""

    def __init__(self, quotes: Mapping[str, Quote] | list[Quote]) -> None:
        items = quotes.values() if isinstance(quotes, Mapping) else quotes
        self._quotes = {q.security_id: q for q in items}

    def quote(self, security_id: str) -> Quote | None:
        return self._quotes.get(security_id)

    def __len__(self) -> int:
        return len(self._quotes)


_PRICE_COLS = ("bid", "ask", "ltp")
_QTY_COLS = ("bid_qty", "ask_qty")


class ChainQuoteBook:
    """Quotes of an option-chain frame (``CHAIN_SCHEMA`` columns; absent ones count as null).

    The build is vectorized: one polars ``select`` fills missing security ids with
    :func:`contract_key` and turns non-positive prices / quantities into nulls; the columns are
    kept as lists and a :class:`Quote` is made only when asked for. ``frame`` is the chain with
    ``security_id`` filled; :meth:`security_id` finds a contract's id. ``instruments``: the session's
    :class:`~.rules.InstrumentSpec` by security id (``store.trading_queries.session_quote_book`` passes the
    instruments table's), handed to the paper broker by ``trading.replay.paper_execution``.
    Raises ``ValueError`` when two rows share a security id.
    """

    def __init__(self, chain: pl.DataFrame, instruments: Mapping[str, InstrumentSpec] | None = None) -> None:
        def num(name: str) -> pl.Expr:
            c = pl.col(name).cast(pl.Float64) if name in chain.columns else pl.lit(None, dtype=pl.Float64)
            return pl.when(c > 0).then(c)

        ts = pl.col("snapshot_ts") if "snapshot_ts" in chain.columns else pl.lit(None, dtype=pl.Datetime("us", "UTC"))
        sid = (pl.col("security_id").cast(pl.Utf8) if "security_id" in chain.columns
               else pl.lit(None, dtype=pl.Utf8))
        key = contract_key_expr()
        frame = chain.with_columns(pl.when(sid.is_null() | (sid == "")).then(key).otherwise(sid).alias("security_id"),
                                   key.alias("contract_key"))
        dup = frame.get_column("security_id").is_duplicated()
        if dup.any():
            raise ValueError(f"option chain has {int(dup.sum())} rows sharing a security id "
                             f"(first {frame.filter(dup)['security_id'][0]!r})")
        q = frame.select(
            "security_id", "contract_key",
            *[num(c).alias(c) for c in _PRICE_COLS],
            *[num(c).floor().cast(pl.Int64).alias(c) for c in _QTY_COLS],
            ts.alias("ts"),
        )
        self.frame = frame
        #: the session's contract specs by security id (lots, ticks, freeze quantities), for the paper broker
        self.instruments: dict[str, InstrumentSpec] = dict(instruments or {})
        self._ids: list[str] = q.get_column("security_id").to_list()
        self._index = dict(zip(self._ids, range(q.height), strict=True))
        self._by_contract = dict(zip(q.get_column("contract_key").to_list(), self._ids, strict=True))
        self._cols = {c: q.get_column(c).to_list() for c in (*_PRICE_COLS, *_QTY_COLS, "ts")}

    def quote(self, security_id: str) -> Quote | None:
        """The quote of ``security_id``: a broker id, or a :func:`contract_key` (which finds the
        contract whatever id the chain gives it)."""
        i = self._index.get(security_id)
        if i is None:
            i = self._index.get(self._by_contract.get(security_id, ""))
            if i is None:
                return None
        c = self._cols
        return Quote(security_id, c["bid"][i], c["ask"][i], c["bid_qty"][i], c["ask_qty"][i], c["ltp"][i], c["ts"][i])

    def security_id(self, symbol: str, expiry: dt.date, strike: float, option_type: str) -> str | None:
        """The contract's security id in this book (the broker's, or its :func:`contract_key`)."""
        return self._by_contract.get(contract_key(symbol, expiry, strike, option_type))

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, security_id: object) -> bool:
        return security_id in self._index
