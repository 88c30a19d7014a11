"""Market conditions from NIFTY bars, India VIX and the option chain's put-call ratio.

Pure numpy/polars. Thresholds are arguments with the defaults the original Options V4 used
(VIX bands 12/15/20/25; PCR 0.8/1.2) so a YAML config can override them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

VIX_BANDS = ("VERY_LOW", "LOW", "NORMAL", "HIGH", "VERY_HIGH")
DEFAULT_VIX_EDGES = (12.0, 15.0, 20.0, 25.0)
DEFAULT_PCR_EDGES = (0.8, 1.2)


def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average (alpha = 2/(span+1)), seeded with the first value."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return x
    return pl.Series(x).ewm_mean(span=span, adjust=False).to_numpy()


def vix_band(vix: float | None, edges: tuple[float, ...] = DEFAULT_VIX_EDGES) -> str | None:
    if vix is None or not np.isfinite(vix):
        return None
    return VIX_BANDS[int(np.searchsorted(np.asarray(edges), vix, side="right"))]


def pcr_sentiment(pcr: float | None, edges: tuple[float, float] = DEFAULT_PCR_EDGES) -> str | None:
    """OI put-call ratio read the way Indian option sellers read it: heavy put writing (high PCR)
    is support, so PCR >= 1.2 is BULLISH and PCR <= 0.8 BEARISH."""
    if pcr is None or not np.isfinite(pcr):
        return None
    if pcr >= edges[1]:
        return "BULLISH"
    if pcr <= edges[0]:
        return "BEARISH"
    return "NEUTRAL"


@dataclass(frozen=True)
class Trend:
    direction: str  # BULLISH / NEUTRAL / BEARISH
    strength: float  # 0..1
    close: float
    ema20: float
    ema50: float
    return_20d: float


def nifty_trend(closes: np.ndarray) -> Trend:
    """Direction from EMA20/EMA50 alignment, price position and the 20-session return.

    Each of three signals votes +1/-1 (price vs EMA20, EMA20 vs EMA50, 20-session return sign);
    |sum| >= 2 gives the direction. Strength blends the vote with the size of the move
    relative to 20-session realized volatility. Needs at least 50 closes.
    """
    c = np.asarray(closes, dtype=float)
    if c.size < 50:
        raise ValueError(f"nifty_trend needs at least 50 daily closes, got {c.size}")
    e20, e50 = ema(c, 20), ema(c, 50)
    ret20 = c[-1] / c[-21] - 1.0
    votes = np.sign(c[-1] - e20[-1]) + np.sign(e20[-1] - e50[-1]) + np.sign(ret20)
    direction = "BULLISH" if votes >= 2 else "BEARISH" if votes <= -2 else "NEUTRAL"
    vol20 = np.std(np.diff(np.log(c[-21:])), ddof=1) * np.sqrt(20)
    move = abs(ret20) / vol20 if vol20 > 0 else 0.0
    strength = float(np.clip(0.5 * abs(votes) / 3 + 0.5 * min(move / 2.0, 1.0), 0.0, 1.0))
    if direction == "NEUTRAL":
        strength = float(min(strength, 0.5))
    return Trend(direction, strength, float(c[-1]), float(e20[-1]), float(e50[-1]), float(ret20))


def _pcr(column: str) -> pl.Expr:
    """PE total / CE total of ``column``; null unless both sides have rows and the CE total is non-zero."""
    is_pe, is_ce = pl.col("option_type") == "PE", pl.col("option_type") == "CE"
    ce = pl.col(column).filter(is_ce).sum()
    return (pl.when(is_pe.any() & is_ce.any() & (ce != 0))
            .then(pl.col(column).filter(is_pe).sum() / ce).otherwise(None).cast(pl.Float64))


def put_call_ratios(chain: pl.DataFrame) -> pl.DataFrame:
    """Per symbol of a chain (columns symbol, option_type, oi, volume): pcr_oi and pcr_volume, the
    put-call ratios by open interest and by volume (null when the symbol lacks calls or puts, or its
    calls total zero)."""
    return chain.group_by("symbol").agg(_pcr("oi").alias("pcr_oi"), _pcr("volume").alias("pcr_volume"))


def put_call_ratio(chain: pl.DataFrame) -> tuple[float | None, float | None]:
    """(PCR by open interest, PCR by volume) over the given chain rows (as :func:`put_call_ratios`)."""
    row = chain.select(_pcr("oi"), _pcr("volume").alias("v")).row(0)
    return row[0], row[1]


def market_state(direction: str | None, vix: str | None) -> str | None:
    """Direction x volatility label, e.g. BULLISH_HIGH_VOL."""
    if direction is None or vix is None:
        return None
    vol = "LOW_VOL" if vix in ("VERY_LOW", "LOW") else "HIGH_VOL" if vix in ("HIGH", "VERY_HIGH") else "NORMAL_VOL"
    return f"{direction}_{vol}"
