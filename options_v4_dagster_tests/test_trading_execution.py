"""trading/execution.py and trading/placement.py against a scripted broker (fault injection) and the
real SQLite TradingStore: every test asserts that no correlation id was accepted twice.

The scripted broker stands in for the PaperBroker / Dhan stand-in until they land."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, positions_frame
from options_v4_dagster.trading.broker import BrokerOrder
from options_v4_dagster.trading.execution import ExecutionConfig, PreTradeCheckFailed, execute_allocation
from options_v4_dagster.trading.ledger import LOST, OrderMeta
from options_v4_dagster.trading.orders import (
    OrderRequest,
    OrderStatus,
    Side,
    StrategyState,
    entry_correlation_id,
)
from options_v4_dagster.trading.placement import reconcile

from .scripted_broker import EXPIRY, FakeClock, ScriptedBroker, seed_allocation

S, T = OrderStatus, StrategyState
AID = "a" * 64


@pytest.fixture()
def env(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    seed_allocation(wh, AID)
    clock = FakeClock()
    broker = ScriptedBroker(clock)
    cfg = ExecutionConfig(fill_timeout=5, poll_interval=1, unknown_grace=10, max_reprices=3, clock=clock.now,
                          sleep=clock.sleep)
    yield wh, TradingStore(wh), broker, cfg
    broker.assert_no_key_twice()
    wh.dispose()


def _states(store, plan):
    return {p.position_id: store.strategy_status(p.allocation_id, p.position_id).state for p in plan.positions}


def test_fills_every_position_and_a_second_execute_places_nothing(env):
    wh, store, broker, cfg = env
    plan = allocation_plan(wh, AID)
    rep = execute_allocation(plan, broker, store, cfg)
    assert _states(store, plan) == {"AL-NIFTY": T.OPEN, "AL-TCS": T.OPEN}
    assert rep.orders_placed == 4 and sum(broker.accepted.values()) == 4
    legs = [leg for s in rep.strategies for leg in s.legs]
    assert all(leg.status == "TRADED" and leg.filled_quantity == leg.quantity and leg.average_price > 0
               for leg in legs)
    pos = positions_frame(wh)
    assert pos.height == 4 and pos.get_column("entry_price").min() > 0
    assert sorted(pos.get_column("quantity").to_list()) == [-175, -150, 150, 175]
    # buys went first: within a position, the buy leg's order was accepted before the sell leg's
    order = list(broker.accepted)
    assert order.index(entry_correlation_id(AID, 1, 1)) < order.index(entry_correlation_id(AID, 1, 2))
    calls = dict(broker.calls)
    again = execute_allocation(plan, broker, store, cfg)
    assert again.orders_placed == 0 and again.nothing_to_do and "nothing placed" in again.messages[0]
    assert dict(broker.calls) == calls  # not even a request was sent
    assert again.to_dict()["strategies"][0]["legs"][0]["correlation_id"].startswith("eaaaaaaaaaa-")


def test_killed_between_row_written_and_request_sent_places_once(env):
    wh, store, broker, cfg = env
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    pos = plan.positions[0]
    leg = pos.legs[0]
    cid = entry_correlation_id(AID, pos.position_no, leg.leg)
    req = OrderRequest(cid, leg.security_id, "NIFTY", EXPIRY, leg.strike, "CE", Side.BUY, leg.quantity, leg.price,
                       lot_size=75)
    store.reserve_order(req, OrderMeta("paper", "entry", 1, 0, 0, AID, pos.position_id, 1, pos.strategy_id))
    # the crashed run had also started the strategy
    execute_allocation(plan, broker, store, cfg)
    assert broker.accepted[cid] == 1 and broker.calls[cid] == 1
    assert _states(store, plan) == {"AL-NIFTY": T.OPEN}


def test_killed_after_submitted_was_committed_resolves_then_uses_next_attempt(env):
    """SUBMITTED stored but the request never left: the broker is asked by correlation id; unknown
    after the grace period the row is REJECTED (LOST) and only then attempt 1 is placed."""
    wh, store, broker, cfg = env
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    pos, leg = plan.positions[0], plan.positions[0].legs[0]
    cid0 = entry_correlation_id(AID, 1, 1, 0, 0)
    req = OrderRequest(cid0, leg.security_id, "NIFTY", EXPIRY, leg.strike, "CE", Side.BUY, leg.quantity, leg.price,
                       lot_size=75)
    row, _ = store.reserve_order(req, OrderMeta("paper", "entry", 1, 0, 0, AID, pos.position_id, 1, pos.strategy_id),
                                 at=cfg.clock())
    store.transition(cid0, S.SUBMITTED, at=cfg.clock())
    execute_allocation(plan, broker, store, cfg)
    lost = store.order(cid0)
    assert lost.status is S.REJECTED and lost.error_code == LOST and broker.calls[cid0] == 0
    cid1 = entry_correlation_id(AID, 1, 1, 0, 1)
    assert broker.accepted[cid1] == 1 and store.order(cid1).status is S.TRADED
    assert _states(store, plan) == {"AL-NIFTY": T.OPEN}


def test_outcome_unknown_after_the_broker_accepted_is_looked_up_not_resent(env):
    wh, store, broker, cfg = env
    broker.script("N25000CE", unknown_after_accept=True)
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    rep = execute_allocation(plan, broker, store, cfg)
    cid = entry_correlation_id(AID, 1, 1)
    assert broker.calls[cid] == 1 and broker.accepted[cid] == 1
    o = store.order(cid)
    assert o.status is S.TRADED and o.broker_order_id
    moves = [e["to_status"] for e in store.events(cid) if e["to_status"]]
    assert moves == ["INITIALIZED", "SUBMITTED", "UNKNOWN", "TRADED"]
    assert rep.strategies[0].state == "OPEN"


def test_rate_limited_send_retries_the_same_request(env):
    wh, store, broker, cfg = env
    broker.script("N25000CE", rate_limited=2)
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, broker, store, cfg)
    cid = entry_correlation_id(AID, 1, 1)
    assert broker.calls[cid] == 3 and broker.accepted[cid] == 1


@pytest.mark.parametrize("mode", ["unwind", "leave"])
def test_a_sell_leg_that_never_fills_is_repriced_cancelled_and_the_buy_leg_unwound(env, mode):
    wh, store, broker, cfg = env
    broker.script("N25200CE", kind="never")
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, broker, store, dataclasses.replace(cfg, on_leg_failure=mode))
    sell = store.order(entry_correlation_id(AID, 1, 2))
    assert sell.status is S.CANCELLED and sell.modifications == 3 == broker.modifications[sell.correlation_id]
    assert sell.price < 60.0 and sell.price >= 60.0 * 0.6  # repriced toward the market, within the band
    st = store.strategy_status(AID, "AL-NIFTY")
    net = positions_frame(wh, open_only=False).filter(leg=1).item(0, "quantity")
    if mode == "unwind":
        assert st.state is T.UNWOUND and "unwound" in st.reason and "leg 2" in st.reason
        assert net == 0
        unwind = [o for o in store.orders(allocation_id=AID) if o.purpose == "exit"]
        assert len(unwind) == 1 and unwind[0].side is Side.SELL and unwind[0].status is S.TRADED
    else:
        assert st.state is T.FAILED and "left open" in st.reason and net == 150
    # executing again changes nothing
    calls = dict(broker.calls)
    execute_allocation(plan, broker, store, cfg)
    assert dict(broker.calls) == calls


def test_a_rejected_buy_leg_fails_the_position_without_selling(env):
    wh, store, broker, cfg = env
    broker.script("N25000CE", kind="reject")
    plan = allocation_plan(wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, broker, store, cfg)
    st = store.strategy_status(AID, "AL-NIFTY")
    assert st.state is T.FAILED and "RS-9005" in st.reason
    assert broker.calls[entry_correlation_id(AID, 1, 2)] == 0  # no naked short


def test_partial_fills_across_slices_give_a_vwap_entry_price(env):
    wh, store, broker, cfg = env
    broker.script("N25000CE", kind="steps", steps=[(50, 120.0), (25, 121.0)])  # per order: two partial fills
    plan = allocation_plan(wh, AID, ["AL-NIFTY"], freeze_quantity=lambda s: 100)  # 150 shares -> 75 + 75
    rep = execute_allocation(plan, broker, store, cfg)
    assert rep.strategies[0].state == "OPEN"
    buy = rep.strategies[0].legs[0]
    assert len(buy.correlation_ids) == 2 and buy.filled_quantity == 150
    vwap = (2 * 50 * 120.0 + 2 * 25 * 121.0) / 150
    assert buy.average_price == pytest.approx(vwap)
    pos = positions_frame(wh).filter(leg=1).row(0, named=True)
    assert pos["entry_price"] == pytest.approx(vwap) and pos["quantity"] == 150


def test_pre_trade_checks_stop_before_the_first_order(env):
    wh, store, broker, cfg = env
    plan = allocation_plan(wh, AID)
    broker.margin_per_order, broker.funds_available = 50_000.0, 100_000.0
    with pytest.raises(PreTradeCheckFailed, match="funds_margin") as exc:
        execute_allocation(plan, broker, store, cfg)
    assert exc.value.check == "funds_margin"
    with pytest.raises(PreTradeCheckFailed, match="kill_switch"):
        execute_allocation(plan, broker, store, dataclasses.replace(cfg, kill_switch=lambda: True))
    with pytest.raises(PreTradeCheckFailed, match="order_budget"):
        execute_allocation(plan, broker, store, dataclasses.replace(cfg, daily_order_budget=3))
    evening = FakeClock(dt.datetime(2025, 7, 17, 12, 0, tzinfo=dt.UTC))  # 17:30 IST
    with pytest.raises(PreTradeCheckFailed, match="market_hours"):
        execute_allocation(plan, broker, store, dataclasses.replace(cfg, live=True, clock=evening.now))
    assert store.orders() == [] and not broker.calls


def test_reconcile_adopts_unknown_broker_orders_and_rejects_lost_ones(env):
    wh, store, broker, cfg = env
    foreign = entry_correlation_id("b" * 64, 3, 1)
    broker.script("N24000CE", kind="never")
    broker.by_id["X1"] = BrokerOrder("X1", foreign, "N24000CE", Side.BUY, 75, 100.0, S.PENDING)
    broker.by_id["X2"] = BrokerOrder("X2", "manual-order", "N25000CE", Side.BUY, 75, 100.0, S.PENDING)
    lost = entry_correlation_id(AID, 1, 1)
    store.reserve_order(OrderRequest(lost, "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", Side.BUY, 150, 120.0),
                        OrderMeta("paper", "entry", 1, 0, 0, AID, "AL-NIFTY", 1, "s"), at=cfg.clock())
    store.transition(lost, S.SUBMITTED, at=cfg.clock())
    early = reconcile(broker, store, cfg)
    assert early.adopted == [foreign] and early.unresolved == [lost]
    adopted = store.order(foreign)
    assert adopted.adopted and adopted.status is S.PENDING and adopted.broker_order_id == "X1"
    assert store.order("manual-order") is None  # not our pattern: not adopted
    cfg.sleep(11)  # past the grace period
    late = reconcile(broker, store, cfg)
    assert late.rejected == [lost] and late.adopted == []
    assert store.order(lost).status is S.REJECTED
