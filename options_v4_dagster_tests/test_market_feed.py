"""Dhan market feed v2: packets built with ``struct`` as Dhan documents them, LTT as IST wall-clock
epochs, subscription frames as the SDK sends them, and MarketFeedClient against the stand-in feed
(ticks, drops, stale periods, server disconnects, instruments added while running, no token in logs)."""

from __future__ import annotations

import asyncio
import calendar
import datetime as dt
import json
import logging
import struct
import time
from collections.abc import Callable

import pytest

from options_v4_dagster.calendar import IST
from options_v4_dagster.trading.feed import (
    FeedCapacityError,
    FeedQuoteBook,
    FrameError,
    MarketFeedClient,
    RequestCode,
    ltt_to_utc,
    parse_frame,
    subscription_messages,
)
from options_v4_dagster.trading.feed import packets as P
from options_v4_dagster.trading.feed.standin import SimulatedMarket, StandInFeed

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.SECRET-feed-token.xyz"
SIDS = {"52001": 120.0, "52002": 80.5}
# 2025-07-17 09:15:00 read on an Indian clock, counted from 1970-01-01 00:00 as Dhan sends it
LTT_0915 = calendar.timegm((2025, 7, 17, 9, 15, 0))
DEPTH = [(750 + i, 600 + i, 3 + i, 4 + i, 101.0 - i * 0.05, 101.5 + i * 0.05) for i in range(5)]


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


# -- packets ---------------------------------------------------------------------------------------
def test_ticker_packet():
    raw = struct.pack("<BHBIfI", 2, 16, 2, 52001, 123.45, LTT_0915)
    (t,) = parse_frame(raw, received_at=1.5)
    assert (t.kind, t.code, t.segment, t.security_id, t.ltp) == ("ticker", 2, 2, "52001", 123.45)
    assert t.ltt == dt.datetime(2025, 7, 17, 3, 45, tzinfo=dt.UTC) and t.received_at == 1.5
    assert t.bid is None and t.depth == () and t.volume is None
    assert P.pack_ticker("52001", 123.45, LTT_0915) == raw


def test_quote_packet():
    raw = struct.pack("<BHBIfHIfIIIffff", 4, 50, 2, 52002, 88.1, 75, LTT_0915 + 61, 87.95, 123_450, 6000, 7500,
                      85.0, 84.5, 90.25, 83.75)
    assert len(raw) == 50
    (t,) = parse_frame(raw)
    assert (t.kind, t.security_id, t.ltp, t.ltq, t.avg_price, t.volume) == ("quote", "52002", 88.1, 75, 87.95, 123_450)
    assert (t.total_sell_qty, t.total_buy_qty, t.open, t.close, t.high, t.low) == (6000, 7500, 85.0, 84.5, 90.25, 83.75)
    assert t.ltt == dt.datetime(2025, 7, 17, 3, 46, 1, tzinfo=dt.UTC)
    assert P.pack_quote(52002, 88.1, LTT_0915 + 61, ltq=75, avg_price=87.95, volume=123_450, total_sell_qty=6000,
                        total_buy_qty=7500, open=85.0, close=84.5, high=90.25, low=83.75) == raw


def test_oi_prev_close_status_and_disconnect_packets():
    oi = struct.pack("<BHBII", 5, 12, 2, 52001, 1_234_500)
    pc = struct.pack("<BHBIfI", 6, 16, 2, 52001, 118.35, 1_200_000)
    st = struct.pack("<BHBI", 7, 8, 2, 0)
    dc = struct.pack("<BHBIH", 50, 10, 0, 0, 807)
    a, b, c, d = (parse_frame(x)[0] for x in (oi, pc, st, dc))
    assert (a.kind, a.oi, a.ltp) == ("oi", 1_234_500, None)
    assert (b.kind, b.prev_close, b.prev_oi) == ("prev_close", 118.35, 1_200_000)
    assert c.kind == "status" and c.ltp is None
    assert (d.kind, d.disconnect_code, d.disconnect_reason) == ("disconnect", 807, "access token expired")
    assert (P.pack_oi(52001, 1_234_500), P.pack_prev_close(52001, 118.35, 1_200_000), P.pack_status(),
            P.pack_disconnect(807)) == (oi, pc, st, dc)


