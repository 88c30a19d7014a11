"""trading/quotes, rules, fees and margin: the pure pieces the paper broker stands on."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from options_v4_dagster.errors import ConfigError
from options_v4_dagster.trading import rules
from options_v4_dagster.trading.broker import OrderRejected
from options_v4_dagster.trading.fees import charges_frame, fill_charges, load_charges
from options_v4_dagster.trading.margin import MarginLeg, estimate_margin, naked_rate
from options_v4_dagster.trading.orders import Side
from options_v4_dagster.trading.quotes import (
    ChainQuoteBook,
    Quote,
    QuoteBook,
    contract_key,
    contract_key_expr,
)
from options_v4_dagster.trading.rules import (
    check_band,
    check_quantity,
    load_freeze_limits,
    market_limit_price,
    protection_band,
    round_to_tick,
    slices,
)

EXP = dt.date(2025, 7, 31)


# -- quotes ---------------------------------------------------------------------------------------

def test_contract_key_scalar_and_expression_agree():
    rng = np.random.default_rng(7)
    strikes = np.concatenate([np.arange(100, 60000, 50.0), rng.integers(1, 40000, 200) / 2.0, [2512.5, 17.25, 0.5]])
    df = pl.DataFrame({"symbol": ["nifty"] * len(strikes), "expiry": [EXP] * len(strikes), "strike": strikes,
                       "option_type": ["ce", "PE"] * (len(strikes) // 2) + ["CE"] * (len(strikes) % 2)})
    got = df.select(contract_key_expr().alias("k"))["k"].to_list()
    want = [contract_key(*r) for r in df.iter_rows()]
    assert got == want
    assert contract_key("NIFTY", EXP, 25000.0, "CE") == "NIFTY-20250731-25000-CE"
    assert contract_key("RELIANCE", EXP, 1512.5, "pe") == "RELIANCE-20250731-1512.5-PE"


def test_chain_quote_book_from_real_nse_chain(nse_data_dir):
    from options_v4_dagster.market.nse_files import NseFilesProvider

    chain = NseFilesProvider(nse_data_dir).option_chain("NIFTY", dt.date(2025, 7, 17))
    book = ChainQuoteBook(chain)
    assert isinstance(book, QuoteBook) and len(book) == chain.height
    assert book.frame["security_id"].null_count() == 0
    row = chain.filter((pl.col("bid") > 0) & (pl.col("ask") > 0)).row(0, named=True)
    sid = book.security_id(row["symbol"], row["expiry"], row["strike"], row["option_type"])
    assert sid == contract_key(row["symbol"], row["expiry"], row["strike"], row["option_type"])
    q = book.quote(sid)
    assert (q.bid, q.ask, q.ltp) == (row["bid"], row["ask"], row["ltp"])
    assert q.bid_qty == int(row["bid_qty"]) and q.ts == row["snapshot_ts"]
    # a side without an order is None (the provider's null; a 0 is turned into None by the book itself)
    zero = chain.filter(pl.col("bid").is_null()).row(0, named=True)
    assert book.quote(book.security_id(zero["symbol"], zero["expiry"], zero["strike"], zero["option_type"])).bid is None
    assert book.quote("no-such-id") is None


def test_chain_quote_book_keeps_broker_ids_and_rejects_duplicates():
    base = {"symbol": ["NIFTY"] * 3, "expiry": [EXP] * 3, "strike": [25000.0, 25000.0, 25100.0],
            "option_type": ["CE", "PE", "CE"], "bid": [10.0, 0.0, 5.0], "ask": [10.5, 2.0, None],
            "bid_qty": [750.0, 0.0, 75.0], "ask_qty": [1500.0, 75.0, None], "ltp": [10.2, 1.0, 5.1]}
    book = ChainQuoteBook(pl.DataFrame({**base, "security_id": ["111", None, "113"]}))
    assert book.quote("111") == Quote("111", 10.0, 10.5, 750, 1500, 10.2, None)
    assert book.quote("NIFTY-20250731-25000-PE").bid is None
    assert book.quote("113").ask is None and book.quote("113").mid is None and book.quote("113").reference == 5.1
    assert book.security_id("NIFTY", EXP, 25100, "CE") == "113"
    with pytest.raises(ValueError, match="sharing a security id"):
        ChainQuoteBook(pl.DataFrame({**base, "security_id": ["111", "111", "113"]}))


# -- rules ----------------------------------------------------------------------------------------

def test_round_to_tick_is_on_tick_and_never_more_aggressive():
    rng = np.random.default_rng(1)
    for p in rng.uniform(0.01, 5000, 3000).round(4):
        buy, sell, near = (round_to_tick(p, 0.05, Side.BUY), round_to_tick(p, 0.05, Side.SELL), round_to_tick(p))
        for x in (buy, sell, near):
            assert rules.is_on_tick(x) and abs(x - p) < 0.05 + 1e-9
        assert buy <= p + 1e-9 and sell >= p - 1e-9
    assert round_to_tick(101.05, 0.05, Side.BUY) == 101.05 == round_to_tick(101.05, 0.05, Side.SELL)
    assert (round_to_tick(101.07, 0.05, "BUY"), round_to_tick(101.07, 0.05, "SELL"), round_to_tick(101.07)) == \
        (101.05, 101.1, 101.05)


def test_check_quantity_and_price():
    assert check_quantity(150, 75) == 2
    for bad in (0, -75, 100, 75.5):
        with pytest.raises(OrderRejected) as e:
            check_quantity(bad, 75)
        assert e.value.code == "DH-905"
    assert rules.check_price(101.05) == 101.05
    for bad in (0.0, -1.0, 101.07, float("nan")):
        with pytest.raises(OrderRejected, match="price"):
            rules.check_price(bad)


def test_slices_stay_strictly_below_the_freeze_quantity():
    assert rules.max_order_quantity(75, 1800) == 1725  # 24 lots = 1,800 would be at the freeze
    assert slices(1725, 75, 1800) == [1725]
    assert slices(1800, 75, 1800) == [1725, 75]
    assert slices(3000, 75, 1800) == [1725, 1275]
    assert slices(150, 75, None) == [150]
    rng = np.random.default_rng(3)
    for _ in range(300):
        lot = int(rng.choice([15, 25, 30, 35, 50, 65, 75, 120, 500]))
        freeze = int(lot * rng.integers(2, 40) + rng.integers(0, lot))
        qty = lot * int(rng.integers(1, 200))
        out = slices(qty, lot, freeze)
        assert sum(out) == qty and all(s % lot == 0 and 0 < s < freeze for s in out)
        assert len(out) == -(-qty // rules.max_order_quantity(lot, freeze))
    with pytest.raises(OrderRejected):
        slices(100, 75, 1800)
    with pytest.raises(OrderRejected, match="freeze"):
        rules.check_freeze(1800, 1800)


def test_freeze_limits_data_and_config_errors(tmp_path):
    fl = load_freeze_limits()
    assert (fl.freeze_quantity("NIFTY", 75), fl.freeze_quantity("banknifty", 35), fl.freeze_quantity("FINNIFTY", 65),
            fl.freeze_quantity("MIDCPNIFTY", 120)) == (1800, 600, 1800, 2800)
    assert fl.freeze_quantity("RELIANCE", 500) == 20 * 500  # the documented stock default
    assert fl.slices("NIFTY", 3000, 75) == [1725, 1275]
    p = tmp_path / "f.yaml"
    p.write_text("indices: {NIFTY: 900}\nstocks: {SBIN: 3000}\nstock_default: {lots: 5}\n")
    custom = load_freeze_limits(p)
    assert (custom.freeze_quantity("NIFTY", 75), custom.freeze_quantity("SBIN", 750),
            custom.freeze_quantity("TCS", 175)) == (900, 3000, 875)
    with pytest.raises(OrderRejected, match="no freeze quantity configured for index BANKNIFTY"):
        custom.freeze_quantity("BANKNIFTY", 35)
    p.write_text("indices: {NIFTY: -5}\nstock_default: {lotz: 5}\n")
    with pytest.raises(ConfigError) as e:
        load_freeze_limits(p)
    assert "f.yaml" in str(e.value) and "indices" in str(e.value) and "stock_default.lotz: unknown key" in str(e.value)


def test_protection_band_and_market_orders():
    assert protection_band(30.0) == (10.0, 50.0)
    assert protection_band(10.0) == (0.05, 30.0)
    assert protection_band(50.0) == (30.0, 70.0)
    low, high = protection_band(100.0)
    assert (round(low, 9), round(high, 9)) == (60.0, 140.0)
    check_band(Side.BUY, 140.0, 100.0)
    check_band(Side.SELL, 60.0, 100.0)
    check_band(Side.BUY, 1.0, 100.0)  # a low buy is just not marketable
    check_band(Side.BUY, 1e6, None)  # no reference, nothing to check
    with pytest.raises(OrderRejected, match=r"BUY limit 140.05 is above the price protection band 60.00-140.00") as e:
        check_band(Side.BUY, 140.05, 100.0)
    assert e.value.code == "DH-906"
    with pytest.raises(OrderRejected, match="SELL limit 9.95 is below"):
        check_band(Side.SELL, 9.95, 30.0)
    assert market_limit_price(Side.BUY, 33.33) == 53.3 and market_limit_price(Side.SELL, 33.33) == 13.35
    assert market_limit_price(Side.BUY, 101.01) == 141.4 and market_limit_price(Side.SELL, 101.01) == 60.65
    with pytest.raises(OrderRejected, match="reference price"):
        market_limit_price(Side.BUY, None)


# -- fees -----------------------------------------------------------------------------------------

def test_fees_hand_computed_example():
    # BUY 75 @ 120: turnover 9,000; brokerage 20; STT 0; exchange 9000 x 0.0003503 = 3.1527 -> 3.15;
    # SEBI 9000 x 10 / 1e7 = 0.009 -> 0.01; stamp 9000 x 0.00003 = 0.27; GST 0.18 x (20 + 3.15 + 0.01)
    # = 4.1688 -> 4.17; total 27.60
    b = fill_charges(Side.BUY, 75, 120.0)
    assert (b.turnover, b.brokerage, b.stt, b.exchange_txn, b.sebi_fee, b.stamp_duty, b.gst, b.total_charges) == \
        (9000.0, 20.0, 0.0, 3.15, 0.01, 0.27, 4.17, 27.60)
    # SELL 75 @ 130: turnover 9,750; STT 9.75; exchange 3.415425 -> 3.42; SEBI 0.00975 -> 0.01; stamp 0;
    # GST 0.18 x 23.43 = 4.2174 -> 4.22; total 20 + 9.75 + 3.42 + 0.01 + 4.22 = 37.40
    s = fill_charges("SELL", 75, 130.0)
    assert (s.stt, s.exchange_txn, s.sebi_fee, s.stamp_duty, s.gst, s.total_charges) == (9.75, 3.42, 0.01, 0.0, 4.22, 37.40)
    # a later partial fill of the same order pays no brokerage (and so less GST)
    later = fill_charges(Side.BUY, 75, 120.0, first_fill_of_order=False)
    assert later.brokerage == 0.0 and later.gst == 0.57 and later.total_charges == 4.0


def test_fees_frame_matches_the_scalar_and_charges_brokerage_once_per_order():
    fills = pl.DataFrame({"order_id": ["1", "1", "2", "3"], "side": ["BUY", "BUY", "SELL", "sell"],
                          "quantity": [75, 150, 75, 1800], "price": [120.0, 120.5, 130.0, 2.35]})
    out = charges_frame(fills)
    firsts = [True, False, True, True]
    for row, first in zip(out.iter_rows(named=True), firsts, strict=True):
        c = fill_charges(row["side"].upper(), row["quantity"], row["price"], first_fill_of_order=first)
        assert row["brokerage"] == c.brokerage and row["total_charges"] == c.total_charges and row["gst"] == c.gst
    assert out["brokerage"].to_list() == [20.0, 0.0, 20.0, 20.0]
    assert charges_frame(fills.drop("order_id"))["brokerage"].sum() == 80.0
    with pytest.raises(ValueError, match="BUY or SELL"):
        charges_frame(fills.with_columns(pl.lit("HOLD").alias("side")))


def test_charges_config_errors_name_the_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stt_sell: 0.5\nbrokrage_per_order: 10\n")
    with pytest.raises(ConfigError) as e:
        load_charges(p)
    assert "c.yaml" in str(e.value) and "stt_sell" in str(e.value) and "brokrage_per_order: unknown key" in str(e.value)
    p.write_text("brokerage_per_order: 0\n")
    assert load_charges(p).brokerage_per_order == 0.0 and load_charges(p).gst == 0.18


# -- margin ---------------------------------------------------------------------------------------

def _leg(strike, ot, q, symbol="NIFTY"):
    return MarginLeg(symbol, EXP, strike, ot, q)


def test_margin_estimate():
    assert estimate_margin([]) == 0.0
    assert estimate_margin([_leg(25000, "CE", 75), _leg(24000, "PE", 150)]) == 0.0  # long only: premium only
    # bull put credit spread 24900/24800: width 100 x 75
    assert estimate_margin([_leg(24900, "PE", -75), _leg(24800, "PE", 75)]) == 7500.0
    # iron condor: the wider wing
    ic = [_leg(24800, "PE", 75), _leg(24900, "PE", -75), _leg(25300, "CE", -75), _leg(25500, "CE", 75)]
    assert estimate_margin(ic) == 15000.0
    # naked short call: the percentage of the strike notional
    assert estimate_margin([_leg(25300, "CE", -75)]) == round(25300 * 75 * naked_rate("NIFTY"), 2)
    assert naked_rate("NIFTY") == pytest.approx(0.113) and naked_rate("RELIANCE") == pytest.approx(0.177)
    # legs of one contract net out; separate expiries / symbols add up
    assert estimate_margin([_leg(25300, "CE", -75), _leg(25300, "CE", 75)]) == 0.0
    other = MarginLeg("NIFTY", dt.date(2025, 8, 28), 24900, "PE", -75)
    assert estimate_margin([*ic, other]) == 15000.0 + round(24900 * 75 * naked_rate("NIFTY"), 2)
    with pytest.raises(ValueError, match="options only"):
        estimate_margin([_leg(25000, "FUT", 75)])


# -- ledger ---------------------------------------------------------------------------------------

def test_ledger_average_cost_realized_and_flip():
    from options_v4_dagster.trading.accounting import Ledger

    spec = rules.InstrumentSpec("A", "NIFTY", EXP, 25000.0, "CE", 75)
    led = Ledger(spec)
    led.apply(Side.BUY, 75, 100.0)
    led.apply(Side.BUY, 75, 110.0)
    assert (led.net, led.avg_open) == (150, 105.0)
    led.apply(Side.SELL, 225, 120.0)  # closes 150 at +15, opens a short of 75 at 120
    assert (led.net, led.avg_open, led.realized) == (-75, 120.0, 150 * 15.0)
    assert led.unrealized(118.0) == 150.0 and led.unrealized(None) == 0.0
    led.apply(Side.BUY, 75, 125.0)  # the short loses 5 a share
    assert (led.net, led.avg_open, led.realized) == (0, 0.0, 2250.0 - 375.0)
    assert (led.buy_average, led.sell_average) == (pytest.approx((7500 + 8250 + 9375) / 225), 120.0)
    with pytest.raises(ValueError):
        led.apply(Side.BUY, 0, 1.0)
