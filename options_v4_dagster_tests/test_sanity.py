"""Unit tests of the chain sanity screen (market/sanity.py) and the candidate/allocation invariants,
without Dagster: each rule on a small synthetic chain, and no exclusion on the real NSE files."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import polars as pl
import pytest

from options_v4_dagster.allocation.invariants import allocation_violations
from options_v4_dagster.market.base import CHAIN_SCHEMA, normalize_chain
from options_v4_dagster.market.sanity import screen_chain
from options_v4_dagster.quant.black import black76_price
from options_v4_dagster.quant.surface import DEFAULT_RATE
from options_v4_dagster.strategies.invariants import candidate_violations

D = dt.date(2025, 7, 17)
EXP = dt.date(2025, 8, 14)
SPOT = 1000.0


def _chain(symbol: str = "ABC", spot: float = SPOT, vol: float = 0.25) -> pl.DataFrame:
    """A clean Black-76 chain: strikes 800..1200 step 20, bid/ask = model -/+ 1%, traded."""
    k = np.round(spot * np.arange(0.8, 1.2001, 0.02), 2)
    t = 28 / 365
    df = math.exp(-DEFAULT_RATE * t)
    fwd = spot / df
    rows = []
    for typ in ("CE", "PE"):
        px = black76_price(fwd, k, t, vol, typ == "CE", df)
        for kk, p in zip(k, px, strict=True):
            p = max(float(p), 0.05)
            rows.append({"trade_date": D, "symbol": symbol, "expiry": EXP, "strike": kk, "option_type": typ,
                         "bid": round(p * 0.99, 2), "ask": round(p * 1.01 + 0.05, 2), "ltp": round(p, 2),
                         "volume": 100.0, "oi": 500.0, "underlying_price": spot, "lot_size": 100,
                         "snapshot_ts": dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC)})
    return normalize_chain(pl.DataFrame([{c: r.get(c) for c in CHAIN_SCHEMA} for r in rows], schema=CHAIN_SCHEMA))


def _set(chain: pl.DataFrame, strike: float, typ: str, **vals) -> pl.DataFrame:
    hit = (pl.col("strike") == strike) & (pl.col("option_type") == typ)
    return chain.with_columns(*[pl.when(hit).then(pl.lit(v, pl.Float64)).otherwise(pl.col(c)).alias(c)
                                for c, v in vals.items()])


def test_clean_synthetic_chain_passes():
    r = screen_chain(pl.concat([_chain("ABC"), _chain("XYZ", 500.0)]))
    assert r.failures == [] and r.violations.height == 0 and r.clean.height == 2 * 42


@pytest.mark.parametrize(("change", "rule"), [
    (dict(strike=1000.0, typ="CE", bid=242.0), "crossed"),            # bid 10x, above its ask
    (dict(strike=900.0, typ="CE", bid=1500.0, ask=1510.0), "upper"),   # call above spot
    (dict(strike=1100.0, typ="PE", bid=1150.0, ask=1160.0), "upper"),  # put above strike
    (dict(strike=800.0, typ="CE", bid=100.0, ask=101.0), "lower"),     # ITM call under intrinsic
    (dict(strike=1000.0, typ="CE", bid=30.0, ask=20.0), "crossed"),
    (dict(strike=1040.0, typ="CE", bid=60.0, ask=61.0), "monotone"),   # richer than the lower strike
    (dict(strike=960.0, typ="CE", bid=90.0, ask=91.0), "vertical"),    # too far above the 980 call
    (dict(strike=1000.0, typ="CE", bid=0.0, ask=0.0, ltp=0.0), "traded_unpriced"),
    (dict(strike=1160.0, typ="CE", bid=40.0, ask=40.5), "jump"),       # deep OTM, 10x its neighbours
])
def test_each_rule_excludes_the_symbol_only(change, rule):
    strike, typ = change.pop("strike"), change.pop("typ")
    chain = pl.concat([_set(_chain("ABC"), strike, typ, **change), _chain("XYZ", 500.0)])
    r = screen_chain(chain, session=D)
    assert [f.symbol for f in r.failures] == ["ABC"], r.violations
    f = r.failures[0]
    assert f.kind == "error" and f.stage == "chain_sanity"
    assert rule in r.counts and f"{rule}: " in f.reason and str(D) in f.reason
    assert set(r.clean.get_column("symbol")) == {"XYZ"} and r.clean.equals(_chain("XYZ", 500.0))


def test_butterfly_and_iv_outlier():
    c = _chain()
    mid = c.filter((pl.col("strike") == 1100) & (pl.col("option_type") == "CE")).get_column("ask").item()
    r = screen_chain(_set(c, 1100.0, "CE", bid=mid * 1.6, ask=mid * 1.62))
    assert r.failed_symbols == ["ABC"] and ({"butterfly", "iv_outlier"} & set(r.counts)), r.counts


def test_spot_rules():
    c = _chain()
    assert "straddle" in screen_chain(c.with_columns(pl.lit(1500.0).alias("underlying_price"))).counts
    r = screen_chain(c.with_columns(pl.lit(float("nan")).alias("underlying_price")))
    assert r.failed_symbols == ["ABC"] and "spot" in r.counts


def test_stale_untraded_ltp_is_dropped_not_excluded():
    c = _set(_chain(), 800.0, "CE", ltp=150.0, volume=0.0)  # intrinsic ~200: a stale last print
    r = screen_chain(c)
    assert r.failures == [] and r.dropped_quotes == 1
    row = r.clean.filter((pl.col("strike") == 800) & (pl.col("option_type") == "CE"))
    assert row.item(0, "ltp") is None and row.item(0, "bid") is not None


def test_empty_chain():
    r = screen_chain(_chain().clear())
    assert r.failures == [] and r.clean.height == 0


@pytest.mark.nse_data
def test_real_files_have_no_false_exclusions(nse_data_dir):
    """Every dated real file set (8 sessions, 844 symbol-sessions) passes the screen."""
    from options_v4_dagster.market.nse_files import NseFilesProvider

    p = NseFilesProvider(nse_data_dir)
    sessions = p.sessions_available()
    assert len(sessions) >= 8
    total = 0
    for s in sessions:
        chain, _ = p.option_chains(p.available_symbols(s), s)
        r = screen_chain(chain, session=s)
        assert r.failures == [], (s, [f.reason for f in r.failures])
        total += r.symbols_in
        assert r.dropped_quotes <= 0.03 * chain.height, (s, r.dropped_quotes, r.counts)
    assert total >= 800


# --- invariants ------------------------------------------------------------------------------

def _cands(**p):
    base = {"strategy_id": "a", "max_loss": 1000.0, "max_profit": 500.0, "pop": 0.6, "expected_value": 10.0,
            "margin": 20000.0}
    base.update(p)
    s = pl.DataFrame({"strategy_id": ["a"], "symbol": ["RELIANCE"], "strategy_name": ["bull_call_spread"],
                      "unlimited_risk": [p.pop("unlimited", False)]})
    base.pop("unlimited", None)
    return s, pl.DataFrame([base], schema={"strategy_id": pl.Utf8, "max_loss": pl.Float64, "max_profit": pl.Float64,
                                           "pop": pl.Float64, "expected_value": pl.Float64, "margin": pl.Float64})


@pytest.mark.parametrize(("change", "word"), [
    (dict(max_loss=-2500.0), "max_loss"), (dict(max_loss=None), "unlimited"), (dict(max_profit=-1.0), "max_profit"),
    (dict(pop=1.2), "pop"), (dict(pop=float("nan")), "pop"), (dict(expected_value=float("inf")), "expected_value"),
    (dict(margin=0.0), "margin"),
])
def test_candidate_invariants_catch_each(change, word):
    assert candidate_violations(*_cands()).height == 0
    v = candidate_violations(*_cands(**change))
    assert v.height == 1 and word in v.item(0, "problem") and v.item(0, "symbol") == "RELIANCE"


def test_unlimited_flagged_null_loss_is_fine():
    assert candidate_violations(*_cands(max_loss=None, unlimited=True)).height == 0


def test_allocation_invariants():
    pos = pl.DataFrame({"symbol": ["A", "B"], "lots": [1, 2], "capital_used": [1000.0, 2000.0]})
    assert allocation_violations(pos, 10_000.0, 3000.0, 0.03) == []
    assert "expected monthly return" in allocation_violations(pos, 10_000.0, 3000.0, 0.47 * 30)[0]
    assert allocation_violations(pos, 10_000.0, 3000.0, float("nan"))
    assert "capital used" in allocation_violations(pos, 2000.0, 3000.0, 0.01)[0]
    bad = pos.with_columns(pl.Series("lots", [0, 2]))
    assert any("A: 0 lots" in x for x in allocation_violations(bad, 10_000.0, 3000.0, 0.01))
