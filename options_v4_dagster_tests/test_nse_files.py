"""NseFilesProvider against the real NSE files (``nse_data_dir``) and small broken folders in tmp."""

from __future__ import annotations

import csv
import datetime as dt
import zipfile
from pathlib import Path

import polars as pl
import pytest

from options_v4_dagster import universe as fno
from options_v4_dagster.errors import DataError, DataUnavailable
from options_v4_dagster.market import BARS_SCHEMA, CHAIN_SCHEMA, get_provider
from options_v4_dagster.market.nse_files import NseFilesProvider

pytestmark = pytest.mark.nse_data

D_SNAPSHOTS = dt.date(2025, 7, 17)
D_UDIFF = dt.date(2025, 9, 11)
D_LEGACY = dt.date(2023, 5, 3)
SNAPSHOT_SYMBOLS = {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "RELIANCE", "INFY", "TCS", "HDFCBANK", "SBIN",
                    "ICICIBANK"}
LOTS_2025_09_11 = {"NIFTY": 75, "BANKNIFTY": 35, "RELIANCE": 500, "INFY": 400, "TCS": 175, "HDFCBANK": 1100,
                   "SBIN": 750, "ICICIBANK": 700}


@pytest.fixture(scope="module")
def nse(nse_data_dir) -> NseFilesProvider:
    return NseFilesProvider(nse_data_dir)


def _legacy_rows(nse_data_dir: Path, name: str, symbol: str) -> list[dict[str, str]]:
    with (nse_data_dir / "bhavcopy" / name).open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["SYMBOL"] == symbol]


# --- inventory ---------------------------------------------------------------------------------

def test_every_file_in_the_folder_parses_or_is_ignored(nse, nse_data_dir):
    parsed = nse.parse_all()
    assert nse.file_errors == {}
    kinds = {f.kind for f in nse.files()}
    assert kinds == {"oc_json", "fo_bhav", "fo_udiff", "eq_bhav", "index_history", "fo_mktlots"}
    assert all(rows > 0 for rows in parsed.values()), parsed
    recognised = {f.name.split("!")[0] for f in nse.files()}
    on_disk = {str(p.relative_to(nse_data_dir)) for p in nse_data_dir.rglob("*") if p.is_file()}
    assert recognised | set(nse.unrecognized) == on_disk
    assert "README.md" in nse.unrecognized
    assert any("dhan_api-scrip-master" in u for u in nse.unrecognized)
    assert len([f for f in nse.files() if f.kind == "oc_json"]) == 15
    assert nse.sessions_available() == sorted(nse.sessions_available())
    assert {D_SNAPSHOTS, D_UDIFF, D_LEGACY, dt.date(2023, 5, 2), dt.date(2025, 2, 3),
            dt.date(2022, 3, 28)} <= set(nse.sessions_available())


def test_factory_builds_the_provider(nse_data_dir):
    p = get_provider("nse_files", data_dir=nse_data_dir)
    assert isinstance(p, NseFilesProvider) and p.name == "nse_files"


# --- option-chain snapshots (2025-07-17) ----------------------------------------------------------

def test_snapshot_day_serves_the_ten_snapshots(nse):
    assert set(nse.available_symbols(D_SNAPSHOTS)) == SNAPSHOT_SYMBOLS
    assert set(nse.symbols_for(D_SNAPSHOTS, fno.symbols())) == SNAPSHOT_SYMBOLS
    chain, failures = nse.option_chains(sorted(SNAPSHOT_SYMBOLS), D_SNAPSHOTS)
    assert failures == []
    assert chain.schema == pl.Schema(CHAIN_SCHEMA)
    assert set(chain["symbol"].unique()) == SNAPSHOT_SYMBOLS
    assert set(chain["source"].unique()) == {"nse_oc_json"}
    assert chain["snapshot_ts"].unique().to_list() == [dt.datetime(2025, 7, 17, 10, 0, tzinfo=dt.UTC)]


