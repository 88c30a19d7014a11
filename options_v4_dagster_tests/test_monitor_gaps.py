"""Monitoring gaps on stored positions (``trading_seed``: a NIFTY bull call spread of 2 lots and a TCS
bear put spread entered on paper on 2025-07-17):

* a replayed date whose option chain is not stored is refused with an error naming the date and
  what to materialize, and leaves nothing behind (no intent, no order); once the chain is stored the
  same date runs normally;
* a strategy left FAILED for a human (a leg never filled, the filled one left open) is valued and
  gets HIGH alerts every cycle, never an automatic exit, and still settles at expiry;
* the breakeven alert fires only when spot crossed a breakeven into the losing side after the entry
  (not for a debit position that starts on its losing side);
* a daily loss limit breach recorded by the day's monitor refuses new entry orders that day (typed
  error naming the day and the loss; ``options-v4 execute`` exits non-zero with it).
"""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse, schema
from options_v4_dagster.store.monitoring import intents
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import (
    allocation_plan,
    approve,
    orders_frame,
    session_quote_book,
)
from options_v4_dagster.trading.execution import ExecutionConfig, execute_allocation
from options_v4_dagster.trading.exit_config import load_exit_rules
from options_v4_dagster.trading.exit_rules import evaluate_exits
from options_v4_dagster.trading.monitor import MonitorConfig, QuotesUnavailable, monitor_cycle
from options_v4_dagster.trading.replay import paper_execution
from options_v4_dagster.trading.service import DailyLossLimitBreached, execute_approval

from .pipeline_run import cli_call
from .test_monitoring_cycle import D_TIME, NIFTY, TCS, _chain, _levels, _position, _setup, _state
from .test_trading_monitoring import levels, quotes, value
from .trading_seed import EXPIRY, NOW, D, seed_allocation

AID = "a" * 64


def _entry_orders(wh) -> pl.DataFrame:
    return orders_frame(wh).filter(pl.col("purpose") == "entry")


# -- (a) a replayed date without its stored chain --------------------------------------------------------------

def test_a_date_without_a_stored_chain_is_refused_naming_it_and_recovers_once_stored(tmp_path):
    wh = _setup(f"sqlite:///{tmp_path / 'w.db'}")
    orders_before = orders_frame(wh).height
    with pytest.raises(QuotesUnavailable) as exc:  # 6 days to the expiry: the time exit is due, no quotes
        monitor_cycle(wh, D_TIME)
    msg = str(exc.value)
    assert exc.value.session == D_TIME and "2025-07-25" in msg and "--start 2025-07-25 --end 2025-07-25 --job session_chains" in msg
    assert intents(wh) == [] and orders_frame(wh).height == orders_before  # nothing to clean up
    assert _state(wh)["state"] == "OPEN"
    _chain(wh, D_TIME, (210.0, 212.0, 120.0, 122.0))  # the chain is materialized: the same date runs
    report = monitor_cycle(wh, D_TIME)
    assert {i["rule"]: i["state"] for i in intents(wh)} == {"time_exit": "FILLED"}
    assert _state(wh)["state"] == _state(wh, TCS)["state"] == "CLOSED"
    assert report.exits_placed > 0
    wh.dispose()


def test_a_stored_chain_missing_a_held_symbol_holds_that_strategys_exits_back(tmp_path):
    wh = _setup(f"sqlite:///{tmp_path / 'w.db'}")
    _chain(wh, D_TIME, (210.0, 212.0, 120.0, 122.0))
    with wh.engine.begin() as c:  # the chain of D_TIME was stored without TCS (its fetch failed)
        c.execute(sa.delete(schema.option_chain_data).where(schema.option_chain_data.c.trade_date == D_TIME,
                                                            schema.option_chain_data.c.symbol == "TCS"))
    report = monitor_cycle(wh, D_TIME)
    assert {i["intent_key"]: i["state"] for i in intents(wh)} == {f"{NIFTY}:time_exit:dte": "FILLED"}
    tcs = _position(report, TCS)
    assert tcs.state == "OPEN" and {(a.action, a.rule) for a in tcs.actions} == {("ALERT", "time_exit")}
    assert any("TCS" in m and "2025-07-25" in m and "no quotes" in m for m in report.messages)
    wh.dispose()


# -- (b) a FAILED strategy left for a human -----------------------------------------------------------------------

