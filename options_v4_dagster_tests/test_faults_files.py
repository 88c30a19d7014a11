"""Fault injection on copies of the real NSE files: a damaged file is an error with its reason, never a
silent gap; the other symbols are served exactly as from the clean files; a broken day keeps its rows.

Provider-level cases are fast (the parsing and failure recording is the provider's); the pipeline
cases run the daily job through Dagster to show the run's outcome, the stored rows and the metadata.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from options_v4_dagster.errors import DataError
from options_v4_dagster.market.nse_files import NseFilesProvider
from options_v4_dagster_tests import faults
from options_v4_dagster_tests.faults import (
    NIFTY_HISTORY,
    OC_2025_07_17,
    UDIFF_2025_09_11,
    VIX_HISTORY,
    nse_copy,
)

pytestmark = pytest.mark.nse_data

D_OC = dt.date(2025, 7, 17)
D_UDIFF = dt.date(2025, 9, 11)
REL = OC_2025_07_17 / "reliance_option_chain.json"
OC_SYMBOLS = ["NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "RELIANCE", "INFY", "TCS", "HDFCBANK", "SBIN",
              "ICICIBANK"]


@pytest.fixture(scope="module")
def clean_oc(nse_data_dir) -> pl.DataFrame:
    chain, failures = NseFilesProvider(nse_data_dir).option_chains(OC_SYMBOLS, D_OC)
    assert not failures
    return chain


@pytest.fixture(scope="module")
def clean_oc_stored(clean_oc) -> pl.DataFrame:
    """What a clean run stores: the provider's chain through the per-symbol sanity screen (which
    drops immaterial stale quotes and excludes no symbol of the real files)."""
    from options_v4_dagster.market.sanity import SanityConfig, screen_chain

    screen = screen_chain(clean_oc, SanityConfig(), session=D_OC)
    assert not screen.failures
    return screen.clean


@pytest.fixture(scope="module")
def clean_udiff(nse_data_dir) -> tuple[list[str], pl.DataFrame]:
    p = NseFilesProvider(nse_data_dir)
    symbols = p.available_symbols(D_UDIFF)
    chain, failures = p.option_chains(symbols, D_UDIFF)
    assert not failures and len(symbols) > 200
    return symbols, chain


def _oc_copy(nse_data_dir, tmp_path):
    return nse_copy(nse_data_dir, tmp_path / "nse", only=[OC_2025_07_17, NIFTY_HISTORY, VIX_HISTORY])


def _nan_spot(path):
    faults.damage_oc_spot(path, float("nan"))


def _nan_bid(path):
    faults.damage_oc_quote(path, strike=1500, expiry="31-Jul-2025", option_type="CE", bid=float("nan"))


def _negative_ltp(path):
    faults.damage_oc_quote(path, strike=1500, expiry="31-Jul-2025", option_type="CE", ltp=-24.2)


# damage of RELIANCE's snapshot -> (what the reason must say, field)
SYMBOL_DAMAGE = {
    "truncated": (faults.damage_truncate, "not valid JSON", "json"),
    "empty": (faults.damage_empty, "empty", "json"),
    "garbage": (faults.damage_garbage, "JSON", "json"),
    "other_date": (lambda p: faults.damage_oc_timestamp(p, "16-Jul-2025 15:30:00"), "16-Jul-2025",
                   "records.timestamp"),
    "other_symbol": (lambda p: faults.damage_oc_underlying(p, "INFY"), "INFY", "underlying"),
    "nan_spot": (_nan_spot, "underlyingValue", "underlying_price"),
    "negative_spot": (lambda p: faults.damage_oc_spot(p, -1478.7), "underlying_price", "underlying_price"),
    "nan_bid": (_nan_bid, "nan", "bid"),
    "negative_ltp": (_negative_ltp, "negative", "ltp"),
    "negative_prices": (lambda p: faults.damage_oc_all_prices(p, factor=-1.0), "negative", None),
    "zero_prices": (lambda p: faults.damage_oc_all_prices(p, value=0.0), "no contract has a", "bid"),
}


@pytest.mark.parametrize("case", list(SYMBOL_DAMAGE))
def test_a_damaged_snapshot_fails_only_its_symbol_with_a_reason(case, nse_data_dir, tmp_path, clean_oc):
    damage, says, field = SYMBOL_DAMAGE[case]
    root = _oc_copy(nse_data_dir, tmp_path)
    damage(root / REL)
    p = NseFilesProvider(root)
    assert "RELIANCE" in p.available_symbols(D_OC)  # the universe still lists it: it is not "missing"
    chain, failures = p.option_chains(OC_SYMBOLS, D_OC)
    assert [(f.symbol, f.kind) for f in failures] == [("RELIANCE", "error")], failures
    reason = failures[0].reason
    assert says.lower() in reason.lower() and "RELIANCE" in reason, reason
    if field:
        assert f"field={field}" in reason, reason
    if case not in ("nan_spot", "negative_spot", "nan_bid", "negative_ltp", "negative_prices", "zero_prices"):
        assert "reliance_option_chain.json" in reason, reason  # names the file
    others = clean_oc.filter(pl.col("symbol") != "RELIANCE")
    assert chain.equals(others), "the other symbols' rows differ from a clean run"


def test_a_wrong_symbol_file_never_replaces_the_real_one(nse_data_dir, tmp_path, clean_oc):
    root = _oc_copy(nse_data_dir, tmp_path)
    faults.damage_oc_underlying(root / REL, "INFY")
    chain, _ = NseFilesProvider(root).option_chains(["INFY"], D_OC)
    assert chain.equals(clean_oc.filter(pl.col("symbol") == "INFY"))


def test_nan_spot_is_bad_for_any_provider_not_a_null_for_the_database():
    from options_v4_dagster.market.base import normalize_chain

    row = {"trade_date": D_OC, "symbol": "X", "expiry": dt.date(2025, 7, 31), "strike": 100.0, "option_type": "CE",
           "bid": 1.0, "ask": 1.2, "underlying_price": float("nan"), "lot_size": 10}
    with pytest.raises(DataError) as e:
        normalize_chain(pl.DataFrame({k: [v] for k, v in row.items()}), symbol="X", session=D_OC)
    assert e.value.field == "underlying_price"
    for name in ("bid", "ask", "ltp", "close", "volume", "oi", "exchange_iv", "strike"):
        with pytest.raises(DataError) as e:
            normalize_chain(pl.DataFrame({k: [v] for k, v in {**row, "underlying_price": 100.0, name: math.nan}.items()}),
                            symbol="X")
        assert e.value.field == name


# --- whole-day damage: the F&O bhavcopy of the session ------------------------------------------

DAY_DAMAGE = {
    "not_a_zip": (faults.damage_garbage, "BadZipFile"),
    "missing_column": (lambda p: faults.damage_drop_column(p, "ClsPric"), "ClsPric"),
    "other_date": (lambda p: faults.damage_csv_rows(p, lambda r: True, TradDt="2025-09-10"), "TradDt"),
    "truncated": (faults.damage_truncate, "NewBrdLotQty"),
}


@pytest.mark.parametrize("case", list(DAY_DAMAGE))
def test_a_broken_bhavcopy_is_a_day_error_naming_the_file(case, nse_data_dir, tmp_path):
    damage, says = DAY_DAMAGE[case]
    root = nse_copy(nse_data_dir, tmp_path / "nse", only=[UDIFF_2025_09_11])
    damage(root / UDIFF_2025_09_11)
    p = NseFilesProvider(root)
    with pytest.raises(DataError) as e:
        p.available_symbols(D_UDIFF)
    assert says in str(e.value) and "BhavCopy_NSE_FO_0_0_0_20250911" in str(e.value), str(e.value)
    assert D_UDIFF in p.sessions_available()  # the session is known to exist, and broken
    chain, failures = p.option_chains(["NIFTY", "RELIANCE"], D_UDIFF)
    assert chain.height == 0 and {f.kind for f in failures} == {"error"}


def test_one_symbol_with_nan_prices_in_the_bhavcopy_fails_alone(nse_data_dir, tmp_path, clean_udiff):
    symbols, clean = clean_udiff
    root = nse_copy(nse_data_dir, tmp_path / "nse", only=[UDIFF_2025_09_11])
    n = faults.damage_csv_rows(root / UDIFF_2025_09_11, lambda r: r["TckrSymb"] == "SBIN", UndrlygPric=float("nan"))
    assert n > 0
    chain, failures = NseFilesProvider(root).option_chains(symbols, D_UDIFF)
    assert [(f.symbol, f.kind) for f in failures] == [("SBIN", "error")]
    assert "underlying_price" in failures[0].reason
    assert chain.equals(clean.filter(pl.col("symbol") != "SBIN"))


# --- index exports --------------------------------------------------------------------------------

def _on_day(r: dict[str, str]) -> bool:
    return r["Date"].upper().startswith("17-JUL-2025")


def _set_close(value):
    def damage(path):
        assert faults.damage_csv_rows(path, _on_day, Close=value) == 1
    return damage


BARS_DAMAGE = {
    "no_close": (lambda p: faults.damage_drop_column(p, "Close"), "Close"),
    "nan_close": (_set_close(float("nan")), "Close"),
    "zero_close": (_set_close("0"), "Close"),
    "negative_close": (_set_close("-25111.45"), "Close"),
}


@pytest.mark.parametrize("which", ["NIFTY", "INDIAVIX"])
@pytest.mark.parametrize("case", list(BARS_DAMAGE))
def test_a_broken_index_export_is_an_error_naming_file_and_column(case, which, nse_data_dir, tmp_path):
    damage, col = BARS_DAMAGE[case]
    rel = NIFTY_HISTORY if which == "NIFTY" else VIX_HISTORY
    root = _oc_copy(nse_data_dir, tmp_path)
    damage(root / rel)
    p = NseFilesProvider(root)
    with pytest.raises(DataError) as e:
        p.daily_bars(which, D_OC - dt.timedelta(days=365), D_OC)
    msg = str(e.value)
    assert e.value.symbol == which and rel.name in msg and col in msg, msg
    other = "INDIAVIX" if which == "NIFTY" else "NIFTY"
    assert p.daily_bars(other, D_OC - dt.timedelta(days=365), D_OC).height > 100
    # the option chains of the day are still served (the snapshot has its own spot)
    chain, failures = p.option_chains(OC_SYMBOLS, D_OC)
    assert not failures and chain.get_column("symbol").n_unique() == len(OC_SYMBOLS)


def test_the_real_folder_has_no_broken_file(nse_data_dir):
    p = NseFilesProvider(nse_data_dir)
    p.files()
    assert p.file_errors == {}


def test_json_written_with_nan_is_still_read_as_nan(tmp_path):
    """The damage helpers write NaN the way Python's json does; the provider must see it as NaN."""
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"v": float("nan")}))
    assert math.isnan(json.loads(path.read_text())["v"])


