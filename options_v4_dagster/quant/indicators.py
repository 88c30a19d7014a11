"""Market analysis over daily bars, vectorized across many symbols at once (polars).

Input: one frame of daily bars with columns ``symbol, date, open, high, low, close, volume``
(any number of symbols, any order; a year per symbol is typical). Every indicator is a polars
expression evaluated per symbol (``.over("symbol")``); there is no per-row or per-symbol Python
loop, so the whole F&O universe is one call.

Indicators (column names match the ``technical_signals`` table):

- ``ema20``, ``ema50``, ``ema200``: exponential moving averages, alpha = 2/(n+1), seeded with the
  simple average of the first n closes (the TA-Lib / StockCharts convention), then
  ``ewm_mean(adjust=False)``. Null before the n-th bar. (``regime.ema`` seeds with the first
  close instead; the two converge after a few spans.)
- ``rsi14``: Wilder's RSI. Average gain and loss seeded with the mean of the first 14 close-to-
  close changes, then smoothed with alpha = 1/14. Null before the 15th bar. 100 when there were
  no losses, 50 when the price did not move at all.
- ``macd``, ``macd_signal``, ``macd_hist``: EMA12 - EMA26 (from the 26th bar), its 9-period EMA
  (seeded the same way, from the 34th bar) and their difference.
- ``bb_mid``, ``bb_upper``, ``bb_lower``: Bollinger(20, 2) with the population standard
  deviation; ``bb_width`` = (upper - lower) / mid (a fraction); ``bb_pct_b`` = (close - lower) /
  (upper - lower).
- ``atr14``: Wilder's average true range, seeded with the mean of the first 14 true ranges (the
  first bar has no previous close, so no true range), from the 15th bar; ``atr_pct`` = ATR /
  close x 100 (percent). Missing highs/lows are replaced by the close.
- ``volume_avg20``: mean volume of the previous 20 sessions (today excluded, so a spike does
  not dilute its own yardstick); ``volume_ratio`` = today's volume / ``volume_avg20`` (null
  when that average is 0 or unknown, e.g. an index without volume).
- ``high20``, ``low20``: highest high / lowest low of the previous 20 sessions.
- ``range20_atr``: the 20-session range (including today) in ATRs.
- ``bb_squeeze``: ``bb_width`` at or below the 20th percentile of its own last 120 values
  (needs 139 bars). ``narrow_range``: ``range20_atr`` <= 3.5 (a random walk's 20-day range is
  about 4.5 ATRs). ``consolidation`` = squeeze AND narrow range; with too little history for
  the squeeze, the narrow-range test alone.
- ``breakout``: ``"UP"`` when the close is above ``high20`` with ``volume_ratio`` > 1.5,
  ``"DOWN"`` when below ``low20`` with ``volume_ratio`` > 1.5, else null.
- ``rv_20``, ``rv_60``: realized volatility, the sample standard deviation of the last 20 / 60
  daily log returns x sqrt(252) (a fraction, like IV).

Direction: six votes, each in [-1, +1], weighted (:data:`VOTE_WEIGHTS`); distances are measured
in ATRs so one rule fits every symbol (the price-position vote saturates at two ATRs, the
others at one, so a single noisy close cannot swing the call):

==================  ======  ==========================================================================
vote                weight  value
==================  ======  ==========================================================================
``vote_trend``      0.25    EMA alignment: 1/2 clip((ema20-ema50)/ATR) + 1/2 clip((ema50-ema200)/ATR);
                            clip((ema20-ema50)/ATR) alone before ema200 exists
``vote_price``      0.20    price position: mean over the available EMAs of clip((close-ema)/(2 ATR))
``vote_macd``       0.20    1/2 clip(macd/ATR) + 1/2 clip(4 x macd_hist/ATR); the first term alone
                            before the signal line exists
``vote_rsi``        0.15    clip((rsi14 - 50) / 20): +1 at RSI 70, -1 at RSI 30
``vote_bollinger``  0.10    clip(2 x bb_pct_b - 1): +1 at the upper band, -1 at the lower
``vote_breakout``   0.10    +1 breakout UP, -1 DOWN, 0 none (null when it cannot be computed)
==================  ======  ==========================================================================

``coverage`` is the total weight of the votes that exist; ``score`` = sum(weight x vote) /
coverage in [-1, 1]. ``direction`` is BULLISH when score >= 0.25, BEARISH when score <= -0.25,
else NEUTRAL; ``strength`` = |score|. With coverage below 0.5 (fewer than about 20 bars) the
direction is NEUTRAL with strength 0. ``reason`` names the indicators that are missing, for
lack of history ("ema200 (needs 200 bars)") or of data ("volume_ratio (no data)" for a symbol
without volume); null when everything was computable. Symbols whose bars are invalid (a null, non-
finite or non-positive close, a null date, a repeated date) get one row with null indicators, a
null direction and the problem in ``reason``; they never fail the other symbols.

Market state: direction x IV environment (LOW / NORMAL / HIGH from ``iv_stats``) gives one of
the nine :data:`MARKET_STATES`, e.g. ``BULLISH_HIGH_IV``.

Stock profile: a volatility bucket from realized vol (:data:`INDEX_VOL_EDGES` for indices,
:data:`STOCK_VOL_EDGES` for stocks) and a liquidity bucket from the chain's total OI and volume
in contracts (:data:`LIQUIDITY_HIGH`, :data:`LIQUIDITY_MEDIUM`).
"""