def test_snapshot_nifty_units_and_quotes(nse):
    chain = nse.option_chain("NIFTY", D_SNAPSHOTS)
    assert chain["underlying_price"].unique().to_list() == [25111.45]
    assert chain["expiry"].min() >= D_SNAPSHOTS
    assert chain["expiry"].max() <= D_SNAPSHOTS + dt.timedelta(days=90)
    for col in ("bid", "ask", "ltp"):  # NSE's 0 = no quote -> null
        assert (chain[col].drop_nulls() > 0).all(), col
    assert chain.filter(pl.col("bid").is_null() & pl.col("ask").is_not_null()).height > 0
    iv = chain["exchange_iv"].drop_nulls()
    assert 0.03 < iv.median() < 0.5  # a fraction, not percent
    row = chain.filter((pl.col("expiry") == dt.date(2025, 8, 7)) & (pl.col("strike") == 25050)
                       & (pl.col("option_type") == "CE")).row(0, named=True)
    assert (row["bid"], row["ask"], row["ltp"], row["oi"], row["volume"]) == (323.75, 342.1, 330.05, 13, 7)
    assert row["exchange_iv"] == pytest.approx(0.0889)
    assert row["bid_qty"] == 75  # shares, one lot
    assert chain["lot_size"].unique().to_list() == [75]


def test_snapshot_lot_sizes_come_from_the_quoted_quantities(nse):
    lots = nse.lot_sizes(D_SNAPSHOTS)
    # HDFCBANK was 550 before its Aug-2025 1:1 bonus (the 2025-09-11 table says 1100)
    assert lots == {"NIFTY": 75, "BANKNIFTY": 35, "FINNIFTY": 65, "MIDCPNIFTY": 140, "RELIANCE": 500,
                    "INFY": 400, "TCS": 175, "HDFCBANK": 550, "SBIN": 750, "ICICIBANK": 700}
    src = nse.lot_size_sources("HDFCBANK", D_SNAPSHOTS)
    assert set(src["lot_source"]) == {"oc_json"}
    assert src["lot_file"][0].endswith("hdfcbank_option_chain.json")


# --- UDiFF bhavcopy (2025-09-11) -------------------------------------------------------------------

def test_udiff_day_serves_every_underlying_with_nse_lots(nse):
    symbols = nse.available_symbols(D_UDIFF)
    assert len(symbols) == 214
    chain, failures = nse.option_chains(symbols, D_UDIFF)
    assert failures == []
    assert chain["symbol"].n_unique() == 214
    lots = nse.lot_sizes(D_UDIFF)
    assert {s: lots[s] for s in LOTS_2025_09_11} == LOTS_2025_09_11
    assert set(nse.lot_size_sources("NIFTY", D_UDIFF)["lot_source"]) == {"udiff"}
    spot = dict(chain.group_by("symbol").agg(pl.col("underlying_price").first()).iter_rows())
    assert (spot["NIFTY"], spot["RELIANCE"], spot["SBIN"]) == (25005.5, 1383.3, 823.65)
    assert set(chain["source"].unique()) == {"nse_fo_udiff"}
    assert chain["bid"].null_count() == chain.height
    assert chain["security_id"].null_count() == 0
    # universe symbols served that day are a subset of what the file holds
    assert set(nse.symbols_for(D_UDIFF, fno.symbols())) <= set(symbols)


def test_udiff_oi_is_converted_to_contracts(nse, nse_data_dir):
    path = nse_data_dir / "bhavcopy" / "BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip"
    with zipfile.ZipFile(path) as zf, zf.open(zf.namelist()[0]) as fh:
        rows = [r for r in csv.DictReader(line.decode() for line in fh)
                if r["TckrSymb"] == "RELIANCE" and r["FinInstrmTp"] == "STO"]
    raw = {(dt.date.fromisoformat(r["XpryDt"]), float(r["StrkPric"]), r["OptnTp"]):
           (float(r["OpnIntrst"]), float(r["TtlTradgVol"]), float(r["ClsPric"])) for r in rows}
    chain = nse.option_chain("RELIANCE", D_UDIFF, horizon_days=400)
    assert chain.height == len(raw)
    for r in chain.iter_rows(named=True):
        oi_sh, vol, close = raw[(r["expiry"], r["strike"], r["option_type"])]
        assert r["oi"] * 500 == pytest.approx(oi_sh)
        assert r["volume"] == vol and r["close"] == close
    fut = chain.filter(pl.col("expiry") == dt.date(2025, 9, 30))["futures_price"].unique()
    assert fut.len() == 1 and fut[0] > 0


