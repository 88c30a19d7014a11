"""The real-time monitor against the stand-in feed (``trading_seed`` positions with exchange-like
numeric security ids, entered on paper on 2025-07-17, watched as of 2025-07-18): a tick that crosses
the stop writes the exit intent and fills the exit orders within a second; a dropped connection is
detected, reconnected and resubscribed while REST quotes keep the evaluation going; a position
entered while the monitor runs is subscribed without a restart; the monitor and the polling cycle
racing on one intent place one exit order set."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.store import Warehouse, schema
from options_v4_dagster.store.audit import audit_rows, verify_audit
from options_v4_dagster.store.monitoring import intents, strategy_key
from options_v4_dagster.store.trading import TradingStore
from options_v4_dagster.store.trading_queries import allocation_plan, orders_frame, session_quote_book
from options_v4_dagster.trading.execution import execute_allocation
from options_v4_dagster.trading.feed import MarketFeedClient
from options_v4_dagster.trading.feed.standin import StandInFeed
from options_v4_dagster.trading.monitor import default_as_of, monitor_cycle
from options_v4_dagster.trading.realtime import RealtimeMonitor
from options_v4_dagster.trading.replay import paper_execution

from .trading_seed import NOW, D, chain_row, seed_allocation

AID, AID2 = "a" * 64, "b" * 64
NIFTY = strategy_key("20250717-NIFTY-Spread-moderate", AID)
TCS = strategy_key("20250717-TCS-Spread-moderate", AID)
PRICES = {"52001": 120.0, "52002": 60.0, "52003": 40.0, "52004": 15.0}
SPOT = {"NIFTY": 25100.0, "TCS": 3350.0, "BANKNIFTY": 56000.0}
D2 = dt.date(2025, 7, 18)
T0 = dt.datetime(2025, 7, 18, 5, 0, tzinfo=dt.UTC)
POSITIONS = {
    "AL-NIFTY": ("NIFTY", 2, 75, [("BUY", "CE", 25000.0, 120.0, "52001"), ("SELL", "CE", 25200.0, 60.0, "52002")]),
    "AL-TCS": ("TCS", 1, 175, [("BUY", "PE", 3400.0, 40.0, "52003"), ("SELL", "PE", 3300.0, 15.0, "52004")]),
}


def _enter(wh, aid: str, positions: dict, levels: bool = True) -> None:
    seed_allocation(wh, aid, positions)
    if levels:
        with wh.engine.begin() as c:
            for _, (sym, *_rest) in positions.items():
                sid = f"20250717-{sym}-Spread-moderate"
                c.execute(schema.strategy_exit_levels.insert().values(
                    strategy_id=sid, trade_date=D, profit_target=2000.0, stop_loss=1500.0, time_exit_dte=7,
                    scale_out=json.dumps([]), adjustments=json.dumps([])))
                c.execute(schema.strategy_parameters.insert().values(
                    strategy_id=sid, trade_date=D, max_loss=4500.0, max_profit=10500.0, breakevens=json.dumps([])))
    plan = allocation_plan(wh, aid)
    px = paper_execution(session_quote_book(wh, D, plan.symbols), capital=1e6, start=NOW)
    report = execute_allocation(plan, px.broker, TradingStore(wh), px.config)
    assert {s.state for s in report.strategies} == {"OPEN"}


def _setup(url: str) -> Warehouse:
    wh = Warehouse(url)
    _enter(wh, AID, POSITIONS)
    return wh


@pytest.fixture()
def wh(tmp_path):
    w = _setup(f"sqlite:///{tmp_path / 'w.db'}")
    yield w
    w.dispose()


def _clock():
    start = time.monotonic()
    return lambda: T0 + dt.timedelta(seconds=time.monotonic() - start)


def _factory(feed: StandInFeed, **kw):
    def make(**cb):
        return MarketFeedClient("1000", "tok", base_url=feed.url, **{**cb, **kw})
    return make


def _standin_rest(feed: StandInFeed, override: dict | None = None):
    """REST quotes from the stand-in's last prices (``override``: sid -> (bid, ask))."""
    calls: list[float] = []

    def rest(ids):
        calls.append(time.monotonic())
        rows = []
        for s in ids:
            st = feed.market.states.get(s)
            px = st.price if st else PRICES.get(s, 100.0)
            bid, ask = (override or {}).get(s, (px - 0.1, px + 0.1))
            rows.append(dict(security_id=s, bid=bid, ask=ask, ltp=(bid + ask) / 2, bid_qty=5000, ask_qty=5000))
        return pl.DataFrame(rows)
    rest.calls = calls
    return rest


