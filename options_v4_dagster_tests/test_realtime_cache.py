"""The real-time monitor's fast path keeps the monitor inputs in memory (:mod:`options_v4_dagster.trading.
monitor_fast`): a fill made by another process and a position entered while the monitor runs reach the
cache before the next decision (PostgreSQL: LISTEN/NOTIFY from the trading store, with position polling
set to an hour; SQLite: the per-step version check), and ``strategy_monitoring`` snapshots are written
on their own cadence, not per tick. Also: the trading store's NOTIFY is delivered on commit only; a
load racing another process's exit does not reopen its FILLED intent; a monitor with nothing open
keeps running. Same seed as ``test_realtime_monitor`` (stand-in feed, paper positions entered on
2025-07-17, watched as of 2025-07-18)."""

from __future__ import annotations

import contextlib
import json

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse, schema
from options_v4_dagster.store import monitoring as ms
from options_v4_dagster.store.audit import verify_audit
from options_v4_dagster.store.changes import ChangeListener, notify, trading_version
from options_v4_dagster.store.monitoring import intents, open_leg_quantities, strategy_key
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, session_quote_book
from options_v4_dagster.trading.execution import execute_allocation
from options_v4_dagster.trading.exit_config import load_exit_rules
from options_v4_dagster.trading.feed.standin import StandInFeed
from options_v4_dagster.trading.ledger import StrategyStatus
from options_v4_dagster.trading.monitor import MonitorConfig, _Cycle, monitor_cycle
from options_v4_dagster.trading.orders import StrategyState
from options_v4_dagster.trading.paper import PaperConfig
from options_v4_dagster.trading.realtime import RealtimeMonitor, rest_book
from options_v4_dagster.trading.replay import paper_execution
from options_v4_dagster.trading.service import carry_open_positions

from .test_realtime_monitor import (
    AID,
    AID2,
    NIFTY,
    POSITIONS,
    PRICES,
    SPOT,
    TCS,
    _clock,
    _factory,
    _NoFeed,
    _running,
    _wait,
)
from .trading_seed import NOW, D, seed_allocation

BN_LEGS = {"AL-BN": ("BANKNIFTY", 1, 35, [("BUY", "CE", 56000.0, 300.0, "52005"), ("SELL", "CE", 56500.0, 200.0, "52006")])}
BN = strategy_key("20250717-BANKNIFTY-Spread-moderate", AID2)


def _levels(wh, positions: dict, scale_out: list | None = None) -> None:
    with wh.engine.begin() as c:
        for _, (sym, *_rest) in positions.items():
            sid = f"20250717-{sym}-Spread-moderate"
            c.execute(schema.strategy_exit_levels.insert().values(
                strategy_id=sid, trade_date=D, profit_target=4000.0, stop_loss=1500.0, time_exit_dte=7,
                scale_out=json.dumps(scale_out if sym == "NIFTY" and scale_out else []), adjustments=json.dumps([])))
            c.execute(schema.strategy_parameters.insert().values(
                strategy_id=sid, trade_date=D, max_loss=4500.0, max_profit=10500.0, breakevens=json.dumps([])))


def _enter(wh, aid: str, positions: dict, scale_out: list | None = None) -> None:
    seed_allocation(wh, aid, positions)
    _levels(wh, positions, scale_out)
    plan = allocation_plan(wh, aid)
    px = paper_execution(session_quote_book(wh, D, plan.symbols), capital=1e6, start=NOW)
    report = execute_allocation(plan, px.broker, TradingStore(wh), px.config)
    assert {s.state for s in report.strategies} == {"OPEN"}


@contextlib.contextmanager
def _monitor(mon: RealtimeMonitor, seconds: float = 30.0):
    """The monitor running in a thread; stopped (its listener too) even when an assertion fails."""
    t = _running(mon, seconds)
    try:
        yield mon
    finally:
        mon.stop()
        t.join(10)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.db'}"
    return request.getfixturevalue("pg_url")


def _sensor_scale_out(url: str, as_of) -> dict:
    """Another process's cycle (the polling sensor) at quotes where NIFTY's P&L passes its 25% scale-out
    step: half of each leg is closed on a paper broker over those quotes."""
    frame = pl.DataFrame([dict(security_id="52001", bid=126.0, ask=126.5, ltp=126.2),
                          dict(security_id="52002", bid=59.5, ask=60.0, ltp=59.8)])
    wh2 = Warehouse(url, create=False)
    try:
        px = paper_execution(rest_book(frame), paper=PaperConfig(capital=1e6), start=as_of)
        carry_open_positions(px.broker, wh2)
        report = monitor_cycle(wh2, as_of=as_of, source="sensor", broker=px.broker, quotes=frame, spot=SPOT,
                               keys=[NIFTY], config=MonitorConfig(execution=px.config))
        return {i.intent_key: i.state for i in report.intents}
    finally:
        wh2.dispose()