def test_udiff_plain_csv_parses_like_the_zip(nse_data_dir, tmp_path):
    src = nse_data_dir / "bhavcopy" / "BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip"
    with zipfile.ZipFile(src) as zf:
        (tmp_path / zf.namelist()[0]).write_bytes(zf.read(zf.namelist()[0]))
    plain = NseFilesProvider(tmp_path)
    assert [f.kind for f in plain.files()] == ["fo_udiff"]
    a = plain.option_chain("SBIN", D_UDIFF)
    b = NseFilesProvider(nse_data_dir).option_chain("SBIN", D_UDIFF)
    assert a.equals(b)


# --- 2023-05-03: BANKNIFTY snapshot + legacy bhavcopy ------------------------------------------

def test_banknifty_2023_05_03_comes_from_the_snapshot_and_agrees_with_the_bhavcopy(nse, nse_data_dir):
    chain = nse.option_chain("BANKNIFTY", D_LEGACY)
    prov = nse.chain_provenance("BANKNIFTY", D_LEGACY)
    assert prov["source"] == "nse_oc_json" and prov["lot_sources"] == ["oc_json"]
    assert chain["underlying_price"].unique().to_list() == [43312.7]
    assert chain.filter(pl.col("bid").is_not_null()).height > 0
    near = chain.filter(pl.col("expiry") == dt.date(2023, 5, 4))
    assert near["lot_size"].unique().to_list() == [25]
    bhav = {(float(r["STRIKE_PR"]), r["OPTION_TYP"]): r
            for r in _legacy_rows(nse_data_dir, "fo03MAY2023bhav.csv", "BANKNIFTY")
            if r["EXPIRY_DT"] == "04-May-2023" and r["INSTRUMENT"] == "OPTIDX"}
    matched = 0
    for r in near.iter_rows(named=True):
        b = bhav.get((r["strike"], r["option_type"]))
        if b is None:
            continue
        matched += 1
        assert r["oi"] * 25 == float(b["OPEN_INT"])
        assert r["volume"] == float(b["CONTRACTS"])
        assert r["close"] == float(b["CLOSE"])  # joined from the same-day bhavcopy
    assert matched > 100
    lots = dict(nse.lot_size_sources("BANKNIFTY", D_LEGACY).select("expiry", "lot_size").iter_rows())
    assert lots[dt.date(2023, 7, 27)] == 15  # the Jul-2023 series traded in the revised lot
    fut = chain.filter(pl.col("expiry") == dt.date(2023, 5, 25))["futures_price"].unique().to_list()
    assert fut == [43311.6]


def test_legacy_bhavcopy_stock_chain(nse, nse_data_dir):
    assert len(nse.available_symbols(D_LEGACY)) == 192
    chain = nse.option_chain("RELIANCE", D_LEGACY)
    prov = nse.chain_provenance("RELIANCE", D_LEGACY)
    assert prov["source"] == "nse_fo_bhav" and prov["underlying_source"] == "futures_carry"
    assert chain["bid"].null_count() == chain["ask"].null_count() == chain.height
    assert chain["lot_size"].unique().to_list() == [250]
    rows = {(r["EXPIRY_DT"], float(r["STRIKE_PR"]), r["OPTION_TYP"]): r
            for r in _legacy_rows(nse_data_dir, "fo03MAY2023bhav.csv", "RELIANCE")}
    fut_may = float(rows[("25-May-2023", 0.0, "XX")]["CLOSE"])
    for r in chain.iter_rows(named=True):
        b = rows[(r["expiry"].strftime("%d-%b-%Y"), r["strike"], r["option_type"])]
        assert r["oi"] * 250 == float(b["OPEN_INT"])
        assert r["volume"] == float(b["CONTRACTS"]) and r["close"] == float(b["CLOSE"])
        assert (r["ltp"] is None) == (float(b["CONTRACTS"]) == 0)
    spot = chain["underlying_price"][0]
    assert spot < fut_may and spot == pytest.approx(fut_may, rel=0.01)
    assert chain.filter(pl.col("expiry") == dt.date(2023, 5, 25))["futures_price"].unique().to_list() == [fut_may]