def _setup_failed(url: str) -> Warehouse:
    """NIFTY's short leg never fills: the long leg is left open for a human (FAILED); TCS opens."""
    wh = Warehouse(url)
    seed_allocation(wh, AID)
    with wh.engine.begin() as c:
        c.execute(schema.strategy_exit_levels.insert(), [_levels("20250717-NIFTY-Spread-moderate"),
                                                         _levels("20250717-TCS-Spread-moderate")])
        c.execute(schema.strategy_parameters.insert(), [
            dict(strategy_id="20250717-NIFTY-Spread-moderate", trade_date=D, max_loss=4500.0, max_profit=10500.0,
                 breakevens=json.dumps([25060.0])),
            dict(strategy_id="20250717-TCS-Spread-moderate", trade_date=D, max_loss=4375.0, max_profit=13125.0,
                 breakevens=json.dumps([3375.0]))])
    plan = allocation_plan(wh, AID)
    px = paper_execution(session_quote_book(wh, D, plan.symbols), capital=1e6, start=NOW,
                         config=ExecutionConfig(on_leg_failure="leave"))
    px.broker.never_fill.add("N25200CE")
    report = execute_allocation(plan, px.broker, TradingStore(wh), px.config)
    assert [s.state for s in report.strategies] == ["FAILED", "OPEN"]
    return wh


def _open_legs(wh) -> pl.DataFrame:
    p = schema.positions
    return wh.read(sa.select(p.c.position_id, p.c.leg, p.c.expiry, p.c.quantity).where(p.c.quantity != 0))


def test_a_failed_strategy_is_valued_and_alerted_high_never_exited_and_settles_at_expiry(tmp_path):
    wh = _setup_failed(f"sqlite:///{tmp_path / 'w.db'}")
    _chain(wh, D_TIME, (210.0, 212.0, 120.0, 122.0))  # 6 days to the expiry: both are due a time exit
    report = monitor_cycle(wh, D_TIME)
    failed = _position(report)
    assert failed.state == "FAILED" and failed.pnl is not None and failed.dte == 6
    acts = {(a.action, a.rule, a.urgency) for a in failed.actions}
    assert ("ALERT", "left_for_human", "HIGH") in acts and ("ALERT", "time_exit", "HIGH") in acts
    assert all(a.action == "ALERT" and a.urgency == "HIGH" and a.quantity == 0 for a in failed.actions)
    assert all(i["strategy_key"] != NIFTY for i in intents(wh))  # no exit intent, no exit order for it
    assert _state(wh, TCS)["state"] == "CLOSED" and _state(wh)["state"] == "FAILED"
    assert report.alerts.get("HIGH", 0) >= 2
    again = monitor_cycle(wh, D_TIME)  # every cycle raises it again while the legs are open
    assert ("ALERT", "left_for_human", "HIGH") in {(a.action, a.rule, a.urgency) for a in _position(again).actions}
    assert again.exits_placed == 0
    # the long 25000 CE is held through the expiry: it settles at intrinsic against the close
    _chain(wh, EXPIRY, (190.0, 192.0, 60.0, 62.0), spot=25150.0)
    after = monitor_cycle(wh, dt.date(2025, 8, 1))
    assert [(s["strategy_id"], s["leg"], s["settlement_price"]) for s in after.settled] == [(NIFTY, 1, 150.0)]
    assert _open_legs(wh).filter(pl.col("expiry") < dt.date(2025, 8, 1)).height == 0
    assert _state(wh)["state"] == "UNWOUND"
    wh.dispose()


# -- (c) breakeven alerts -------------------------------------------------------------------------------------------

def _be(*triggers) -> str:
    return json.dumps([{"trigger": "breakeven_breached", "side": side, "breakeven": b, "price": b, "entry_spot": e}
                       for side, b, e in triggers])


def _breached(spot: float, adjustments: str) -> list[str]:
    ev = evaluate_exits(value(quotes(200, 204, 110, 114), spot=spot), levels(adjustments=adjustments))
    return sorted(ev.decisions.filter(pl.col("rule") == "breakeven_breached").get_column("level").to_list())


