import datetime as dt
import math
import time

import numpy as np
import polars as pl
import pytest

from options_v4_dagster import universe
from options_v4_dagster.errors import DataError
from options_v4_dagster.quant import indicators as ind

D0 = dt.date(2024, 1, 1)


def _frame(symbol: str, close, *, high=None, low=None, open_=None, volume=None, start: dt.date = D0) -> pl.DataFrame:
    c = np.asarray(close, dtype=float)
    n = c.size
    o = np.r_[c[0], c[:-1]] if open_ is None else np.asarray(open_, dtype=float)
    h = np.maximum(o, c) * 1.004 if high is None else np.asarray(high, dtype=float)
    lo = np.minimum(o, c) * 0.996 if low is None else np.asarray(low, dtype=float)
    v = np.full(n, 1e6) if volume is None else np.asarray(volume, dtype=float)
    return pl.DataFrame({
        "symbol": [symbol] * n, "date": [start + dt.timedelta(days=i) for i in range(n)],
        "open": o, "high": h, "low": lo, "close": c, "volume": v,
    })


def _random_bars(symbol: str, n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0003, 0.018, n)
    c = 500.0 * np.exp(np.cumsum(r))
    o = c * np.exp(rng.normal(0, 0.006, n))
    h = np.maximum(o, c) * np.exp(np.abs(rng.normal(0, 0.008, n)))
    lo = np.minimum(o, c) * np.exp(-np.abs(rng.normal(0, 0.008, n)))
    v = rng.lognormal(13, 0.4, n)
    return _frame(symbol, c, high=h, low=lo, open_=o, volume=v)


# --- reference implementations (plain loops) ------------------------------------------------

