"""The store's typed query functions that replaced the SQL of defs/ and cli.py (issue 10), on a
SQLite warehouse: joins, date windows, provenance filtering."""

import datetime as dt

import polars as pl
import pytest

from options_v4_dagster.quant import regime
from options_v4_dagster.store import Warehouse, failures, market_queries, volatility_queries
from options_v4_dagster.store.provenance import provenance_replace
from options_v4_dagster.store.strategies_queries import latest_candidates_session

D1, D2, D3, D4 = dt.date(2025, 7, 14), dt.date(2025, 7, 15), dt.date(2025, 7, 16), dt.date(2025, 7, 17)


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    yield w
    w.dispose()


def _summary(wh, d, rows):
    wh.replace_partition("historical_iv_summary", d, pl.DataFrame(
        [{"trade_date": d, "symbol": s, "atm_iv_30d": iv, "rv_20": 0.1} for s, iv in rows],
        schema={"trade_date": pl.Date, "symbol": pl.Utf8, "atm_iv_30d": pl.Float64, "rv_20": pl.Float64}))


def test_atm_iv_history_keeps_the_source_and_sessions_without_provenance(wh):
    for d, iv in ((D1, 0.11), (D2, 0.12), (D3, 0.13), (D4, 0.14)):
        _summary(wh, d, [("NIFTY", iv), ("ACC", iv + 0.1)])
    wh.replace_together([provenance_replace(D2, "iv_history", "simulated"),
                         provenance_replace(D3, "iv_history", "nse_files"),
                         provenance_replace(D3, "option_chains", "simulated"),  # another asset: no effect
                         provenance_replace(D4, "iv_history", "simulated")])
    hist = volatility_queries.atm_iv_history(wh, D1, D4, "simulated")
    # D1 has no provenance (kept), D3 is another source's (left out), ordered by symbol then date
    assert hist.rows() == [(D1, "ACC", pytest.approx(0.21)), (D2, "ACC", pytest.approx(0.22)),
                           (D4, "ACC", pytest.approx(0.24)), (D1, "NIFTY", 0.11), (D2, "NIFTY", 0.12),
                           (D4, "NIFTY", 0.14)]
    assert volatility_queries.atm_iv_history(wh, D2, D3, "nse_files").get_column("trade_date").to_list() == [D3, D3]
    empty = volatility_queries.atm_iv_history(wh, D1, D4, "dhan").filter(pl.col("trade_date") > D1)
    assert empty.height == 0 and empty.schema["atm_iv_30d"] == pl.Float64
    assert volatility_queries.atm_iv_history(wh, D1, D1, "dhan").schema["symbol"] == pl.Utf8


def test_symbol_iv_history_left_joins_percentiles_within_the_window(wh):
    for d in (D1, D2, D3):
        _summary(wh, d, [("NIFTY", 0.1), ("ACC", 0.2)])
    wh.replace_partition("iv_percentiles", D2, pl.DataFrame(
        [{"trade_date": D2, "symbol": "NIFTY", "iv_percentile": 40.0, "iv_environment": "NORMAL"},
         {"trade_date": D2, "symbol": "ACC", "iv_percentile": 90.0, "iv_environment": "HIGH"}]))
    hist = volatility_queries.symbol_iv_history(wh, "NIFTY")
    assert hist.get_column("trade_date").to_list() == [D1, D2, D3]
    assert hist.get_column("iv_percentile").to_list() == [None, 40.0, None]
    assert hist.get_column("iv_environment").to_list() == [None, "NORMAL", None]
    window = volatility_queries.symbol_iv_history(wh, "NIFTY", D2, D3)
    assert window.get_column("trade_date").to_list() == [D2, D3]
    none = volatility_queries.symbol_iv_history(wh, "NIFTY", D3, D3)
    assert none.schema["window_min"] == pl.Float64 and none.schema["iv_percentile"] == pl.Float64