def test_breakeven_alert_only_when_spot_crossed_into_the_losing_side_after_the_entry():
    condor = _be(("below", 24800.0, 25100.0), ("above", 25400.0, 25100.0))  # profits between, entered there
    assert _breached(25100.0, condor) == []
    assert _breached(24790.0, condor) == ["below"]
    assert _breached(25450.0, condor) == ["above"]
    straddle = _be(("above", 24800.0, 25100.0), ("below", 25400.0, 25100.0))  # loses between, entered there
    assert _breached(25100.0, straddle) == []
    debit = _be(("below", 25080.0, 24990.0))  # a call spread bought below its breakeven: on its losing side
    assert _breached(25050.0, debit) == []
    credit = _be(("below", 25080.0, 25200.0))  # entered above it: falling below it is a breach
    assert _breached(25050.0, credit) == ["below"] and _breached(25150.0, credit) == []
    old = json.dumps([{"trigger": "breakeven_breached", "side": "below", "breakeven": 25080.0, "price": 25080.0}])
    assert _breached(25050.0, old) == ["below"]  # a level stored without the entry spot: as before


def test_stored_breakeven_triggers_carry_the_entry_spot_on_the_profitable_side_of_a_credit_position():
    from options_v4_dagster.market.simulated import SimulatedMarket
    from options_v4_dagster.quant import surface
    from options_v4_dagster.strategies import analyze, build_candidates
    from options_v4_dagster.strategies.exits import exit_levels_all

    chains, failures = SimulatedMarket().option_chains(["NIFTY"], D)
    assert not failures
    cands, _ = build_candidates(surface.chain_iv(chains))
    analyze(cands)
    pick = {c.strategy.name: c for c in cands if c.strategy.name in ("iron_condor", "long_straddle", "bull_put_spread")}
    assert set(pick) == {"iron_condor", "long_straddle", "bull_put_spread"}
    for name, lv in zip(pick, exit_levels_all(list(pick.values())), strict=True):
        bes = [a for a in lv.adjustments if a["trigger"] == "breakeven_breached"]
        assert bes and all(a["entry_spot"] == pytest.approx(pick[name].spot, abs=0.01) for a in bes), name
        armed = [(a["side"] == "below" and a["entry_spot"] > a["price"])
                 or (a["side"] == "above" and a["entry_spot"] < a["price"]) for a in bes]
        # credit positions start between their breakevens (armed); a long straddle starts on its losing side
        assert all(armed) if name != "long_straddle" else not any(armed), (name, bes)


# -- (d) the daily loss limit stops new entries ------------------------------------------------------------------

BID = "b" * 64
INFY = {"AL-INFY": ("INFY", 1, 400, [("BUY", "CE", 1500.0, 20.0, "I1500CE"), ("SELL", "CE", 1550.0, 8.0, "I1550CE")])}


def _tight_limit() -> MonitorConfig:
    rules = load_exit_rules()
    dl = rules.daily_loss_limit.model_copy(update={"max_loss_inr": 100.0})
    return MonitorConfig(exit_rules=rules.model_copy(update={"daily_loss_limit": dl}))


def test_a_daily_loss_limit_breach_refuses_new_entries_that_day(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    wh = _setup(url)
    seed_allocation(wh, BID, INFY)
    approve(wh, BID, approved_by="test")
    # the day's monitor at the entry day's quotes: the spreads and fees are a loss beyond INR 100
    report = monitor_cycle(wh, D, config=_tight_limit())
    assert report.portfolio["breached"] and report.portfolio["block_new_orders"]
    loss = report.portfolio["daily_pnl"]
    with pytest.raises(DailyLossLimitBreached) as exc:
        execute_approval(wh, allocation_id=BID)
    err = exc.value
    assert err.day == D and err.daily_pnl == pytest.approx(loss) and err.check == "daily_loss_limit"
    assert "2025-07-17" in str(err) and f"{abs(loss):,.0f}" in str(err)
    assert _entry_orders(wh).filter(pl.col("allocation_id") == BID).height == 0
    env = {"DAGSTER_HOME": str(tmp_path / "dh"), "DATABASE_URL": url, "OPTIONS_V4_HOME": str(tmp_path / "home")}
    code, out, err_text = cli_call(env, ["execute", "--allocation", BID])
    assert code != 0 and "daily loss limit" in err_text and "2025-07-17" in err_text
    assert _entry_orders(wh).filter(pl.col("allocation_id") == BID).height == 0
    wh.dispose()


def test_no_breach_no_refusal(tmp_path):
    wh = _setup(f"sqlite:///{tmp_path / 'w.db'}")
    seed_allocation(wh, BID, INFY)
    approve(wh, BID, approved_by="test")
    report = monitor_cycle(wh, D)  # the default limit (INR 100,000) is far away
    assert not report.portfolio["breached"]
    rep = execute_approval(wh, allocation_id=BID)
    assert [s.state for s in rep.strategies] == ["OPEN"] and rep.orders_placed == 2
    wh.dispose()