def test_legacy_lot_follows_the_turnover_when_the_table_is_stale(nse):
    # fo_mktlots NOV-22 says AARTIIND 850; the Jul-2023 series traded in lots of 1000
    src = nse.lot_size_sources("AARTIIND", D_LEGACY)
    lots = dict(src.select("expiry", "lot_size").iter_rows())
    assert lots[dt.date(2023, 5, 25)] == 850 and lots[dt.date(2023, 7, 27)] == 1000
    assert src.filter(pl.col("expiry") == dt.date(2023, 7, 27))["lot_source"][0] == "fo_bhav_turnover"


def test_legacy_index_spot_from_the_next_snapshot(nse):
    chain = nse.option_chain("BANKNIFTY", dt.date(2023, 5, 2))
    assert nse.chain_provenance("BANKNIFTY", dt.date(2023, 5, 2))["underlying_source"] == "oc_json_prev_close"
    assert chain["underlying_price"].unique().to_list() == [43352.1]


# --- daily bars -------------------------------------------------------------------------------------

def test_nifty_bars(nse):
    bars = nse.daily_bars("NIFTY", dt.date(2024, 1, 1), dt.date(2026, 1, 1))
    assert bars.schema == pl.Schema(BARS_SCHEMA)
    assert bars.height == 250 and bars["date"].is_sorted()
    row = bars.filter(pl.col("date") == D_SNAPSHOTS).row(0, named=True)
    assert row["close"] == 25111.45 and row["volume"] > 0