def test_full_packet_with_five_depth_levels():
    head = struct.pack("<BHBIfHIfIIIIIIffff", 8, 162, 2, 52001, 101.25, 150, LTT_0915 + 3600, 100.8, 987_650,
                       40_000, 45_000, 2_250_000, 2_400_000, 2_100_000, 98.0, 97.5, 104.0, 96.5)
    raw = head + b"".join(struct.pack("<IIHHff", *lvl) for lvl in DEPTH)
    assert len(raw) == 162
    (t,) = parse_frame(raw)
    assert (t.kind, t.ltp, t.ltq, t.volume, t.oi, t.oi_high, t.oi_low) == (
        "full", 101.25, 150, 987_650, 2_250_000, 2_400_000, 2_100_000)
    assert (t.open, t.close, t.high, t.low) == (98.0, 97.5, 104.0, 96.5)
    assert t.ltt == dt.datetime(2025, 7, 17, 4, 45, tzinfo=dt.UTC)
    assert len(t.depth) == 5
    assert [(d.bid_qty, d.ask_qty, d.bid_orders, d.ask_orders, d.bid, d.ask) for d in t.depth] == [
        (q1, q2, o1, o2, round(b, 2), round(a, 2)) for q1, q2, o1, o2, b, a in DEPTH]
    assert (t.bid, t.ask) == (101.0, 101.5)
    q = t.to_quote()
    assert (q.security_id, q.bid, q.ask, q.bid_qty, q.ask_qty, q.ltp, q.mid) == ("52001", 101.0, 101.5, 750, 600, 101.25, 101.25)
    levels = [P.DepthLevel(*lvl) for lvl in DEPTH]
    assert P.pack_full(52001, 101.25, LTT_0915 + 3600, levels, ltq=150, avg_price=100.8, volume=987_650,
                       total_sell_qty=40_000, total_buy_qty=45_000, oi=2_250_000, oi_high=2_400_000,
                       oi_low=2_100_000, open=98.0, close=97.5, high=104.0, low=96.5) == raw


def test_frames_with_several_packets_unknown_codes_and_truncation():
    ticker = struct.pack("<BHBIfI", 2, 16, 2, 52001, 10.5, LTT_0915)
    oi = struct.pack("<BHBII", 5, 12, 2, 52001, 999)
    unknown = struct.pack("<BHBI", 99, 12, 2, 52001) + b"\x00" * 4
    kinds = [t.kind for t in parse_frame(ticker + unknown + oi)]
    assert kinds == ["ticker", "code_99", "oi"]
    longer = struct.pack("<BHBIfI", 2, 20, 2, 52001, 10.5, LTT_0915) + b"\xff" * 4  # a field added later
    assert [(t.kind, t.ltp) for t in parse_frame(longer + oi)] == [("ticker", 10.5), ("oi", None)]
    with pytest.raises(FrameError):
        parse_frame(ticker[:12])
    with pytest.raises(FrameError):
        parse_frame(ticker + b"\x02\x10")
    with pytest.raises(FrameError):
        parse_frame(struct.pack("<BHBI", 99, 0, 2, 1))


def test_ltt_is_an_ist_wall_clock_epoch():
    t = ltt_to_utc(LTT_0915)
    assert t.tzinfo is not None and t.utcoffset() == dt.timedelta(0)
    assert t.astimezone(IST).replace(tzinfo=None) == dt.datetime(2025, 7, 17, 9, 15)
    assert t == dt.datetime(2025, 7, 17, 9, 15, tzinfo=IST)
    # the SDK formats it as UTC and so shows the IST wall clock (and loses the date)
    assert dt.datetime.fromtimestamp(LTT_0915, dt.UTC).strftime("%H:%M:%S") == "09:15:00"
    assert P.ist_epoch(t) == LTT_0915 and P.ist_epoch(dt.datetime(2025, 7, 17, 15, 30, tzinfo=IST)) == LTT_0915 + 22_500
    assert ltt_to_utc(0) is None
    with pytest.raises(ValueError):
        P.ist_epoch(dt.datetime(2025, 7, 17, 9, 15))