def test_a_fill_by_another_process_reaches_the_cache_before_the_next_decision(url):
    """A stale cache would still hold NIFTY's 2 lots after the sensor's scale-out closed one, and the
    stop intent would store 150 shares a leg; the refreshed one stores the 75 left."""
    wh = Warehouse(url)
    _enter(wh, AID, POSITIONS, scale_out=[{"at_pct": 0.25, "pnl": 250.0, "close_fraction": 0.5}])
    clock = _clock()
    with StandInFeed(PRICES, seed=4, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="simulation", interval=0.05, poll_positions_every=3600.0,
                              clock=clock, spot=SPOT)
        with _monitor(mon):
            assert _wait(lambda: mon.stats.cycles >= 2, 10.0), mon.stats
            assert _sensor_scale_out(url, clock()) == {NIFTY + ":scale_out:25": "FILLED"}
            assert open_leg_quantities(wh, AID, "AL-NIFTY") == {1: 75, 2: -75}
            # the fill was noticed: the monitor's last completed load started after it
            assert _wait(lambda: mon.cache.version == trading_version(wh), 5.0), mon.stats
            feed.set_price("52001", 60.0)  # (60 - 120) x 75 = -4,500 (+ the scale-out's gain): beyond the 3,000 stop
            assert _wait(lambda: NIFTY + ":stop_loss:stop" in mon.stats.intent_at, 5.0), mon.stats
            assert _wait(lambda: mon.stats.exits_placed >= 2, 5.0), mon.stats
    stop = next(i for i in intents(wh) if i["intent_key"] == NIFTY + ":stop_loss:stop")
    assert stop["source"] == "realtime" and stop["state"] == "FILLED"
    assert sorted(abs(int(q["quantity"])) for q in stop["quantities"]) == [75, 75]
    assert open_leg_quantities(wh, AID, "AL-NIFTY") == {1: 0, 2: 0}
    e = schema.strategy_execution_status
    st = wh.read(sa.select(e.c.state).where(e.c.strategy_id == "20250717-NIFTY-Spread-moderate")).item()
    assert st == "CLOSED" and TCS in mon.keys and verify_audit(wh) is None
    wh.dispose()


def test_a_new_position_reaches_the_running_monitor_and_its_stop_fires(url):
    """Position polling set to an hour: on PostgreSQL the trading store's NOTIFY (no version check runs
    while the listener is up), on SQLite the per-step version check. A cache loaded once would never
    value the new strategy, and its stop would be missed."""
    wh = Warehouse(url)
    _enter(wh, AID, POSITIONS)
    pg = wh.dialect == "postgresql"
    with StandInFeed({**PRICES, "52005": 300.0, "52006": 200.0}, seed=5, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="simulation", interval=0.05, poll_positions_every=3600.0,
                              clock=_clock(), spot=SPOT)
        with _monitor(mon):
            assert _wait(lambda: mon.stats.cycles >= 1 and (mon.listening or not pg), 10.0), mon.stats
            assert _wait(lambda: feed.subscribed() == set(PRICES), 5.0) and BN not in mon.keys
            checks = mon.stats.version_checks
            with wh.engine.begin() as c:
                c.execute(schema.option_chain_data.delete())  # seed_allocation stores the new legs' quotes again
            other = Warehouse(url, create=False)  # another process's connection
            _enter(other, AID2, BN_LEGS)
            other.dispose()
            assert _wait(lambda: BN in mon.keys and {"52005", "52006"} <= feed.subscribed(), 5.0), mon.stats
            feed.set_price("52005", 100.0)  # (100 - 300) x 35 = -7,000: beyond the 1,500 stop
            assert _wait(lambda: BN + ":stop_loss:stop" in mon.stats.intent_at, 5.0), mon.stats
            assert _wait(lambda: mon.stats.exits_placed >= 2, 5.0), mon.stats
    if pg:
        assert mon.stats.notifications >= 1 and mon.stats.version_checks == checks  # NOTIFY, no polling
    else:
        assert mon.stats.version_checks > checks
    (i,) = intents(wh)
    assert i["intent_key"] == BN + ":stop_loss:stop" and i["state"] == "FILLED"
    wh.dispose()