def test_india_vix_bars_from_both_exports(nse):
    old = nse.daily_bars("INDIAVIX", dt.date(2022, 1, 1), dt.date(2022, 12, 31))
    new = nse.daily_bars("INDIAVIX", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert old.height > 240 and new.height > 230
    both = nse.daily_bars("INDIAVIX", dt.date(2021, 1, 1), dt.date(2026, 1, 1))
    assert both.height == 248 + 250
    assert set(both["volume"].unique()) == {0.0}
    assert both.filter(pl.col("date") == dt.date(2025, 12, 16))["close"].to_list() == [10.06]
    assert both.filter(pl.col("date") == dt.date(2021, 12, 31))["close"].to_list() == [16.2225]


def test_stock_bars_from_equity_files(nse):
    bars = nse.daily_bars("RELIANCE", dt.date(2025, 8, 1), dt.date(2026, 12, 31))
    assert bars.height == 195
    row = bars.filter(pl.col("date") == D_UDIFF).row(0, named=True)
    assert row["close"] == 1383.3 and row["volume"] == 9766072
    # a stock only the equity bhavcopy of 2025-09-11 holds
    assert nse.daily_bars("ABCAPITAL", D_UDIFF, D_UDIFF).height == 1


# --- nothing / bad data ---------------------------------------------------------------------------

def test_missing_data_is_unavailable_not_an_error(nse):
    with pytest.raises(DataUnavailable):
        nse.option_chain("NIFTY", dt.date(2025, 7, 18))
    with pytest.raises(DataUnavailable):
        nse.option_chain("ABCAPITAL", D_SNAPSHOTS)  # the day has snapshots, not this one
    with pytest.raises(DataUnavailable):
        nse.daily_bars("NIFTY", dt.date(2019, 1, 1), dt.date(2019, 12, 31))
    with pytest.raises(DataUnavailable):
        nse.daily_bars("BANKNIFTY", dt.date(2025, 1, 1), dt.date(2025, 12, 31))
    assert nse.available_symbols(dt.date(2025, 7, 18)) == []
    chain, failures = nse.option_chains(["NIFTY", "ABCAPITAL"], D_SNAPSHOTS)
    assert chain["symbol"].unique().to_list() == ["NIFTY"]
    assert [(f.symbol, f.kind) for f in failures] == [("ABCAPITAL", "missing")]


def test_corrupt_json_is_a_data_error_naming_the_file(tmp_path):
    bad = tmp_path / "nse_oc_NIFTY_2025-07-17_1530.json"
    bad.write_text('{"records": {"data": [{"strikePrice": 25000, "expiryDate": "24-Jul-2025", "CE": {')
    p = NseFilesProvider(tmp_path)
    with pytest.raises(DataError) as exc:
        p.option_chain("NIFTY", D_SNAPSHOTS)
    assert not isinstance(exc.value, DataUnavailable)
    assert bad.name in str(exc.value)
    with pytest.raises(DataError, match=bad.name):
        p.parse_all()
    with pytest.raises(DataUnavailable):  # another day is simply missing
        p.option_chain("NIFTY", dt.date(2025, 7, 18))


def test_truncated_snapshot_fails_only_its_symbol(nse_data_dir, tmp_path):
    src = nse_data_dir / "option_chain" / "nse_2025-07-17_1530"
    (tmp_path / "sbin_option_chain.json").write_bytes((src / "sbin_option_chain.json").read_bytes())
    raw = (src / "reliance_option_chain.json").read_bytes()
    (tmp_path / "reliance_option_chain.json").write_bytes(raw[: int(len(raw) * 0.9)])  # keeps timestamp
    p = NseFilesProvider(tmp_path)
    assert set(p.available_symbols(D_SNAPSHOTS)) == {"SBIN", "RELIANCE"}
    with pytest.raises(DataError, match="reliance_option_chain.json") as exc:
        p.option_chain("RELIANCE", D_SNAPSHOTS)
    assert not isinstance(exc.value, DataUnavailable)
    chain, failures = p.option_chains(["SBIN", "RELIANCE"], D_SNAPSHOTS)
    assert chain["symbol"].unique().to_list() == ["SBIN"]
    assert [(f.symbol, f.kind) for f in failures] == [("RELIANCE", "error")]


def test_bad_bhavcopy_field_names_file_and_column(tmp_path):
    header = "INSTRUMENT,SYMBOL,EXPIRY_DT,STRIKE_PR,OPTION_TYP,OPEN,HIGH,LOW,CLOSE,SETTLE_PR,CONTRACTS," \
             "VAL_INLAKH,OPEN_INT,CHG_IN_OI,TIMESTAMP,\n"
    good = "OPTSTK,ACME,25-May-2023,100,CE,1,1,1,1,1,1,1.01,500,0,03-MAY-2023,\n"
    bad = "OPTSTK,ACME,25-May-2023,abc,PE,1,1,1,1,1,1,1.01,500,0,03-MAY-2023,\n"
    (tmp_path / "fo03MAY2023bhav.csv").write_text(header + good + bad)
    p = NseFilesProvider(tmp_path)
    with pytest.raises(DataError) as exc:
        p.option_chain("ACME", D_LEGACY)
    assert exc.value.field == "STRIKE_PR" and "fo03MAY2023bhav.csv" in str(exc.value)
    assert not isinstance(exc.value, DataUnavailable)
    with pytest.raises(DataError, match="STRIKE_PR"):
        p.parse_all()


def test_unrecognised_files_are_ignored(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.json").write_text('{"a": 1}')
    (tmp_path / "table.csv").write_text("x,y\n1,2\n")
    p = NseFilesProvider(tmp_path)
    assert p.files() == [] and sorted(p.unrecognized) == ["notes.txt", "other.json", "table.csv"]
    assert p.sessions_available() == []
    assert p.parse_all() == {}


# --- timing -----------------------------------------------------------------------------------------

def test_missing_folder_is_a_config_error(tmp_path):
    from options_v4_dagster.errors import ConfigError

    with pytest.raises(ConfigError, match="OPTIONS_V4_NSE_DATA_DIR"):
        NseFilesProvider(tmp_path / "nope").sessions_available()
