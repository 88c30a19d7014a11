"""Sanity of a session's stored option chains (the basis of the ``option_chains`` asset check)."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass
class ChainSanity:
    rows: int
    symbols: int
    negative_prices: int = 0
    crossed_quotes: int = 0  # bid > ask (kept: a warning, not an error)
    unknown_lot_size: int = 0
    symbols_not_around_spot: list[str] = field(default_factory=list)
    symbols_requested: int | None = None  # 0: the source holds nothing for the session (missing, not an error)

    @property
    def errors(self) -> list[str]:
        out = []
        if self.negative_prices:
            out.append(f"{self.negative_prices} rows with a negative price")
        if self.unknown_lot_size:
            out.append(f"{self.unknown_lot_size} rows without a positive lot size")
        if self.symbols_not_around_spot:
            s = ", ".join(self.symbols_not_around_spot[:10])
            out.append(f"{len(self.symbols_not_around_spot)} symbols whose strikes do not straddle spot: {s}")
        if self.rows == 0 and self.symbols_requested != 0:
            out.append("no option chain rows for the session")
        return out

    @property
    def passed(self) -> bool:
        return not self.errors


def chain_sanity(chain: pl.DataFrame, symbols_requested: int | None = None) -> ChainSanity:
    """``symbols_requested=0`` marks a session the source has no data for: an empty chain passes."""
    if chain.height == 0:
        return ChainSanity(rows=0, symbols=0, symbols_requested=symbols_requested)
    neg = chain.select(
        pl.any_horizontal([pl.col(c).fill_null(0) < 0 for c in ("bid", "ask", "ltp", "close")]).sum()
    ).item()
    crossed = chain.select(((pl.col("bid") > pl.col("ask")) & pl.col("ask").is_not_null()).sum()).item()
    lots = chain.select((pl.col("lot_size").is_null() | (pl.col("lot_size") <= 0)).sum()).item()
    around = (
        chain.group_by("symbol")
        .agg(
            (pl.col("strike").min() <= pl.col("underlying_price").first()).alias("below"),
            (pl.col("strike").max() >= pl.col("underlying_price").first()).alias("above"),
        )
        .filter(~(pl.col("below") & pl.col("above")))
        .get_column("symbol")
        .sort()
        .to_list()
    )
    return ChainSanity(rows=chain.height, symbols=chain.get_column("symbol").n_unique(),
                       symbols_requested=symbols_requested, negative_prices=int(neg),
                       crossed_quotes=int(crossed), unknown_lot_size=int(lots), symbols_not_around_spot=around)
