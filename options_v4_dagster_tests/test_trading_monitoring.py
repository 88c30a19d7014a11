"""Trade monitoring domain: valuation, exit rules (each rule's case, precedence, exactly-once intent
keys), settlement at expiry and the stock-option cut-off, and exit order planning."""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest

from options_v4_dagster.errors import ConfigError
from options_v4_dagster.quant.black import black76_price
from options_v4_dagster.trading.decisions import intent_key, parse_intent_key
from options_v4_dagster.trading.exit_config import ExitRulesConfig, load_exit_rules
from options_v4_dagster.trading.exit_orders import ExitPlanError, plan_exit, plan_exits
from options_v4_dagster.trading.exit_rules import evaluate_exits, prepare_levels
from options_v4_dagster.trading.orders import Side, exit_correlation_id
from options_v4_dagster.trading.quotes import Quote, StaticQuoteBook
from options_v4_dagster.trading.rules import load_freeze_limits
from options_v4_dagster.trading.settlement import settle_expired
from options_v4_dagster.trading.valuation import value_positions

EXP = dt.date(2025, 7, 31)
AS_OF = dt.datetime(2025, 7, 21, 6, 0, tzinfo=dt.UTC)  # 11:30 IST, 10 days to the expiry
K1, K2 = "NIFTY-20250731-25000-CE", "NIFTY-20250731-25200-CE"


def spread(lots: int = 1, sid: str = "S1", symbol: str = "NIFTY", strikes=(25000.0, 25200.0), lot: int = 75,
           expiry: dt.date = EXP) -> pl.DataFrame:
    """A bull call spread: long the lower call at 150, short the upper at 70 (debit 80 = INR 6,000 a lot)."""
    q = lots * lot
    return pl.DataFrame({
        "strategy_id": [sid, sid], "allocation_id": ["A", "A"], "position_id": [f"P-{sid}"] * 2, "leg": [1, 2],
        "symbol": [symbol] * 2, "expiry": [expiry] * 2, "strike": list(strikes), "option_type": ["CE", "CE"],
        "quantity": [q, -q], "average_price": [150.0, 70.0], "entry_quantity": [q, q], "lot_size": [lot, lot],
        "fees": [30.0, 30.0], "realized_pnl": [0.0, 0.0]})


def facts(lots: int = 1, sid: str = "S1", symbol: str = "NIFTY") -> pl.DataFrame:
    return pl.DataFrame({"strategy_id": [sid], "symbol": [symbol], "strategy_name": ["bull_call_spread"],
                         "max_loss": [6000.0 * lots], "max_profit": [9000.0 * lots], "breakevens": [[25080.0]],
                         "capital": [6000.0 * lots], "entered_at": [dt.datetime(2025, 7, 17, 4, 0, tzinfo=dt.UTC)]})


def quotes(long_bid: float, long_ask: float, short_bid: float, short_ask: float, keys=(K1, K2)) -> pl.DataFrame:
    return pl.DataFrame({"security_id": list(keys), "bid": [long_bid, short_bid], "ask": [long_ask, short_ask],
                         "ltp": [(long_bid + long_ask) / 2, (short_bid + short_ask) / 2]})


def levels(sid: str = "S1", **kw) -> pl.DataFrame:
    row = {"strategy_id": sid, "profit_target": 4500.0, "stop_loss": 3000.0, "time_exit_dte": 7,
           "time_exit_date": dt.date(2025, 7, 24), "trailing_activation": 2250.0, "trailing_distance": 1125.0,
           "scale_out": json.dumps([]), "adjustments": json.dumps([])}
    row.update(kw)
    return pl.DataFrame([row])


def value(q: pl.DataFrame, legs=None, fx=None, spot: float = 25150.0, as_of: dt.datetime = AS_OF):
    return value_positions(spread() if legs is None else legs, facts() if fx is None else fx, q,
                           {"NIFTY": spot}, as_of)


def primary(ev) -> dict:
    return ev.decisions.filter(pl.col("primary")).row(0, named=True)


# -- valuation ------------------------------------------------------------------------------------------------


