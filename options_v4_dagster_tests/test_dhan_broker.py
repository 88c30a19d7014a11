"""DhanBroker with the real dhanhq SDK against the local Dhan order stand-in: every Broker method, the
typed errors of each fault (the exactly-once distinctions), status normalization, the order feeds,
the cross-process order-rate limit, and the executor placing an allocation through DhanBroker.
Every test asserts that the stand-in recorded no correlation id twice."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from options_v4_dagster.market.dhan_client import DhanClient
from options_v4_dagster.trading.broker import (
    BrokerRateLimited,
    BrokerUnavailable,
    OrderNotFound,
    OrderRejected,
    OutcomeUnknown,
)
from options_v4_dagster.trading.dhan_broker import DhanBroker
from options_v4_dagster.trading.dhan_order_feed import DhanOrderStream, PollingOrderFeed
from options_v4_dagster.trading.dhan_rows import normalize_status, order_update_from_message
from options_v4_dagster.trading.order_limiter import OrderRateLimiter
from options_v4_dagster.trading.orders import OrderRequest, OrderStatus, OrderType, Side

from .dhan_order_standin import DhanOrderStandIn, max_in_window

S = OrderStatus
EXPIRY = dt.date(2025, 7, 31)


def req(cid: str, sid: str = "40001", side: Side = Side.BUY, qty: int = 75, price: float = 120.0, **kw) -> OrderRequest:
    return OrderRequest(cid, sid, "NIFTY", EXPIRY, 25000.0, "CE", side, qty, price, lot_size=75, **kw)


def make_broker(standin, tmp_path, **client_kw) -> DhanBroker:
    kw = dict(timeout=0.5, connect_timeout=0.5, backoff=0.01, backoff_max=0.05, rate_limit_backoff=0.01,
              circuit_failures=50)
    client = DhanClient(standin.client_id, standin.access_token, base_url=standin.base_url, **{**kw, **client_kw})
    return DhanBroker(client, OrderRateLimiter(tmp_path / "orders.sqlite", max_wait=5))


@pytest.fixture()
def standin():
    with DhanOrderStandIn() as s:
        yield s
        s.assert_no_key_twice()


@pytest.fixture()
def broker(standin, tmp_path):
    b = make_broker(standin, tmp_path)
    yield b
    b.close()


def posts(standin) -> int:
    return len([r for r in standin.calls("/v2/orders") if r.method == "POST"])


# -- each method ----------------------------------------------------------------------------------

def test_place_read_trades_positions_funds_margin(standin, broker):
    bo = broker.place(req("e1-1-1-0-0"))
    assert (bo.status, bo.filled_quantity, bo.average_price) == (S.TRADED, 75, 120.0)
    sent = standin.calls("/v2/orders")[0].body
    assert sent["correlationId"] == "e1-1-1-0-0" and sent["orderType"] == "LIMIT" and sent["quantity"] == 75
    assert broker.order(bo.order_id) == broker.order_by_correlation_id("e1-1-1-0-0")
    assert broker.order_by_correlation_id("e1-9-9-0-0") is None
    with pytest.raises(OrderNotFound):
        broker.order("999")
    sell = broker.place(req("e1-1-2-0-0", "40002", Side.SELL, 150, 60.0))
    assert [o.correlation_id for o in broker.orders()] == ["e1-1-1-0-0", "e1-1-2-0-0"]
    fills = broker.trades()
    assert [(f.order_id, f.correlation_id, f.quantity, f.price) for f in fills] == [
        (bo.order_id, "e1-1-1-0-0", 75, 120.0), (sell.order_id, "e1-1-2-0-0", 150, 60.0)]
    assert [f.order_id for f in broker.trades(sell.order_id)] == [sell.order_id]
    pos = {p.security_id: p for p in broker.positions()}
    assert pos["40001"].net_quantity == 75 and pos["40002"].net_quantity == -150 and pos["40002"].sell_average == 60
    funds = broker.funds()  # read from Dhan's "availabelBalance"
    assert funds.available == 5_000_000 - 75 * 120 and funds.used_margin == 9000 and funds.total == 5_000_000
    m = broker.margin([req("x", "40001"), req("y", "40002", Side.SELL, 75, 60.0)])
    span = 75 * 120 + 5 * 75 * 60
    assert m.span == span and m.hedge_benefit == pytest.approx(0.3 * span)
    assert m.total == pytest.approx(span + 20 * 75 - 0.3 * span) and "multi" in m.details["model"]
    assert standin.calls("/v2/margincalculator/multi")[0].body["scripList"][1]["transactionType"] == "SELL"


def test_market_order_is_sent_as_market_without_price(standin, broker):
    standin.script("40001", price=121.5)
    bo = broker.place(req("e1-1-1-0-0", order_type=OrderType.MARKET))
    assert standin.calls("/v2/orders")[0].body["orderType"] == "MARKET"
    assert bo.status is S.TRADED and bo.average_price == 121.5


def test_modify_is_the_total_quantity_cancel_and_the_modification_cap(standin, broker):
    standin.script("40002", "never")
    bo = broker.place(req("e1-1-2-0-0", "40002", Side.SELL, 150, 60.0))
    assert bo.status is S.PENDING and bo.filled_quantity == 0
    m = broker.modify(bo.order_id, price=59.5)
    assert (m.price, m.quantity, m.status) == (59.5, 150, S.PENDING)
    m = broker.modify(bo.order_id, price=59.0, quantity=225)
    assert standin.calls(f"/v2/orders/{bo.order_id}")[-2].body["quantity"] == 225 and m.quantity == 225
    broker.max_modifications = 2
    with pytest.raises(OrderRejected, match="modified 2 times"):
        broker.modify(bo.order_id, price=58.0)
    assert len([r for r in standin.calls(f"/v2/orders/{bo.order_id}") if r.method == "PUT"]) == 2
    c = broker.cancel(bo.order_id)
    assert c.status is S.CANCELLED
    with pytest.raises(OrderRejected) as exc:
        broker.cancel(bo.order_id)
    assert exc.value.code == "DH-906"


def test_partial_fills_then_traded_with_a_weighted_average(standin, broker):
    standin.script("40001", "steps", steps=[(50, 120.0), (50, 121.0), (50, 122.0)])
    bo = broker.place(req("e1-1-1-0-0", qty=150))  # answered PART_TRADED: the broker read the row (a step)
    assert (bo.status, bo.filled_quantity, bo.average_price) == (S.PART_TRADED, 100, 120.5)
    seen = [broker.order(bo.order_id) for _ in range(2)]
    assert [(o.status, o.filled_quantity) for o in seen] == [(S.TRADED, 150)] * 2
    assert seen[-1].average_price == pytest.approx(121.0)
    assert sum(f.quantity for f in broker.trades(bo.order_id)) == 150


def test_exchange_rejection_carries_the_oms_code(standin, broker):
    standin.script("40001", "reject", code="RS-9005", message="Quantity is not a multiple of the lot size")
    bo = broker.place(req("e1-1-1-0-0"))
    assert bo.status is S.REJECTED and bo.error_code == "RS-9005" and "lot size" in bo.reason
    assert standin.placed_per_correlation_id["e1-1-1-0-0"] == 1


# -- faults → typed errors --------------------------------------------------------------------------

@pytest.mark.parametrize("fault, error, code", [
    (lambda s: s.inject_rate_limit("/v2/orders"), BrokerRateLimited, "DH-904"),
    (lambda s: s.inject_server_error("/v2/orders", status=503), OutcomeUnknown, None),
    (lambda s: s.inject_failure("/v2/orders", code="DH-906", error_type="Order_Error",
                                message="Insufficient funds"), OrderRejected, "DH-906"),
    (lambda s: s.inject_failure("/v2/orders", status=401, code="DH-901", error_type="Invalid_Authentication",
                                message="token expired"), OrderRejected, "DH-901"),
])
def test_each_fault_on_place_is_one_request_and_its_typed_error(standin, broker, fault, error, code):
    fault(standin)
    with pytest.raises(error) as exc:
        broker.place(req("e1-1-1-0-0"))
    assert exc.value.code == code and exc.value.correlation_id == "e1-1-1-0-0"
    assert posts(standin) == 1  # never retried inside the broker
    assert standin.placed_per_correlation_id["e1-1-1-0-0"] == 0
    assert broker.order_by_correlation_id("e1-1-1-0-0") is None


@pytest.mark.parametrize("after", [dict(delay=1.5), dict(status=502)])
def test_accepted_then_timeout_or_5xx_is_outcome_unknown_and_found_by_correlation_id(standin, broker, after):
    standin.inject_after_accept(**after)
    with pytest.raises(OutcomeUnknown) as exc:
        broker.place(req("e1-1-1-0-0"))
    if "delay" in after:
        assert "timed out" in str(exc.value)
    found = broker.order_by_correlation_id("e1-1-1-0-0")
    assert found is not None and found.status is S.TRADED and found.filled_quantity == 75
    assert posts(standin) == 1 and standin.placed_per_correlation_id["e1-1-1-0-0"] == 1


def test_a_place_whose_timeout_opens_the_circuit_is_still_outcome_unknown(standin, tmp_path):
    b = make_broker(standin, tmp_path, circuit_failures=1)
    standin.inject_after_accept(delay=1.5)
    with pytest.raises(OutcomeUnknown):
        b.place(req("e1-1-1-0-0"))
    with pytest.raises(BrokerUnavailable, match="circuit open"):  # now nothing is sent
        b.place(req("e1-1-2-0-0"))
    assert posts(standin) == 1 and standin.placed_per_correlation_id["e1-1-1-0-0"] == 1
    b.close()


def test_connection_refused_is_unavailable_nothing_sent(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    client = DhanClient("1", "t", base_url=f"http://127.0.0.1:{port}", timeout=0.5, backoff=0.01, max_attempts=2)
    b = DhanBroker(client, OrderRateLimiter(tmp_path / "o.sqlite"))
    with pytest.raises(BrokerUnavailable, match="not sent"):
        b.place(req("e1-1-1-0-0"))
    with pytest.raises(BrokerUnavailable):
        b.order_by_correlation_id("e1-1-1-0-0")
    assert client.attempts == 1 + 2  # place once; the read retried
    b.close()


def test_reads_retry_transient_failures(standin, broker):
    broker.place(req("e1-1-1-0-0"))
    standin.inject_server_error("/v2/orders/external/*", times=2)
    assert broker.order_by_correlation_id("e1-1-1-0-0").status is S.TRADED
    standin.inject_rate_limit("/v2/fundlimit", times=None)
    with pytest.raises(BrokerRateLimited):
        broker.funds()


# -- normalization ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, qty, filled, want", [
    ("TRANSIT", 75, 0, S.TRANSIT), ("Pending", 75, 0, S.PENDING), ("pending", 75, 25, S.PART_TRADED),
    ("Part_Traded", 75, 25, S.PART_TRADED), ("PARTIALLY FILLED", 75, 25, S.PART_TRADED),
    ("Traded", 75, 75, S.TRADED), ("COMPLETE", 75, 75, S.TRADED), ("Cancelled", 75, 0, S.CANCELLED),
    ("canceled", 75, 0, S.CANCELLED), ("REJECTED", 75, 0, S.REJECTED), ("Expired", 75, 0, S.EXPIRED),
    ("TRIGGERED", 75, 0, S.PENDING), ("something new", 75, 0, S.PENDING), ("something new", 75, 75, S.TRADED),
])
def test_status_normalization(raw, qty, filled, want):
    assert normalize_status(raw, quantity=qty, filled=filled) is want


def test_order_update_message_normalization():
    up = order_update_from_message({"Type": "order_alert", "Data": {
        "orderNo": "52", "CorrelationId": "e1-1-1-0-0", "txnType": "s", "Status": "Part_Traded", "Quantity": "150",
        "TradedQty": 75, "AvgTradedPrice": "60.5", "LastUpdatedTime": "2025-07-17 10:30:01"}})
    assert (up.order_id, up.side, up.status, up.quantity, up.filled_quantity, up.average_price) == (
        "52", Side.SELL, S.PART_TRADED, 150, 75, 60.5)
    assert up.updated_at.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert order_update_from_message({"Type": "heartbeat"}) is None


# -- following fills ---------------------------------------------------------------------------------

def test_polling_feed_follows_partial_fills_to_traded(standin, broker):
    standin.script("40001", "steps", steps=[(75, 120.0), (75, 121.0)])
    broker.place(req("e1-1-1-0-0", qty=150))
    seen = []
    feed = PollingOrderFeed(broker, ["e1-1-1-0-0"], interval=0.0, on_update=seen.append)
    last = feed.follow(timeout=5)
    assert [(u.status, u.filled_quantity) for u in seen][-1] == (S.TRADED, 150)
    assert last["e1-1-1-0-0"].average_price == pytest.approx(120.5)
    assert feed.poll() == []  # terminal: not asked again


def _wait(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_order_update_websocket_normalizes_and_reconnects(standin, broker, capfd):
    url = standin.start_order_feed()
    stream = DhanOrderStream.from_client(broker.client, url=url, reconnect_delay=0.05).start()
    try:
        assert stream.connected.wait(5)
        _wait(lambda: standin.feed_clients() == 1)
        broker.place(req("e1-1-1-0-0"))
        _wait(lambda: any(u.status is S.TRADED for u in stream.updates))
        assert [u.status for u in stream.updates] == [S.TRANSIT, S.PENDING, S.TRADED]
        assert stream.updates[-1].side is Side.BUY and stream.updates[-1].correlation_id == "e1-1-1-0-0"
        stream.connected.clear()
        standin.drop_feed_connections()
        assert stream.connected.wait(5) and stream.connections == 2
        _wait(lambda: standin.feed_clients() == 1)
        broker.place(req("e1-1-2-0-0", "40002", Side.SELL, 75, 60.0))
        _wait(lambda: any(u.correlation_id == "e1-1-2-0-0" and u.status is S.TRADED for u in stream.updates))
        assert stream.updates[-1].side is Side.SELL
    finally:
        stream.stop()
    out, err = capfd.readouterr()
    assert standin.access_token not in out + err  # the SDK's own connect prints it; ours does not


# -- the shared order-rate limit ---------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import datetime as dt, sys
    from options_v4_dagster.market.dhan_client import DhanClient
    from options_v4_dagster.trading.dhan_broker import DhanBroker
    from options_v4_dagster.trading.order_limiter import OrderRateLimiter
    from options_v4_dagster.trading.orders import OrderRequest, Side
    base, token, tag = sys.argv[1:4]
    client = DhanClient("1000000001", token, base_url=base)
    print("ready", flush=True)
    for line in sys.stdin:  # one phase a line: "<limiter path> <orders>"
        path, n = line.split()
        b = DhanBroker(client, OrderRateLimiter(path, max_wait=30))
        for i in range(int(n)):
            b.place(OrderRequest(f"p{tag}-{path[-9:-7]}-{i}", "40001", "NIFTY", dt.date(2025, 7, 31), 25000.0, "CE",
                                 Side.BUY, 75, 120.0))
        b.limiter.close()
        print("done", flush=True)
""")