def _wait(cond, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _exit_orders(wh) -> pl.DataFrame:
    return orders_frame(wh).filter(pl.col("purpose") == "exit")


def _running(mon: RealtimeMonitor, seconds: float) -> threading.Thread:
    t = threading.Thread(target=mon.run, kwargs={"until": time.monotonic() + seconds}, daemon=True)
    t.start()
    return t


def test_a_tick_crossing_the_stop_writes_the_intent_and_exits_at_once(wh):
    with StandInFeed(PRICES, seed=1, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="simulation", interval=0.05, clock=_clock(), spot=SPOT)
        t = _running(mon, 15.0)
        assert _wait(lambda: mon.stats.cycles >= 2, 10.0), mon.stats  # evaluations of held positions
        assert intents(wh) == [] and feed.subscribed() == set(PRICES)
        crossed = time.perf_counter()
        feed.set_price("52001", 80.0)  # (80 - 120 - ~0.2) x 150 = -6,000: beyond the 3,000 stop
        assert _wait(lambda: NIFTY + ":stop_loss:stop" in mon.stats.intent_at, 5.0), mon.stats
        assert mon.stats.intent_at[NIFTY + ":stop_loss:stop"] - crossed < 1.0
        assert _wait(lambda: mon.stats.exits_placed >= 2, 5.0)
        mon.stop()
        t.join(10)
    (i,) = intents(wh)
    assert i["intent_key"] == NIFTY + ":stop_loss:stop" and i["source"] == "realtime" and i["state"] == "FILLED"
    exits = _exit_orders(wh)
    assert exits.height == 2 and set(exits["status"]) == {"TRADED"}
    assert TCS in mon.keys and NIFTY not in mon.keys  # the closed strategy is no longer watched
    kinds = audit_rows(wh)["kind"].to_list()
    assert "feed_connect" in kinds and "realtime_start" in kinds and verify_audit(wh) is None


def test_a_dropped_feed_reconnects_resubscribes_and_rest_quotes_keep_evaluating(wh):
    with StandInFeed(PRICES, seed=2, rate=200, sigma=0.05) as feed:
        crash: dict = {}
        rest = _standin_rest(feed, override=crash)
        mon = RealtimeMonitor(wh, _factory(feed, reconnect_delay=2.0), mode="simulation", interval=0.05,
                              rest_quotes=rest, clock=_clock(), spot=SPOT)
        t = _running(mon, 20.0)
        assert _wait(lambda: mon.stats.cycles >= 2 and mon.feed_up, 10.0)
        assert intents(wh) == []
        calls = len(rest.calls)  # (REST covers the start, before the first connect)
        time.sleep(0.3)
        assert len(rest.calls) == calls  # the feed is up: no REST
        crash["52001"] = (80.0, 80.5)  # REST shows the crash the feed misses while it is down
        feed.drop()
        assert _wait(lambda: not mon.feed_up, 2.0)
        assert _wait(lambda: NIFTY + ":stop_loss:stop" in mon.stats.intent_at, 3.0), mon.stats
        assert mon.stats.rest_cycles >= 1 and len(rest.calls) > calls
        assert all(b - a >= 0.99 for a, b in zip(rest.calls, rest.calls[1:], strict=False))  # <= 1 request/s
        assert _wait(lambda: mon.feed_up and feed.connections_total >= 2, 10.0)  # reconnected
        assert _wait(lambda: {r.connection for r in feed.subscribe_log} >= {1, 2}, 3.0)
        resub = {s for r in feed.subscribe_log if r.connection == max(r.connection for r in feed.subscribe_log)
                 for _seg, s in r.instruments}
        mon.stop()
        t.join(10)
    assert {"52003", "52004"} <= resub  # the open legs subscribed again on the new connection
    (i,) = intents(wh)
    assert i["state"] == "FILLED" and _exit_orders(wh).height == 2
    kinds = audit_rows(wh)["kind"].to_list()
    assert kinds.count("feed_connect") >= 2 and "feed_disconnect" in kinds


def test_a_new_position_is_subscribed_without_a_restart(wh):
    with StandInFeed({**PRICES, "52005": 300.0, "52006": 200.0}, seed=3, rate=200, sigma=0.05) as feed:
        mon = RealtimeMonitor(wh, _factory(feed), mode="alert_only", interval=0.05, poll_positions_every=0.3,
                              clock=_clock(), spot=SPOT)
        t = _running(mon, 20.0)
        assert _wait(lambda: mon.stats.cycles >= 1, 10.0)
        assert feed.subscribed() == set(PRICES)
        with wh.engine.begin() as c:
            c.execute(schema.option_chain_data.delete())  # seed_allocation stores the new legs' quotes again
        _enter(wh, AID2, {"AL-BN": ("BANKNIFTY", 1, 35, [("BUY", "CE", 56000.0, 300.0, "52005"),
                                                          ("SELL", "CE", 56500.0, 200.0, "52006")])}, levels=False)
        bn = strategy_key("20250717-BANKNIFTY-Spread-moderate", AID2)
        assert _wait(lambda: bn in mon.keys and {"52005", "52006"} <= feed.subscribed(), 5.0)
        before = mon.stats.cycles
        assert _wait(lambda: mon.stats.cycles > before and mon.last_report is not None
                     and bn in {p.strategy_key for p in mon.last_report.positions}, 5.0)
        mon.stop()
        t.join(10)


class _NoFeed:
    """A feed that never connects (the monitor runs on REST quotes)."""

    fatal = None

    def __init__(self, **_):
        pass

    def subscribe(self, ids):
        return list(ids)

    def start(self):
        return self

    def stop(self):
        pass


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'race.db'}"
    return request.getfixturevalue("pg_url")