def test_valuation_bull_call_spread_hand_checked():
    v = value(quotes(240, 244, 135, 139))
    legs = v.legs.sort("leg")
    assert legs["close_price"].to_list() == [240.0, 139.0]  # sell the long at the bid, buy the short at the ask
    assert legs["mid"].to_list() == [242.0, 137.0]
    # (240 - 150) x 75 - 30 = 6,720 and (139 - 70) x -75 - 30 = -5,205
    assert legs["pnl_close"].to_list() == [6720.0, -5205.0]
    s = v.strategies.row(0, named=True)
    assert s["pnl_close"] == 1515.0  # 6,750 - 5,175 - 60 fees
    assert s["pnl_mid"] == 1815.0  # (242 - 150) x 75 - (137 - 70) x 75 - 60
    assert s["unrealized_close"] == 1575.0 and s["unrealized_mid"] == 1875.0
    assert s["realized_net"] == -60.0
    assert s["pnl_pct_max_loss"] == pytest.approx(1515 / 6000)
    assert s["pnl_mid_pct_max_loss"] == pytest.approx(1815 / 6000)
    assert s["pnl_pct_capital"] == pytest.approx(1515 / 6000)
    assert s["value_mid"] == (242 - 137) * 75
    assert s["front_dte"] == 10 and s["days_in_trade"] == 4
    assert legs["t_years"][0] == pytest.approx((10 + 4 / 24) / 365)  # to 15:30 IST on the expiry
    assert s["nearest_breakeven"] == 25080.0 and s["breakeven_distance"] == 70.0
    assert s["nearest_short_strike"] == 25200.0
    assert s["short_strike_distance_pct"] == pytest.approx(50 / 25150)
    # greeks at the IV implied from the mid: it reprices the mid; the position sums are signed
    r = legs.row(0, named=True)
    F = 25150 * math.exp(0.065 * r["t_years"])
    assert black76_price(F, 25000, r["t_years"], r["iv"], True, math.exp(-0.065 * r["t_years"])) == pytest.approx(242)
    assert 0.5 < r["delta"] < 1 and r["theta"] < 0
    assert s["delta"] == pytest.approx(75 * (legs["delta"][0] - legs["delta"][1]))
    assert s["quotes_missing"] == 0


def test_valuation_from_a_quote_book_matches_the_frame():
    book = StaticQuoteBook([Quote(K1, 240, 244, 75, 75, 242), Quote(K2, 135, 139, 75, 75, 137)])
    a, b = value(quotes(240, 244, 135, 139)), value(book)
    assert a.strategies["pnl_close"].to_list() == b.strategies["pnl_close"].to_list() == [1515.0]


def test_missing_quote_counts_and_falls_back_to_the_mark():
    q = quotes(240, 244, 135, 139).with_columns(pl.when(pl.col("security_id") == K2).then(None)
                                                .otherwise(pl.col("ask")).alias("ask"))
    v = value(q)
    short = v.legs.filter(pl.col("leg") == 2).row(0, named=True)
    assert short["close_quote_missing"] and short["close_price"] == 137.0  # no ask: the last price
    v2 = value(q.filter(pl.col("security_id") == K1))
    assert v2.strategies["quotes_missing"][0] == 1


# -- exit rules -----------------------------------------------------------------------------------------------


def test_profit_target_exits_everything():
    # P&L at close-out: (300 - 150) x 75 - (100 - 70) x 75 - 60 = 8,940 >= 4,500
    ev = evaluate_exits(value(quotes(300, 304, 96, 100), spot=25400), levels())
    d = primary(ev)
    assert (d["action"], d["rule"], d["urgency"], d["intent_key"]) == ("EXIT_ALL", "profit_target", "MEDIUM",
                                                                        "S1:profit_target:primary")
    assert d["actionable"] and d["value"] == 8940.0 and d["lots"] == 1
    lq = ev.leg_quantities.sort("leg")
    assert lq["quantity"].to_list() == [75, 75] and lq["close_side"].to_list() == ["SELL", "BUY"]


def test_stop_loss_at_its_level_and_the_absolute_cap():
    # at the mark: (110 - 150) x 75 - (62 - 70) x 75 ... = -3,000 - (-600) - 60 = -2,460 > -3,000: no stop
    v = value(quotes(108, 112, 60, 64), spot=24900)
    assert evaluate_exits(v, levels()).decisions.filter(pl.col("rule") == "stop_loss").height == 0
    v = value(quotes(98, 102, 58, 62), spot=24850)  # (100 - 150) x 75 - (60 - 70) x 75 - 60 = -3,060
    d = primary(evaluate_exits(v, levels()))
    assert (d["rule"], d["action"], d["urgency"], d["threshold"]) == ("stop_loss", "EXIT_ALL", "HIGH", -3000.0)
    cfg = load_exit_rules().model_copy(update={"stop_loss": load_exit_rules().stop_loss.model_copy(
        update={"max_inr": 2000.0})})
    d = primary(evaluate_exits(value(quotes(108, 112, 60, 64), spot=24900), levels(), config=cfg))
    assert d["rule"] == "stop_loss" and d["threshold"] == -2000.0  # INR cap tighter than the stored 3,000


def test_time_exit_at_the_dte_threshold():
    q = quotes(240, 244, 135, 139)
    lv = levels(time_exit_date=None)
    at7 = dt.datetime(2025, 7, 24, 4, 0, tzinfo=dt.UTC)  # 7 days to the expiry
    d = primary(evaluate_exits(value(q, as_of=at7), lv))
    assert (d["rule"], d["level"], d["action"], d["urgency"], d["value"]) == ("time_exit", "dte", "EXIT_ALL",
                                                                              "MEDIUM", 7.0)
    at8 = dt.datetime(2025, 7, 23, 4, 0, tzinfo=dt.UTC)
    assert evaluate_exits(value(q, as_of=at8), lv).decisions.filter(pl.col("rule") == "time_exit").height == 0
    last = dt.datetime(2025, 7, 30, 4, 0, tzinfo=dt.UTC)
    assert primary(evaluate_exits(value(q, as_of=last), lv))["urgency"] == "HIGH"  # one day left