# --- through the daily job --------------------------------------------------------------------------

PIPE_TABLES = ("fno_universe", "option_chain_data", "option_greeks", "strategies", "portfolio_allocation")


def _run(session, root):
    from options_v4_dagster.cli import run_pipeline

    return run_pipeline(session, "nse_files", str(root))[0]


def _counts(url, session):
    from options_v4_dagster.store import Warehouse

    wh = Warehouse(url)
    try:
        return {t: wh.count(t, session) for t in PIPE_TABLES}
    finally:
        wh.dispose()


@pytest.fixture()
def pipe_env(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.mark.slow
def test_a_broken_bhavcopy_fails_the_run_and_keeps_the_session(nse_data_dir, tmp_path, monkeypatch, pipe_env):
    from options_v4_dagster.store import Warehouse

    root = nse_copy(nse_data_dir, tmp_path / "nse", only=[UDIFF_2025_09_11, NIFTY_HISTORY, VIX_HISTORY])
    assert _run(D_UDIFF, root).success
    before = _counts(pipe_env, D_UDIFF)
    assert before["fno_universe"] > 200 and before["option_chain_data"] > 20_000
    faults.damage_garbage(root / UDIFF_2025_09_11)
    result = _run(D_UDIFF, root)
    assert not result.success
    assert _counts(pipe_env, D_UDIFF) == before  # nothing replaced by less
    failed = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert [e.step_key for e in failed] == ["universe"]
    text = str(failed[0].event_specific_data.error)
    assert "BadZipFile" in text and "BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip" in text, text
    wh = Warehouse(pipe_env)
    rec = wh.read("select symbol, kind, reason from pipeline_failures where trade_date = :d and asset = 'universe'",
                  {"d": D_UDIFF})
    wh.dispose()
    assert rec.get_column("kind").to_list() == ["error"] and "BadZipFile" in rec.get_column("reason")[0]


@pytest.mark.slow
def test_nan_spot_of_one_symbol_is_recorded_and_the_rest_is_stored_as_clean(nse_data_dir, tmp_path, monkeypatch,
                                                                          pipe_env, clean_oc_stored):
    from options_v4_dagster.store import Warehouse

    root = _oc_copy(nse_data_dir, tmp_path)
    faults.damage_oc_spot(root / REL, float("nan"))
    result = _run(D_OC, root)
    assert result.success
    wh = Warehouse(pipe_env)
    stored = wh.read_partition("option_chain_data", D_OC)
    rec = wh.read("select symbol, kind, reason from pipeline_failures where trade_date = :d "
                  "and asset = 'option_chains'", {"d": D_OC})
    wh.dispose()
    assert rec.select("symbol", "kind").rows() == [("RELIANCE", "error")]
    assert "underlying_price" in rec.get_column("reason")[0]
    key = ["symbol", "expiry", "strike", "option_type"]
    cols = [*key, "bid", "ask", "ltp", "oi", "underlying_price", "lot_size"]
    want = clean_oc_stored.filter(pl.col("symbol") != "RELIANCE").select(cols).sort(key)
    got = stored.filter(pl.col("symbol") != "RELIANCE").select(cols).sort(key)
    assert got.equals(want)
    mat = next(e.event_specific_data.materialization for e in result.all_events
               if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.to_user_string() == "option_chains")
    assert mat.metadata["failed_symbols"].value >= 1


def test_technical_signals_without_any_bars_degrade_instead_of_failing():
    """No requested symbol has daily bars (nse_files sessions before 2025): every row is there, with no
    direction and a note saying why, instead of ColumnNotFoundError: rv_20."""
    from options_v4_dagster.strategies import pipeline as strategy_pipeline

    symbols = pl.DataFrame({"symbol": ["NIFTY", "RELIANCE"], "instrument": ["INDEX", "STOCK"]})
    ivs = pl.DataFrame({"symbol": ["NIFTY"], "atm_iv_30d": [0.2], "h_rv_20": [None], "iv_environment": [None]},
                       schema={"symbol": pl.Utf8, "atm_iv_30d": pl.Float64, "h_rv_20": pl.Float64,
                               "iv_environment": pl.Utf8})
    chain = pl.DataFrame({"symbol": ["NIFTY"], "oi": [10.0], "volume": [5.0], "lot_size": [75]})
    for bars in (pl.DataFrame(), pl.DataFrame(schema={"symbol": pl.Utf8, "date": pl.Date, "open": pl.Float64,
                                                      "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                                                      "volume": pl.Float64})):
        out = strategy_pipeline.technical_frame(dt.date(2020, 4, 17), symbols, bars, chain, ivs)
        assert out.get_column("symbol").to_list() == ["NIFTY", "RELIANCE"]
        assert out.get_column("direction").null_count() == 2 and out.get_column("rv_20").null_count() == 2
        assert all("no daily bars" in n for n in out.get_column("notes"))
