"""Instruments (issue 11 item 7): Dhan's scrip master in both forms (the real samples in
../shared/data/nse/reference), downloaded by the real dhanhq SDK from a local HTTP server; the simulated
and nse_files sources' instruments derived from their chains; the instruments asset keeping its stored
rows when the scrip master is damaged; and the execution plan and paper broker reading lots, ticks,
freeze quantities and security ids from the table."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from options_v4_dagster import config, universe
from options_v4_dagster.calendar import IST
from options_v4_dagster.defs.market_data.instruments import instruments as instruments_asset
from options_v4_dagster.defs.resources import MarketDataResource, WarehouseResource
from options_v4_dagster.errors import DataError, ProviderError
from options_v4_dagster.market.dhan import DhanProvider
from options_v4_dagster.market.instruments import (
    INSTRUMENTS_SCHEMA,
    chain_instruments,
    read_scrip_master,
    scrip_master_instruments,
)
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.store import Replace, Warehouse
from options_v4_dagster.store.instruments import find_instrument, instrument_specs, session_instruments
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import (
    ApprovalError,
    allocation_plan,
    orders_frame,
    session_quote_book,
)
from options_v4_dagster.trading.execution import ExecutionConfig, execute_allocation
from options_v4_dagster.trading.orders import OrderRequest, Side
from options_v4_dagster.trading.replay import paper_execution
from options_v4_dagster.trading.rules import TICK_SIZE, load_freeze_limits

from .trading_seed import EXPIRY, D, seed_allocation

REFERENCE = Path(config.nse_data_dir()) / "reference"
COMPACT = REFERENCE / "dhan_api-scrip-master_compact_2026-06_EQ-INDEX-only.csv"
DETAILED = REFERENCE / "dhan_api-scrip-master_detailed_BANKNIFTY-only_2025-07-20.tsv"
LIVE = dt.date(2025, 7, 21)  # the Monday after the detailed sample's date
AID = "a" * 64


@pytest.fixture(scope="module", autouse=True)
def _samples():
    if not DETAILED.exists() or not COMPACT.exists():
        pytest.skip(f"Dhan scrip-master samples not found in {REFERENCE}")


def _detailed(session: dt.date = LIVE, **kw) -> pl.DataFrame:
    return scrip_master_instruments(read_scrip_master(DETAILED), session=session, file=str(DETAILED), **kw)


# -- the parsers on the real samples ---------------------------------------------------------------


def test_detailed_sample_rows_and_a_known_banknifty_contract():
    raw = read_scrip_master(DETAILED)
    assert raw.height == 2332 and raw.get_column("form").unique().to_list() == ["detailed"]
    out = _detailed(horizon_days=90)
    assert out.schema == pl.Schema(INSTRUMENTS_SCHEMA)
    # Jul/Aug/Sep-2025 options (742 + 702 + 698) and futures within 90 days, and the index itself
    assert dict(out.group_by("instrument_type").len().iter_rows()) == {"OPTIDX": 2142, "FUTIDX": 3, "INDEX": 1}
    assert _detailed().height == 2332  # no horizon: the Dec-2025..Jun-2026 expiries too
    row = out.filter(pl.col("security_id") == "54091").row(0, named=True)
    assert row == {"trade_date": LIVE, "security_id": "54091", "exchange_segment": "NSE_FNO", "symbol": "BANKNIFTY",
                   "instrument_type": "OPTIDX", "expiry": dt.date(2025, 7, 31), "strike": 57000.0, "option_type": "CE",
                   "lot_size": 35, "tick_size": 0.05, "freeze_quantity": 600,
                   "trading_symbol": "BANKNIFTY-Jul2025-57000-CE", "source": "dhan"}
    # Dhan's TICK_SIZE is in paise: 5 on every BANKNIFTY option = NSE's INR 0.05 option tick; 20 on the
    # futures = INR 0.20; the index row is not tradable (null)
    ticks = dict(out.group_by("instrument_type").agg(pl.col("tick_size").unique()).iter_rows())
    assert ticks == {"OPTIDX": [TICK_SIZE], "FUTIDX": [0.2], "INDEX": [None]}
    fut = out.filter(pl.col("instrument_type") == "FUTIDX").sort("expiry")
    assert fut.get_column("strike").null_count() == 3 and fut.get_column("option_type").null_count() == 3
    assert fut.get_column("security_id").to_list() == ["53213", "64100", "52995"]
    idx = out.filter(pl.col("instrument_type") == "INDEX").row(0, named=True)
    assert (idx["security_id"], idx["exchange_segment"], idx["freeze_quantity"]) == ("25", "IDX_I", None)


def test_compact_sample_underlyings():
    raw = read_scrip_master(COMPACT)
    assert raw.height == 23116 and raw.get_column("form")[0] == "compact"
    out = scrip_master_instruments(raw, session=dt.date(2026, 6, 1))
    # the NSE index rows and the NSE equities of series EQ (the sample has no derivatives)
    assert dict(out.group_by("exchange_segment").len().iter_rows()) == {"IDX_I": 119, "NSE_EQ": 2428}
    mine = scrip_master_instruments(raw, session=dt.date(2026, 6, 1),
                                    symbols=["NIFTY", "BANKNIFTY", "RELIANCE", "SBIN", "IDEA", "MRF", "BAJAJ-AUTO"])
    got = {r["symbol"]: (r["security_id"], r["exchange_segment"], r["tick_size"]) for r in mine.iter_rows(named=True)}
    # equity ticks in paise too: NSE's price-band ticks 0.01 (IDEA ~8), 0.05 (SBIN ~820), 0.10 (RELIANCE ~1,400),
    # 5.00 (MRF ~1.4 lakh)
    assert got == {"NIFTY": ("13", "IDX_I", None), "BANKNIFTY": ("25", "IDX_I", None),
                   "RELIANCE": ("2885", "NSE_EQ", 0.1), "SBIN": ("3045", "NSE_EQ", 0.05), "IDEA": ("14366", "NSE_EQ", 0.01),
                   "MRF": ("2277", "NSE_EQ", 5.0), "BAJAJ-AUTO": ("16669", "NSE_EQ", 1.0)}


def _as_compact(src: Path, dst: Path, extra: list[dict] = ()) -> None:
    """The detailed sample's rows written as Dhan's compact CSV writes them (ISO expiry with time,
    decimals on lots, strikes and ticks, the underlying only in the trading symbol)."""
    header = ["SEM_EXM_EXCH_ID", "SEM_SEGMENT", "SEM_SMST_SECURITY_ID", "SEM_INSTRUMENT_NAME", "SEM_EXPIRY_CODE",
              "SEM_TRADING_SYMBOL", "SEM_LOT_UNITS", "SEM_CUSTOM_SYMBOL", "SEM_EXPIRY_DATE", "SEM_STRIKE_PRICE",
              "SEM_OPTION_TYPE", "SEM_TICK_SIZE", "SEM_EXPIRY_FLAG", "SEM_EXCH_INSTRUMENT_TYPE", "SEM_SERIES",
              "SM_SYMBOL_NAME"]
    with src.open() as fh, dst.open("w", newline="") as out:
        w = csv.writer(out)
        w.writerow(header)
        for r in [*csv.DictReader(fh, delimiter="\t"), *extra]:
            exp = dt.datetime.strptime(r["SM_EXPIRY_DATE"], "%m/%d/%Y").strftime("%Y-%m-%d 14:30:00") \
                if r["SM_EXPIRY_DATE"] else "0001-01-01"
            w.writerow([r["EXCH_ID"], r["SEGMENT"], r["SECURITY_ID"], r["INSTRUMENT"], "0", r["SYMBOL_NAME"],
                        f"{r['LOT_SIZE']}.0", r["DISPLAY_NAME"], exp, f"{float(r['STRIKE_PRICE'] or 0):.5f}",
                        r["OPTION_TYPE"], f"{float(r['TICK_SIZE']):.4f}", r["EXPIRY_FLAG"], r["INSTRUMENT_TYPE"],
                        r["SERIES"], ""])


def test_both_forms_give_the_same_instruments(tmp_path):
    compact = tmp_path / "api-scrip-master.csv"
    dash = {"EXCH_ID": "NSE", "SEGMENT": "D", "SECURITY_ID": "90001", "INSTRUMENT": "OPTSTK",
            "SYMBOL_NAME": "BAJAJ-AUTO-Jul2025-8000-CE", "LOT_SIZE": "75", "DISPLAY_NAME": "BAJAJ-AUTO 31 JUL 8000 CALL",
            "SM_EXPIRY_DATE": "7/31/2025", "STRIKE_PRICE": "8000", "OPTION_TYPE": "CE", "TICK_SIZE": "5",
            "EXPIRY_FLAG": "M", "INSTRUMENT_TYPE": "OP", "SERIES": "NA"}
    _as_compact(DETAILED, compact, [dash])
    a = scrip_master_instruments(read_scrip_master(compact), session=LIVE, horizon_days=90,
                                 symbols=["BANKNIFTY", "BAJAJ-AUTO"])
    b = _detailed(horizon_days=90)
    assert a.filter(pl.col("symbol") == "BANKNIFTY").sort("security_id").equals(b.sort("security_id"))
    # the compact form's underlying is the trading symbol without its -Mon2025-... suffix
    assert a.filter(pl.col("security_id") == "90001").select("symbol", "lot_size", "freeze_quantity").row(0) == \
        ("BAJAJ-AUTO", 75, 20 * 75)  # a stock: config/freeze_limits.yaml's stock_default of 20 lots


# -- a damaged scrip master ---------------------------------------------------------------------------


def _damage(dst: Path, line_no: int, column: str, value: str | None) -> None:
    """The detailed sample with ``column`` of line ``line_no`` set to ``value`` (None: the column dropped)."""
    lines = DETAILED.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split("\t")
    i = header.index(column)
    if value is None:
        lines = ["\t".join(c for j, c in enumerate(x.rstrip("\n").split("\t")) if j != i) + "\n" for x in lines]
    else:
        cells = lines[line_no - 1].rstrip("\n").split("\t")
        cells[i] = value
        lines[line_no - 1] = "\t".join(cells) + "\n"
    dst.write_text("".join(lines))


@pytest.mark.parametrize(("column", "value", "match"), [
    ("LOT_SIZE", "3x5", "line 100: LOT_SIZE is not a number"),
    ("LOT_SIZE", "0", "line 100: LOT_SIZE is not a positive whole number"),
    ("SM_EXPIRY_DATE", "31/31/2025", "line 100: SM_EXPIRY_DATE is not a date"),
    ("TICK_SIZE", "", "line 100: TICK_SIZE is empty"),
    ("STRIKE_PRICE", "-5", "line 100: STRIKE_PRICE is not positive"),
    ("OPTION_TYPE", "XX", "line 100: OPTION_TYPE is not CE or PE"),
    ("SECURITY_ID", "35O98", "line 100: SECURITY_ID is not a number"),
    ("UNDERLYING_SYMBOL", None, "has no column UNDERLYING_SYMBOL"),
])
def test_a_damaged_scrip_master_is_a_data_error_naming_line_and_field(tmp_path, column, value, match):
    bad = tmp_path / "api-scrip-master-detailed.csv"
    _damage(bad, 100, column, value)
    with pytest.raises(DataError, match=match) as err:
        scrip_master_instruments(read_scrip_master(bad), session=LIVE, horizon_days=90, file=str(bad))
    assert err.value.field == column and err.value.source == str(bad)


def test_a_truncated_scrip_master_names_the_cut_line(tmp_path):
    cut = tmp_path / "cut.tsv"
    lines = DETAILED.read_text().splitlines()
    k = next(i for i in range(1500, len(lines)) if "\tOPTIDX\t" in lines[i] and "\t8/28/2025\t" in lines[i])
    # the file ends in the middle of line k + 1, after the option's expiry
    cut.write_text("\n".join([*lines[:k], "\t".join(lines[k].split("\t")[:13])]))
    with pytest.raises(DataError, match=f"line {k + 1}: TICK_SIZE is empty"):
        scrip_master_instruments(read_scrip_master(cut), session=LIVE, horizon_days=90, file=str(cut))
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match="not a Dhan scrip master header"):
        read_scrip_master(other)


# -- the dhan source: the SDK's fetch_security_list against a local server ----------------------------


@pytest.fixture()
def scrip_server(tmp_path, monkeypatch):
    """A local HTTP server for a folder; Dhan's scrip-master URLs (the SDK's Security constants) point at
    ``detailed.csv`` / ``compact.csv`` in it."""
    from dhanhq import Security

    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(Security, "DETAILED_CSV_URL", f"{base}/detailed.csv")
    monkeypatch.setattr(Security, "COMPACT_CSV_URL", f"{base}/compact.csv")
    yield root
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _dhan(**kw) -> DhanProvider:
    return DhanProvider("1000000001", "test-token", now=lambda: dt.datetime(2025, 7, 21, 10, 0, tzinfo=IST),
                        base_url="http://127.0.0.1:9", **kw)


def test_dhan_source_downloads_the_scrip_master_with_the_sdk(scrip_server):
    shutil.copy(DETAILED, scrip_server / "detailed.csv")
    out, failures = _dhan().instruments(["BANKNIFTY", "NIFTY"], LIVE, horizon_days=90)
    assert out.height == 2146 and out.get_column("symbol").unique().to_list() == ["BANKNIFTY"]
    assert [(f.symbol, f.kind) for f in failures] == [("NIFTY", "missing")]
    _as_compact(DETAILED, scrip_server / "compact.csv")
    compact, _ = _dhan(scrip_master_mode="compact").instruments(["BANKNIFTY"], LIVE, horizon_days=90)
    assert compact.sort("security_id").equals(out.sort("security_id"))
    with pytest.raises(DataError, match="only the live scrip master"):
        _dhan().instruments(["BANKNIFTY"], dt.date(2025, 7, 18))
    (scrip_server / "detailed.csv").unlink()  # 404
    with pytest.raises(ProviderError, match="could not be downloaded from http://127.0.0.1"):
        _dhan().instruments(["BANKNIFTY"], LIVE)


class _Given(MarketDataResource):
    """The market-data resource with a provider built by the test (the Dhan provider's clock)."""

    def get(self):
        return _dhan()


def test_the_asset_fails_on_a_damaged_scrip_master_and_keeps_the_stored_rows(tmp_path, scrip_server):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    wh = Warehouse(url)
    wh.replace_together([Replace.partition("fno_universe", LIVE,
                                           universe.session_universe(["BANKNIFTY"], LIVE, "dhan", {}))])
    resources = {"market_data": _Given(), "warehouse": WarehouseResource(database_url=url)}
    shutil.copy(DETAILED, scrip_server / "detailed.csv")
    assert dg.materialize([instruments_asset], partition_key=LIVE.isoformat(), resources=resources).success
    stored = session_instruments(wh, LIVE)
    assert stored.height == 2146
    assert find_instrument(wh, LIVE, "BANKNIFTY", dt.date(2025, 7, 31), 57000, "CE").security_id == "54091"
    _damage(scrip_server / "detailed.csv", 100, "LOT_SIZE", "3x5")
    res = dg.materialize([instruments_asset], partition_key=LIVE.isoformat(), resources=resources,
                         raise_on_error=False)
    assert not res.success
    msg = str(next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE").event_specific_data.error)
    assert "line 100: LOT_SIZE is not a number" in msg and "Dhan detailed scrip master" in msg
    assert session_instruments(wh, LIVE).equals(stored)  # the good rows stay
    fails = wh.read_partition("pipeline_failures", LIVE)
    assert fails.select("asset", "kind").rows() == [("instruments", "error")] and "LOT_SIZE" in fails["reason"][0]
    wh.dispose()


# -- chain-derived sources -----------------------------------------------------------------------------


def test_simulated_instruments_match_the_chain_one_to_one():
    market = SimulatedMarket()
    symbols = ["NIFTY", "BANKNIFTY", "RELIANCE", "TCS", "HDFCBANK"]
    chain, _ = market.option_chains(symbols, D)
    inst, failures = market.instruments(symbols, D)
    assert failures == [] and inst.height == chain.height > 500
    key = ["symbol", "expiry", "strike", "option_type"]
    joined = chain.join(inst, on=key, how="full", coalesce=True, suffix="_i")
    assert joined.height == chain.height and joined.null_count().get_column("security_id_i").item() == 0
    assert (joined["security_id"] == joined["security_id_i"]).all()
    assert (joined["lot_size"] == joined["lot_size_i"]).all()
    assert inst.get_column("security_id").n_unique() == inst.height
    assert set(inst.get_column("tick_size")) == {TICK_SIZE} and set(inst.get_column("exchange_segment")) == {"NSE_FNO"}
    freeze = dict(inst.group_by("symbol").agg(pl.col("freeze_quantity").first()).iter_rows())
    fl = load_freeze_limits()
    assert freeze["NIFTY"] == 1800 and freeze["BANKNIFTY"] == 600
    assert freeze["TCS"] == fl.freeze_quantity("TCS", universe.get("TCS").lot_size)
    assert set(inst.filter(pl.col("symbol") == "NIFTY").get_column("instrument_type")) == {"OPTIDX"}
    assert set(inst.filter(pl.col("symbol") == "TCS").get_column("instrument_type")) == {"OPTSTK"}


def test_chain_without_ids_gets_contract_keys_and_duplicate_ids_are_refused():
    chain = pl.DataFrame({"trade_date": [D, D], "symbol": ["NIFTY", "NIFTY"], "expiry": [EXPIRY, EXPIRY],
                          "strike": [25000.0, 25050.0], "option_type": ["CE", "PE"], "lot_size": [75, 75],
                          "security_id": ["35001", None], "source": ["nse_files", "nse_files"]})
    out = chain_instruments(chain)
    assert out.get_column("security_id").to_list() == ["35001", "NIFTY-20250731-25050-PE"]
    assert out.get_column("source").to_list() == ["nse_files"] * 2
    with pytest.raises(DataError, match="security id '35001'"):
        chain_instruments(chain.with_columns(pl.lit("35001").alias("security_id")))


@pytest.mark.nse_data
def test_nse_files_instruments_of_the_real_2025_07_17_snapshots(nse_data_dir):
    from options_v4_dagster.market.nse_files import NseFilesProvider

    p = NseFilesProvider(nse_data_dir)
    symbols = p.available_symbols(D)
    chain, _ = p.option_chains(symbols, D)
    inst, _ = p.instruments(symbols, D)
    assert inst.height == chain.height and set(inst.get_column("source")) == {"nse_files"}
    nifty = inst.filter((pl.col("symbol") == "NIFTY") & (pl.col("expiry") == EXPIRY) & (pl.col("strike") == 25000.0)
                        & (pl.col("option_type") == "CE")).row(0, named=True)
    assert (nifty["security_id"], nifty["freeze_quantity"]) == ("NIFTY-20250731-25000-CE", 1800)


# -- the plan and the paper broker read the table --------------------------------------------------------


def _store_instruments(wh, rows: list[tuple]) -> None:
    """instruments rows (symbol, strike, CE/PE, security_id, lot, tick, freeze) on D for EXPIRY."""
    frame = pl.DataFrame([{"trade_date": D, "security_id": sid, "exchange_segment": "NSE_FNO", "symbol": sym,
                           "instrument_type": "OPTIDX" if sym == "NIFTY" else "OPTSTK", "expiry": EXPIRY,
                           "strike": k, "option_type": typ, "lot_size": lot, "tick_size": tick,
                           "freeze_quantity": freeze, "trading_symbol": sid, "source": "dhan"}
                          for sym, k, typ, sid, lot, tick, freeze in rows], schema=INSTRUMENTS_SCHEMA)
    wh.replace_together([Replace.partition("instruments", D, frame)])


TCS_ROWS = [("TCS", 3400.0, "PE", "T3400PE", 175, 0.05, 3500), ("TCS", 3300.0, "PE", "T3300PE", 175, 0.05, 3500)]


def test_the_plan_takes_ids_lots_ticks_and_freeze_from_instruments(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    seed_allocation(wh, AID)  # NIFTY lot 75 x 2 lots; YAML freeze 1,800; candidate ids N25000CE / N25200CE
    before = allocation_plan(wh, AID)
    assert before.instrument_source == "fallback" and "no instruments rows for 2025-07-17" in before.instrument_note
    assert {leg.instrument_source for p in before.positions for leg in p.legs} == {"fallback"}
    # the broker lists NIFTY with a lot of 65 (a revision the allocation did not see), freeze 130, tick 0.10
    _store_instruments(wh, [("NIFTY", 25000.0, "CE", "35001", 65, 0.1, 130),
                            ("NIFTY", 25200.0, "CE", "35002", 65, 0.1, 130), *TCS_ROWS])
    plan = allocation_plan(wh, AID)
    assert (plan.instrument_source, plan.instrument_note) == ("instruments", None)
    nifty = next(p for p in plan.positions if p.symbol == "NIFTY")
    assert [(leg.security_id, leg.lot_size, leg.tick_size, leg.freeze_quantity, leg.quantity) for leg in nifty.legs] \
        == [("35001", 65, 0.1, 130, 130), ("35002", 65, 0.1, 130, 130)]  # 2 lots of 65
    assert all(leg.security_id_known and leg.instrument_source == "instruments" for leg in nifty.legs)
    assert nifty.legs[0].slices() == [65, 65]  # strictly below the freeze quantity of 130
    # an explicit fallback freeze function does not override the table
    assert allocation_plan(wh, AID, freeze_quantity=lambda s, lot: 10_000).positions[0].legs[0].freeze_quantity == 130
    # a session with instruments that lack a leg's contract refuses the plan
    _store_instruments(wh, [("NIFTY", 25000.0, "CE", "35001", 65, 0.1, 130), *TCS_ROWS])
    with pytest.raises(ApprovalError, match="25200.0 CE is not among the session's instruments"):
        allocation_plan(wh, AID)
    wh.dispose()


def test_paper_execution_slices_and_validates_by_the_instruments_freeze(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    seed_allocation(wh, AID)
    # same ids as the chain; NIFTY's freeze 100 shares (the YAML says 1,800): 150 shares go as 75 + 75
    _store_instruments(wh, [("NIFTY", 25000.0, "CE", "N25000CE", 75, 0.05, 100),
                            ("NIFTY", 25200.0, "CE", "N25200CE", 75, 0.05, 100), *TCS_ROWS])
    plan = allocation_plan(wh, AID)
    book = session_quote_book(wh, D, plan.symbols)
    assert book.instruments == instrument_specs(wh, D, plan.symbols) and book.instruments["N25000CE"].freeze_quantity == 100
    px = paper_execution(book, capital=plan.capital, start=dt.datetime(2025, 7, 17, 10, 30, tzinfo=IST))
    report = execute_allocation(plan, px.broker, TradingStore(wh), ExecutionConfig(fill_timeout=5, poll_interval=1))
    assert {s.state for s in report.strategies} == {"OPEN"}
    nifty = orders_frame(wh, allocation_id=AID).filter(pl.col("symbol") == "NIFTY")
    assert sorted(nifty.get_column("quantity").to_list()) == [75, 75, 75, 75] and set(nifty["status"]) == {"TRADED"}
    # the paper broker validates against the same row: one order at the freeze quantity is frozen
    big = OrderRequest("probe-1", "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", Side.BUY, 150, 120.0, lot_size=75)
    assert px.broker.place(big).status == "REJECTED"
    assert "freeze quantity 100" in (px.broker.order_by_correlation_id("probe-1").reason or "")
    wh.dispose()