def test_trailing_stop_after_activation_and_give_back():
    v = value(quotes(240, 244, 135, 139))  # P&L at close-out 1,515
    lv = levels(trailing_activation=1000.0, trailing_distance=400.0)
    ev = evaluate_exits(v, lv, high_water={"S1": 2000.0})  # armed at 2,000; 1,515 <= 2,000 - 400
    d = primary(ev)
    assert (d["rule"], d["action"], d["threshold"]) == ("trailing_stop", "EXIT_ALL", 1600.0)
    assert ev.high_water.row(0) == ("S1", 2000.0, True)
    ev = evaluate_exits(v, lv, high_water={"S1": 1700.0})  # give-back 185 < 400
    assert primary(ev)["rule"] != "trailing_stop"
    ev = evaluate_exits(v, levels(trailing_activation=1600.0, trailing_distance=100.0), high_water={"S1": 900.0})
    assert ev.high_water.row(0) == ("S1", 1515.0, False)  # not armed yet: the mark rises to the P&L
    assert primary(ev)["rule"] != "trailing_stop"


def _scale_levels(**kw) -> pl.DataFrame:
    steps = [{"at_pct": 0.25, "pnl": 1000.0, "close_fraction": 0.33}, {"at_pct": 0.5, "pnl": 1400.0,
                                                                        "close_fraction": 0.33},
             {"at_pct": 0.75, "pnl": 99999.0, "close_fraction": 0.34}]
    return levels(**{"scale_out": json.dumps(steps), "profit_target": 1e6, "trailing_activation": 1e6, **kw})


