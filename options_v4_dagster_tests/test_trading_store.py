"""store/trading.py and store/trading_queries.py on SQLite and PostgreSQL: an order's row is reserved
once under concurrency, transitions are compare-and-set, fills are idempotent and give positions with
VWAP entry prices and realized P&L, approvals are idempotent."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.schema import option_chain_data, order_events
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import (
    ApprovalError,
    allocation_plan,
    approve,
    pending_approvals,
    positions_by_number,
    positions_frame,
    session_quote_book,
)
from options_v4_dagster.trading.broker import Fill
from options_v4_dagster.trading.ledger import (
    ConcurrentUpdate,
    CorrelationIdCollision,
    OrderMeta,
    StrategyStatus,
    TradeIdCollision,
)
from options_v4_dagster.trading.orders import (
    IllegalTransition,
    OrderRequest,
    OrderStatus,
    Side,
    StrategyState,
)

from .concurrency import race
from .trading_seed import EXPIRY, D, chain_row, seed_allocation

S = OrderStatus
T0 = dt.datetime(2025, 7, 17, 5, 0, tzinfo=dt.UTC)


def _req(cid="eaaaaaaaaaa-1-1-0-0", side=Side.BUY, qty=150, price=120.0):
    return OrderRequest(cid, "N25000CE", "NIFTY", EXPIRY, 25000.0, "CE", side, qty, price, lot_size=75)


META = OrderMeta("paper", "entry", 1, 0, 0, "a" * 64, "AL-NIFTY", 1, "s1")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'w.db'}"
    return request.getfixturevalue("pg_url")


def test_reserve_is_unique_under_concurrent_writers(url):
    Warehouse(url).dispose()  # migrated once
    stores = [TradingStore(Warehouse(url, create=False)) for _ in range(6)]  # six engines: six connections
    got = race(6, lambda i: stores[i].reserve_order(_req(), META, at=T0))
    assert all(isinstance(g, tuple) for g in got), got
    assert sum(created for _, created in got) == 1
    assert {row.correlation_id for row, _ in got} == {"eaaaaaaaaaa-1-1-0-0"}
    with stores[0].engine.connect() as c:
        assert c.execute(sa.text("select count(*) from orders")).scalar_one() == 1
        assert c.execute(sa.select(sa.func.count()).select_from(order_events)).scalar_one() == 1
    # the same id for another position is refused, not silently shared
    with pytest.raises(CorrelationIdCollision, match="position_id"):
        stores[0].reserve_order(_req(), OrderMeta("paper", "entry", 1, 0, 0, "a" * 64, "AL-OTHER", 1, "s1"))
    with pytest.raises(CorrelationIdCollision, match="broker"):
        stores[0].reserve_order(_req(), OrderMeta("dhan", "entry", 1, 0, 0, "a" * 64, "AL-NIFTY", 1, "s1"))
    for s in stores:
        s.wh.dispose()


def test_transitions_are_compare_and_set(url):
    Warehouse(url).dispose()
    stores = [TradingStore(Warehouse(url, create=False)) for _ in range(4)]
    row, _ = stores[0].reserve_order(_req(), META, at=T0)
    got = race(4, lambda i: stores[i].transition(row.correlation_id, S.SUBMITTED, expected_version=row.version))
    won = [g for g in got if not isinstance(g, Exception)]
    assert len(won) == 1 and won[0].status is S.SUBMITTED and won[0].version == 1
    assert all(isinstance(g, ConcurrentUpdate) for g in got if isinstance(g, Exception))
    st = stores[0]
    with pytest.raises(IllegalTransition):
        st.transition(row.correlation_id, S.INITIALIZED)
    with pytest.raises(ConcurrentUpdate):  # a stale version loses even for a legal move
        st.transition(row.correlation_id, S.PENDING, expected_version=0)
    after = st.transition(row.correlation_id, S.PENDING, broker_order_id="O1", source="broker")
    assert (after.status, after.broker_order_id, after.version) == (S.PENDING, "O1", 2)
    moves = [(e["from_status"], e["to_status"]) for e in st.events(row.correlation_id)]
    assert moves == [(None, "INITIALIZED"), ("INITIALIZED", "SUBMITTED"), ("SUBMITTED", "PENDING")]
    for s in stores:
        s.wh.dispose()


def test_fills_are_idempotent_and_give_vwap_entry_and_realized_pnl(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    seed_allocation(wh)
    st = TradingStore(wh)
    row, _ = st.reserve_order(_req(), META, at=T0)
    fills = [Fill("T1", "O1", row.correlation_id, "N25000CE", Side.BUY, 100, 120.0, T0),
             Fill("T2", "O1", row.correlation_id, "N25000CE", Side.BUY, 50, 123.0, T0 + dt.timedelta(seconds=1))]
    assert st.record_fills(row.correlation_id, fills, [{"brokerage": 20.0, "stt": 1.5}, {}]) == 2
    assert st.record_fills(row.correlation_id, fills) == 0  # the same trades again: nothing new
    assert st.filled_from_trades(row.correlation_id) == (150, pytest.approx(121.0))
    pos = positions_frame(wh).row(0, named=True)
    assert (pos["quantity"], pos["entry_quantity"], pos["entry_side"]) == (150, 150, "BUY")
    assert pos["entry_price"] == pytest.approx(121.0) and pos["average_price"] == pytest.approx(121.0)
    assert pos["fees"] == pytest.approx(21.5)
    # closing 100 at 130 realizes 100 x 9
    ex = OrderMeta("paper", "exit", 1, 0, 0, "a" * 64, "AL-NIFTY", 1, "s1", "unwind")
    xrow, _ = st.reserve_order(_req("x0123456789-1-0-0", Side.SELL, 100, 130.0), ex, at=T0)
    st.record_fills(xrow.correlation_id, [Fill("T3", "O2", xrow.correlation_id, "N25000CE", Side.SELL, 100, 130.0,
                                               T0 + dt.timedelta(seconds=5))])
    pos = positions_frame(wh).row(0, named=True)
    assert pos["quantity"] == 50 and pos["realized_pnl"] == pytest.approx(900.0)
    assert pos["entry_price"] == pytest.approx(121.0)  # exits do not move the entry price
    # another fill under a stored trade id (a second broker process numbering alike) fails loudly and
    # records nothing of its batch, instead of being dropped as "already recorded"
    xrow2, _ = st.reserve_order(_req("x0123456789-1-0-1", Side.SELL, 50, 131.0), ex, at=T0)
    clash = [Fill("T4", "O3", xrow2.correlation_id, "N25000CE", Side.SELL, 25, 131.0, T0 + dt.timedelta(seconds=6)),
             Fill("T3", "O3", xrow2.correlation_id, "N25000CE", Side.SELL, 25, 131.0, T0 + dt.timedelta(seconds=7))]
    with pytest.raises(TradeIdCollision, match="trade T3 of x0123456789-1-0-1"):
        st.record_fills(xrow2.correlation_id, clash)
    assert st.filled_from_trades(xrow2.correlation_id) == (0, None)
    assert positions_frame(wh).row(0, named=True)["quantity"] == 50
    wh.dispose()


def test_paper_brokers_of_different_processes_never_share_a_trade_id():
    """Two paper brokers without a seed (two processes) number their orders and fills apart; a seed
    still reproduces the ids."""
    from options_v4_dagster.trading.paper import PaperBroker, PaperConfig
    from options_v4_dagster.trading.quotes import Quote, StaticQuoteBook

    book = StaticQuoteBook([Quote("N25000CE", 119.0, 120.0, 1e6, 1e6, 119.5)])

    def fills(seed=None):
        b = PaperBroker(book, PaperConfig() if seed is None else PaperConfig(seed=seed))  # the default config
        for i in range(3):
            b.place(_req(f"eaaaaaaaaaa-1-1-{i}-0", qty=75))
        return [f.trade_id for f in b.trades()]

    a, b = fills(), fills()
    assert len(set(a)) == 3 and not set(a) & set(b)
    assert fills(7) == fills(7)


def test_strategy_state_machine_and_premium(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    st = TradingStore(wh)
    s, created = st.start_strategy(StrategyStatus("a" * 64, "AL-NIFTY", "s1", "NIFTY", "paper", StrategyState.PENDING))
    assert created and st.start_strategy(s)[1] is False
    with pytest.raises(IllegalTransition):
        st.set_strategy_state("a" * 64, "AL-NIFTY", StrategyState.CLOSED)
    out = st.set_strategy_state("a" * 64, "AL-NIFTY", StrategyState.OPEN)
    assert out.state is StrategyState.OPEN and out.opened_at is not None
    wh.dispose()


def test_approvals_are_idempotent_and_pending_until_executed(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    aid = seed_allocation(wh)
    a1, c1 = approve(wh, aid, approved_by="tester")
    a2, c2 = approve(wh, aid, approved_by="someone else")
    assert c1 and not c2 and a1 == a2 and a2.approved_by == "tester"
    part, c3 = approve(wh, aid, positions_by_number(wh, aid, [2]), approved_by="tester")
    assert c3 and part.approval_id != a1.approval_id and part.position_ids == ("AL-TCS",)
    assert approve(wh, aid, ["AL-TCS"], approved_by="x")[0].approval_id == part.approval_id
    with pytest.raises(ApprovalError, match="no position"):
        positions_by_number(wh, aid, [3])
    with pytest.raises(ApprovalError, match="does not exist"):
        approve(wh, "nope", approved_by="x")
    assert {a.approval_id for a in pending_approvals(wh)} == {a1.approval_id, part.approval_id}
    TradingStore(wh).start_strategy(StrategyStatus(aid, "AL-TCS", "s", "TCS", "paper", StrategyState.PENDING))
    assert [a.approval_id for a in pending_approvals(wh)] == [a1.approval_id]  # AL-NIFTY is still to do
    wh.dispose()


def test_plan_scales_legs_by_allocated_lots_and_slices_by_freeze(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    aid = seed_allocation(wh)
    plan = allocation_plan(wh, aid, freeze_quantity=lambda s, lot: 100 if s == "NIFTY" else None)
    nifty = next(p for p in plan.positions if p.symbol == "NIFTY")
    assert (nifty.position_no, nifty.lots) == (1, 2)
    assert [leg.quantity for leg in nifty.legs] == [150, 150]
    assert nifty.legs[0].slices() == [75, 75]  # 100-share freeze limit: one lot of 75 per order
    assert [leg.side for leg in nifty.buy_legs] == [Side.BUY]
    wh.dispose()


def test_plan_slices_by_the_packaged_freeze_limits_strictly_below_the_freeze_quantity(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    legs = [("BUY", "CE", 25000.0, 120.0, "N25000CE"), ("SELL", "CE", 25200.0, 60.0, None)]
    aid = seed_allocation(wh, positions={"AL-NIFTY": ("NIFTY", 24, 75, legs)}, capital=2.5e6)
    plan = allocation_plan(wh, aid)  # config/freeze_limits.yaml: NIFTY 1,800 shares
    leg = plan.positions[0].legs[0]
    assert (leg.quantity, leg.freeze_quantity) == (1800, 1800)
    assert leg.slices() == [1725, 75]  # an order of exactly the freeze quantity would be frozen
    assert plan.capital == 2.5e6 and plan.symbols == ["NIFTY"]
    # a leg without a broker id is named by its contract_key, which the session's quote book knows
    sell = plan.positions[0].legs[1]
    assert (sell.security_id, sell.security_id_known) == ("NIFTY-20250731-25200-CE", False)
    book = session_quote_book(wh, plan.trade_date, plan.symbols)
    assert (book.quote(sell.security_id).bid, book.quote(leg.security_id).ask) == (60.0, 120.0)
    with pytest.raises(ApprovalError, match="no stored option chain"):
        session_quote_book(wh, plan.trade_date, ["TCS"])
    wh.dispose()


def test_the_quote_book_finds_a_contract_by_its_key_whatever_id_the_chain_gives_it(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    legs = [("BUY", "CE", 25000.0, 120.0, None)]
    aid = seed_allocation(wh, positions={"AL-NIFTY": ("NIFTY", 1, 75, legs)}, quotes=False)
    with wh.engine.begin() as c:  # the chain has the broker's id, the candidate had none
        c.execute(option_chain_data.insert().values(**chain_row("NIFTY", 25000.0, "CE", "BUY", 120.0, "35001", 75)))
    leg = allocation_plan(wh, aid).positions[0].legs[0]
    book = session_quote_book(wh, D)
    assert leg.security_id == "NIFTY-20250731-25000-CE" and book.quote(leg.security_id).ask == 120.0
    assert book.quote("35001").ask == 120.0
    wh.dispose()