from __future__ import annotations

import datetime as dt
import math

import polars as pl

from ..errors import DataError
from ..universe import INDEX_SYMBOLS

__all__ = [
    "BARS_COLUMNS", "DIRECTIONS", "IV_ENVIRONMENTS", "MARKET_STATES", "VOTE_WEIGHTS",
    "analyze", "chain_liquidity", "compute_indicators", "liquidity_buckets", "market_states",
    "stock_profile", "volatility_buckets",
]

BARS_COLUMNS = ("symbol", "date", "open", "high", "low", "close", "volume")

# --- indicator parameters ----------------------------------------------------------------------
EMA_SPANS = (20, 50, 200)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_PERIOD, BB_K = 20, 2.0
ATR_PERIOD = 14
VOLUME_PERIOD = 20
RANGE_PERIOD = 20  # breakout and narrow-range lookback
SQUEEZE_LOOKBACK = 120  # bb_width percentile window
SQUEEZE_QUANTILE = 0.20
NARROW_RANGE_ATR = 3.5  # 20-day range <= 3.5 ATRs
BREAKOUT_VOLUME_RATIO = 1.5
TRADING_DAYS = 252

# --- direction ---------------------------------------------------------------------------------
VOTE_WEIGHTS: dict[str, float] = {
    "vote_trend": 0.25,
    "vote_price": 0.20,
    "vote_macd": 0.20,
    "vote_rsi": 0.15,
    "vote_bollinger": 0.10,
    "vote_breakout": 0.10,
}
DIRECTION_THRESHOLD = 0.25  # |score| at which a lean becomes a direction
PRICE_ATRS = 2.0  # price-position vote saturates this many ATRs from an EMA
MIN_COVERAGE = 0.5  # share of the vote weight needed to call a direction at all
DIRECTIONS = ("BULLISH", "NEUTRAL", "BEARISH")
IV_ENVIRONMENTS = ("LOW", "NORMAL", "HIGH")
MARKET_STATES = tuple(f"{d}_{iv}_IV" for d in DIRECTIONS for iv in IV_ENVIRONMENTS)

