"""Trade execution end to end on a real stored session: `options-v4 run` for 2025-07-17 on the
simulated source into a scratch SQLite warehouse, its allocation snapshot approved and executed on
the paper broker at the session's stored quotes (``session_quote_book``), exactly as the CLI and the
Dagster job do (store read -> ``execute_allocation`` -> store)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.allocations import latest_snapshot
from options_v4_dagster.store.instruments import instrument_specs, session_instruments
from options_v4_dagster.store.provenance import sources_of
from options_v4_dagster.store.schema import strategy_execution_status, strategy_monitoring, trades
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import (
    allocation_plan,
    approve,
    orders_frame,
    positions_frame,
    session_quote_book,
)
from options_v4_dagster.trading.execution import execute_allocation
from options_v4_dagster.trading.replay import paper_execution

from .pipeline_run import run_session

D = dt.date(2025, 7, 17)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warehouse_url(tmp_path_factory):
    env = run_session(tmp_path_factory.mktemp("trading_e2e"), D)
    assert env["exit_code"] == 0
    return env["DATABASE_URL"]


def test_an_approved_snapshot_executes_on_paper_at_the_stored_quotes_exactly_once(warehouse_url):
    wh = Warehouse(warehouse_url, create=False)
    snap = latest_snapshot(wh, D)
    approval, created = approve(wh, snap.allocation_id, approved_by="e2e")
    assert created
    plan = allocation_plan(wh, snap.allocation_id, approval.position_ids, approval_id=approval.approval_id)
    assert len(plan.positions) == snap.positions.height >= 20
    book = session_quote_book(wh, plan.trade_date, plan.symbols)
    legs = [leg for p in plan.positions for leg in p.legs]
    # plan and book name every contract alike: the candidate's security id is the chain's
    assert all(leg.security_id_known and book.quote(leg.security_id) is not None for leg in legs)

    store = TradingStore(wh)
    px = paper_execution(book, capital=plan.capital)
    report = execute_allocation(plan, px.broker, store, px.config)
    assert not [k for k, n in px.broker.placements.items() if n > 1]
    states = {s.position_id: (s.state, s.reason) for s in report.strategies}
    assert all(state == "OPEN" or reason for state, reason in states.values()), states
    opened = [p for p in plan.positions if states[p.position_id][0] == "OPEN"]
    assert len(opened) >= 0.9 * len(plan.positions), states
    assert report.orders_placed == sum(px.broker.placements.values()) >= len(legs)

    # entry prices: non-zero, the VWAP of the stored fills, at the stored quote (ask to buy, bid to sell)
    fills = wh.read(sa.select(trades).where(trades.c.allocation_id == plan.allocation_id))
    for f in fills.iter_rows(named=True):
        q = book.quote(f["security_id"])
        assert f["price"] == pytest.approx(q.ask if f["side"] == "BUY" else q.bid, abs=1e-9), f
    vwap = fills.group_by("position_id", "leg").agg(
        ((pl.col("price") * pl.col("quantity")).sum() / pl.col("quantity").sum()).alias("vwap"),
        pl.col("quantity").sum().alias("shares"), pl.col("fees").sum().alias("fees"))
    pos = positions_frame(wh, allocation_id=plan.allocation_id).join(vwap, on=["position_id", "leg"])
    opened_ids = {p.position_id for p in opened}
    open_legs = pos.filter(pl.col("position_id").is_in(opened_ids))
    assert open_legs.height == sum(len(p.legs) for p in opened)
    assert (open_legs.get_column("entry_price") > 0).all()
    assert (open_legs.get_column("entry_price") - open_legs.get_column("vwap")).abs().max() < 1e-9
    assert (open_legs.get_column("entry_quantity") == open_legs.get_column("shares")).all()
    for s in report.strategies:
        if s.state == "OPEN":
            assert all(leg.filled_quantity == leg.quantity and leg.average_price > 0 for leg in s.legs), s

    # fees recorded per fill: brokerage once per order, STT on sells, stamp duty on buys
    assert (fills.get_column("fees") > 0).all()
    assert fills.get_column("brokerage").sum() == pytest.approx(20.0 * fills.get_column("correlation_id").n_unique())
    sells = fills.filter(pl.col("side") == "SELL")
    assert (sells.get_column("stt") > 0).all() and (sells.get_column("stamp_duty") == 0).all()
    assert (open_legs.get_column("fees") - open_legs.get_column("fees_right")).abs().max() < 1e-9

    # a second execute (a new paper broker, as a re-run in another process) places nothing
    again_px = paper_execution(session_quote_book(wh, plan.trade_date, plan.symbols), capital=plan.capital)
    again = execute_allocation(plan, again_px.broker, store, again_px.config)
    assert again.orders_placed == 0 and again.nothing_to_do and not again_px.broker.events
    assert orders_frame(wh, allocation_id=plan.allocation_id).height == report.orders_placed
    wh.dispose()


def test_the_daily_pipeline_materializes_instruments_and_the_plan_reads_them(warehouse_url):
    wh = Warehouse(warehouse_url, create=False)
    inst = session_instruments(wh, D)
    chain = wh.read_partition("option_chain_data", D, ["symbol", "expiry", "strike", "option_type", "security_id",
                                                       "lot_size"])
    # one instruments row per stored contract (the simulated source: the chain's ids and lots, tick 0.05)
    key = ["symbol", "expiry", "strike", "option_type"]
    joined = chain.join(inst, on=key, how="left", suffix="_i")
    assert inst.height >= chain.height > 10_000 and joined.get_column("security_id_i").null_count() == 0
    assert (joined["security_id"] == joined["security_id_i"]).all() and (joined["lot_size"] == joined["lot_size_i"]).all()
    assert set(inst.get_column("tick_size")) == {0.05} and inst.get_column("freeze_quantity").null_count() == 0
    assert set(inst.get_column("symbol")) == set(wh.read_partition("fno_universe", D, ["symbol"]).get_column("symbol"))
    assert sources_of(wh, D, ["instruments"]) == {"instruments": "simulated"}
    assert wh.read_partition("pipeline_failures", D).filter(pl.col("asset") == "instruments").height == 0
    # every option leg of the session's snapshot comes from the instruments rows
    snap = latest_snapshot(wh, D)
    plan = allocation_plan(wh, snap.allocation_id)
    specs = instrument_specs(wh, D)
    legs = [leg for p in plan.positions for leg in p.legs if leg.instrument in ("CE", "PE")]
    assert legs and all(leg.instrument_source == "instruments" for leg in legs)
    assert plan.instrument_source in ("instruments", "mixed")
    for leg in legs:
        spec = specs[leg.security_id]
        assert (leg.lot_size, leg.tick_size, leg.freeze_quantity) == (spec.lot_size, spec.tick_size,
                                                                     spec.freeze_quantity)
    wh.dispose()


def test_monitoring_the_executed_session_values_every_open_position_and_exits_once(warehouse_url):
    """After the paper execution above: one monitoring cycle on the session's stored chain values every
    open position from the stored levels (scaled to the allocated lots), snapshots them, and exits
    only what a rule makes actionable; a second cycle places nothing."""
    from options_v4_dagster.trading.monitor import monitor_cycle

    wh = Warehouse(warehouse_url, create=False)
    open_before = wh.read(sa.select(strategy_execution_status).where(strategy_execution_status.c.state == "OPEN"))
    report = monitor_cycle(wh, D)
    assert len(report.positions) == open_before.height > 0
    assert all(p.pnl is not None and p.dte is not None and p.actions for p in report.positions)
    snaps = wh.read(sa.select(strategy_monitoring))
    assert snaps.height == open_before.height and snaps["pnl_close"].null_count() == 0
    exits = orders_frame(wh).filter(pl.col("purpose") == "exit")
    assert report.exits_placed == exits.height
    assert all(i.state in ("FILLED", "PARTIAL", "FAILED") for i in report.intents if i.driven)
    again = monitor_cycle(wh, D)
    assert again.exits_placed == 0 and orders_frame(wh).filter(pl.col("purpose") == "exit").height == exits.height
    wh.dispose()