def test_bars_and_vix_windows(wh):
    bars = pl.DataFrame({"symbol": ["ACC"] * 3 + ["ABB"] * 3, "date": [D3, D1, D2] * 2,
                         "close": [3.0, 1.0, 2.0, 30.0, 10.0, 20.0], "source": ["simulated"] * 6})
    wh.replace_window("underlying_bars", bars)
    got = market_queries.closes_between(wh, D2, D3)
    assert got.rows() == [("ABB", D2, 20.0), ("ABB", D3, 30.0), ("ACC", D2, 2.0), ("ACC", D3, 3.0)]
    vix = pl.DataFrame({"date": [D1, D2], "close": [12.0, 13.0], "source": ["simulated"] * 2})
    wh.replace_window("india_vix_data", vix, key_column=None)
    wh.replace_window("nifty_historical_data", vix.with_columns(pl.col("close") * 1000), key_column=None)
    assert market_queries.vix_on(wh, D2) == 13.0 and market_queries.vix_on(wh, D3) is None
    assert market_queries.latest_vix(wh, D4).rows() == [(D2, 13.0)]
    assert market_queries.latest_vix(wh, D1).rows() == [(D1, 12.0)]
    assert market_queries.latest_vix(wh, D1 - dt.timedelta(days=1)).height == 0
    assert market_queries.nifty_closes_until(wh, D1).rows() == [(D1, 12000.0)]
    assert market_queries.nifty_closes_until(wh, D4).get_column("date").to_list() == [D1, D2]


def test_sources_of_stored_universe_rows(wh):
    def universe(d, sources):
        wh.replace_partition("fno_universe", d, pl.DataFrame(
            [{"trade_date": d, "symbol": f"S{i}", "instrument": "STOCK", "lot_size": 1, "source": s}
             for i, s in enumerate(sources)]))
    universe(D1, ["simulated", "simulated"])
    universe(D2, ["simulated", "nse_files"])
    universe(D4, ["nse_files"])
    assert market_queries.stored_sources(wh, "fno_universe", D2) == ["nse_files", "simulated"]
    assert market_queries.stored_sources(wh, "fno_universe", D1) == ["simulated"]
    assert market_queries.stored_sources(wh, "option_chain_data", D1) == []
    assert market_queries.universe_sources_between(wh, D1, D3) == {D1: "simulated", D2: "mixed"}


def test_failure_reads(wh):
    def fail(asset, symbol, kind, reason):
        return {"trade_date": D1, "asset": asset, "symbol": symbol, "stage": "load", "kind": kind, "reason": reason}
    wh.replace_partition("pipeline_failures", D1, pl.DataFrame([
        fail("option_chains", "ACC", "missing", "no chain"), fail("option_chains", "ABB", "missing", "no chain"),
        fail("option_chains", "TCS", "error", "bad"), fail("option_greeks", "TCS", "error", "bad"),
        fail("universe", "*", "error", "not a gap")]))
    assert failures.missing_session_reason(wh, D1) is None  # the universe's row is an error, not a gap
    counts = failures.failure_counts(wh, D1, ("universe", "option_chains"))
    assert sorted(counts.rows()) == [("option_chains", "error", 1), ("option_chains", "missing", 2),
                                     ("universe", "error", 1)]
    assert counts.get_column("asset").to_list()[-1] == "universe"
    wh.replace_partition("pipeline_failures", D2, pl.DataFrame([
        {**fail("universe", "*", "missing", "holiday at the source"), "trade_date": D2}]))
    assert failures.missing_session_reason(wh, D2) == "holiday at the source"


def test_latest_candidates_session_empty(wh):
    assert latest_candidates_session(wh) is None


def test_put_call_ratios_per_symbol_agree_with_the_single_chain_ratio():
    chain = pl.DataFrame({"symbol": ["A", "A", "A", "B", "B", "C", "D", "D"],
                          "option_type": ["CE", "PE", "PE", "CE", "PE", "CE", "CE", "PE"],
                          "oi": [100, 50, 70, 0, 10, 5, 40, 0], "volume": [10, 5, 5, 4, 0, 1, 0, 3]})
    per = {r["symbol"]: (r["pcr_oi"], r["pcr_volume"]) for r in regime.put_call_ratios(chain).iter_rows(named=True)}
    assert per == {"A": (1.2, 1.0), "B": (None, 0.0), "C": (None, None), "D": (0.0, None)}
    for sym, want in per.items():
        assert regime.put_call_ratio(chain.filter(pl.col("symbol") == sym)) == want
    assert regime.put_call_ratio(chain.clear()) == (None, None)