# --- stock profile -----------------------------------------------------------------------------
VOL_BUCKETS = ("LOW", "MEDIUM", "HIGH", "VERY_HIGH")
# annualized realized vol (fraction): below edge[0] LOW, below edge[1] MEDIUM, below edge[2] HIGH,
# else VERY_HIGH. Indices move far less than single stocks (NIFTY realizes 10-15 % in normal
# markets, F&O stocks 20-40 %), so each has its own scale.
INDEX_VOL_EDGES = (0.11, 0.16, 0.22)
STOCK_VOL_EDGES = (0.20, 0.30, 0.45)
# realized vol used for the bucket: the mean of rv_20 and rv_60 (recent but not one-month noisy);
# whichever exists when only one does.

# Total open interest and total volume over the whole chain (all strikes and expiries), in
# contracts (lots) as NSE shows them. Both must reach the bar. On NSE's 11-Sep-2025 bhavcopy
# the medians over 214 underlyings were ~13,400 contracts of OI and of volume, the upper
# quartiles ~24,000 / ~28,000, the lower deciles ~4,700 / ~3,300.
LIQUIDITY_HIGH = (25_000.0, 25_000.0)  # (OI, volume) in contracts
LIQUIDITY_MEDIUM = (5_000.0, 5_000.0)

_S = "symbol"
_FLOAT_INPUTS = ("open", "high", "low", "close", "volume")

_INDICATOR_NAMES = {  # column -> bars it needs (for the reason text)
    "ema20": 20, "ema50": 50, "ema200": 200, "rsi14": RSI_PERIOD + 1, "atr14": ATR_PERIOD + 1,
    "macd": MACD_SLOW, "macd_signal": MACD_SLOW + MACD_SIGNAL - 1, "bb_width": BB_PERIOD,
    "volume_ratio": VOLUME_PERIOD + 1, "bb_squeeze": BB_PERIOD + SQUEEZE_LOOKBACK - 1,
}


# --- building blocks ---------------------------------------------------------------------------

def _seeded_ewm(x: pl.Expr, n: int, alpha: float) -> pl.Expr:
    """Recursive average y_t = (1-alpha) y_{t-1} + alpha x_t seeded with the mean of the first n
    non-null values; null before them. ``x`` may start with nulls (e.g. a MACD line). Evaluate it
    inside ``.over("symbol")``."""
    k = x.is_not_null().cum_sum()
    seeded = pl.when(k < n).then(None).when(k == n).then(x.rolling_mean(n)).otherwise(x)
    return seeded.ewm_mean(alpha=alpha, adjust=False, ignore_nulls=True)


def _ema(x: pl.Expr, span: int) -> pl.Expr:
    return _seeded_ewm(x, span, 2.0 / (span + 1.0))


def _wilder(x: pl.Expr, n: int) -> pl.Expr:
    return _seeded_ewm(x, n, 1.0 / n)


def _clip1(x: pl.Expr) -> pl.Expr:
    return x.clip(-1.0, 1.0)