def test_scale_out_levels_lot_rounding_and_executed_steps():
    q = quotes(240, 244, 135, 139)
    lots = 10  # P&L 10 x 1,575 - 60 = 15,690 >= both 1,000 and 1,400 (levels as stored, INR)
    v = value(q, legs=spread(lots).with_columns(pl.lit(60.0).alias("fees")), fx=facts(lots))
    ev = evaluate_exits(v, _scale_levels())
    so = ev.decisions.filter(pl.col("rule") == "scale_out")
    assert so["intent_key"].to_list() == ["S1:scale_out:25", "S1:scale_out:50"]
    assert so["action"].to_list() == ["EXIT_PARTIAL"] * 2 and so["actionable"].all()
    assert so["lots"].to_list() == [3, 3]  # round(0.33 x 10)
    lq = ev.leg_quantities.filter(pl.col("intent_key") == "S1:scale_out:50").sort("leg")
    assert lq["quantity"].to_list() == [225, 225] and lq["close_side"].to_list() == ["SELL", "BUY"]
    # after the 25% step executed (7 lots left), only the 50% step fires: 3 more lots
    left = spread(lots).with_columns((pl.col("quantity") // 10 * 7).alias("quantity"))
    ev = evaluate_exits(value(q, legs=left, fx=facts(lots)), _scale_levels(), executed_intents={"S1:scale_out:25"})
    so = ev.decisions.filter(pl.col("rule") == "scale_out")
    assert so["intent_key"].to_list() == ["S1:scale_out:50"] and so["lots"].to_list() == [3]


def test_scale_out_at_least_one_lot():
    q = quotes(240, 244, 135, 139)
    ev = evaluate_exits(value(q, legs=spread(2), fx=facts(2)), _scale_levels())
    assert ev.decisions.filter(pl.col("intent_key") == "S1:scale_out:25")["lots"].to_list() == [1]  # 0.66 -> 1
    # 50% of 2 lots: 0.66 -> 1, which closes the rest: an EXIT_ALL under the scale-out key
    d = ev.decisions.filter(pl.col("intent_key") == "S1:scale_out:50").row(0, named=True)
    assert d["action"] == "EXIT_ALL" and d["lots"] == 1
    ev = evaluate_exits(value(q), _scale_levels())  # one lot: the 25% step closes it all
    so = ev.decisions.filter(pl.col("rule") == "scale_out")
    assert so["intent_key"].to_list() == ["S1:scale_out:25"] and so["action"].to_list() == ["EXIT_ALL"]
    assert ev.leg_quantities["quantity"].to_list() == [75, 75]


def test_daily_loss_limit_blocks_new_orders_and_optionally_exits_all():
    v = value(quotes(240, 244, 135, 139))  # P&L at the mark 1,815
    ev = evaluate_exits(v, levels(), day_start_pnl={"S1": 6000.0}, portfolio_capital=100_000.0)
    p = ev.portfolio
    assert p.daily_pnl == -4185.0 and p.limit == 3000.0  # min(100,000, 3% of 100,000)
    assert p.breached and p.block_new_orders and not p.exit_all
    assert p.intent_key == "portfolio:daily_loss_limit:2025-07-21"
    assert ev.decisions.filter(pl.col("rule") == "daily_loss_limit").height == 0
    cfg = load_exit_rules().model_copy(update={"daily_loss_limit": load_exit_rules().daily_loss_limit.model_copy(
        update={"exit_all": True})})
    ev = evaluate_exits(v, levels(), config=cfg, day_start_pnl={"S1": 6000.0}, portfolio_capital=100_000.0)
    d = primary(ev)
    assert (d["rule"], d["action"], d["urgency"], d["intent_key"]) == (
        "daily_loss_limit", "EXIT_ALL", "HIGH", "S1:daily_loss_limit:2025-07-21")
    ok = evaluate_exits(v, levels(), day_start_pnl={"S1": 1000.0}, portfolio_capital=100_000.0).portfolio
    assert not ok.breached and ok.daily_pnl == 815.0
    assert evaluate_exits(v, levels()).portfolio.daily_pnl is None  # no day-start P&L: not checked


def test_breakeven_breach_alert():
    adj = json.dumps([{"trigger": "breakeven_breached", "side": "below", "breakeven": 25080.0, "price": 25080.0}])
    q = quotes(200, 204, 110, 114)
    ev = evaluate_exits(value(q, spot=25050), levels(adjustments=adj))
    d = ev.decisions.filter(pl.col("rule") == "breakeven_breached").row(0, named=True)
    assert (d["action"], d["urgency"], d["intent_key"], d["actionable"]) == (
        "ALERT", "MEDIUM", "S1:breakeven_breached:below", False)
    assert ev.leg_quantities.height == 0
    assert evaluate_exits(value(q, spot=25150), levels(adjustments=adj)).decisions.filter(
        pl.col("rule") == "breakeven_breached").height == 0
    cfg = load_exit_rules().model_copy(update={"adjustments": load_exit_rules().adjustments.model_copy(
        update={"alert_only": False})})
    ev = evaluate_exits(value(q, spot=25050), levels(adjustments=adj), config=cfg)
    assert ev.decisions.filter(pl.col("rule") == "breakeven_breached")["action"].to_list() == ["ADJUST"]


def test_short_delta_threshold_from_the_stored_adjustment():
    adj = json.dumps([{"trigger": "short_delta", "leg": 1, "instrument": "CE", "strike": 25200.0,
                       "expiry": "2025-07-31", "delta": -0.3, "threshold": 0.6}])
    v = value(quotes(240, 244, 135, 139))  # the short call's |delta| is about 0.5
    assert evaluate_exits(v, levels(adjustments=adj)).decisions.filter(pl.col("rule") == "short_delta").height == 0
    d = evaluate_exits(v, levels()).decisions.filter(pl.col("rule") == "short_delta").row(0, named=True)
    assert d["level"] == "2" and d["threshold"] == 0.35 and d["action"] == "ALERT"  # the YAML default


def test_precedence_stop_over_time_over_target():
    adj = json.dumps([{"trigger": "breakeven_breached", "side": "below", "breakeven": 25080.0, "price": 25080.0}])
    last = dt.datetime(2025, 7, 29, 4, 0, tzinfo=dt.UTC)  # time exit due
    ev = evaluate_exits(value(quotes(98, 102, 58, 62), spot=24850, as_of=last), levels(adjustments=adj))
    rules = ev.decisions["rule"].to_list()
    assert list(dict.fromkeys(rules)) == ["stop_loss", "time_exit", "breakeven_breached"]
    assert ev.decisions.filter(pl.col("rule") == "time_exit")["level"].to_list() == ["dte", "theta_decay"]
    assert ev.decisions["primary"].to_list() == [True] + [False] * (len(rules) - 1)
    assert ev.actionable["rule"].to_list() == ["stop_loss"]
    assert ev.leg_quantities["intent_key"].unique().to_list() == ["S1:stop_loss:stop"]
    ev = evaluate_exits(value(quotes(300, 304, 96, 100), spot=25400, as_of=last), levels())
    assert ev.actionable["rule"].to_list() == ["time_exit"]
    assert "profit_target" in ev.decisions["rule"].to_list()
    # scale-out outranks the trailing stop
    ev = evaluate_exits(value(quotes(240, 244, 135, 139)), _scale_levels(trailing_activation=1000.0,
                                                                         trailing_distance=100.0),
                        high_water={"S1": 3000.0})
    assert ev.decisions["rule"].to_list()[:2] == ["scale_out", "trailing_stop"]
    assert ev.actionable["rule"].to_list() == ["scale_out"]


def test_executed_intent_never_fires_again():
    v = value(quotes(300, 304, 96, 100), spot=25400)
    ev = evaluate_exits(v, levels(), executed_intents={"S1:profit_target:primary"})
    assert "profit_target" not in ev.decisions["rule"].to_list()
    assert ev.actionable.height == 0 and ev.leg_quantities.height == 0
    # an executed EXIT_ALL intent of another rule silences every exit of the strategy
    last = dt.datetime(2025, 7, 29, 4, 0, tzinfo=dt.UTC)
    ev = evaluate_exits(value(quotes(98, 102, 58, 62), spot=24850, as_of=last), levels(),
                        executed_intents={"S1:stop_loss:stop"})
    assert ev.actionable.height == 0
    assert ev.decisions.filter(pl.col("action").str.starts_with("EXIT")).height == 0


def test_hold_when_nothing_fires_and_intent_keys():
    ev = evaluate_exits(value(quotes(240, 244, 135, 139)), levels(adjustments=json.dumps(
        [{"trigger": "short_delta", "instrument": "CE", "strike": 25200.0, "expiry": "2025-07-31", "threshold": 0.9}])))
    assert ev.decisions.select("action", "rule", "primary", "actionable").row(0) == ("HOLD", "hold", True, False)
    assert intent_key("1234", "scale_out", 50) == "1234:scale_out:50"
    assert parse_intent_key("a:b:scale_out:50") == ("a:b", "scale_out", "50")
    with pytest.raises(ValueError):
        parse_intent_key("nonsense")


def test_stock_option_physical_settlement_cutoff():
    legs = spread(sid="R1", symbol="RELIANCE", strikes=(1400.0, 1440.0), lot=500).with_columns(
        pl.Series("average_price", [50.0, 20.0]))
    fx = facts(sid="R1", symbol="RELIANCE").with_columns(pl.lit(None, pl.Float64).alias("max_profit"))
    q = quotes(52, 54, 22, 24, keys=("RELIANCE-20250731-1400-CE", "RELIANCE-20250731-1440-CE"))

    def run(spot, when):
        v = value_positions(legs, fx, q, {"RELIANCE": spot}, when)
        return evaluate_exits(v, levels("R1", time_exit_dte=0, time_exit_date=None, stop_loss=1e9,
                                        profit_target=1e9, trailing_activation=1e9))

    before = dt.datetime(2025, 7, 30, 4, 0, tzinfo=dt.UTC)  # the session before the expiry
    d = primary(run(1450.0, before))
    assert (d["rule"], d["action"], d["urgency"], d["intent_key"]) == (
        "physical_settlement_cutoff", "EXIT_ALL", "HIGH", "R1:physical_settlement_cutoff:2025-07-31")
    assert primary(run(1392.0, before))["rule"] == "physical_settlement_cutoff"  # 0.6% below the strike: near

    def cut(ev):
        return ev.decisions.filter(pl.col("rule") == "physical_settlement_cutoff").height

    assert cut(run(1300.0, before)) == 0  # far out of the money
    assert cut(run(1450.0, dt.datetime(2025, 7, 29, 4, 0, tzinfo=dt.UTC))) == 0  # before the cut-off session
    # an index option is cash-settled: no cut-off
    v = value(quotes(240, 244, 135, 139), as_of=before)
    assert evaluate_exits(v, levels(time_exit_dte=0, time_exit_date=None)).decisions.filter(
        pl.col("rule") == "physical_settlement_cutoff").height == 0


# -- settlement ------------------------------------------------------------------------------------------------


def test_expired_index_option_settles_at_intrinsic():
    legs = spread().with_columns(pl.Series("strike", [25000.0, 25300.0]))
    after = dt.datetime(2025, 7, 31, 10, 0, tzinfo=dt.UTC)  # 15:30 IST on the expiry day
    res = settle_expired(legs, {"NIFTY": 25210.0}, after)
    r = res.records.sort("leg")
    assert r["settlement_price"].to_list() == [210.0, 0.0] and r["method"].to_list() == ["cash", "cash"]
    assert r["realized_pnl"].to_list() == [(210 - 150) * 75, (0 - 70) * -75]
    assert r["stt"].to_list() == [round(0.00125 * 210 * 75, 2), 0.0]  # exercise STT on the long ITM leg
    assert r["delivery_quantity"].to_list() == [0, 0] and res.missing_close == []
    assert settle_expired(legs, {"NIFTY": 25210.0}, after - dt.timedelta(minutes=1)).records.height == 0
    assert settle_expired(legs, {}, after).missing_close == ["NIFTY"]  # no close: no settlement at a guess


def test_expired_stock_option_is_a_delivery():
    legs = spread(symbol="RELIANCE", strikes=(1400.0, 1440.0), lot=500)
    r = settle_expired(legs, {"RELIANCE": 1450.0}, dt.datetime(2025, 8, 1, 4, 0, tzinfo=dt.UTC)).records.sort("leg")
    assert r["method"].to_list() == ["physical"] * 2
    assert r["delivery_quantity"].to_list() == [500, -500]  # receive on the long call, deliver on the short


# -- exit orders ---------------------------------------------------------------------------------------------


def test_exit_plan_closes_short_legs_first_at_the_close_out_quotes():
    v = value(quotes(300, 304, 96, 100), spot=25400)
    ev = evaluate_exits(v, levels())
    [plan] = plan_exits(ev, v)
    assert plan.leg_order == "shorts_first"
    reqs = plan.requests
    assert [(r.side, r.quantity, r.price) for r in reqs] == [(Side.BUY, 75, 100.0), (Side.SELL, 75, 300.0)]
    assert reqs[0].correlation_id == exit_correlation_id("S1:profit_target:primary", 2, 0, 0)
    assert reqs[0].security_id == K2
    low = plan_exit(ev.actionable.row(0, named=True), ev.leg_quantities, v.legs, available_funds=1000.0)
    assert low.leg_order == "longs_first" and low.requests[0].side is Side.SELL and low.notes


def test_exit_plan_urgent_band_edge_and_freeze_slices():
    lots = 30  # 2,250 NIFTY shares: freeze 1,800 -> slices of 1,725 and 525
    v = value(quotes(98, 102, 58, 62), legs=spread(lots), fx=facts(lots), spot=24850)
    ev = evaluate_exits(v, levels(stop_loss=3000.0))
    [plan] = plan_exits(ev, v, freeze=load_freeze_limits())
    assert plan.rule == "stop_loss" and plan.urgency == "HIGH"
    reqs = plan.requests
    assert [(r.side, r.quantity) for r in reqs] == [(Side.BUY, 1725), (Side.BUY, 525), (Side.SELL, 1725),
                                                    (Side.SELL, 525)]
    # HIGH urgency: the protection band edge (reference = last price; above INR 50: +-40%)
    assert reqs[0].price == pytest.approx(84.0) and reqs[2].price == pytest.approx(60.0)
    assert len({r.correlation_id for r in reqs}) == 4


def test_exit_plan_without_any_price_fails():
    v = value(quotes(98, 102, 58, 62).filter(pl.col("security_id") == K1), spot=24850)
    ev = evaluate_exits(v, levels())
    with pytest.raises(ExitPlanError):
        plan_exits(ev, v)


# -- configuration -------------------------------------------------------------------------------------------


def test_exit_rules_yaml_defaults_and_errors(tmp_path):
    cfg = load_exit_rules()
    assert cfg == ExitRulesConfig()  # the packaged file states the defaults
    bad = tmp_path / "x.yaml"
    bad.write_text("stop_loss:\n  max_inr: -5\nscale_out:\n  nonsense: 1\n")
    with pytest.raises(ConfigError, match=r"scale_out\.nonsense: unknown key") as err:
        load_exit_rules(bad)
    assert "stop_loss.max_inr" in str(err.value)
    pl_ = prepare_levels(levels(scale_out=json.dumps([{"at_pct": 0.25, "pnl": 10.0, "close_fraction": 0.5}])))
    assert pl_.scale_steps.height == 1


# -- the vectorized evaluation against a per-strategy reference ------------------------------------------------


def _random_book(seed: int, n: int):
    """``n`` random NIFTY spreads (2 legs) and condors (4 legs) with stored levels (no scale-out plan, no
    adjustments), some legs closed, some expired."""
    import numpy as np

    rng = np.random.default_rng(seed)
    legs, fx, lv, q = [], [], [], {}
    exps = [dt.date(2025, 7, 17), dt.date(2025, 7, 24), dt.date(2025, 7, 31), dt.date(2025, 8, 28)]
    for i in range(n):
        sid, lots, base = f"R{i:04d}", int(rng.integers(1, 6)), 25000 + 50 * int(rng.integers(-8, 8))
        spec = ([(base, "CE", 1), (base + 200, "CE", -1)] if i % 2 else
                [(base - 400, "PE", 1), (base - 200, "PE", -1), (base + 200, "CE", -1), (base + 400, "CE", 1)])
        for j, (k, typ, sign) in enumerate(spec, 1):
            exp = exps[int(rng.integers(0, 4))] if rng.random() < 0.1 else exps[1 + i % 3]
            entry = float(rng.uniform(20, 250))
            key = f"NIFTY-{exp:%Y%m%d}-{k}-{typ}"
            q.setdefault(key, entry * float(rng.uniform(0.3, 2.0)))
            open_lots = lots if rng.random() > 0.1 else 0
            legs.append({"strategy_id": sid, "allocation_id": "A", "position_id": f"P{i}", "leg": j, "symbol": "NIFTY",
                         "expiry": exp, "strike": float(k), "option_type": typ, "quantity": sign * open_lots * 75,
                         "average_price": entry, "entry_quantity": lots * 75, "lot_size": 75, "fees": 40.0})
        ml = 6000.0 * lots
        fx.append({"strategy_id": sid, "symbol": "NIFTY", "max_loss": ml, "max_profit": 1.5 * ml, "capital": ml,
                   "breakevens": [base - 150.0], "entered_at": dt.datetime(2025, 7, 1, 4, 0, tzinfo=dt.UTC)})
        if rng.random() < 0.9:
            lv.append({"strategy_id": sid, "profit_target": 0.75 * ml * float(rng.uniform(0.2, 1.5)),
                       "stop_loss": 0.5 * ml * float(rng.uniform(0.2, 1.5)), "time_exit_dte": int(rng.integers(0, 9)),
                       "trailing_activation": 0.3 * ml, "trailing_distance": 0.1 * ml})
    quotes = pl.DataFrame({"security_id": list(q), "bid": [m - 1 for m in q.values()],
                           "ask": [m + 1 for m in q.values()], "ltp": list(q.values())})
    hw = {f["strategy_id"]: float(rng.uniform(0, 6000)) for f in fx[::2]}
    return pl.DataFrame(legs), pl.DataFrame(fx), pl.DataFrame(lv), quotes, hw


def _reference(v, levels: pl.DataFrame, hw: dict, cfg: ExitRulesConfig) -> set[tuple[str, str, str]]:
    """(strategy, rule, level) of the money and DTE rules, strategy by strategy in plain Python."""
    lv = {r["strategy_id"]: r for r in levels.iter_rows(named=True)}
    out = set()
    for s in v.strategies.iter_rows(named=True):
        if s["front_dte"] is None:
            continue
        sid, L = s["strategy_id"], lv.get(s["strategy_id"], {})
        target = L.get("profit_target") or cfg.profit_target.default_pct_of_max_profit * s["max_profit"]
        if s["pnl_close"] >= target:
            out.add((sid, "profit_target", "primary"))
        stop = min(x for x in (L.get("stop_loss"), cfg.stop_loss.max_loss_share * s["max_loss"],
                               cfg.stop_loss.max_inr) if x is not None)
        if s["pnl_mid"] <= -stop:
            out.add((sid, "stop_loss", "stop"))
        dte_thr = L.get("time_exit_dte")
        if s["front_dte"] <= (cfg.time_exit.default_dte if dte_thr is None else dte_thr):
            out.add((sid, "time_exit", "dte"))
        act = L.get("trailing_activation") or cfg.trailing.activation_pct * target
        dist = L.get("trailing_distance") or cfg.trailing.distance_pct * target
        hwm = max(hw.get(sid, -math.inf), s["pnl_close"])
        if hwm >= act and s["pnl_close"] <= hwm - dist:
            out.add((sid, "trailing_stop", "trail"))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorized_rules_match_a_per_strategy_reference(seed):
    legs, fx, lv, quotes, hw = _random_book(seed, 150)
    cfg = load_exit_rules()
    prepared = prepare_levels(lv)
    v = value_positions(legs, fx, quotes, {"NIFTY": 25010.0}, AS_OF)
    ev = evaluate_exits(v, prepared, config=cfg, high_water=hw)
    rules = {"profit_target", "stop_loss", "time_exit", "trailing_stop"}
    got = {(d["strategy_id"], d["rule"], d["level"]) for d in ev.decisions.iter_rows(named=True)
           if d["rule"] in rules and d["level"] in ("primary", "stop", "dte", "trail")}
    want = _reference(v, lv, hw, cfg)
    assert got == want and len(want) > 20
    # one primary row per strategy, sorted by strategy row then precedence
    dec = ev.decisions
    assert dec.filter(pl.col("primary")).get_column("strategy_id").to_list() == v.strategies["strategy_id"].to_list()
    assert dec.get_column("intent_key").to_list() == [f"{s}:{r}:{lvl}" for s, r, lvl in
                                                       dec.select("strategy_id", "rule", "level").iter_rows()]
    # a whole exit closes every live leg's open lots
    for d in ev.actionable.filter(pl.col("rule") != "scale_out").iter_rows(named=True):
        live = v.legs.filter((pl.col("strategy_id") == d["strategy_id"]) & ~pl.col("expired") & (pl.col("quantity") != 0))
        lq = ev.leg_quantities.filter(pl.col("intent_key") == d["intent_key"])
        assert sorted(lq["leg"].to_list()) == sorted(live["leg"].to_list())
        assert sorted(lq["lots"].to_list()) == sorted(live["open_lots"].to_list())
        assert d["lots"] == (max(live["open_lots"].to_list()) if live.height else 0)
    # the prepared levels are reused for another set of open strategies (their alignment is cached)
    other = value_positions(legs.filter(pl.col("strategy_id") >= "R0050"), fx, quotes, {"NIFTY": 25010.0}, AS_OF)
    ev2 = evaluate_exits(other, prepared, config=cfg, high_water=hw)
    got2 = {(d["strategy_id"], d["rule"], d["level"]) for d in ev2.decisions.iter_rows(named=True)
            if d["rule"] in rules and d["level"] in ("primary", "stop", "dte", "trail")}
    assert got2 == _reference(other, lv, hw, cfg) == {x for x in want if x[0] >= "R0050"}
    # executed intents filter exactly their rows, and an executed exit-all silences the strategy's exits
    done = sorted(want)[:10]
    ev3 = evaluate_exits(v, prepared, config=cfg, high_water=hw, executed_intents=[":".join(x) for x in done])
    keys = set(ev3.decisions["intent_key"].to_list())
    silenced = {x[0] for x in done}
    assert not any(k.split(":")[0] in silenced and r.startswith("EXIT") for k, r in
                   ev3.decisions.select("intent_key", "action").iter_rows())
    assert keys >= {f"{s}:{r}:{lvl}" for s, r, lvl in want if s not in silenced}


def test_short_delta_thresholds_match_type_strike_and_expiry():
    """A short straddle and a short put below it: each short leg gets the stored threshold of its own
    type, strike and expiry (the call and the put share strike and expiry), a stored threshold
    under the YAML default still fires, and a trigger for another expiry matches nothing."""
    spot, t = 25150.0, 10 / 365
    spec = [(1, 25150.0, "CE", -1), (2, 25150.0, "PE", -1), (3, 24900.0, "PE", -1), (4, 24600.0, "PE", 1)]
    px = {(k, typ): black76_price(spot, k, t, 0.15, typ == "CE", 1.0) for _, k, typ, _ in spec}
    legs = pl.DataFrame([{"strategy_id": "S1", "allocation_id": "A", "position_id": "P-S1", "leg": j, "symbol": "NIFTY",
                          "expiry": EXP, "strike": k, "option_type": typ, "quantity": s * 75, "average_price": px[k, typ],
                          "entry_quantity": 75, "lot_size": 75, "fees": 0.0, "realized_pnl": 0.0}
                         for j, k, typ, s in spec])
    q = pl.DataFrame({"security_id": [f"NIFTY-20250731-{int(k)}-{typ}" for _, k, typ, _ in spec],
                      "bid": [px[k, typ] - 0.5 for _, k, typ, _ in spec],
                      "ask": [px[k, typ] + 0.5 for _, k, typ, _ in spec], "ltp": [px[k, typ] for _, k, typ, _ in spec]})
    v = value(q, legs=legs, spot=spot)
    d = v.legs.sort("leg").get_column("delta").abs().to_list()
    assert 0.4 < d[0] < 0.6 and 0.4 < d[1] < 0.6 and 0.2 < d[2] < 0.35  # what the thresholds below are set around

    def trig(typ, k, thr, expiry="2025-07-31"):
        return {"trigger": "short_delta", "instrument": typ, "strike": k, "expiry": expiry, "threshold": thr}

    adj = json.dumps([trig("CE", 25150.0, 0.3), trig("PE", 25150.0, 0.9), trig("pe", 24900.0, 0.2),
                      trig("PE", 24900.0, 0.01, "2025-08-28")])
    ev = evaluate_exits(v, levels(adjustments=adj, stop_loss=1e9, profit_target=1e9))
    got = ev.decisions.filter(pl.col("rule") == "short_delta").select("level", "threshold").rows()
    assert got == [("1", 0.3), ("3", 0.2)]
    ev = evaluate_exits(v, levels(stop_loss=1e9, profit_target=1e9))  # no stored triggers: the default 0.35
    assert ev.decisions.filter(pl.col("rule") == "short_delta").select("level", "threshold").rows() == [
        ("1", 0.35), ("2", 0.35)]


def test_prepared_levels_reused_across_quotes_and_executed_intents_match_fresh_ones():
    """The state kept on prepared levels (aligned steps and triggers, intent keys) gives the same
    evaluation as freshly prepared levels, whatever fired before."""
    legs, fx, lv, _, hw = _random_book(4, 120)
    lv = lv.with_columns(pl.lit(json.dumps([{"at_pct": p, "pnl": 1500.0 * p, "close_fraction": f}
                                            for p, f in ((0.25, 0.3), (0.5, 0.3), (0.75, 0.4))])).alias("scale_out"))
    keys = legs.select("symbol", "expiry", "strike", "option_type").unique().sort(pl.all())
    cfg = load_exit_rules()
    prepared = prepare_levels(lv)
    sids = fx["strategy_id"].to_list()
    for seed, executed in [(1, set()), (2, {f"{s}:scale_out:25" for s in sids[::3]}), (3, set()),
                           (1, {f"{s}:stop_loss:stop" for s in sids[::4]} | {f"{s}:scale_out:50" for s in sids})]:
        import numpy as np

        mid = np.random.default_rng(seed).uniform(5, 400, keys.height)
        q = pl.DataFrame({"security_id": [f"NIFTY-{e:%Y%m%d}-{int(k)}-{t}" for _, e, k, t in keys.iter_rows()],
                          "bid": mid - 1, "ask": mid + 1, "ltp": mid})
        v = value_positions(legs, fx, q, {"NIFTY": 25010.0}, AS_OF)
        kept = evaluate_exits(v, prepared, config=cfg, executed_intents=executed, high_water=hw)
        fresh = evaluate_exits(v, prepare_levels(lv), config=cfg, executed_intents=executed, high_water=hw)
        assert kept.decisions.equals(fresh.decisions) and kept.leg_quantities.equals(fresh.leg_quantities)
        assert kept.decisions.get_column("intent_key").to_list() == [
            f"{s}:{r}:{lvl}" for s, r, lvl in kept.decisions.select("strategy_id", "rule", "level").iter_rows()]
        assert kept.decisions.filter(pl.col("rule") == "scale_out").height > 10