def ref_ema(x, n):
    """SMA-seeded EMA over the non-NaN tail of x (leading NaNs allowed)."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.size, np.nan)
    first = int(np.argmax(~np.isnan(x))) if np.any(~np.isnan(x)) else x.size
    if x.size - first < n:
        return out
    a = 2.0 / (n + 1.0)
    seed_at = first + n - 1
    out[seed_at] = x[first:seed_at + 1].mean()
    for i in range(seed_at + 1, x.size):
        out[i] = a * x[i] + (1 - a) * out[i - 1]
    return out


def ref_rsi(c, n=14):
    c = np.asarray(c, dtype=float)
    out = np.full(c.size, np.nan)
    if c.size <= n:
        return out
    d = np.diff(c)
    g, lo = np.maximum(d, 0), np.maximum(-d, 0)
    ag, al = g[:n].mean(), lo[:n].mean()
    for i in range(n, c.size):
        if i > n:
            ag = (ag * (n - 1) + g[i - 1]) / n
            al = (al * (n - 1) + lo[i - 1]) / n
        out[i] = 100.0 if al == 0 else 100.0 - 100.0 / (1 + ag / al)
    return out


def ref_atr(h, lo, c, n=14):
    h, lo, c = (np.asarray(a, dtype=float) for a in (h, lo, c))
    out = np.full(c.size, np.nan)
    tr = np.full(c.size, np.nan)
    for i in range(1, c.size):
        tr[i] = max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1]))
    if c.size <= n:
        return out
    out[n] = tr[1:n + 1].mean()
    for i in range(n + 1, c.size):
        out[i] = (out[i - 1] * (n - 1) + tr[i]) / n
    return out


def ref_macd(c):
    line = ref_ema(c, 12) - ref_ema(c, 26)
    sig = ref_ema(line, 9)
    return line, sig, line - sig


def _close(actual: pl.Series, expected: np.ndarray, rtol=1e-9, atol=1e-9):
    a = actual.to_numpy().astype(float)  # nulls -> nan
    assert a.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected))
    np.testing.assert_allclose(a[~np.isnan(a)], expected[~np.isnan(expected)], rtol=rtol, atol=atol)


# --- indicator values ------------------------------------------------------------------------

def test_indicators_match_reference_loops_for_several_symbols():
    frames = {"AAA": _random_bars("AAA", 260, 1), "BBB": _random_bars("BBB", 240, 2),
              "CCC": _random_bars("CCC", 45, 3)}
    # shuffled input order must not matter
    bars = pl.concat(frames.values()).sample(fraction=1.0, shuffle=True, seed=5)
    out = ind.analyze(bars, all_dates=True)
    for sym, f in frames.items():
        got = out.filter(pl.col("symbol") == sym).sort("date")
        c, h, lo, v = (f[k].to_numpy() for k in ("close", "high", "low", "volume"))
        for n in (20, 50, 200):
            _close(got[f"ema{n}"], ref_ema(c, n))
        _close(got["rsi14"], ref_rsi(c))
        _close(got["atr14"], ref_atr(h, lo, c))
        line, sig, hist = ref_macd(c)
        _close(got["macd"], line)
        _close(got["macd_signal"], sig)
        _close(got["macd_hist"], hist)
        _close(got["atr_pct"], ref_atr(h, lo, c) / c * 100)
        # Bollinger(20, 2), population sd; volume ratio vs the previous 20 sessions
        mid = np.array([c[i - 19:i + 1].mean() if i >= 19 else np.nan for i in range(c.size)])
        sd = np.array([c[i - 19:i + 1].std() if i >= 19 else np.nan for i in range(c.size)])
        _close(got["bb_width"], 4 * sd / mid)
        _close(got["bb_pct_b"], (c - (mid - 2 * sd)) / (4 * sd))
        vr = np.array([v[i] / v[i - 20:i].mean() if i >= 20 else np.nan for i in range(c.size)])
        _close(got["volume_ratio"], vr)
        hi20 = np.array([h[i - 20:i].max() if i >= 20 else np.nan for i in range(c.size)])
        _close(got["high20"], hi20)
        lr = np.diff(np.log(c))
        rv20 = np.array([np.nan] + [lr[i - 20:i].std(ddof=1) * math.sqrt(252) if i >= 20 else np.nan
                                    for i in range(1, c.size)])
        _close(got["rv_20"], rv20)
        assert got["bars"].to_list() == list(range(1, c.size + 1))


def test_symbols_do_not_leak_into_each_other():
    a, b = _random_bars("AAA", 220, 11), _random_bars("BBB", 220, 12)
    alone = ind.analyze(a)
    together = ind.analyze(pl.concat([b, a])).filter(pl.col("symbol") == "AAA")
    assert alone.drop("reason").equals(together.drop("reason"))


def test_rsi_extremes():
    up = ind.analyze(_frame("UP", np.linspace(100, 130, 40)))
    assert up["rsi14"][0] == pytest.approx(100.0)
    flat = ind.analyze(_frame("FLAT", np.full(40, 100.0)))
    assert flat["rsi14"][0] == pytest.approx(50.0)
    assert flat["bb_pct_b"][0] is None  # zero band width: %B undefined
    assert flat["direction"][0] == "NEUTRAL"


# --- direction -------------------------------------------------------------------------------

def test_uptrend_is_strongly_bullish_and_downtrend_bearish():
    t = np.arange(260)
    rng = np.random.default_rng(3)
    up = 100 * np.exp(0.004 * t + rng.normal(0, 0.003, t.size))
    down = 100 * np.exp(-0.004 * t + rng.normal(0, 0.003, t.size))
    out = ind.analyze(pl.concat([_frame("UP", up), _frame("DOWN", down)]))
    u = out.filter(pl.col("symbol") == "UP").row(0, named=True)
    d = out.filter(pl.col("symbol") == "DOWN").row(0, named=True)
    assert u["direction"] == "BULLISH" and u["strength"] > 0.7
    assert d["direction"] == "BEARISH" and d["strength"] > 0.7
    assert u["ema_alignment"] == "BULLISH" and d["ema_alignment"] == "BEARISH"
    assert u["emas_below_price"] == 3 and d["emas_below_price"] == 0
    assert u["coverage"] == pytest.approx(1.0) and u["reason"] is None
    assert 0.0 <= u["strength"] <= 1.0


def test_flat_noise_is_mostly_neutral():
    frames = []
    for k in range(20):
        rng = np.random.default_rng(100 + k)
        c = 100 + rng.normal(0, 0.5, 260)
        frames.append(_frame(f"N{k}", c, volume=rng.uniform(0.8e6, 1.2e6, 260)))
    out = ind.analyze(pl.concat(frames), all_dates=True).filter(pl.col("bars") >= 200)
    share_neutral = (out["direction"] == "NEUTRAL").mean()
    assert share_neutral > 0.8
    assert out["strength"].median() < 0.2
    assert out["strength"].max() < 0.6
    last = ind.analyze(pl.concat(frames))
    assert (last["direction"] == "NEUTRAL").sum() >= 15


def test_breakout_detection_on_constructed_series():
    rng = np.random.default_rng(8)
    base = 100 + rng.normal(0, 0.3, 60)
    vol = np.full(61, 1e6)
    vol_spike = vol.copy()
    vol_spike[-1] = 3e6
    up = np.r_[base, 106.0]
    down = np.r_[base, 94.0]
    out = ind.analyze(pl.concat([
        _frame("UPV", up, volume=vol_spike), _frame("UPQ", up, volume=vol),
        _frame("DNV", down, volume=vol_spike), _frame("FLAT", np.r_[base, 100.0], volume=vol_spike),
    ]))
    by = {r["symbol"]: r for r in out.iter_rows(named=True)}
    assert by["UPV"]["breakout"] == "UP" and by["UPV"]["vote_breakout"] == 1.0
    assert by["UPV"]["volume_ratio"] == pytest.approx(3.0)
    assert by["UPQ"]["breakout"] is None and by["UPQ"]["vote_breakout"] == 0.0  # no volume
    assert by["DNV"]["breakout"] == "DOWN" and by["DNV"]["vote_breakout"] == -1.0
    assert by["FLAT"]["breakout"] is None
    # the day before the jump nothing broke out
    hist = ind.analyze(_frame("UPV", up, volume=vol_spike), all_dates=True)
    assert hist["breakout"].drop_nulls().to_list() == ["UP"]


def test_consolidation_flag():
    rng = np.random.default_rng(4)
    wild = 100 * np.exp(np.cumsum(rng.normal(0.006, 0.02, 170)))  # a volatile trend
    calm = wild[-1] * (1 + rng.normal(0, 0.0015, 30))  # then a tight range
    c = np.r_[wild, calm]
    hi = c * 1.002
    lo = c * 0.998
    hi[:170] = c[:170] * 1.015
    lo[:170] = c[:170] * 0.985
    out = ind.analyze(_frame("SQZ", c, high=hi, low=lo), all_dates=True)
    last = out.row(-1, named=True)
    assert last["bb_squeeze"] is True and last["narrow_range"] is True and last["consolidation"] is True
    assert not out.filter(pl.col("bars").is_between(140, 170))["consolidation"].any()
    # the flag needs the 20-day range to be narrow too: not yet in the first days of calm
    assert out.filter(pl.col("bars") == 175)["consolidation"][0] is False
    trend = ind.analyze(_frame("T", 100 * np.exp(0.01 * np.arange(200))))
    assert trend["consolidation"][0] is False


# --- short history and bad data ----------------------------------------------------------------

def test_short_history():
    t = np.arange(60)
    bars = pl.concat([
        _frame("TINY", 100 + np.arange(16.0)),
        _frame("ONE", [100.0]),
        _frame("SHORT", 100 * np.exp(0.005 * t)),
        _random_bars("FULL", 260, 9),
    ])
    out = ind.analyze(bars)
    by = {r["symbol"]: r for r in out.iter_rows(named=True)}
    tiny = by["TINY"]
    assert tiny["direction"] == "NEUTRAL" and tiny["strength"] == 0.0 and tiny["score"] is None
    assert tiny["ema20"] is None and tiny["macd"] is None
    assert tiny["rsi14"] == pytest.approx(100.0) and tiny["atr14"] is not None  # 15 bars are enough for these
    assert tiny["reason"].startswith("16 bars: only 0.15 of the vote weight available (< 0.5), direction NEUTRAL")
    assert "ema20 (needs 20 bars)" in tiny["reason"]
    assert by["ONE"]["direction"] == "NEUTRAL" and by["ONE"]["bars"] == 1
    short = by["SHORT"]
    assert short["ema200"] is None and short["ema50"] is not None and short["ema_alignment"] is None
    assert short["direction"] == "BULLISH" and short["coverage"] == pytest.approx(1.0)
    assert short["reason"] == "60 bars; missing ema200 (needs 200 bars), bb_squeeze (needs 139 bars)"
    assert short["consolidation"] is not None  # narrow-range test alone before the squeeze exists
    assert by["FULL"]["reason"] is None
    novol = ind.analyze(_frame("IDX", 100 * np.exp(0.004 * np.arange(260)), volume=np.zeros(260)))
    assert novol["reason"][0] == "260 bars; missing volume_ratio (no data)"
    assert novol["volume_ratio"][0] is None and novol["vote_breakout"][0] is None
    assert novol["coverage"][0] == pytest.approx(0.9) and novol["direction"][0] == "BULLISH"


def test_invalid_symbol_is_reported_not_fatal():
    bad = _random_bars("BAD", 100, 1).with_columns(
        pl.when(pl.col("date") == D0 + dt.timedelta(days=50)).then(None).otherwise(pl.col("close")).alias("close"))
    dup = _random_bars("DUP", 50, 2)
    bars = pl.concat([bad, dup, dup.tail(1), _random_bars("OK", 100, 3)])
    out = ind.analyze(bars)
    by = {r["symbol"]: r for r in out.iter_rows(named=True)}
    assert by["BAD"]["direction"] is None and "close is null on 2024-02-20" in by["BAD"]["reason"]
    assert by["DUP"]["direction"] is None and "appears twice" in by["DUP"]["reason"]
    assert by["OK"]["direction"] in ind.DIRECTIONS
    all_rows = ind.analyze(bars, all_dates=True)
    assert all_rows.filter(pl.col("symbol") == "BAD").height == 1
    with pytest.raises(DataError, match="volume"):
        ind.analyze(bars.drop("volume"))


def test_as_of_and_all_dates_agree():
    bars = pl.concat([_random_bars("AAA", 200, 1), _random_bars("BBB", 200, 2)])
    cut = D0 + dt.timedelta(days=150)
    a = ind.analyze(bars, as_of=cut)
    assert a["date"].to_list() == [cut, cut]
    full = ind.analyze(bars, all_dates=True)
    b = full.filter(pl.col("date") == cut).drop("is_last")
    assert a.equals(b)
    assert full.filter(pl.col("is_last")).height == 2


# --- market states -----------------------------------------------------------------------------

def test_nine_market_states():
    assert len(set(ind.MARKET_STATES)) == 9
    combos = [(d, iv) for d in ind.DIRECTIONS for iv in ind.IV_ENVIRONMENTS]
    signals = pl.DataFrame({"symbol": [f"S{i}" for i in range(9)] + ["X", "Y"],
                            "direction": [d for d, _ in combos] + ["BULLISH", None]})
    iv = pl.DataFrame({"symbol": [f"S{i}" for i in range(9)] + ["Y"],
                       "iv_environment": [iv for _, iv in combos] + ["high"]})
    out = ind.market_states(signals, iv)
    states = out["market_state"].to_list()
    assert states[:9] == [f"{d}_{iv}_IV" for d, iv in combos]
    assert set(states[:9]) == set(ind.MARKET_STATES)
    assert states[9] is None and states[10] is None  # no IV environment / no direction
    assert "BULLISH_HIGH_IV" in ind.MARKET_STATES and "NEUTRAL_LOW_IV" in ind.MARKET_STATES
    assert ind.market_states(signals, iv, default_iv="NORMAL")["market_state"][9] == "BULLISH_NORMAL_IV"
    with pytest.raises(DataError, match="iv_environment"):
        ind.market_states(signals, pl.DataFrame({"symbol": ["S0"], "iv_environment": ["EXTREME"]}))


def test_market_states_join_on_date_when_both_have_it():
    d1, d2 = dt.date(2025, 1, 1), dt.date(2025, 1, 2)
    signals = pl.DataFrame({"symbol": ["A", "A"], "date": [d1, d2], "direction": ["BEARISH", "BEARISH"]})
    iv = pl.DataFrame({"symbol": ["A", "A"], "date": [d1, d2], "iv_environment": ["LOW", "HIGH"]})
    assert ind.market_states(signals, iv)["market_state"].to_list() == ["BEARISH_LOW_IV", "BEARISH_HIGH_IV"]


# --- profile -----------------------------------------------------------------------------------

def test_volatility_buckets_index_vs_stock():
    f = pl.DataFrame({
        "symbol": ["NIFTY", "NIFTY2", "BANKNIFTY", "FINNIFTY", "RELIANCE", "INFY", "TCS", "ADANI", "NEW"],
        "rv_20": [0.09, 0.15, 0.20, 0.30, 0.15, 0.25, 0.40, 0.60, None],
        "rv_60": [0.09, 0.15, 0.20, 0.30, 0.15, 0.25, 0.40, 0.60, 0.33],
    })
    out = ind.volatility_buckets(f)
    assert out["is_index"].to_list() == [True, False, True, True, False, False, False, False, False]
    assert out["volatility_bucket"].to_list() == [
        "LOW", "LOW", "HIGH", "VERY_HIGH", "LOW", "MEDIUM", "HIGH", "VERY_HIGH", "HIGH"]
    # same 15 % vol: MEDIUM for an index, LOW for a stock
    mixed = ind.volatility_buckets(pl.DataFrame({"symbol": ["NIFTY", "SBIN"], "rv_20": [0.10, 0.10],
                                                 "rv_60": [0.20, 0.20]}))
    assert mixed["realized_vol"].to_list() == pytest.approx([0.15, 0.15])
    assert mixed["volatility_bucket"].to_list() == ["MEDIUM", "LOW"]
    assert ind.volatility_buckets(pl.DataFrame({"symbol": ["X"], "rv_20": [None], "rv_60": [None]},
                                               schema_overrides={"rv_20": pl.Float64, "rv_60": pl.Float64})
                                  )["volatility_bucket"][0] is None


def test_liquidity_buckets_and_profile():
    chain = pl.DataFrame({
        "symbol": ["A", "A", "B", "B", "C", "D"],
        "oi": [20_000.0, 10_000.0, 4_000.0, 2_000.0, 1_000.0, 50_000.0],
        "volume": [15_000.0, 15_000.0, 3_000.0, 3_000.0, 500.0, 1_000.0],
        "lot_size": [75, 75, 500, 500, 1000, 250],
    })
    liq = ind.liquidity_buckets(ind.chain_liquidity(chain))
    by = {r["symbol"]: r for r in liq.iter_rows(named=True)}
    assert by["A"]["total_oi"] == 30_000 and by["A"]["liquidity_bucket"] == "HIGH"
    assert by["A"]["oi_shares"] == 30_000 * 75
    assert by["B"]["liquidity_bucket"] == "MEDIUM"  # exactly at the MEDIUM bar
    assert by["C"]["liquidity_bucket"] == "LOW"
    assert by["D"]["liquidity_bucket"] == "LOW"  # big OI, no trading
    edge = ind.liquidity_buckets(pl.DataFrame({"symbol": ["E", "F"], "total_oi": [24_999.0, 1e6],
                                               "total_volume": [1e6, 1e6], "lot_size": [10, 0]}))
    assert edge["liquidity_bucket"].to_list() == ["MEDIUM", None]

    signals = ind.analyze(pl.concat([_random_bars("A", 100, 1), _random_bars("NIFTY", 100, 2)]))
    prof = ind.stock_profile(signals, chain)
    assert prof.columns[:6] == ["symbol", "rv_20", "rv_60", "is_index", "realized_vol", "volatility_bucket"]
    row = prof.filter(pl.col("symbol") == "A").row(0, named=True)
    assert row["liquidity_bucket"] == "HIGH" and row["volatility_bucket"] in ind.VOL_BUCKETS
    assert prof.filter(pl.col("symbol") == "NIFTY")["liquidity_bucket"][0] is None  # no chain given
    assert "liquidity_bucket" not in ind.stock_profile(signals).columns


# --- the whole universe ------------------------------------------------------------------------

def test_universe_timing_on_simulated_bars():
    from options_v4_dagster.market.simulated import SimulatedMarket

    m = SimulatedMarket()
    syms = universe.symbols()
    end = dt.date(2025, 9, 11)
    bars = pl.concat([m.daily_bars(s, dt.date(2024, 8, 26), end) for s in syms])
    t0 = time.perf_counter()
    out = ind.analyze(bars)
    t1 = time.perf_counter()
    full = ind.analyze(bars, all_dates=True)
    t2 = time.perf_counter()
    per = bars.height // len(syms)
    print(f"\nindicators: {len(syms)} symbols x {per} bars: last date {t1 - t0:.3f} s, "
          f"every date {t2 - t1:.3f} s; directions {dict(out['direction'].value_counts().iter_rows())}")
    assert out.height == len(syms) and full.height == bars.height
    assert out["direction"].null_count() == 0
    assert out["reason"].null_count() == len(syms)  # a year of bars: every indicator exists
    assert out["strength"].is_between(0, 1).all()
