"""The default, offline market-data provider: a deterministic simulated NSE F&O market.

Each symbol has ONE continuous daily path (:mod:`.simulated_paths`: the model of prices and
volatility, seeded so every process gets the same bytes), so every session's bars and chain agree
with every other session's and a backfill builds a coherent history. This module prices the chains:

- implied vol: ATM term structure from the expected average variance of the mean-reverting
  vol state times a variance risk premium, plus a smile (puts richer, curvature) in
  standardized moneyness; prices are Black-76 on ``F = S exp(rT)``, discounted;
- quotes: a spread around the model price (wider away from the money and for illiquid stocks),
  on the NSE tick; OI and volume in contracts, heavier near the money, out of the money and on
  near expiries.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from functools import lru_cache

import numpy as np
import polars as pl

from .. import calendar, universe
from ..errors import DataError, DataUnavailable
from ..quant.black import black76_price
from ..quant.surface import DEFAULT_RATE
from .base import Failure, MarketDataProvider, empty_chain, normalize_bars, normalize_chain
from .simulated_paths import (
    ANCHOR_DATE,
    GRID_END,
    GRID_START,
    VIX,
    SymbolPath,
    atm_iv,
    name_key,
    seeded_rng,
    session_grid,
    session_index,
    symbol_params,
    symbol_path,
    vix_path,
)

__all__ = ["ANCHOR_DATE", "GRID_END", "GRID_START", "RATE", "TICK", "SimulatedMarket"]

RATE = DEFAULT_RATE  # continuously compounded, used for forwards and discounting
TICK = 0.05  # NSE option tick
SOURCE = "simulated"
_MULTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@lru_cache(maxsize=4096)
def _expiries(symbol: str, session: dt.date, is_index: bool, horizon_days: int) -> tuple[dt.date, ...]:
    # Stock expiries do not depend on the symbol: callers pass "" for every stock.
    return tuple(calendar.listed_expiries(symbol or "STOCK", session, is_index=is_index, horizon_days=horizon_days))


def _round_tick(x: np.ndarray) -> np.ndarray:
    return np.round(np.round(x / TICK) * TICK, 2)


# --- the provider ------------------------------------------------------------------------------

class SimulatedMarket(MarketDataProvider):
    """Offline, deterministic, realistic NSE F&O market (see the module docstring)."""

    name = "simulated"

    def __init__(self, seed: int = 7, **_ignored) -> None:
        self.seed = int(seed)

    # paths ---------------------------------------------------------------------------------
    def _path_for(self, symbol: str) -> tuple[str, SymbolPath]:
        sym = symbol.strip().upper()
        if sym == VIX:
            return sym, vix_path(self.seed)
        return symbol_params(self.seed, sym).symbol, symbol_path(self.seed, sym)

    def warm(self, symbols: Iterable[str] | None = None) -> None:
        """Generate (and cache) the paths of ``symbols`` (default: the whole universe and INDIAVIX)."""
        for sym in (list(symbols) if symbols is not None else [*universe.symbols(), VIX]):
            self._path_for(sym)

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        sym, path = self._path_for(symbol)
        grid = session_grid()
        lo = int(np.searchsorted(grid, np.datetime64(start, "D")))
        hi = int(np.searchsorted(grid, np.datetime64(end, "D"), side="right"))
        if hi <= lo:
            raise DataUnavailable(f"no simulated sessions in {start}..{end} (grid {GRID_START}..{GRID_END})",
                                  symbol=sym)
        sl = slice(lo, hi)
        df = pl.DataFrame({
            "date": pl.Series(grid[sl]).cast(pl.Date),
            "symbol": pl.repeat(sym, hi - lo, eager=True, dtype=pl.Utf8),
            "open": path.open[sl], "high": path.high[sl], "low": path.low[sl], "close": path.close[sl],
            "volume": path.volume[sl].astype(float),
            "source": pl.repeat(SOURCE, hi - lo, eager=True, dtype=pl.Utf8),
        })
        return normalize_bars(df, symbol=sym)

    # chains --------------------------------------------------------------------------------
    def _chain_raw(self, symbol: str, session: dt.date, horizon_days: int) -> pl.DataFrame:
        """One symbol's chain, not yet normalized (all vectorized over its contracts)."""
        p = symbol_params(self.seed, symbol.strip().upper())
        sym = p.symbol
        idx = session_index(session, sym)
        path = symbol_path(self.seed, sym)
        exps = _expiries(sym if p.is_index else "", session, p.is_index, int(horizon_days))
        if not exps:
            raise DataUnavailable(f"no listed expiry within {horizon_days} days", symbol=sym, session=session)
        S = float(path.close[idx])
        sig, sig_l, noise = float(path.sigma[idx]), float(path.sigma_long[idx]), float(path.iv_noise[idx])
        dte = np.array([(e - session).days for e in exps], dtype=float)
        T = dte / 365.0
        T_eff = np.maximum(T, 0.5 / 365.0)
        atm = atm_iv(sig, sig_l, T_eff, p.vrp, noise)
        F = S * np.exp(RATE * T)
        disc = np.exp(-RATE * T)

        lo_pct, hi_pct, cap, min_side = (0.10, 0.20, 100, 20) if p.is_index else (0.20, 0.35, 40, 8)
        ks, es = [], []
        for j in range(len(exps)):
            half = float(np.clip(4.0 * atm[j] * math.sqrt(max(T[j], 1.0 / 365.0)), lo_pct, hi_pct)) * S
            step = p.strike_step * next((m for m in _MULTS if half / (p.strike_step * m) <= cap), _MULTS[-1])
            n_side = max(math.ceil(half / step), min_side)
            k = round(S / step) * step + step * np.arange(-n_side, n_side + 1)
            k = k[k > 0]
            ks.append(k)
            es.append(np.full(k.size, j))
        K1 = np.round(np.concatenate(ks), 6)
        e1 = np.concatenate(es)
        n1 = K1.size
        K = np.concatenate([K1, K1])
        e = np.concatenate([e1, e1])
        is_call = np.concatenate([np.ones(n1, bool), np.zeros(n1, bool)])
        N = K.size

        Tj, Fj, dfj, atm_j, dte_j = T[e], F[e], disc[e], atm[e], dte[e]
        x = np.log(K / Fj) / (atm_j * np.sqrt(T_eff[e]))  # standardized moneyness
        xc = np.clip(x, -4.0, 4.0)
        skew = p.skew * math.sqrt(sig_l / sig)  # steeper skew in calm markets
        iv = atm_j * np.maximum(1.0 - skew * xc + p.curv * xc * xc, 0.5)
        theo = black76_price(Fj, K, Tj, iv, is_call, dfj)

        rng = seeded_rng(self.seed, name_key(sym), session.toordinal(), name_key("chain"))
        z = rng.standard_normal((6, N))
        ax = np.abs(x)
        base_rel = 0.003 if p.is_index else 0.01 + 0.05 * (1.0 - p.liquidity)
        rel = np.minimum(base_rel * (1.0 + 0.5 * ax ** 1.5), 0.5)
        abs_min = TICK * (1.0 + 0.5 * np.minimum(ax, 6.0)) * (1.0 if p.is_index else 1.0 + 2.0 * (1.0 - p.liquidity))
        spread = np.maximum(TICK, abs_min + rel * theo)
        bid = np.round(np.floor((theo - spread / 2) / TICK + 1e-9) * TICK, 2)
        bid = np.where(bid >= TICK, bid, 0.0)
        ask = np.maximum(np.round(np.ceil((theo + spread / 2) / TICK - 1e-9) * TICK, 2), TICK)
        ltp = np.clip(_round_tick(theo + 0.4 * z[0] * spread / 2), bid, ask)
        ltp = np.where(ltp < TICK, TICK, ltp)
        close = _round_tick(theo)

        # open interest and volume (contracts): near the money, OTM side heavier, nearer expiries heavier
        x_oi = np.log(K / Fj) / (atm_j * np.sqrt(np.maximum(Tj, 2.0 / 365.0)))
        otm = np.where(is_call, x_oi >= 0, x_oi <= 0)
        round_strike = np.isclose(np.mod(K / p.strike_step, 10.0), 0.0) | np.isclose(np.mod(K / p.strike_step, 10.0), 10.0)
        exp_w = 0.15 + np.exp(-dte_j / (25.0 if p.is_index else 40.0))
        shape = np.exp(-0.5 * (x_oi / 1.3) ** 2) * np.where(otm, 1.0, 0.35) * np.where(round_strike, 1.5, 1.0)
        oi = np.round(p.base_oi * exp_w * shape * np.exp(0.35 * z[1]))
        prev_oi = np.round(oi * np.exp(-0.03 + 0.25 * z[2]))
        turnover = (0.5 + 6.0 * np.exp(-dte_j / 3.0)) if p.is_index else (0.3 + 1.5 * np.exp(-dte_j / 10.0))
        volume = np.round(np.maximum(oi, 1.0) * turnover * np.exp(0.5 * z[3]) * np.where(bid > 0, 1.0, 0.2))
        q_lots = 1.0 + np.floor(np.exp(np.log1p(0.01 * oi) + 0.6 * z[4]))
        bid_qty = np.where(bid > 0, q_lots * p.lot_size, 0.0)
        ask_qty = (1.0 + np.floor(np.exp(np.log1p(0.01 * oi) + 0.6 * z[5]))) * p.lot_size

        expiry_days = np.array(exps, dtype="datetime64[D]")[e]
        return pl.DataFrame({
            "expiry": pl.Series(expiry_days).cast(pl.Date),
            "strike": K,
            "option_type": np.where(is_call, "CE", "PE"),
            "bid": bid, "ask": ask, "bid_qty": bid_qty, "ask_qty": ask_qty, "ltp": ltp, "close": close,
            "volume": volume, "oi": oi, "oi_change": oi - prev_oi, "exchange_iv": iv,
            "futures_price": _round_tick(Fj),
        }).with_columns(
            pl.lit(session, dtype=pl.Date).alias("trade_date"),
            pl.lit(sym, dtype=pl.Utf8).alias("symbol"),
            pl.lit(S, dtype=pl.Float64).alias("underlying_price"),
            pl.lit(p.lot_size, dtype=pl.Int64).alias("lot_size"),
        )

    @staticmethod
    def _finish(df: pl.DataFrame, session: dt.date) -> pl.DataFrame:
        snap = calendar.session_close(session).astimezone(dt.UTC)
        strike_txt = (pl.when(pl.col("strike") == pl.col("strike").round(0))
                      .then(pl.col("strike").cast(pl.Int64).cast(pl.Utf8))
                      .otherwise(pl.col("strike").round(4).cast(pl.Utf8)))
        return df.with_columns(
            pl.concat_str([pl.lit("SIM:"), pl.col("symbol"), pl.col("expiry").dt.strftime("%y%m%d"), strike_txt,
                           pl.col("option_type")]).alias("security_id"),
            pl.lit(snap, dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
            pl.lit(SOURCE, dtype=pl.Utf8).alias("source"),
        )

    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        raw = self._chain_raw(symbol, session, horizon_days)
        return normalize_chain(self._finish(raw, session), symbol=raw["symbol"][0], session=session)

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90
                      ) -> tuple[pl.DataFrame, list[Failure]]:
        """The chains of many symbols in one frame; a symbol that fails is recorded, not raised."""
        frames: list[pl.DataFrame] = []
        failures: list[Failure] = []
        for sym in symbols:
            try:
                frames.append(self._chain_raw(sym, session, horizon_days))
            except DataError as exc:  # recorded per symbol (unknown symbol, no expiry in the horizon); bugs raise
                failures.append(Failure.from_exception(sym, "option_chain", exc))
        if not frames:
            return empty_chain(), failures
        combined = self._finish(pl.concat(frames, how="vertical"), session)
        try:
            return normalize_chain(combined, session=session), failures
        except DataError:  # isolate the bad symbol(s); never expected for simulated data
            good = []
            for part in combined.partition_by("symbol", maintain_order=True):
                sym = part["symbol"][0]
                try:
                    good.append(normalize_chain(part, symbol=sym, session=session))
                except DataError as exc:
                    failures.append(Failure.from_exception(sym, "option_chain", exc))
            return (pl.concat(good, how="vertical") if good else empty_chain()), failures