# -- subscriptions ---------------------------------------------------------------------------------
def test_subscription_batches_of_at_most_100():
    ids = [str(40_000 + i) for i in range(250)]
    msgs = [json.loads(m) for m in subscription_messages(ids + ids[:10], RequestCode.FULL)]
    assert [m["InstrumentCount"] for m in msgs] == [100, 100, 50]
    assert all(m["RequestCode"] == 21 and len(m["InstrumentList"]) == m["InstrumentCount"] for m in msgs)
    assert [i["SecurityId"] for m in msgs for i in m["InstrumentList"]] == ids
    assert {i["ExchangeSegment"] for m in msgs for i in m["InstrumentList"]} == {"NSE_FNO"}
    assert json.loads(subscription_messages([(1, 2885)], 16)[0]) == {
        "RequestCode": 16, "InstrumentCount": 1, "InstrumentList": [{"ExchangeSegment": "NSE_EQ", "SecurityId": "2885"}]}
    for bad in ([("NSE_XX", "1")], [(6, "1")], [("NSE_FNO", "ABC")]):
        with pytest.raises(ValueError):
            subscription_messages(bad)
    with pytest.raises(ValueError):
        subscription_messages(["1"], 19)


class _Ctx:
    def get_client_id(self):
        return "1000"

    def get_access_token(self):
        return TOKEN


class _Sink:
    def __init__(self):
        self.sent = []

    async def send(self, m):
        self.sent.append(m)


def test_subscription_frames_match_what_the_sdk_sends():
    from dhanhq import MarketFeed

    ids = [str(50_000 + i) for i in range(130)]
    sdk = MarketFeed(_Ctx(), [(MarketFeed.NSE_FNO, s, MarketFeed.Full) for s in ids] + [(1, "2885", 15)], version="v2")
    sdk.ws = _Sink()
    try:
        sdk.loop.run_until_complete(sdk.subscribe_instruments())
    finally:
        sdk.loop.close()
        asyncio.set_event_loop(None)
    ours = subscription_messages(ids, 21) + subscription_messages([(1, "2885")], 15)

    def shape(raw: str):
        m = json.loads(raw)
        return list(m), m["RequestCode"], m["InstrumentCount"], len(m["InstrumentList"])

    def entries(frames):  # the SDK dedups through a set, so which batch holds an instrument differs
        return sorted(json.dumps(i) + str(json.loads(m)["RequestCode"]) for m in frames
                      for i in json.loads(m)["InstrumentList"])

    assert sorted(map(shape, sdk.ws.sent)) == sorted(map(shape, ours))
    assert entries(sdk.ws.sent) == entries(ours) and len(entries(ours)) == 131
    assert {json.loads(m)["InstrumentCount"] for m in sdk.ws.sent} == {100, 30, 1}
    assert ours[0].startswith('{"RequestCode": 21, "InstrumentCount": 100, "InstrumentList": [{"ExchangeSegment": '
                              '"NSE_FNO", "SecurityId": "50000"}')


# -- the stand-in market ---------------------------------------------------------------------------
def test_simulated_market_is_deterministic_for_a_seed():
    start = dt.datetime(2025, 7, 17, 9, 15, tzinfo=IST)

    def path(seed):
        m = SimulatedMarket(SIDS, seed=seed, rate=100, speed=60, session_start=start)  # a minute a second
        return [m.packet(m.step(sid), RequestCode.FULL) for _ in range(200) for sid in SIDS]

    a, b, c = path(7), path(7), path(8)
    assert a == b and a != c
    ticks = [parse_frame(x)[0] for x in a]
    assert ticks[0].ltt == start and ticks[-1].ltt == start + dt.timedelta(minutes=4)
    assert len({t.ltp for t in ticks if t.security_id == "52001"}) > 5  # the path moves
    assert all(t.bid < t.ltp < t.ask for t in ticks)
    m = SimulatedMarket(SIDS, rate=100, session_start=start)
    m.set_price("52001", 55.0)
    assert m.step("52001").price == 55.0


# -- the client against the stand-in ---------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.ticks, self.disconnects, self.stale, self.connects = [], [], [], 0

    def kw(self) -> dict:
        return dict(on_tick=self.ticks.append, on_disconnect=self.disconnects.append, on_stale=self.stale.append,
                    on_connect=self._connected)

    def _connected(self):
        self.connects += 1

    def count(self, sid: str, kind: str = "full") -> int:
        return sum(1 for t in list(self.ticks) if t.security_id == sid and t.kind == kind)