def test_the_realtime_monitor_and_the_polling_cycle_racing_on_one_intent_exit_once(url):
    wh = _setup(url)
    rows = []
    for sec, (sym, k, typ, lot, bid, ask) in {"52001": ("NIFTY", 25000.0, "CE", 75, 80.0, 81.0),
                                              "52002": ("NIFTY", 25200.0, "CE", 75, 62.0, 63.0),
                                              "52003": ("TCS", 3400.0, "PE", 175, 40.0, 41.0),
                                              "52004": ("TCS", 3300.0, "PE", 175, 14.0, 15.0)}.items():
        r = chain_row(sym, k, typ, "BUY", ask, sec, lot)
        r.update(trade_date=D2, bid=bid, ask=ask, ltp=(bid + ask) / 2, underlying_price=SPOT[sym],
                 snapshot_ts=dt.datetime.combine(D2, dt.time(10, 0), dt.UTC))
        rows.append(r)
    with wh.engine.begin() as c:
        c.execute(schema.option_chain_data.insert(), rows)
    whs = [Warehouse(url, create=False) for _ in range(2)]
    rest = lambda ids: pl.DataFrame([dict(security_id=r["security_id"], bid=r["bid"], ask=r["ask"], ltp=r["ltp"],  # noqa: E731
                                          bid_qty=5000, ask_qty=5000) for r in rows if r["security_id"] in ids])
    # one clock for both (as wall-clock processes share one): the intent lease is judged on the cycles' as_of
    as_of = default_as_of(D2)[1]
    mon = RealtimeMonitor(whs[0], _NoFeed, mode="simulation", rest_quotes=rest, clock=lambda: as_of, spot=SPOT)
    mon.refresh_positions()
    barrier, got = threading.Barrier(2), [None, None]

    def run(i):
        barrier.wait()
        try:
            got[i] = mon.evaluate([NIFTY, TCS]) if i == 0 else monitor_cycle(whs[1], D2, source="sensor")
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            got[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not [g for g in got if isinstance(g, Exception)], got
    exits = _exit_orders(wh)
    assert exits.height == 2 and exits["correlation_id"].n_unique() == 2 and set(exits["status"]) == {"TRADED"}
    assert sum(g.exits_placed for g in got) == 2
    (i,) = intents(wh)
    assert i["state"] == "FILLED"
    e = schema.strategy_execution_status
    st = wh.read(sa.select(e.c.state).where(e.c.strategy_id == "20250717-NIFTY-Spread-moderate")).item()
    assert st == "CLOSED" and verify_audit(wh) is None
    for w in (*whs, wh):
        w.dispose()


def test_cli_realtime_once_on_the_standin_feed_replays_a_session(tmp_path, monkeypatch, capsys):
    import argparse

    from options_v4_dagster.cli import realtime as cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    _setup(url).dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.delenv("DHAN_CLIENT_ID", raising=False)
    monkeypatch.delenv("DHAN_ACCESS_TOKEN", raising=False)
    ap = argparse.ArgumentParser()
    cli.register(ap.add_subparsers(dest="cmd"))
    args = ap.parse_args(["realtime", "--once", "--alert-only", "--date", "2025-07-18"])
    assert args.func is cli.cmd_realtime and args.feed is None
    assert cli.cmd_realtime(args) == 0
    out = capsys.readouterr().out
    assert "stand-in feed at ws://127.0.0.1:" in out and "one evaluation: 2 positions" in out
    wh = Warehouse(url, create=False)
    assert "feed_connect" in audit_rows(wh)["kind"].to_list() and intents(wh) == []
    wh.dispose()
    args = ap.parse_args(["realtime", "--once", "--execute", "--date", "2025-07-18"])
    assert cli.cmd_realtime(args) == 2  # live without OPTIONS_V4_LIVE and credentials: refused