def test_snapshots_are_written_on_their_cadence_not_per_tick(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'snap.db'}")
    _enter(wh, AID, POSITIONS)
    with StandInFeed(PRICES, seed=6, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="alert_only", interval=0.02, clock=_clock(), spot=SPOT,
                              snapshot_every=3600.0)
        with _monitor(mon):
            assert _wait(lambda: mon.stats.cycles >= 5, 10.0), mon.stats
            assert ms.snapshot_count(wh, source="realtime") == 0  # evaluated many times, nothing written yet
    # the last evaluation of each strategy is written when the monitor stops
    assert ms.snapshot_count(wh, source="realtime") == 2 and mon.stats.snapshot_flushes == 1
    state = ms.read_monitor_state(wh, [NIFTY, TCS])
    assert set(state) == {NIFTY, TCS} and all(s["last_pnl"] is not None for s in state.values())

    with StandInFeed(PRICES, seed=7, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="alert_only", interval=0.02, clock=_clock(), spot=SPOT,
                              snapshot_every=0.2)
        with _monitor(mon):
            assert _wait(lambda: mon.stats.snapshot_flushes >= 3, 10.0), mon.stats
            written = ms.snapshot_count(wh, source="realtime")
            assert written > 2  # flushed while running
    assert mon.stats.cycles > mon.stats.snapshot_flushes  # ticks evaluated between the writes
    assert intents(wh) == [] and verify_audit(wh) is None
    wh.dispose()


def test_the_trading_store_notifies_listeners_on_commit_only(pg_url):
    wh = Warehouse(pg_url)
    seed_allocation(wh, AID, POSITIONS)
    got: list = []
    listener = ChangeListener(wh.engine.url, got.append).start(wait=5.0)
    try:
        assert listener.connected and got == [None]  # a (re)connection counts as a change
        with pytest.raises(RuntimeError), wh.engine.begin() as c:
            notify(c, "rolled back")
            raise RuntimeError("the transaction fails")
        TradingStore(wh).start_strategy(StrategyStatus(AID, "AL-NIFTY", "20250717-NIFTY-Spread-moderate", "NIFTY",
                                                       "paper", StrategyState.PENDING))
        assert _wait(lambda: len(got) >= 2, 5.0), got
    finally:
        listener.stop()
    assert got == [None, f"strategy {AID} AL-NIFTY PENDING"]  # (in order: a rolled-back NOTIFY would come first)
    wh.dispose()


def test_a_filled_exit_is_not_reopened_from_a_stale_list_of_open_strategies(tmp_path):
    """The cache is loaded while the exit worker finishes an exit: the strategy was read as open, its
    EXIT_ALL intent is read FILLED a moment later. Only positions still open (read now) reopen it; the
    flat strategy's intent stays FILLED (reopened as PARTIAL it would be driven again for nothing)."""
    wh = Warehouse(f"sqlite:///{tmp_path / 'reopen.db'}")
    _enter(wh, AID, POSITIONS)
    as_of = _clock()()
    frame = pl.DataFrame([dict(security_id="52001", bid=80.0, ask=80.5, ltp=80.2),
                          dict(security_id="52002", bid=59.5, ask=60.0, ltp=59.8)])
    px = paper_execution(rest_book(frame), paper=PaperConfig(capital=1e6), start=as_of)
    carry_open_positions(px.broker, wh)
    report = monitor_cycle(wh, as_of=as_of, source="sensor", broker=px.broker, quotes=frame, spot=SPOT,
                           keys=[NIFTY], config=MonitorConfig(execution=px.config))
    assert [(i.intent_key, i.state) for i in report.intents] == [(NIFTY + ":stop_loss:stop", "FILLED")]
    assert open_leg_quantities(wh, AID, "AL-NIFTY") == {1: 0, 2: 0}
    cycle = _Cycle(wh, as_of.date(), as_of, "simulation", "realtime", MonitorConfig(), load_exit_rules())
    ctx = cycle.load_context([NIFTY, TCS])  # NIFTY from a list read before its exit finished
    assert ctx.stored[NIFTY + ":stop_loss:stop"]["state"] == "FILLED"
    assert ms.get_intent(wh, NIFTY + ":stop_loss:stop")["state"] == "FILLED"
    wh.dispose()


def test_the_monitor_keeps_running_once_nothing_is_open(tmp_path):
    """Its last position exited, the next load finds no open leg (an empty frame without columns):
    nothing to subscribe, nothing to evaluate -- not a crash of the service."""
    wh = Warehouse(f"sqlite:///{tmp_path / 'empty.db'}")
    mon = RealtimeMonitor(wh, _NoFeed, mode="simulation", clock=_clock(), spot=SPOT)
    assert mon.refresh_positions() == [] and mon.keys == set() and mon.evaluate([NIFTY]) is None
    _enter(wh, AID, POSITIONS)
    assert mon.refresh_positions() == sorted([NIFTY, TCS])
    wh.dispose()