def test_two_processes_share_the_order_rate_limit(standin, tmp_path):
    """Two processes placing 15 orders each: through one limiter file the combined arrivals at the
    stand-in never exceed 10 in any second; the control, each with its own file, exceeds it (each
    process alone keeps 10/s: only the shared file keeps the pair within the limit)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, standin.base_url, standin.access_token, tag], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for tag in "ab"]
    try:
        assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]

        def phase(paths, n=15) -> list[float]:
            before = len(standin.order_request_times())
            for p, path in zip(procs, paths, strict=True):
                p.stdin.write(f"{path} {n}\n")
                p.stdin.flush()
            assert [p.stdout.readline().strip() for p in procs] == ["done", "done"]
            return standin.order_request_times()[before:]

        shared = phase([tmp_path / "s1.sqlite"] * 2)
        assert len(shared) == 30 and max_in_window(shared, 1.0) <= 10
        assert max(shared) - min(shared) >= 2.0  # 30 orders at <= 10/s: at least two full waits
        control = phase([tmp_path / "a2.sqlite", tmp_path / "b2.sqlite"])
        assert len(control) == 30 and max_in_window(control, 1.0) > 10
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=30)
    assert sum(standin.placed_per_correlation_id.values()) == 60


# -- the executor through DhanBroker -----------------------------------------------------------------

def test_execute_allocation_through_dhan_places_every_key_once(standin, broker, tmp_path):
    """A hand-made two-position allocation executed with DhanBroker against the stand-in: the first
    order request is refused with 429 (DH-904), its resend is accepted and its answer lost (read
    timeout), the NIFTY sell fills in two parts. Every correlation id is placed exactly once, every
    position OPEN, and a second execution sends nothing."""
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.trading import TradingStore
    from options_v4_dagster.store.trading_queries import allocation_plan
    from options_v4_dagster.trading.clock import ManualClock
    from options_v4_dagster.trading.execution import ExecutionConfig, execute_allocation
    from options_v4_dagster.trading.orders import entry_correlation_id

    from .trading_seed import seed_allocation

    aid = "d" * 64
    wh = Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        seed_allocation(wh, aid)
        clock = ManualClock(dt.datetime(2025, 7, 17, 5, 0, tzinfo=dt.UTC))  # 10:30 IST; moves only when slept on
        cfg = ExecutionConfig(fill_timeout=5, poll_interval=1, unknown_grace=10, max_reprices=3, clock=clock,
                              sleep=clock.advance)
        standin.script("N25200CE", "steps", steps=[(75, 60.0), (75, 60.0)])  # the NIFTY sell fills in two parts
        standin.inject_rate_limit("/v2/orders", times=1)  # the first request: 429, nothing placed
        standin.inject_after_accept(delay=1.0)  # the first accepted order (the same key): answer lost
        plan = allocation_plan(wh, aid)
        store = TradingStore(wh)
        rep = execute_allocation(plan, broker, store, cfg)
        cids = [entry_correlation_id(aid, n, leg) for n in (1, 2) for leg in (1, 2)]
        assert {c: standin.placed_per_correlation_id[c] for c in cids} == dict.fromkeys(cids, 1)
        assert posts(standin) == 5  # 4 orders + the one refused with 429, never a second send of a key
        assert [s.state for s in rep.strategies] == ["OPEN", "OPEN"] and rep.orders_placed == 3
        first = store.order(cids[0])
        moves = [e["to_status"] for e in store.events(cids[0]) if e["to_status"]]
        assert moves == ["INITIALIZED", "SUBMITTED", "UNKNOWN", "TRADED"] and first.broker_order_id
        legs = [leg for s in rep.strategies for leg in s.legs]
        assert all(leg.filled_quantity == leg.quantity and leg.average_price > 0 for leg in legs)
        requests = len(standin.requests)
        again = execute_allocation(plan, broker, store, cfg)
        assert again.orders_placed == 0 and again.nothing_to_do and len(standin.requests) == requests
    finally:
        wh.dispose()


# -- the limiter's windows (fake clock) ---------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_limiter_windows_and_max_wait(tmp_path):
    clock = _Clock()
    lim = OrderRateLimiter(tmp_path / "l.sqlite", rates=((3, 1000), (5, 60_000)), max_wait=100, clock=clock,
                           sleep=clock.sleep)
    sent = []
    for i in range(5):
        with lim.slot(f"c{i}"):
            sent.append(clock.t)
    assert sent[2] == sent[0] and sent[3] - sent[0] >= 1.0  # the 4th waited for the 1st to leave the second
    other = OrderRateLimiter(tmp_path / "l.sqlite", rates=((3, 1000), (5, 60_000)), max_wait=2, clock=clock,
                             sleep=clock.sleep)  # another process, same file: the minute's 5 are used
    with pytest.raises(BrokerRateLimited, match="no order slot within 2 s"):
        with other.slot("c5"):
            pass
    assert lim.count() == 5 and lim.waited[3] >= 1.0
    lim.close()
    other.close()


def test_limiter_counts_a_slot_until_its_answer_and_a_dead_one_until_stale(tmp_path):
    clock = _Clock()
    lim = OrderRateLimiter(tmp_path / "l.sqlite", rates=((1, 1000),), max_wait=10, inflight_timeout=5, clock=clock,
                           sleep=clock.sleep)
    t0 = clock.t
    with lim.slot("slow"):
        clock.t += 0.7  # the answer takes 0.7 s: Dhan may have seen it as late as that
    with lim.slot("next"):
        assert clock.t - t0 >= 1.7 - 1e-6
    t1 = clock.t
    lim._take("crashed")  # taken, never released (a process that died mid-request)
    with lim.slot("after"):
        assert clock.t - t1 >= 6.0 - 1e-6  # in flight until inflight_timeout (5 s), then 1 s window
    lim.close()


def test_from_env_shares_the_limiter_file_in_the_home_dir(standin, tmp_path, monkeypatch):
    for k, v in standin.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OPTIONS_V4_HOME", str(tmp_path / "home"))
    b = DhanBroker.from_env()
    assert b.limiter.path == tmp_path / "home" / "dhan_order_limiter.sqlite" and standin.access_token not in repr(b)
    assert b.place(req("e1-1-1-0-0")).status is S.TRADED and b.limiter.count() == 1
    b.close()
    monkeypatch.setenv("DHAN_ORDER_LIMITER_PATH", str(tmp_path / "elsewhere.sqlite"))
    b = DhanBroker.from_env()
    assert b.limiter.path == tmp_path / "elsewhere.sqlite"
    b.close()
