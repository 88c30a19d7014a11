"""The monitoring cycle on stored positions (``trading_seed``: a NIFTY bull call spread of 2 lots and a
TCS bear put spread, entered on paper on 2025-07-17): profit target, stop, time exit and scale-out
fire from stored exit levels and quotes and close through the paper broker exactly once; alert-only
places nothing; an unfilled exit is escalated and retried, never assumed done; expired legs settle
at intrinsic value; two cycles racing on one intent place one exit order set; the audit chain
verifies, reports a tampered row and stays one chain under concurrent appends."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse, schema
from options_v4_dagster.store.audit import append_audit, audit_rows, verify_audit
from options_v4_dagster.store.monitoring import get_intent, intents, strategy_key
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, orders_frame, session_quote_book
from options_v4_dagster.trading.execution import execute_allocation
from options_v4_dagster.trading.monitor import MonitorConfig, monitor_cycle
from options_v4_dagster.trading.replay import paper_execution
from options_v4_dagster.trading.service import LiveTradingRefused

from .concurrency import race
from .trading_seed import EXPIRY, NOW, D, chain_row, seed_allocation

AID = "a" * 64
NIFTY = strategy_key("20250717-NIFTY-Spread-moderate", AID)
TCS = strategy_key("20250717-TCS-Spread-moderate", AID)
D2, D_TIME = dt.date(2025, 7, 18), dt.date(2025, 7, 25)  # 13 and 6 days to the expiry


def _levels(sid: str, **kw) -> dict:
    """Exit levels for the candidate (1 lot; the positions hold 2 NIFTY lots: money levels double)."""
    row = dict(strategy_id=sid, trade_date=D, profit_target=2000.0, stop_loss=1500.0, time_exit_dte=7,
               trailing_activation=None, trailing_distance=None, scale_out=json.dumps([]), adjustments=json.dumps([]))
    return {**row, **kw}


def _chain(wh, day: dt.date, nifty: tuple[float, float, float, float], tcs=(40.0, 41.0, 14.0, 15.0),
           spot: float = 25100.0) -> None:
    """Quotes of the four legs on ``day``: (long bid, long ask, short bid, short ask) per spread."""
    rows = []
    for sym, (lb, la, sb, sa_), legs, lot, s in (("NIFTY", nifty, (("N25000CE", 25000.0, "CE"), ("N25200CE", 25200.0, "CE")), 75, spot),
                                                 ("TCS", tcs, (("T3400PE", 3400.0, "PE"), ("T3300PE", 3300.0, "PE")), 175, 3350.0)):
        for (sec, k, typ), (bid, ask) in zip(legs, ((lb, la), (sb, sa_)), strict=True):
            r = chain_row(sym, k, typ, "BUY", ask, sec, lot)
            r.update(trade_date=day, bid=bid, ask=ask, ltp=(bid + ask) / 2, close=(bid + ask) / 2, underlying_price=s,
                     snapshot_ts=dt.datetime.combine(day, dt.time(10, 0), dt.UTC))
            rows.append(r)
    with wh.engine.begin() as c:
        c.execute(schema.option_chain_data.insert(), rows)


def _setup(url: str, **levels) -> Warehouse:
    wh = Warehouse(url)
    seed_allocation(wh, AID)
    with wh.engine.begin() as c:
        c.execute(schema.strategy_exit_levels.insert(), [_levels("20250717-NIFTY-Spread-moderate", **levels),
                                                         _levels("20250717-TCS-Spread-moderate")])
        c.execute(schema.strategy_parameters.insert(), [
            dict(strategy_id="20250717-NIFTY-Spread-moderate", trade_date=D, max_loss=4500.0, max_profit=10500.0,
                 breakevens=json.dumps([25060.0])),
            dict(strategy_id="20250717-TCS-Spread-moderate", trade_date=D, max_loss=4375.0, max_profit=13125.0,
                 breakevens=json.dumps([3375.0]))])
    plan = allocation_plan(wh, AID)
    px = paper_execution(session_quote_book(wh, D, plan.symbols), capital=1e6, start=NOW)
    report = execute_allocation(plan, px.broker, TradingStore(wh), px.config)
    assert [s.state for s in report.strategies] == ["OPEN", "OPEN"]
    return wh


@pytest.fixture()
def wh(tmp_path):
    w = _setup(f"sqlite:///{tmp_path / 'w.db'}")
    yield w
    w.dispose()


def _state(wh, key=NIFTY):
    e = schema.strategy_execution_status
    return wh.read(sa.select(e.c.state, e.c.realized_pnl, e.c.reason)
                   .where(e.c.strategy_id == key.split("@")[0])).row(0, named=True)


def _exit_orders(wh) -> pl.DataFrame:
    return orders_frame(wh).filter(pl.col("purpose") == "exit")


def _position(report, key=NIFTY):
    return next(p for p in report.positions if p.strategy_key == key)


def _realized_from_trades(wh, position_id="AL-NIFTY") -> float:
    t = wh.read(sa.select(schema.trades).where(schema.trades.c.position_id == position_id))
    signed = t.select((pl.when(pl.col("side") == "SELL").then(1).otherwise(-1) * pl.col("quantity") * pl.col("price")).sum()).item()
    return signed - t.get_column("fees").sum()


def test_profit_target_closes_the_position_with_realized_pnl_and_a_second_cycle_places_nothing(wh):
    _chain(wh, D2, (172.0, 173.0, 80.0, 81.0))  # close-out P&L (172-120 - (81-60)) x 150 = 4,650 less fees >= 4,000
    r = monitor_cycle(wh, D2)
    nifty = _position(r)
    assert [a.rule for a in nifty.actions][0] == "profit_target" and nifty.state == "CLOSED"
    assert _position(r, TCS).state == "OPEN" and [a.action for a in _position(r, TCS).actions] == ["HOLD"]
    exits = _exit_orders(wh)
    assert r.exits_placed == exits.height == 2 and set(exits["status"]) == {"TRADED"}
    assert exits.sort("side")["side"].to_list() == ["BUY", "SELL"]  # buy back the short, sell the long
    st = _state(wh)
    assert st["state"] == "CLOSED" and st["realized_pnl"] == pytest.approx(_realized_from_trades(wh))
    assert nifty.pnl == pytest.approx(st["realized_pnl"])
    assert st["realized_pnl"] == pytest.approx(4650.0 - wh.read(sa.select(schema.trades.c.fees).where(
        schema.trades.c.position_id == "AL-NIFTY"))["fees"].sum())
    (intent,) = intents(wh, strategy_keys=[NIFTY])
    assert intent["intent_key"] == f"{NIFTY}:profit_target:primary" and intent["state"] == "FILLED"
    d = r.to_dict()
    assert d["date"] == "2025-07-18" and d["exits_placed"] == 2
    assert set(d["positions"][0]) >= {"strategy_id", "symbol", "strategy_name", "state", "pnl", "pnl_pct_of_max_loss",
                                      "dte", "actions"}
    assert set(d["positions"][0]["actions"][0]) >= {"action", "rule", "urgency", "quantity", "reason"}
    snap = wh.read(sa.select(schema.strategy_monitoring))
    assert snap.height == 2 and snap.filter(pl.col("strategy_key") == NIFTY)["state"].item() == "CLOSED"

    again = monitor_cycle(wh, D2)  # the same date and prices: nothing new
    assert again.exits_placed == 0 and _exit_orders(wh).height == 2
    assert [p.strategy_key for p in again.positions] == [TCS]
    assert verify_audit(wh) is None
    kinds = set(audit_rows(wh)["kind"])
    assert {"cycle", "exit_decision", "intent", "order_request", "order_response", "intent_done"} <= kinds


def test_stop_and_time_exit_fire_from_the_stored_levels(tmp_path):
    wh = _setup(f"sqlite:///{tmp_path / 'a.db'}")
    _chain(wh, D2, (95.0, 96.0, 62.0, 63.0), spot=24950.0)  # (95-120 - (63-60)) x 150 = -4,200 <= -3,000 stop
    r = monitor_cycle(wh, D2)
    stop = _position(r).actions[0]
    assert (stop.rule, stop.urgency, stop.action) == ("stop_loss", "HIGH", "EXIT_ALL")
    assert _state(wh)["state"] == "CLOSED" and _position(r, TCS).state == "OPEN"
    wh.dispose()

    wh = _setup(f"sqlite:///{tmp_path / 'b.db'}")
    _chain(wh, D_TIME, (125.0, 126.0, 62.0, 63.0))  # flat P&L, 6 days left: at or below time_exit_dte 7
    r = monitor_cycle(wh, D_TIME)
    assert {p.strategy_key: p.actions[0].rule for p in r.positions} == {NIFTY: "time_exit", TCS: "time_exit"}
    assert {p.state for p in r.positions} == {"CLOSED"} and r.exits_placed == 4
    assert _exit_orders(wh).height == 4
    wh.dispose()


def test_scale_out_partially_exits_then_alert_only_places_nothing_and_an_executing_cycle_takes_it_over(tmp_path):
    steps = [{"at_pct": 0.25, "pnl": 500.0, "close_fraction": 0.5}, {"at_pct": 0.5, "pnl": 1000.0, "close_fraction": 0.5}]
    wh = _setup(f"sqlite:///{tmp_path / 's.db'}", scale_out=json.dumps(steps))  # steps at INR 1,000 and 2,000
    _chain(wh, D2, (140.0, 141.0, 69.0, 70.0))  # (140-120 - (70-60)) x 150 = 1,500 less fees: the 25% step only
    r = monitor_cycle(wh, D2, mode="alert_only")
    key = f"{NIFTY}:scale_out:25"
    assert r.exits_placed == 0 and _exit_orders(wh).height == 0
    assert [(i.intent_key, i.state) for i in r.intents] == [(key, "ALERTED")]
    assert monitor_cycle(wh, D2, mode="alert_only").intents == [] and _exit_orders(wh).height == 0  # alerted once

    r = monitor_cycle(wh, D2)  # simulation: the alerted intent is taken over and executed
    assert [(i.intent_key, i.state, i.created) for i in r.intents] == [(key, "FILLED", False)]
    exits = _exit_orders(wh)
    assert exits.height == 2 and exits["quantity"].to_list() == [75, 75]  # one of two lots per leg
    assert _state(wh)["state"] == "PARTIALLY_EXITED"
    pos = wh.read(sa.select(schema.positions).where(schema.positions.c.position_id == "AL-NIFTY")).sort("leg")
    assert pos["quantity"].to_list() == [75, -75]
    assert monitor_cycle(wh, D2).exits_placed == 0
    wh.dispose()


def test_an_unfilled_exit_is_escalated_and_retried_never_assumed_done(wh):
    _chain(wh, D2, (95.0, 96.0, 62.0, 63.0), spot=24950.0)  # the stop
    px = paper_execution(session_quote_book(wh, D2, ["NIFTY", "TCS"]), capital=1e6,
                         start=dt.datetime(2025, 7, 18, 9, 0, tzinfo=dt.UTC))
    px.broker.never_fill = {"N25200CE"}  # the short leg's buy-back never fills
    cfg = MonitorConfig(execution=px.config, max_attempts=2)
    r = monitor_cycle(wh, D2, broker=px.broker, config=cfg)
    (i,) = r.intents
    assert i.state == "FAILED" and i.left == {1: 150, 2: 150} and r.escalated
    exits = _exit_orders(wh)
    # two attempts of the buy-back, cancelled; the long leg is never sold while the short stays open
    assert exits["side"].to_list() == ["BUY", "BUY"] and set(exits["status"]) == {"CANCELLED"}
    assert sorted(exits["correlation_id"].str.slice(-1).to_list()) == ["0", "1"]
    assert _state(wh)["state"] == "OPEN"
    assert "intent_escalated" in set(audit_rows(wh)["kind"])

    r = monitor_cycle(wh, D2)  # the next cycle (a working paper broker) takes the FAILED intent over
    assert [(x.state, x.created, x.driven) for x in r.intents] == [("FILLED", False, True)]
    assert _state(wh)["state"] == "CLOSED"
    assert sorted(_exit_orders(wh).filter(pl.col("status") == "TRADED")["correlation_id"].str.slice(-1)) == ["2", "2"]


def test_expired_index_legs_settle_at_intrinsic_against_the_close(wh):
    with wh.engine.begin() as c:
        c.execute(schema.underlying_bars.insert(), [dict(symbol="NIFTY", date=EXPIRY, close=25100.0, source="test"),
                                                    dict(symbol="TCS", date=EXPIRY, close=3500.0, source="test")])
    r = monitor_cycle(wh, dt.date(2025, 8, 1))
    got = {(s["strategy_id"], s["leg"]): s["settlement_price"] for s in r.settled}
    assert got == {(NIFTY, 1): 100.0, (NIFTY, 2): 0.0, (TCS, 1): 0.0, (TCS, 2): 0.0}
    assert {p.state for p in r.positions} == {"CLOSED"} and r.exits_placed == 0
    pos = wh.read(sa.select(schema.positions))
    assert (pos["quantity"] == 0).all()
    nifty = pos.filter(pl.col("position_id") == "AL-NIFTY").sort("leg")
    assert nifty["realized_pnl"].to_list() == [pytest.approx((100 - 120) * 150), pytest.approx(60 * 150)]
    st = _state(wh)
    assert st["realized_pnl"] == pytest.approx(6000.0 - nifty["fees"].sum())
    assert monitor_cycle(wh, dt.date(2025, 8, 1)).settled == []  # settled once


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return request.getfixturevalue("pg_url")


def test_two_cycles_racing_on_one_intent_place_one_exit_order_set(url):
    wh = _setup(url)
    _chain(wh, D2, (95.0, 96.0, 62.0, 63.0), spot=24950.0)
    whs = [Warehouse(url, create=False) for _ in range(2)]  # two engines: as two processes
    got = race(2, lambda i: monitor_cycle(whs[i], D2, source=("sensor", "realtime")[i]))
    assert not [g for g in got if isinstance(g, Exception)], got
    exits = _exit_orders(wh)
    assert exits.height == 2 and exits["correlation_id"].n_unique() == 2 and set(exits["status"]) == {"TRADED"}
    assert sum(g.exits_placed for g in got) == 2
    assert sorted(i.created for g in got for i in g.intents) in ([False, True], [True])
    assert _state(wh)["state"] == "CLOSED" and verify_audit(wh) is None
    for w in (*whs, wh):
        w.dispose()


def test_audit_chain_verifies_reports_a_tampered_row_and_concurrent_appends_keep_one_chain(url):
    wh = Warehouse(url)
    whs = [Warehouse(url, create=False) for _ in range(4)]
    race(4, lambda i: [append_audit(whs[i], [("feed_connect", f"w{i}", {"n": n})]) for n in range(10)])
    rows = audit_rows(wh)
    assert rows["id"].to_list() == list(range(1, 41)) and verify_audit(wh) is None
    with wh.engine.begin() as c:
        c.execute(schema.audit_log.update().where(schema.audit_log.c.id == 17).values(payload='{"n":99}'))
    bad = verify_audit(wh)
    assert bad is not None and bad.id == 17 and "hash" in bad.reason
    for w in (*whs, wh):
        w.dispose()


def test_live_needs_every_switch(wh):
    with pytest.raises(LiveTradingRefused):
        monitor_cycle(wh, D2, mode="live", live=True, env={})
    assert _exit_orders(wh).height == 0


def test_a_live_intent_is_not_taken_over_by_a_cycle_on_another_clock(wh):
    """The intent lease runs on the wall clock, not on a cycle's ``as_of``: an intent another process
    wrote PENDING a few seconds ago (by the wall clock) is left to it by a cycle replaying 2025-07-18,
    however far the replayed ``as_of`` lies from the wall time; once the lease has run out it is taken over."""
    from options_v4_dagster.store.monitoring import claim_intent
    from options_v4_dagster.trading.monitor import MonitorConfig

    _chain(wh, D2, (172.0, 173.0, 80.0, 81.0))  # the profit target fires for NIFTY
    wall = dt.datetime(2025, 7, 17, 9, 0, tzinfo=dt.UTC)  # a day before the replayed as_of (15:25 IST on D2)
    key = f"{NIFTY}:profit_target:primary"
    monitor_cycle(wh, D2, mode="alert_only", config=MonitorConfig(lease_clock=lambda: wall))  # the intent, ALERTED
    # another process claims it to place the exit (PENDING at the wall time) and is still at work
    assert claim_intent(wh, key, expected_version=get_intent(wh, key)["version"], state="PENDING", at=wall)
    alive = MonitorConfig(lease_clock=lambda: wall + dt.timedelta(seconds=10))
    r = monitor_cycle(wh, D2, config=alive)
    assert r.exits_placed == 0 and _exit_orders(wh).height == 0 and get_intent(wh, key)["state"] == "PENDING"
    expired = MonitorConfig(lease_clock=lambda: wall + dt.timedelta(seconds=600))
    r = monitor_cycle(wh, D2, config=expired)  # the other process died: its intent is driven here, once
    assert r.exits_placed == 2 and get_intent(wh, key)["state"] == "FILLED"
    assert get_intent(wh, key)["updated_at"] == wall + dt.timedelta(seconds=600)  # stamped on the lease clock