@pytest.fixture
def feed():
    f = StandInFeed(SIDS, seed=3, rate=300).start()
    yield f
    f.stop()


@pytest.fixture
def make_client():
    made = []

    def make(feed: StandInFeed, rec: Recorder, **kw) -> MarketFeedClient:
        kw = {"reconnect_delay": 0.05, "max_delay": 0.5, "stale_after": 5.0, **rec.kw(), **kw}
        c = MarketFeedClient("1000", kw.pop("token", TOKEN), base_url=feed.url, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


def test_client_receives_parsed_ticks(feed, make_client):
    rec = Recorder()
    book = FeedQuoteBook()
    client = make_client(feed, rec, on_tick=lambda t: (rec.ticks.append(t), book.apply(t)))
    client.subscribe(SIDS)
    assert not client.connected and client.last_packet_at is None
    started, t_started = dt.datetime.now(dt.UTC), time.monotonic()
    client.start()
    assert wait_until(lambda: rec.count("52001") >= 20 and rec.count("52002") >= 20)
    assert client.connected and rec.connects == 1 and feed.client_ids == ["1000"]
    assert {t.security_id for t in rec.ticks if t.kind == "prev_close"} == set(SIDS)
    full = [t for t in rec.ticks if t.kind == "full"]
    assert all(t.bid < t.ask and t.ltt.tzinfo is not None and t.received_at is not None for t in full)
    assert full[0].ltt.astimezone(IST).time() >= dt.time(9, 15)
    q = book.quote("52002")
    assert q is not None and q.bid < q.ask and book.updated_at["52002"] >= t_started  # quoted since the start
    s = client.stats
    assert s.packets == s.frames >= 40 and s.by_kind["full"] >= 40 and s.subscribe_messages == 1
    assert client.last_packet_at >= started  # a packet of this connection, stamped in UTC


def test_dropped_connection_reconnects_and_resubscribes(feed, make_client):
    rec = Recorder()
    client = make_client(feed, rec)
    client.subscribe(SIDS)
    client.start()
    assert wait_until(lambda: rec.count("52001") >= 5)
    feed.drop()
    assert wait_until(lambda: client.stats.connections == 2 and len(feed.open_connections) == 1)
    assert wait_until(lambda: feed.subscribed() == set(SIDS))
    assert [d.kind for d in rec.disconnects] == ["dropped"]
    resub = [r for r in feed.subscribe_log if r.connection == feed.open_connections[0]]
    assert resub and {sid for r in resub for _, sid in r.instruments} == set(SIDS)
    n = len(rec.ticks)
    assert wait_until(lambda: len(rec.ticks) > n + 20)
    feed.drop(clean=True)
    assert wait_until(lambda: rec.connects == 3)
    assert [d.kind for d in rec.disconnects] == ["dropped", "dropped"] and client.stats.connections == 3


def test_stale_feed_is_detected_and_reconnected(feed, make_client):
    rec = Recorder()
    client = make_client(feed, rec, stale_after=0.4)
    client.subscribe(SIDS)
    client.start()
    assert wait_until(lambda: rec.count("52002") >= 5)
    feed.go_silent(1.5)
    assert wait_until(lambda: rec.stale, timeout=5)
    assert rec.stale[0] > 0.4 and client.stats.stale_events >= 1
    assert rec.disconnects[0].kind == "stale" and not rec.disconnects[0].fatal
    assert wait_until(lambda: client.connected and client.stats.connections >= 2, timeout=5)
    n = len(rec.ticks)
    assert wait_until(lambda: len(rec.ticks) > n + 20, timeout=10)  # ticks resume after the silence
    assert feed.subscribed() == set(SIDS) and client.seconds_since_packet < 1


def test_server_disconnect_codes(feed, make_client):
    rec = Recorder()
    client = make_client(feed, rec)
    client.subscribe(["52001"])
    client.start()
    assert wait_until(lambda: rec.count("52001") >= 3)
    feed.send_disconnect(805)  # too many connections: try again
    assert wait_until(lambda: client.stats.connections == 2 and feed.subscribed() == {"52001"})
    assert (rec.disconnects[0].kind, rec.disconnects[0].code, rec.disconnects[0].fatal) == ("server", 805, False)
    feed.send_disconnect(807)  # token expired: reconnecting with it cannot help
    assert wait_until(lambda: not client.running)
    assert client.fatal is not None and client.fatal.code == 807 and rec.disconnects[-1].fatal
    assert client.stats.connections == 2 and client.failure is None


def test_wrong_token_gets_809_and_a_token_provider_is_asked_again(make_client):
    with StandInFeed(SIDS, rate=100, expected_token=TOKEN) as f:
        rec = Recorder()
        bad = make_client(f, rec, token="not-the-token")
        bad.subscribe(["52001"])
        bad.start()
        assert wait_until(lambda: not bad.running)
        assert bad.fatal.code == 809 and rec.count("52001") == 0
        tokens = iter(["expired-token", TOKEN])
        rec2 = Recorder()
        ok = make_client(f, rec2, token=lambda: next(tokens, TOKEN))
        ok.subscribe(["52001"])
        ok.start()
        assert wait_until(lambda: rec2.count("52001") >= 3)  # 809 first, then the fresh token works
        assert [d.code for d in rec2.disconnects] == [809] and ok.fatal is None


def test_instruments_added_while_running(feed, make_client):
    rec = Recorder()
    client = make_client(feed, rec, max_instruments=3)
    client.subscribe(["52001"])
    client.start()
    assert wait_until(lambda: rec.count("52001") >= 3)
    assert client.subscribe([("NSE_FNO", "52003"), "52001"]) == [("NSE_FNO", "52003")]
    assert wait_until(lambda: rec.count("52003") >= 3)
    assert client.stats.connections == 1 and feed.subscribed() == {"52001", "52003"}
    assert [r.instruments for r in feed.subscribe_log] == [(("NSE_FNO", "52001"),), (("NSE_FNO", "52003"),)]
    with pytest.raises(FeedCapacityError):
        client.subscribe(["52004", "52005"])
    assert client.unsubscribe(["52001"]) == [("NSE_FNO", "52001")]
    assert wait_until(lambda: feed.subscribed() == {"52003"})
    assert feed.subscribe_log[-1].request_code == RequestCode.UNSUBSCRIBE_FULL


def test_token_never_logged(caplog, capsys, make_client):
    caplog.set_level(logging.DEBUG)
    with StandInFeed(SIDS, rate=200) as f:
        rec = Recorder()
        client = make_client(f, rec, stale_after=0.3)
        client.subscribe(SIDS)
        client.start()
        assert wait_until(lambda: rec.count("52001") >= 3)
        f.drop()
        assert wait_until(lambda: client.stats.connections == 2)
        f.go_silent(1.0)
        assert wait_until(lambda: rec.stale)
        port = f.port
    assert wait_until(lambda: client.stats.connect_failures >= 1)  # the server is gone
    client.stop()
    refused = MarketFeedClient("1000", TOKEN, base_url=f"ws://127.0.0.1:{port}")
    asyncio.run(refused._connect_and_receive())
    assert refused.stats.connect_failures == 1
    masked = client.redact(f"InvalidURI: wss://x?version=2&token={TOKEN}&clientId=1 isn't valid; {TOKEN}")
    assert TOKEN not in masked and "token=***" in masked
    with pytest.raises(ValueError):
        MarketFeedClient("1000", TOKEN, base_url="https://api-feed.dhan.co")
    out = capsys.readouterr()
    texts = [caplog.text, out.out, out.err, repr(client.stats), repr(rec.disconnects), str(client.last_error),
             str(refused.last_error)]
    assert "token=***" in caplog.text  # websockets' debug line with the URL was there, masked
    assert all(TOKEN not in t and "SECRET-feed-token" not in t for t in texts)


def test_a_failing_callback_ends_the_client_and_closes_its_socket(feed, make_client):
    def boom(tick):
        if tick.kind == "full":
            raise ValueError("the monitor broke")

    rec = Recorder()
    client = make_client(feed, rec, on_tick=boom)
    client.subscribe(["52001"])
    client.start()
    assert wait_until(lambda: not client.running)
    assert isinstance(client.failure, ValueError) and not client.connected
    assert [(d.kind, d.fatal) for d in rec.disconnects] == [("failed", True)] and client.fatal.kind == "failed"
    assert wait_until(lambda: feed.open_connections == [])
