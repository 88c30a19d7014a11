"""trading/execution.py and trading/placement.py against the real PaperBroker (its fault hooks and a
ManualClock, through ``trading.replay.paper_execution``) at the session's stored quotes
(``session_quote_book``) and the real SQLite TradingStore. Every test ends by asserting that no
correlation id was placed twice (``PaperBroker.placements``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from options_v4_dagster.calendar import IST
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.schema import trades
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, positions_frame, session_quote_book
from options_v4_dagster.trading.clock import ManualClock
from options_v4_dagster.trading.execution import ExecutionConfig, PreTradeCheckFailed, execute_allocation
from options_v4_dagster.trading.ledger import LOST, OrderMeta
from options_v4_dagster.trading.orders import (
    OrderRequest,
    OrderStatus,
    Side,
    StrategyState,
    entry_correlation_id,
)
from options_v4_dagster.trading.paper import PaperBroker, PaperConfig
from options_v4_dagster.trading.placement import OrderDesk, reconcile
from options_v4_dagster.trading.replay import PaperExecution, paper_execution

from .trading_seed import EXPIRY, D, seed_allocation

S, T = OrderStatus, StrategyState
AID = "a" * 64
T0 = dt.datetime(2025, 7, 17, 10, 30, tzinfo=IST)
CFG = ExecutionConfig(fill_timeout=5, poll_interval=1, unknown_grace=10, max_reprices=3)


@dataclass
class Env:
    wh: Warehouse
    store: TradingStore
    px: PaperExecution

    @property
    def broker(self) -> PaperBroker:
        return self.px.broker

    @property
    def cfg(self) -> ExecutionConfig:
        return self.px.config


def assert_placed_once(broker: PaperBroker) -> None:
    twice = {k: n for k, n in broker.placements.items() if n > 1}
    assert not twice, f"placed twice: {twice}"


@pytest.fixture()
def env(tmp_path):
    """``env(positions=None, book=None, clock=None, paper={...}, **config)``: a seeded warehouse and a
    paper execution over its stored quotes (or ``book(quotes)``)."""
    made: list[Env] = []

    def make(positions=None, *, book=None, clock=None, paper=None, **cfg) -> Env:
        wh = Warehouse(f"sqlite:///{tmp_path / f'w{len(made)}.db'}")
        seed_allocation(wh, AID, positions)
        quotes = session_quote_book(wh, D)
        px = paper_execution(book(quotes) if book else quotes, paper=PaperConfig(**(paper or {})),
                             config=dataclasses.replace(CFG, **cfg), start=T0, clock=clock)
        made.append(Env(wh, TradingStore(wh), px))
        return made[-1]

    yield make
    for e in made:
        assert_placed_once(e.broker)
        e.wh.dispose()


def _states(store, plan):
    return {p.position_id: store.strategy_status(p.allocation_id, p.position_id).state for p in plan.positions}


def _sent(broker: PaperBroker) -> tuple[int, dict]:
    """What the broker was asked to do so far: its order events (place, modify, cancel) and placements."""
    return len(broker.events), dict(broker.placements)


def test_fills_every_position_at_the_quotes_with_fees_and_a_second_execute_places_nothing(env):
    e = env()
    plan = allocation_plan(e.wh, AID)
    rep = execute_allocation(plan, e.broker, e.store, e.cfg)
    assert _states(e.store, plan) == {"AL-NIFTY": T.OPEN, "AL-TCS": T.OPEN}
    assert rep.orders_placed == 4 and sum(e.broker.placements.values()) == 4
    legs = [leg for s in rep.strategies for leg in s.legs]
    assert all(leg.status == "TRADED" and leg.filled_quantity == leg.quantity for leg in legs)
    assert [leg.average_price for leg in legs] == [120.0, 60.0, 40.0, 15.0]  # the ask to buy, the bid to sell
    pos = positions_frame(e.wh)
    assert pos.height == 4 and pos.get_column("entry_price").to_list() == [120.0, 60.0, 40.0, 15.0]
    assert sorted(pos.get_column("quantity").to_list()) == [-175, -150, 150, 175]
    # buys went first: within a position, the buy leg's order was placed before the sell leg's
    order = list(e.broker.placements)
    assert order.index(entry_correlation_id(AID, 1, 1)) < order.index(entry_correlation_id(AID, 1, 2))
    # the NSE charges of every fill (config/charges.yaml), hand-checked for the NIFTY legs
    fills = e.wh.read(sa.select(trades).order_by(trades.c.position_id, trades.c.leg)).to_dicts()
    buy, sell = fills[0], fills[1]
    assert (buy["brokerage"], buy["stt"], buy["stamp_duty"]) == (20.0, 0.0, 0.54)  # 18,000 x 0.003%
    assert (sell["brokerage"], sell["stt"], sell["stamp_duty"]) == (20.0, 9.0, 0.0)  # 9,000 x 0.1%
    assert buy["exchange_charges"] == 6.31 and buy["sebi_fees"] == 0.02 and buy["gst"] == 4.74
    for f in fills:
        assert f["fees"] == pytest.approx(sum(f[k] for k in ("brokerage", "stt", "exchange_charges", "sebi_fees",
                                                               "stamp_duty", "gst")))
    assert positions_frame(e.wh).get_column("fees").min() > 20
    sent = _sent(e.broker)
    again = execute_allocation(plan, e.broker, e.store, e.cfg)
    assert again.orders_placed == 0 and again.nothing_to_do and "nothing placed" in again.messages[0]
    assert _sent(e.broker) == sent  # not even a request was sent
    assert again.to_dict()["strategies"][0]["legs"][0]["correlation_id"].startswith("eaaaaaaaaaa-")


def test_killed_between_row_written_and_request_sent_places_once(env):
    e = env()
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    pos = plan.positions[0]
    leg = pos.legs[0]
    cid = entry_correlation_id(AID, pos.position_no, leg.leg)
    req = OrderRequest(cid, leg.security_id, "NIFTY", EXPIRY, leg.strike, "CE", Side.BUY, leg.quantity, leg.price,
                       lot_size=75)
    e.store.reserve_order(req, OrderMeta("paper", "entry", 1, 0, 0, AID, pos.position_id, 1, pos.strategy_id))
    execute_allocation(plan, e.broker, e.store, e.cfg)
    assert e.broker.placements[cid] == 1
    assert _states(e.store, plan) == {"AL-NIFTY": T.OPEN}


def test_killed_after_submitted_was_committed_resolves_then_uses_next_attempt(env):
    """SUBMITTED stored but the request never left: the broker is asked by correlation id; unknown
    after the grace period the row is REJECTED (LOST) and only then attempt 1 is placed."""
    e = env()
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    pos, leg = plan.positions[0], plan.positions[0].legs[0]
    cid0 = entry_correlation_id(AID, 1, 1, 0, 0)
    req = OrderRequest(cid0, leg.security_id, "NIFTY", EXPIRY, leg.strike, "CE", Side.BUY, leg.quantity, leg.price,
                       lot_size=75)
    e.store.reserve_order(req, OrderMeta("paper", "entry", 1, 0, 0, AID, pos.position_id, 1, pos.strategy_id),
                          at=e.cfg.clock())
    e.store.transition(cid0, S.SUBMITTED, at=e.cfg.clock())
    execute_allocation(plan, e.broker, e.store, e.cfg)
    lost = e.store.order(cid0)
    assert lost.status is S.REJECTED and lost.error_code == LOST and e.broker.placements[cid0] == 0
    cid1 = entry_correlation_id(AID, 1, 1, 0, 1)
    assert e.broker.placements[cid1] == 1 and e.store.order(cid1).status is S.TRADED
    assert _states(e.store, plan) == {"AL-NIFTY": T.OPEN}
    assert e.px.clock.now - T0 >= dt.timedelta(seconds=10)  # the grace passed on the paper clock


def test_outcome_unknown_after_the_broker_accepted_is_looked_up_not_resent(env):
    e = env()
    e.broker.unknown_after_accept = 1  # the first order (NIFTY's buy leg) is accepted, then the answer is lost
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    rep = execute_allocation(plan, e.broker, e.store, e.cfg)
    cid = entry_correlation_id(AID, 1, 1)
    assert e.broker.placements[cid] == 1
    o = e.store.order(cid)
    assert o.status is S.TRADED and o.broker_order_id and o.average_price == 120.0
    moves = [x["to_status"] for x in e.store.events(cid) if x["to_status"]]
    assert moves == ["INITIALIZED", "SUBMITTED", "UNKNOWN", "TRADED"]
    assert rep.strategies[0].state == "OPEN"


def test_unavailable_and_rate_limited_sends_retry_the_same_request_on_the_paper_clock(env):
    e = env(paper={"orders_per_second": 1})
    e.broker.unavailable_next = 2
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, e.broker, e.store, e.cfg)
    buy, sell = entry_correlation_id(AID, 1, 1), entry_correlation_id(AID, 1, 2)
    not_sent = {cid: [x["payload"] for x in e.store.events(cid) if "not_sent" in (x["payload"] or "")]
                for cid in (buy, sell)}
    assert len(not_sent[buy]) == 2 and "unavailable" in not_sent[buy][0]
    assert len(not_sent[sell]) == 1 and "DH-904" in not_sent[sell][0]  # 1 order/s: the sell waited a second
    assert e.broker.placements[buy] == e.broker.placements[sell] == 1
    assert e.store.strategy_status(AID, "AL-NIFTY").state is T.OPEN
    assert e.px.clock.now - T0 == dt.timedelta(seconds=1 + 2 + 1)  # backoffs on the paper clock, no wall time


@pytest.mark.parametrize("mode", ["unwind", "leave"])
def test_a_sell_leg_that_never_fills_is_repriced_within_the_band_cancelled_and_the_buy_leg_unwound(env, mode):
    e = env(on_leg_failure=mode)
    e.broker.never_fill.add("N25200CE")
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, e.broker, e.store, e.cfg)
    sell = e.store.order(entry_correlation_id(AID, 1, 2))
    modified = [x for x in e.broker.events if x["CorrelationId"] == sell.correlation_id
                and x["ReasonDescription"] == "MODIFIED"]
    assert sell.status is S.CANCELLED and sell.modifications == 3 == len(modified)
    assert [x["Price"] for x in modified] == [59.7, 59.4, 59.1]  # toward the market by 0.5% a step
    assert 60.0 * 0.6 <= sell.price < 60.0  # toward the market, within the protection band
    st = e.store.strategy_status(AID, "AL-NIFTY")
    net = positions_frame(e.wh, open_only=False).filter(leg=1).item(0, "quantity")
    if mode == "unwind":
        assert st.state is T.UNWOUND and "unwound" in st.reason and "leg 2" in st.reason
        assert net == 0
        unwind = [o for o in e.store.orders(allocation_id=AID) if o.purpose == "exit"]
        assert len(unwind) == 1 and unwind[0].side is Side.SELL and unwind[0].status is S.TRADED
        assert unwind[0].average_price == 119.0  # sold at the bid, its limit at the band's lower edge
    else:
        assert st.state is T.FAILED and "left open" in st.reason and net == 150
    sent = _sent(e.broker)
    execute_allocation(plan, e.broker, e.store, e.cfg)  # executing again changes nothing
    assert _sent(e.broker) == sent


def test_a_rejected_buy_leg_fails_the_position_without_selling(env):
    e = env()
    e.broker.reject_next = 1
    plan = allocation_plan(e.wh, AID, ["AL-NIFTY"])
    execute_allocation(plan, e.broker, e.store, e.cfg)
    st = e.store.strategy_status(AID, "AL-NIFTY")
    assert st.state is T.FAILED and "DH-906" in st.reason and "leg 1" in st.reason
    assert e.broker.placements[entry_correlation_id(AID, 1, 1)] == 1
    assert e.broker.placements[entry_correlation_id(AID, 1, 2)] == 0  # no naked short


class FallingAsk:
    """The stored book with one lot (75) shown on the NIFTY 25000 CE's ask, which falls by 0.50 a
    second after T0 (the market moves between polls)."""

    def __init__(self, base, clock: ManualClock) -> None:
        self.base, self.clock = base, clock

    def quote(self, security_id):
        q = self.base.quote(security_id)
        if q is None or security_id != "N25000CE":
            return q
        return dataclasses.replace(q, ask=q.ask - 0.5 * int((self.clock.now - T0).total_seconds()), ask_qty=75)


def test_partial_fills_across_freeze_slices_give_a_vwap_entry_price(env):
    legs = [("BUY", "CE", 25000.0, 120.0, "N25000CE"), ("SELL", "CE", 25200.0, 60.0, "N25200CE")]
    clock = ManualClock(T0)
    e = env({"AL-NIFTY": ("NIFTY", 4, 75, legs)}, book=lambda q: FallingAsk(q, clock), clock=clock,
            paper={"partial_fills": True})
    plan = allocation_plan(e.wh, AID, freeze_quantity=lambda symbol, lot: 200)  # 300 shares -> 150 + 150
    assert plan.positions[0].legs[0].slices() == [150, 150]
    rep = execute_allocation(plan, e.broker, e.store, e.cfg)
    assert rep.strategies[0].state == "OPEN"
    buy = rep.strategies[0].legs[0]
    assert len(buy.correlation_ids) == 2 and buy.filled_quantity == 300
    # each matching round fills the shown lot of the oldest working slice, at the ask (not the limit)
    fills = e.wh.read(sa.select(trades.c.correlation_id, trades.c.price, trades.c.brokerage)
                      .where(trades.c.leg == 1).order_by(trades.c.traded_at, trades.c.trade_id))
    assert fills.get_column("price").to_list() == [120.0, 119.5, 119.0, 118.5]
    assert fills.get_column("correlation_id").to_list() == [buy.correlation_ids[0]] * 2 + [buy.correlation_ids[1]] * 2
    assert fills.get_column("brokerage").to_list() == [20.0, 0.0, 20.0, 0.0]  # once per order
    vwap = (120.0 + 119.5 + 119.0 + 118.5) / 4
    assert buy.average_price == pytest.approx(vwap)
    pos = positions_frame(e.wh).filter(leg=1).row(0, named=True)
    assert pos["entry_price"] == pytest.approx(vwap) and pos["quantity"] == 300
    assert [e.store.order(c).average_price for c in buy.correlation_ids] == [pytest.approx(119.75),
                                                                             pytest.approx(118.75)]


def test_pre_trade_checks_stop_before_the_first_order(env):
    e = env(paper={"capital": 5_000.0})
    plan = allocation_plan(e.wh, AID)
    with pytest.raises(PreTradeCheckFailed, match="funds_margin") as exc:
        execute_allocation(plan, e.broker, e.store, e.cfg)  # the paper margin estimate + premium > 5,000
    assert exc.value.check == "funds_margin" and "13,375" in str(exc.value)  # 150 x 60 + 175 x 25 debit
    with pytest.raises(PreTradeCheckFailed, match="kill_switch"):
        execute_allocation(plan, e.broker, e.store, dataclasses.replace(e.cfg, kill_switch=lambda: True))
    with pytest.raises(PreTradeCheckFailed, match="order_budget"):
        execute_allocation(plan, e.broker, e.store, dataclasses.replace(e.cfg, daily_order_budget=3))
    evening = ManualClock(dt.datetime(2025, 7, 17, 17, 30, tzinfo=IST))
    with pytest.raises(PreTradeCheckFailed, match="market_hours"):
        execute_allocation(plan, e.broker, e.store, dataclasses.replace(e.cfg, live=True, clock=evening))
    frozen = allocation_plan(e.wh, AID, freeze_quantity=lambda symbol, lot: 50)  # below one lot of 75
    with pytest.raises(PreTradeCheckFailed, match="freeze_quantity"):
        execute_allocation(frozen, e.broker, e.store, e.cfg)
    assert e.store.orders() == [] and not e.broker.placements and not e.broker.events


def test_reconcile_adopts_unknown_broker_orders_and_rejects_lost_ones(env):
    e = env()
    foreign = entry_correlation_id("b" * 64, 3, 1)
    e.broker.never_fill.add("N24000CE")
    e.broker.place(OrderRequest(foreign, "N24000CE", "NIFTY", EXPIRY, 24000.0, "CE", Side.BUY, 75, 100.0,
                                lot_size=75))
    e.broker.place(OrderRequest("manual-order", "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", Side.BUY, 75, 100.0,
                                lot_size=75))
    lost = entry_correlation_id(AID, 1, 1)
    e.store.reserve_order(OrderRequest(lost, "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", Side.BUY, 150, 120.0),
                          OrderMeta("paper", "entry", 1, 0, 0, AID, "AL-NIFTY", 1, "s"), at=e.cfg.clock())
    e.store.transition(lost, S.SUBMITTED, at=e.cfg.clock())
    early = reconcile(e.broker, e.store, e.cfg)
    assert early.adopted == [foreign] and early.unresolved == [lost]
    adopted = e.store.order(foreign)
    assert adopted.adopted and adopted.status is S.PENDING
    assert adopted.broker_order_id == e.broker.order_by_correlation_id(foreign).order_id
    assert e.store.order("manual-order") is None  # not our pattern: not adopted
    e.px.sleep(11)  # past the grace period
    late = reconcile(e.broker, e.store, e.cfg)
    assert late.rejected == [lost] and late.adopted == []
    assert e.store.order(lost).status is S.REJECTED


def test_reconcile_expires_a_working_order_that_a_new_broker_process_does_not_know(env):
    """A paper order left PENDING by a process that ended (its broker's book died with it) is not left
    working for ever: the next process's reconciliation asks by id and by correlation id, waits out the
    grace period, then records it REJECTED (LOST) with a reason; nothing is sent again."""
    e = env()
    e.broker.never_fill.add("N25000CE")  # the NIFTY buy rests PENDING
    cid = entry_correlation_id(AID, 1, 1)
    req = OrderRequest(cid, "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", Side.BUY, 150, 120.0, lot_size=75)
    row = OrderDesk(e.broker, e.store, e.cfg).submit(req, OrderMeta("paper", "entry", 1, 0, 0, AID, "AL-NIFTY", 1, "s"))
    assert row.status is S.PENDING and row.broker_order_id  # the process "ends" here
    fresh = paper_execution(session_quote_book(e.wh, D), config=e.cfg, start=T0 + dt.timedelta(seconds=5))
    early = reconcile(fresh.broker, e.store, fresh.config)
    assert cid not in early.rejected and e.store.order(cid).status is S.PENDING  # within the grace
    fresh.sleep(30)
    late = reconcile(fresh.broker, e.store, fresh.config)
    row = e.store.order(cid)
    assert late.rejected == [cid] and row.status is S.REJECTED and row.error_code == LOST
    assert "no longer knows order" in row.reason and not fresh.broker.placements  # nothing sent again
    again = reconcile(fresh.broker, e.store, fresh.config)  # settled: left alone
    assert again.rejected == [] and e.store.order(cid).version == row.version


def test_a_past_session_is_executed_on_paper_at_its_own_date():
    """Paper execution of a past session happens at 15:20 IST of that session (its stored quotes), so
    orders, fills and entry times carry the session's date; today's session executes now."""
    from options_v4_dagster.trading.service import paper_start

    now = dt.datetime(2026, 12, 2, 6, 0, tzinfo=dt.UTC)  # 11:30 IST
    assert paper_start(D, now) == dt.datetime(2025, 7, 17, 15, 20, tzinfo=IST)
    assert paper_start(dt.date(2026, 12, 2), now) == now