def _check_columns(frame: pl.DataFrame, needed: tuple[str, ...], what: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{what} lacks column(s) {', '.join(missing)}", field=missing[0])


def _validate(bars: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split bars into (good rows, one row per bad symbol with its last date and a reason)."""
    c = pl.col("close")
    problem = (
        pl.when(pl.col("date").is_null()).then(pl.lit("a bar without a date"))
        .when(c.is_null()).then(pl.format("close is null on {}", pl.col("date")))
        .when(~c.is_finite()).then(pl.format("close is not finite on {}", pl.col("date")))
        .when(c <= 0).then(pl.format("close is not positive on {}", pl.col("date")))
        .when(pl.struct(_S, "date").is_duplicated()).then(pl.format("date {} appears twice", pl.col("date")))
        .otherwise(None)
    )
    flagged = bars.with_columns(problem.alias("_problem"))
    bad = (
        flagged.filter(pl.col("_problem").is_not_null())
        .group_by(_S, maintain_order=True)
        .agg(pl.format("invalid bars: {}", pl.col("_problem").first()).alias("reason"))
    )
    if bad.height == 0:
        return bars, bad
    last = flagged.group_by(_S).agg(pl.col("date").max())
    bad = bad.join(last, on=_S, how="left")
    good = bars.filter(~pl.col(_S).is_in(bad.get_column(_S).implode()))
    return good, bad


# --- indicators ------------------------------------------------------------------------------

def compute_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """Every bar of every symbol with its indicators (see the module docstring), sorted by
    symbol and date. Symbols with invalid bars are dropped here; :func:`analyze` reports them."""
    _check_columns(bars, BARS_COLUMNS, "daily bars")
    df = bars.select(
        pl.col(_S).cast(pl.Utf8),
        pl.col("date").cast(pl.Date),
        *(pl.col(c).cast(pl.Float64) for c in _FLOAT_INPUTS),
    )
    df, _ = _validate(df)
    return _indicators(df.sort(_S, "date"))


def _indicators(df: pl.DataFrame) -> pl.DataFrame:
    c, s = pl.col("close"), _S
    pc = c.shift(1)
    hi = pl.max_horizontal("high", "close")
    lo = pl.min_horizontal("low", "close")
    tr = pl.max_horizontal(hi - lo, (hi - pc).abs(), (lo - pc).abs())
    delta = c - pc
    vol = pl.when(pl.col("volume") > 0).then(pl.col("volume"))  # 0 volume = unknown (indices, VIX)
    logret = (c / pc).log()

    # stage 1: everything that needs only the bars
    df = df.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 1).over(s).alias("bars"),
        *(_ema(c, n).over(s).alias(f"ema{n}") for n in EMA_SPANS),
        _ema(c, MACD_FAST).over(s).alias("_ema_fast"),
        _ema(c, MACD_SLOW).over(s).alias("_ema_slow"),
        _wilder(delta.clip(lower_bound=0.0), RSI_PERIOD).over(s).alias("_avg_gain"),
        _wilder((-delta).clip(lower_bound=0.0), RSI_PERIOD).over(s).alias("_avg_loss"),
        pl.when(pc.is_not_null()).then(tr).otherwise(None).over(s).alias("_tr_raw"),
        c.rolling_mean(BB_PERIOD).over(s).alias("bb_mid"),
        c.rolling_std(BB_PERIOD, ddof=0).over(s).alias("_bb_sd"),
        vol.shift(1).rolling_mean(VOLUME_PERIOD).over(s).alias("volume_avg20"),
        hi.shift(1).rolling_max(RANGE_PERIOD).over(s).alias("high20"),
        lo.shift(1).rolling_min(RANGE_PERIOD).over(s).alias("low20"),
        (hi.rolling_max(RANGE_PERIOD) - lo.rolling_min(RANGE_PERIOD)).over(s).alias("_range20"),
        (logret.rolling_std(20) * math.sqrt(TRADING_DAYS)).over(s).alias("rv_20"),
        (logret.rolling_std(60) * math.sqrt(TRADING_DAYS)).over(s).alias("rv_60"),
    )
    # stage 2: derived from stage 1
    ag, al, sd, mid = pl.col("_avg_gain"), pl.col("_avg_loss"), pl.col("_bb_sd"), pl.col("bb_mid")
    df = df.with_columns(
        (pl.col("_ema_fast") - pl.col("_ema_slow")).alias("macd"),
        pl.when(al > 0).then(100.0 - 100.0 / (1.0 + ag / al))
        .when(ag > 0).then(100.0)
        .when(ag.is_not_null()).then(50.0)
        .alias("rsi14"),
        _wilder(pl.col("_tr_raw"), ATR_PERIOD).over(s).alias("atr14"),
        (mid + BB_K * sd).alias("bb_upper"),
        (mid - BB_K * sd).alias("bb_lower"),
        (2.0 * BB_K * sd / mid).alias("bb_width"),
        pl.when(sd > 0).then((c - (mid - BB_K * sd)) / (2.0 * BB_K * sd)).alias("bb_pct_b"),
        pl.when(pl.col("volume_avg20") > 0).then(vol / pl.col("volume_avg20")).alias("volume_ratio"),
    )
    # stage 3: signals
    atr = pl.col("atr14")
    vr = pl.col("volume_ratio")
    heavy = vr > BREAKOUT_VOLUME_RATIO
    df = df.with_columns(
        _ema(pl.col("macd"), MACD_SIGNAL).over(s).alias("macd_signal"),
        (atr / c * 100.0).alias("atr_pct"),
        (pl.col("_range20") / atr).alias("range20_atr"),
        (pl.col("bb_width") <= pl.col("bb_width")
         .rolling_quantile(SQUEEZE_QUANTILE, "linear", window_size=SQUEEZE_LOOKBACK).over(s))
        .alias("bb_squeeze"),
        pl.when(pl.col("high20").is_null() | vr.is_null()).then(None)
        .when((c > pl.col("high20")) & heavy).then(pl.lit("UP"))
        .when((c < pl.col("low20")) & heavy).then(pl.lit("DOWN"))
        .otherwise(pl.lit("NONE"))
        .alias("_breakout"),
    )
    narrow = pl.col("range20_atr") <= NARROW_RANGE_ATR
    df = df.with_columns(
        (pl.col("macd") - pl.col("macd_signal")).alias("macd_hist"),
        narrow.alias("narrow_range"),
        pl.when(pl.col("bb_squeeze").is_null()).then(narrow)
        .otherwise(pl.col("bb_squeeze") & narrow).alias("consolidation"),
        pl.col("_breakout").replace("NONE", None).alias("breakout"),
        pl.when(pl.col("ema200").is_null() | pl.col("ema50").is_null()).then(None)
        .when((pl.col("ema20") > pl.col("ema50")) & (pl.col("ema50") > pl.col("ema200"))).then(pl.lit("BULLISH"))
        .when((pl.col("ema20") < pl.col("ema50")) & (pl.col("ema50") < pl.col("ema200"))).then(pl.lit("BEARISH"))
        .otherwise(pl.lit("MIXED")).alias("ema_alignment"),
        (pl.sum_horizontal(*((c > pl.col(f"ema{n}")).cast(pl.Int8) for n in EMA_SPANS))
         .alias("emas_below_price")),
    )
    return _votes(df)


def _votes(df: pl.DataFrame) -> pl.DataFrame:
    c, atr = pl.col("close"), pl.col("atr14")
    e20, e50, e200 = pl.col("ema20"), pl.col("ema50"), pl.col("ema200")
    ok = atr > 0
    a = _clip1((e20 - e50) / atr)
    b = _clip1((e50 - e200) / atr)
    line = _clip1(pl.col("macd") / atr)
    hist = _clip1(4.0 * pl.col("macd_hist") / atr)
    df = df.with_columns(
        pl.when(ok).then(pl.when(e200.is_not_null()).then(0.5 * a + 0.5 * b).otherwise(a)).alias("vote_trend"),
        pl.when(ok).then(pl.mean_horizontal(*(_clip1((c - pl.col(f"ema{n}")) / (PRICE_ATRS * atr)) for n in EMA_SPANS)))
        .alias("vote_price"),
        pl.when(ok).then(pl.when(hist.is_not_null()).then(0.5 * line + 0.5 * hist).otherwise(line))
        .alias("vote_macd"),
        _clip1((pl.col("rsi14") - 50.0) / 20.0).alias("vote_rsi"),
        _clip1(2.0 * pl.col("bb_pct_b") - 1.0).alias("vote_bollinger"),
        pl.col("_breakout").replace_strict({"UP": 1.0, "DOWN": -1.0, "NONE": 0.0}, default=None,
                                           return_dtype=pl.Float64).alias("vote_breakout"),
    )
    # votes only exist where the indicators do; no ATR (first 14 bars) leaves the ATR-scaled ones null
    coverage = pl.sum_horizontal(*(pl.when(pl.col(v).is_not_null()).then(w).otherwise(0.0)
                                   for v, w in VOTE_WEIGHTS.items()))
    weighted = pl.sum_horizontal(*(pl.col(v) * w for v, w in VOTE_WEIGHTS.items()))
    df = df.with_columns(coverage.alias("coverage"), weighted.alias("_weighted"))
    enough = pl.col("coverage") >= MIN_COVERAGE - 1e-12
    score = pl.when(enough).then(pl.col("_weighted") / pl.col("coverage"))
    bars = pl.col("bars")
    missing = [
        pl.when(pl.col(col).is_null()).then(
            pl.when(bars < need).then(pl.lit(f"{col} (needs {need} bars)")).otherwise(pl.lit(f"{col} (no data)")))
        for col, need in _INDICATOR_NAMES.items()
    ]
    missing_text = pl.concat_str(missing, separator=", ", ignore_nulls=True)
    has_missing = missing_text.fill_null("") != ""
    lead = (
        pl.when(~enough).then(pl.format("{} bars: only {} of the vote weight available (< {}), direction NEUTRAL",
                                         bars, pl.col("coverage").round(2), pl.lit(MIN_COVERAGE)))
        .when(has_missing).then(pl.format("{} bars", bars))
    )
    tail = pl.when(has_missing).then(pl.concat_str([pl.lit("missing "), missing_text]))
    df = df.with_columns(score.alias("score"))
    df = df.with_columns(
        pl.when(~enough).then(pl.lit("NEUTRAL"))
        .when(pl.col("score") >= DIRECTION_THRESHOLD).then(pl.lit("BULLISH"))
        .when(pl.col("score") <= -DIRECTION_THRESHOLD).then(pl.lit("BEARISH"))
        .otherwise(pl.lit("NEUTRAL")).alias("direction"),
        pl.when(enough).then(pl.col("score").abs()).otherwise(0.0).alias("strength"),
        pl.when(lead.is_not_null()).then(pl.concat_str([lead, tail], separator="; ", ignore_nulls=True))
        .alias("reason"),
    )
    return df.drop(pl.selectors.starts_with("_"))


# --- per-session signals -----------------------------------------------------------------------

SIGNAL_COLUMNS = (
    "symbol", "date", "bars", "close", "ema20", "ema50", "ema200", "ema_alignment", "emas_below_price",
    "rsi14", "macd", "macd_signal", "macd_hist", "bb_mid", "bb_upper", "bb_lower", "bb_width", "bb_pct_b",
    "atr14", "atr_pct", "volume", "volume_avg20", "volume_ratio", "high20", "low20", "range20_atr",
    "bb_squeeze", "narrow_range", "consolidation", "breakout", "rv_20", "rv_60",
    *VOTE_WEIGHTS, "coverage", "score", "direction", "strength", "reason",
)


def analyze(bars: pl.DataFrame, *, as_of: dt.date | None = None, all_dates: bool = False) -> pl.DataFrame:
    """Indicators, votes, direction and strength per symbol.

    ``bars``: columns ``symbol, date, open, high, low, close, volume`` (others ignored).
    ``as_of``: ignore bars after this date. Returns one row per symbol for its last date
    (:data:`SIGNAL_COLUMNS`), or with ``all_dates`` every bar plus ``is_last``. A symbol with
    invalid bars gets one row (its last date) with null indicators and direction and the
    problem in ``reason``.
    """
    _check_columns(bars, BARS_COLUMNS, "daily bars")
    df = bars.select(
        pl.col(_S).cast(pl.Utf8),
        pl.col("date").cast(pl.Date),
        *(pl.col(c).cast(pl.Float64) for c in _FLOAT_INPUTS),
    )
    if as_of is not None:
        df = df.filter(pl.col("date") <= as_of)
    good, bad = _validate(df)
    out = _indicators(good.sort(_S, "date")).select(SIGNAL_COLUMNS)
    out = out.with_columns((pl.col("date") == pl.col("date").max().over(_S)).alias("is_last"))
    if not all_dates:
        out = out.filter(pl.col("is_last")).drop("is_last")
    if bad.height:
        extra = bad.with_columns(pl.lit(True).alias("is_last")) if all_dates else bad
        out = pl.concat([out, extra], how="diagonal_relaxed")
    return out.sort(_S, "date")


# --- market state ----------------------------------------------------------------------------

def market_states(signals: pl.DataFrame, iv: pl.DataFrame, *, default_iv: str | None = None) -> pl.DataFrame:
    """Join the IV environment onto ``signals`` and name the market state.

    ``signals``: ``symbol``, ``direction`` (and ``date``). ``iv``: ``symbol``, ``iv_environment``
    (LOW / NORMAL / HIGH; and ``date``: the join uses it when both frames have one). Adds
    ``iv_environment`` and ``market_state`` (one of :data:`MARKET_STATES`, e.g. BULLISH_HIGH_IV);
    the state is null when the direction or the IV environment is unknown, unless ``default_iv``
    stands in for a missing environment.
    """
    _check_columns(signals, (_S, "direction"), "signals")
    _check_columns(iv, (_S, "iv_environment"), "IV environments")
    if default_iv is not None and default_iv not in IV_ENVIRONMENTS:
        raise ValueError(f"default_iv must be one of {IV_ENVIRONMENTS}, got {default_iv!r}")
    keys = [_S, "date"] if "date" in signals.columns and "date" in iv.columns else [_S]
    right = iv.select(*keys, pl.col("iv_environment").cast(pl.Utf8).str.to_uppercase())
    if right.select(keys).is_duplicated().any():
        raise DataError("IV environments repeat a " + "/".join(keys), field="iv_environment")
    bad = right.filter(~pl.col("iv_environment").is_in(IV_ENVIRONMENTS) & pl.col("iv_environment").is_not_null())
    if bad.height:
        raise DataError(f"iv_environment must be LOW, NORMAL or HIGH, got {bad['iv_environment'][0]!r}",
                        symbol=bad[_S][0], field="iv_environment")
    out = signals.drop("iv_environment", "market_state", strict=False).join(right, on=keys, how="left")
    env = pl.col("iv_environment")
    if default_iv is not None:
        env = env.fill_null(pl.lit(default_iv))
    d = pl.col("direction")
    return out.with_columns(env.alias("iv_environment")).with_columns(
        pl.when(d.is_in(DIRECTIONS) & pl.col("iv_environment").is_not_null())
        .then(pl.format("{}_{}_IV", d, pl.col("iv_environment")))
        .alias("market_state")
    )


# --- stock profile ---------------------------------------------------------------------------

def _bucket(x: pl.Expr, edges: tuple[float, ...], labels: tuple[str, ...]) -> pl.Expr:
    expr = pl.when(x.is_null() | x.is_nan()).then(None)
    for edge, label in zip(edges, labels, strict=False):
        expr = expr.when(x < edge).then(pl.lit(label))
    return expr.otherwise(pl.lit(labels[-1]))


def volatility_buckets(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``is_index``, ``realized_vol`` (mean of rv_20 and rv_60, or whichever exists) and
    ``volatility_bucket`` (LOW / MEDIUM / HIGH / VERY_HIGH on :data:`INDEX_VOL_EDGES` or
    :data:`STOCK_VOL_EDGES`). ``frame``: ``symbol``, ``rv_20``, ``rv_60`` and optionally
    ``is_index`` (default: the symbol is one of the NSE F&O indices)."""
    _check_columns(frame, (_S, "rv_20", "rv_60"), "realized vols")
    out = frame if "is_index" in frame.columns else frame.with_columns(
        pl.col(_S).is_in(list(INDEX_SYMBOLS)).alias("is_index"))
    rv = pl.mean_horizontal(pl.col("rv_20").fill_nan(None), pl.col("rv_60").fill_nan(None))
    out = out.with_columns(rv.alias("realized_vol"))
    x = pl.col("realized_vol")
    return out.with_columns(
        pl.when(pl.col("is_index")).then(_bucket(x, INDEX_VOL_EDGES, VOL_BUCKETS))
        .otherwise(_bucket(x, STOCK_VOL_EDGES, VOL_BUCKETS)).alias("volatility_bucket")
    )


def chain_liquidity(chain: pl.DataFrame) -> pl.DataFrame:
    """Per symbol: ``total_oi`` and ``total_volume`` (contracts, every strike and expiry) and
    ``lot_size`` from option-chain rows (the provider schema: ``symbol``, ``oi``, ``volume``,
    ``lot_size``)."""
    _check_columns(chain, (_S, "oi", "volume", "lot_size"), "option chain")
    return chain.group_by(_S, maintain_order=True).agg(
        pl.col("oi").fill_null(0).sum().cast(pl.Float64).alias("total_oi"),
        pl.col("volume").fill_null(0).sum().cast(pl.Float64).alias("total_volume"),
        pl.col("lot_size").drop_nulls().last().alias("lot_size"),
    )


def liquidity_buckets(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``liquidity_bucket`` (HIGH / MEDIUM / LOW) and the share equivalents ``oi_shares`` and
    ``volume_shares`` (contracts x lot size).

    ``frame``: ``symbol``, ``total_oi``, ``total_volume`` (contracts, summed over the chain) and
    ``lot_size``. HIGH needs OI and volume both at least :data:`LIQUIDITY_HIGH`, MEDIUM both at
    least :data:`LIQUIDITY_MEDIUM`; else LOW. Null OI or volume, or a lot size that is not
    positive, gives a null bucket.
    """
    _check_columns(frame, (_S, "total_oi", "total_volume", "lot_size"), "chain liquidity")
    oi, vol, lot = pl.col("total_oi"), pl.col("total_volume"), pl.col("lot_size")
    known = oi.is_not_null() & vol.is_not_null() & (lot > 0)
    return frame.with_columns(
        (oi * lot).alias("oi_shares"),
        (vol * lot).alias("volume_shares"),
        pl.when(~known.fill_null(False)).then(None)
        .when((oi >= LIQUIDITY_HIGH[0]) & (vol >= LIQUIDITY_HIGH[1])).then(pl.lit("HIGH"))
        .when((oi >= LIQUIDITY_MEDIUM[0]) & (vol >= LIQUIDITY_MEDIUM[1])).then(pl.lit("MEDIUM"))
        .otherwise(pl.lit("LOW")).alias("liquidity_bucket"),
    )


def stock_profile(signals: pl.DataFrame, liquidity: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per symbol: the volatility bucket (from ``signals``' rv_20 / rv_60, one row per symbol)
    and, when ``liquidity`` (``symbol, total_oi, total_volume, lot_size``, or raw chain rows with
    ``oi``) is given, the liquidity bucket. Returns ``symbol, is_index, rv_20, rv_60,
    realized_vol, volatility_bucket`` [``, total_oi, total_volume, lot_size, oi_shares,
    volume_shares, liquidity_bucket``]."""
    _check_columns(signals, (_S, "rv_20", "rv_60"), "signals")
    cols = [_S, "rv_20", "rv_60"] + (["is_index"] if "is_index" in signals.columns else [])
    out = volatility_buckets(signals.select(cols))
    if liquidity is None:
        return out
    if "total_oi" not in liquidity.columns and "oi" in liquidity.columns:
        liquidity = chain_liquidity(liquidity)
    liq = liquidity_buckets(liquidity.select(_S, "total_oi", "total_volume", "lot_size"))
    return out.join(liq, on=_S, how="left")
