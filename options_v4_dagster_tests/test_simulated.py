"""The simulated market: deterministic, one continuous path per symbol, NSE-shaped chains."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from options_v4_dagster import calendar, universe
from options_v4_dagster.errors import DataError, DataUnavailable
from options_v4_dagster.market import simulated, simulated_paths
from options_v4_dagster.market.base import BARS_SCHEMA, CHAIN_SCHEMA
from options_v4_dagster.market.simulated import SimulatedMarket

D_THU = dt.date(2025, 7, 17)  # a NIFTY Thursday-expiry day (before the 2025-09 change)
D_TUE = dt.date(2025, 9, 11)  # after the change to Tuesday expiries; also the anchor date
BANK = "HDFCBANK"
STOCK = "RELIANCE"


@pytest.fixture(scope="module")
def mkt() -> SimulatedMarket:
    return SimulatedMarket()


@pytest.fixture(scope="module")
def nifty_thu(mkt) -> pl.DataFrame:
    return mkt.option_chain("NIFTY", D_THU)


def _clear_caches() -> None:
    for fn in (simulated_paths.market_state, simulated_paths.sector_factor, simulated_paths.symbol_params,
               simulated_paths.symbol_path, simulated_paths.vix_path, simulated._expiries):
        fn.cache_clear()


def _digest(m: SimulatedMarket) -> str:
    parts = [
        m.option_chain("NIFTY", D_THU).write_csv(),
        m.option_chain(BANK, D_TUE).write_csv(),
        m.daily_bars("INDIAVIX", dt.date(2024, 1, 1), dt.date(2024, 3, 1)).write_csv(),
        m.daily_bars("LTM", dt.date(2019, 1, 1), dt.date(2019, 2, 1)).write_csv(),
    ]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


# --- determinism and continuity ----------------------------------------------------------------

def test_deterministic_across_fresh_instances():
    a = _digest(SimulatedMarket(seed=7))
    _clear_caches()
    b = _digest(SimulatedMarket(seed=7, ignored_option="x"))
    assert a == b
    assert _digest(SimulatedMarket(seed=8)) != a


def test_deterministic_across_processes():
    """Another interpreter with another hash seed produces the same bytes (no use of ``hash()``)."""
    here = _digest(SimulatedMarket(seed=7))
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "from test_simulated import _digest, SimulatedMarket\n"
            "print(_digest(SimulatedMarket(seed=7)))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code, os.path.dirname(os.path.abspath(__file__))],
                         capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == here


def test_bars_are_one_continuous_path(mkt):
    for sym in ("NIFTY", BANK, "INDIAVIX"):
        short = mkt.daily_bars(sym, dt.date(2024, 1, 1), D_THU)
        long = mkt.daily_bars(sym, dt.date(2023, 6, 1), dt.date(2026, 6, 30))
        assert short.height > 300
        assert short.equals(long.filter(pl.col("date").is_between(dt.date(2024, 1, 1), D_THU)))


def test_bars_schema_and_ohlc_consistency(mkt):
    for sym in ("NIFTY", "BANKNIFTY", BANK, "LTM", "INDIAVIX"):
        b = mkt.daily_bars(sym, simulated.GRID_START, simulated.GRID_END)
        assert b.schema == pl.Schema(BARS_SCHEMA)
        assert b.height == len(calendar.sessions_between(simulated.GRID_START, simulated.GRID_END))
        assert (b["symbol"] == sym).all() and (b["source"] == "simulated").all()
        o, h, lo, c = (b[k].to_numpy() for k in ("open", "high", "low", "close"))
        assert np.all(lo <= np.minimum(o, c)) and np.all(h >= np.maximum(o, c))
        assert (b["low"] > 0).all()
        if sym == "INDIAVIX":
            assert (b["volume"] == 0).all()
            assert 7 < b["close"].median() < 25
        else:
            assert (b["volume"] > 0).all()
    d = mkt.daily_bars("NIFTY", dt.date(2025, 7, 12), dt.date(2025, 7, 20))["date"].to_list()
    assert d == calendar.sessions_between(dt.date(2025, 7, 12), dt.date(2025, 7, 20))


def test_path_is_anchored_to_reference_prices(mkt):
    def close_on(sym, d):
        return mkt.daily_bars(sym, d, d)["close"][0]

    assert close_on("NIFTY", D_TUE) == 25005.5
    for sym in (BANK, STOCK, "GAIL"):
        assert close_on(sym, D_TUE) == pytest.approx(universe.get(sym).reference_price)
    assert universe.get("LTM").reference_price is None
    assert 200 <= close_on("LTM", D_TUE) <= 5000
    # another seed: another path, same anchor
    other = SimulatedMarket(seed=99)
    assert other.daily_bars("NIFTY", D_TUE, D_TUE)["close"][0] == 25005.5
    assert other.daily_bars("NIFTY", D_THU, D_THU)["close"][0] != close_on("NIFTY", D_THU)


# --- chains ------------------------------------------------------------------------------------

def test_chain_schema_and_identity(mkt, nifty_thu):
    c = nifty_thu
    assert c.schema == pl.Schema(CHAIN_SCHEMA)
    assert (c["trade_date"] == D_THU).all() and (c["symbol"] == "NIFTY").all()
    assert (c["lot_size"] == universe.get("NIFTY").lot_size).all()
    assert (c["source"] == "simulated").all()
    assert c["security_id"].n_unique() == c.height and c["security_id"].null_count() == 0
    assert c["snapshot_ts"].unique().to_list() == [dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC)]
    assert c["exchange_iv"].is_between(0.03, 1.5).all()
    # every strike has both a CE and a PE
    per_strike = c.group_by("expiry", "strike").agg(pl.col("option_type").sort().str.join(","))
    assert (per_strike["option_type"] == "CE,PE").all()


def test_underlying_price_is_the_bar_close(mkt):
    for sym, d in (("NIFTY", D_THU), (BANK, D_THU), (STOCK, dt.date(2021, 3, 10)), ("LTM", D_TUE)):
        chain = mkt.option_chain(sym, d)
        bar_close = mkt.daily_bars(sym, d, d)["close"][0]
        assert chain["underlying_price"].unique().to_list() == [bar_close]


def test_strikes_on_step_grid_and_around_spot(mkt):
    for sym in ("NIFTY", "BANKNIFTY", BANK, "GAIL", "LTM"):
        c = mkt.option_chain(sym, D_TUE)
        # LTM has no strike step in the universe: the NSE-like step for its price applies
        step = universe.get(sym).strike_step or simulated_paths.default_step(
            mkt.daily_bars(sym, D_TUE, D_TUE)["close"][0])
        q = c["strike"].to_numpy() / step
        assert np.allclose(q, np.round(q), atol=1e-6), sym
        spot = c["underlying_price"][0]
        for _exp, g in c.group_by("expiry"):
            k = g["strike"]
            lo, hi = 1 - k.min() / spot, k.max() / spot - 1
            assert lo >= (0.09 if universe.is_index(sym) else 0.19), (sym, lo)
            assert hi >= (0.09 if universe.is_index(sym) else 0.19), (sym, hi)
            assert k.n_unique() >= (30 if universe.is_index(sym) else 15)


def test_quotes_are_sane(mkt, nifty_thu):
    for c in (nifty_thu, mkt.option_chain(BANK, D_TUE), mkt.option_chain("LTM", D_THU)):
        for col in ("bid", "ask", "ltp", "close", "volume", "oi", "bid_qty", "ask_qty"):
            assert (c[col] >= 0).all(), col
        assert (c["bid"] <= c["ask"]).all()
        assert ((c["bid"] == 0) | (c["bid"] >= 0.05)).all()
        assert (c["ask"] >= 0.05).all()
        assert ((c["ltp"] >= c["bid"]) & (c["ltp"] <= c["ask"])).all()
        for col in ("bid", "ask", "ltp", "close"):
            ticks = c[col].to_numpy() / 0.05
            assert np.allclose(ticks, np.round(ticks), atol=1e-6), col
        assert (c["oi"] - c["oi_change"] >= 0).all()
        # the spread (relative to price) widens away from the money
        atm = c.filter(pl.col("expiry") == c["expiry"].min())
        spot = atm["underlying_price"][0]
        rel = atm.with_columns(((pl.col("ask") - pl.col("bid")) / pl.col("ask")).alias("rel"),
                               (pl.col("strike") / spot - 1).abs().alias("dist"))
        near = rel.filter(pl.col("dist") < 0.02)["rel"].median()
        far = rel.filter(pl.col("dist") > 0.08)["rel"].median()
        assert far > near


def test_put_call_parity_at_mid(mkt, nifty_thu):
    for c in (nifty_thu, mkt.option_chain(STOCK, D_TUE)):
        mid = c.with_columns(((pl.col("bid") + pl.col("ask")) / 2).alias("mid"),
                             ((pl.col("ask") - pl.col("bid")) / 2).alias("half"))
        wide = (mid.filter(pl.col("option_type") == "CE").select("expiry", "strike", "mid", "half", "futures_price")
                .join(mid.filter(pl.col("option_type") == "PE").select("expiry", "strike", "mid", "half"),
                      on=["expiry", "strike"], suffix="_pe"))
        T = np.array([(e - c["trade_date"][0]).days for e in wide["expiry"]]) / 365.0
        df = np.exp(-simulated.RATE * T)
        F, K = wide["futures_price"].to_numpy(), wide["strike"].to_numpy()
        lhs = wide["mid"].to_numpy() - wide["mid_pe"].to_numpy()
        tol = wide["half"].to_numpy() + wide["half_pe"].to_numpy() + 0.06
        assert np.all(np.abs(lhs - df * (F - K)) <= tol)
        # and the forward is S exp(rT)
        S = c["underlying_price"][0]
        assert np.allclose(F, S * np.exp(simulated.RATE * T), atol=0.03)


def test_expiry_day_contract_is_worth_intrinsic(nifty_thu):
    today = nifty_thu.filter(pl.col("expiry") == D_THU)
    assert today.height > 0
    spot = today["underlying_price"][0]
    intrinsic = np.where(today["option_type"] == "CE", np.maximum(spot - today["strike"], 0),
                         np.maximum(today["strike"] - spot, 0))
    assert np.allclose(today["close"].to_numpy(), intrinsic, atol=0.05)


def test_expiries_follow_calendar_rules(mkt, nifty_thu):
    exps = sorted(nifty_thu["expiry"].unique().to_list())
    assert exps == calendar.listed_expiries("NIFTY", D_THU, is_index=True)
    assert exps[0] == D_THU and len(exps) >= 6
    # Thursdays until the 2025-09 change (no holiday moves in that window), then the Tuesday monthly
    assert all(e.weekday() == (3 if e < calendar.TUESDAY_EXPIRY_FROM else 1) for e in exps)
    assert dt.date(2025, 9, 30) in exps and sum(e.month == 7 for e in exps) == 3
    tue = sorted(mkt.option_chain("NIFTY", D_TUE)["expiry"].unique().to_list())
    assert tue == calendar.listed_expiries("NIFTY", D_TUE, is_index=True)
    assert all(e.weekday() == 1 for e in tue) and len(tue) >= 5
    for sym, d in ((BANK, D_THU), (STOCK, D_TUE), ("BANKNIFTY", D_TUE)):
        got = sorted(mkt.option_chain(sym, d)["expiry"].unique().to_list())
        assert got == calendar.monthly_expiries(d, 3)
    short = mkt.option_chain("NIFTY", D_TUE, horizon_days=20)
    assert short["expiry"].max() <= D_TUE + dt.timedelta(days=20)


def test_smile_term_structure_and_open_interest(mkt, nifty_thu):
    c = nifty_thu
    spot = c["underlying_price"][0]
    exp = sorted(c["expiry"].unique().to_list())[2]
    g = c.filter(pl.col("expiry") == exp)

    def iv_at(k_ratio, typ):
        row = g.filter(pl.col("option_type") == typ).with_columns(
            (pl.col("strike") - spot * k_ratio).abs().alias("d")).sort("d")
        return row["exchange_iv"][0]

    assert iv_at(0.95, "PE") > iv_at(1.0, "CE") * 1.03  # puts richer
    assert iv_at(1.05, "CE") < iv_at(0.95, "PE")
    # open interest concentrates near the money and on nearer expiries
    near = c.filter(pl.col("expiry") == exps_sorted(c)[1])
    top = near.sort("oi", descending=True).head(10)
    assert ((top["strike"] / spot - 1).abs() < 0.04).all()
    by_exp = c.group_by("expiry").agg(pl.col("oi").sum()).sort("expiry")["oi"].to_list()
    assert by_exp[1] > by_exp[-1]
    stock_oi = mkt.option_chain(BANK, D_THU)["oi"].sum()
    assert c["oi"].sum() > 10 * stock_oi


def exps_sorted(c: pl.DataFrame) -> list[dt.date]:
    return sorted(c["expiry"].unique().to_list())


# --- errors and the universe -------------------------------------------------------------------

def test_errors(mkt):
    with pytest.raises(DataError) as e:
        mkt.option_chain("NOTASYMBOL", D_THU)
    assert not isinstance(e.value, DataUnavailable)
    with pytest.raises(DataError):
        mkt.daily_bars("NOTASYMBOL", D_THU, D_THU)
    with pytest.raises(DataError):
        mkt.option_chain("INDIAVIX", D_THU)  # bars only
    with pytest.raises(DataUnavailable):
        mkt.option_chain("NIFTY", dt.date(2014, 6, 2))
    with pytest.raises(DataUnavailable):
        mkt.option_chain("NIFTY", dt.date(2031, 1, 2))
    with pytest.raises(DataUnavailable):
        mkt.option_chain("NIFTY", dt.date(2025, 7, 19))  # a Saturday
    with pytest.raises(DataUnavailable):
        mkt.daily_bars("NIFTY", dt.date(2010, 1, 1), dt.date(2012, 1, 1))


def test_full_universe_one_session(mkt):
    syms = universe.symbols()
    mkt.warm()
    chains, failures = mkt.option_chains([*syms, "NOTASYMBOL"], D_THU)  # speed: benchmarks/bench_strategies.py
    assert [f.symbol for f in failures] == ["NOTASYMBOL"]
    assert chains["symbol"].n_unique() >= 200 and chains["symbol"].n_unique() == len(syms)
    assert chains.schema == pl.Schema(CHAIN_SCHEMA)
    assert chains.select(["symbol", "expiry", "strike", "option_type"]).is_duplicated().sum() == 0
    # the batch path gives the same rows as the single-symbol path
    assert chains.filter(pl.col("symbol") == BANK).equals(mkt.option_chain(BANK, D_THU))


# --- dynamics ----------------------------------------------------------------------------------

def _log_returns(mkt, sym, start, end) -> np.ndarray:
    return np.diff(np.log(mkt.daily_bars(sym, start, end)["close"].to_numpy()))


def test_volatility_moves(mkt):
    r = pl.Series(_log_returns(mkt, "NIFTY", dt.date(2023, 9, 1), dt.date(2025, 12, 31)))
    rv = (r.rolling_std(60) * np.sqrt(252)).drop_nulls()
    assert rv.max() / rv.min() > 1.5
    assert 0.07 < rv.median() < 0.25


def test_iv_percentiles_span_their_range(mkt):
    vix = mkt.daily_bars("INDIAVIX", dt.date(2018, 1, 1), dt.date(2025, 12, 31))["close"].to_numpy()
    pct = np.array([(vix[i - 251:i + 1] < vix[i]).mean() * 100 for i in range(251, vix.size)])
    assert pct.min() <= 2 and pct.max() >= 98
    assert 0.25 < np.mean(pct < 50) < 0.75


def test_india_vix_matches_nifty_atm_iv(mkt):
    for d in (D_THU, D_TUE, dt.date(2020, 3, 23), dt.date(2019, 6, 6)):
        c = mkt.option_chain("NIFTY", d)
        spot = c["underlying_price"][0]
        exps = exps_sorted(c)
        target = d + dt.timedelta(days=30)
        exp = min(exps, key=lambda e: abs((e - target).days))
        atm = (c.filter(pl.col("expiry") == exp).with_columns((pl.col("strike") - spot).abs().alias("d"))
               .sort("d")["exchange_iv"][0])
        vix = mkt.daily_bars("INDIAVIX", d, d)["close"][0]
        assert vix / 100 == pytest.approx(atm, rel=0.12), d


def test_stock_returns_correlate_with_nifty(mkt):
    start, end = dt.date(2024, 1, 1), dt.date(2025, 12, 31)
    n = _log_returns(mkt, "NIFTY", start, end)
    corr_bank = np.corrcoef(n, _log_returns(mkt, BANK, start, end))[0, 1]
    assert 0.3 < corr_bank < 0.85
    assert np.corrcoef(n, _log_returns(mkt, "BANKNIFTY", start, end))[0, 1] > 0.7
    vols = {s: _log_returns(mkt, s, start, end).std() * np.sqrt(252) for s in ("NIFTY", BANK, "ADANIENT")}
    assert vols["NIFTY"] < vols[BANK] and vols["NIFTY"] < vols["ADANIENT"]
