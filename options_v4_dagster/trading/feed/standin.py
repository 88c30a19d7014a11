"""A stand-in for Dhan's market feed v2: a WebSocket server on 127.0.0.1 speaking Dhan's binary
format, so ``options-v4 monitor realtime --feed standin`` runs offline and tests can break the feed.

:class:`SimulatedMarket` moves every subscribed instrument along a geometric Brownian motion from its
starting price (``prices``; an unknown id starts at 100), deterministic for a ``seed``: tick ``k`` of
an instrument always has the same price, LTT and volume, whatever the wall clock did. Simulated time
starts at ``session_start`` (default 09:15 IST today) and advances ``speed / rate`` seconds per tick.
:meth:`SimulatedMarket.set_price` forces the next price (a test crossing a stop).

:class:`StandInFeed` (``start()`` runs it in a daemon thread; ``url`` is ``ws://127.0.0.1:<port>``)
takes Dhan's URL query (``version=2&token=..&clientId=..&authType=2``; a missing token or client id,
or a token other than ``expected_token`` when set, gets disconnect packet 809 / 808), Dhan's JSON
subscription frames (15/17/21 subscribe, 16/18/22 unsubscribe, 12 disconnect), answers a
subscription with a previous-close packet per new instrument, and then streams ``rate`` ticks per
second round-robin over the instruments anyone subscribed: a ticker (2), quote (4; plus an OI packet
every 10th tick) or full packet (8, 5 depth levels) as each connection asked. Like Dhan it pings
every 10 s, drops a client silent for 40 s and keeps 5 connections per user (a 6th sends 805 to the
oldest and closes it).

Faults: :meth:`StandInFeed.drop` (abort every socket without a close frame, or close cleanly),
:meth:`StandInFeed.go_silent` (no packets for N seconds, sockets kept open),
:meth:`StandInFeed.send_disconnect` (a disconnect packet with a code, then close).
Observations: ``subscribe_log`` (every subscription frame with its connection number),
:meth:`StandInFeed.subscribed`, ``connections_total``, ``ticks_sent``; with ``record_sends=True``,
``sent_at[(security_id, volume)] = time.perf_counter()`` at the send of each quote/full packet
(cumulative volume grows every tick, so the pair names one packet: latency benchmarks join on it).

Run by hand: ``python -m options_v4_dagster.trading.feed.standin --port 8765 --rate 50 52001=120.5``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from ...calendar import IST
from .client import redacting_logger
from .packets import (
    MAX_CONNECTIONS_PER_USER,
    SEGMENT_CODES,
    DepthLevel,
    RequestCode,
    ist_epoch,
    pack_disconnect,
    pack_full,
    pack_oi,
    pack_prev_close,
    pack_quote,
    pack_ticker,
)

__all__ = ["SimulatedMarket", "StandInFeed", "SubscribeRecord"]

TRADING_SECONDS_PER_YEAR = 252 * 6.25 * 3600
TICK = 0.05


def _round_tick(x: float) -> float:
    return max(TICK, round(round(x / TICK) * TICK, 2))


@dataclass
class SimState:
    security_id: str
    segment: int
    price: float
    prev_close: float
    open: float
    high: float
    low: float
    rng: np.random.Generator
    volume: int = 0
    oi: int = 0
    ticks: int = 0
    ltq: int = 0
    ltt: int = 0
    x: float = 0.0  # the unrounded path (``price`` is it on the 0.05 tick grid)
    t: float = 0.0  # simulated seconds since the session start at the last tick
    forced: float | None = None
    z: np.ndarray = field(default_factory=lambda: np.empty(0))
    zi: int = 0


class SimulatedMarket:
    """See the module docstring. ``sigma`` is the annualized volatility of the quoted price (option
    premia move several times faster than their underlying: 1.0 by default)."""

    def __init__(self, prices: Mapping[str, float] | None = None, *, seed: int = 0, rate: float = 100.0,
                 speed: float = 1.0, sigma: float | Mapping[str, float] = 1.0, spread_pct: float = 0.005,
                 lot: int = 75, session_start: dt.datetime | None = None) -> None:
        self.prices = {str(k): float(v) for k, v in (prices or {}).items()}
        self.seed, self.sigma, self.spread_pct, self.lot = seed, sigma, spread_pct, lot
        self.dt_sim = speed / rate  # simulated seconds per tick (of the whole market)
        self.start = session_start or dt.datetime.combine(dt.datetime.now(IST).date(), dt.time(9, 15), tzinfo=IST)
        self._epoch0 = ist_epoch(self.start)
        self.ticks = 0
        self.states: dict[str, SimState] = {}
        self._lock = threading.Lock()

    def state(self, security_id: str, segment: int = 2) -> SimState:
        sid = str(security_id)
        st = self.states.get(sid)
        if st is None:
            p0 = _round_tick(self.prices.get(sid, 100.0))
            rng = np.random.default_rng([self.seed, int(sid)])
            st = self.states[sid] = SimState(sid, segment, p0, p0, p0, p0, p0, rng, x=p0,
                                             oi=int(rng.integers(100, 5000)) * self.lot,
                                             ltt=ist_epoch(self.start))
        return st

    def set_price(self, security_id: str, price: float) -> None:
        """The instrument's next tick trades at ``price`` (then the walk goes on from there)."""
        with self._lock:
            self.state(security_id).forced = float(price)

    def step(self, security_id: str) -> SimState:
        with self._lock:
            st = self.state(security_id)
            self.ticks += 1
            t = self.ticks * self.dt_sim
            if st.forced is not None:
                price, st.forced = st.forced, None
            else:
                years = max(t - st.t, self.dt_sim) / TRADING_SECONDS_PER_YEAR
                sig = self.sigma.get(st.security_id, 1.0) if isinstance(self.sigma, Mapping) else self.sigma
                if st.zi >= len(st.z):
                    st.z, st.zi = st.rng.standard_normal(1024), 0
                z = st.z[st.zi]
                st.zi += 1
                price = st.x * math.exp(-0.5 * sig * sig * years + sig * math.sqrt(years) * z)
            st.ticks += 1
            st.t = t
            st.x, st.price = price, _round_tick(price)
            st.ltq = self.lot * (1 + st.ticks % 7)
            st.volume += st.ltq
            st.high, st.low = max(st.high, st.price), min(st.low, st.price)
            st.ltt = self._epoch0 + int(t)
            return st

    def packet(self, st: SimState, mode: int) -> bytes:
        if mode == RequestCode.TICKER:
            return pack_ticker(st.security_id, st.price, st.ltt, st.segment)
        common = dict(ltq=st.ltq, avg_price=st.price, volume=st.volume, total_sell_qty=st.volume // 2,
                      total_buy_qty=st.volume // 2, open=st.open, close=st.prev_close, high=st.high, low=st.low,
                      segment=st.segment)
        if mode == RequestCode.QUOTE:
            return pack_quote(st.security_id, st.price, st.ltt, **common)
        half = max(TICK, st.price * self.spread_pct / 2)
        depth = [DepthLevel(self.lot * (5 + i), self.lot * (4 + i), 2 + i, 3 + i,
                            _round_tick(st.price - half - i * TICK), _round_tick(st.price + half + i * TICK))
                 for i in range(5)]
        return pack_full(st.security_id, st.price, st.ltt, depth, oi=st.oi, oi_high=st.oi, oi_low=st.oi, **common)


@dataclass(frozen=True)
class SubscribeRecord:
    connection: int
    request_code: int
    instruments: tuple[tuple[str, str], ...]
    at: float  # time.monotonic()


@dataclass
class _Conn:
    no: int
    ws: ServerConnection
    client_id: str
    subs: dict[str, int] = field(default_factory=dict)  # security id -> request code


class StandInFeed:
    """See the module docstring."""

    def __init__(self, prices: Mapping[str, float] | None = None, *, seed: int = 0, rate: float = 100.0,
                 speed: float = 1.0, sigma: float | Mapping[str, float] = 1.0, spread_pct: float = 0.005,
                 lot: int = 75, session_start: dt.datetime | None = None, host: str = "127.0.0.1", port: int = 0,
                 expected_token: str | None = None, max_connections: int = MAX_CONNECTIONS_PER_USER,
                 ping_interval: float = 10.0, ping_timeout: float = 40.0, record_sends: bool = False) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.market = SimulatedMarket(prices, seed=seed, rate=rate, speed=speed, sigma=sigma,
                                      spread_pct=spread_pct, lot=lot, session_start=session_start)
        self.rate, self.host, self.port = rate, host, port
        self.expected_token, self.max_connections = expected_token, max_connections
        self.ping_interval, self.ping_timeout, self.record_sends = ping_interval, ping_timeout, record_sends
        self.subscribe_log: list[SubscribeRecord] = []
        self.client_ids: list[str] = []
        self.connections_total = 0
        self.ticks_sent = 0
        self.packets_sent = 0
        self.sent_at: dict[tuple[str, int], float] = {}
        self._conns: list[_Conn] = []
        self._numbers = itertools.count(1)
        self._silent_until = 0.0
        self._subs_changed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_evt: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    # -- observations ----------------------------------------------------------------------------------
    def subscribed(self, connection: int | None = None) -> set[str]:
        """Security ids subscribed on ``connection`` (default: the newest open connection)."""
        conns = [c for c in list(self._conns) if connection is None or c.no == connection]
        return set(conns[-1].subs) if conns else set()

    @property
    def open_connections(self) -> list[int]:
        return [c.no for c in list(self._conns)]

    # -- faults ----------------------------------------------------------------------------------------
    def drop(self, clean: bool = False) -> None:
        """Drop every connection: abort the sockets (no close frame), or close them (``clean``)."""
        self._call(self._drop(clean))

    async def _drop(self, clean: bool) -> None:
        for c in list(self._conns):
            if clean:
                await c.ws.close(1011, "stand-in drop")
            else:
                c.ws.transport.abort()

    def go_silent(self, seconds: float) -> None:
        """No packets to anyone for ``seconds`` (the sockets stay open; the market path pauses)."""
        self._silent_until = time.monotonic() + seconds

    def send_disconnect(self, code: int, close: bool = True) -> None:
        """A disconnect packet (50) with ``code`` to every connection, then close them (``close``)."""
        self._call(self._disconnect_all(code, close))

    async def _disconnect_all(self, code: int, close: bool) -> None:
        for c in list(self._conns):
            await self._disconnect(c, code, close)

    async def _disconnect(self, c: _Conn, code: int, close: bool = True) -> None:
        try:
            await c.ws.send(pack_disconnect(code))
            if close:
                await c.ws.close(1000, f"disconnect {code}")
        except ConnectionClosed:
            pass

    def set_price(self, security_id: str, price: float) -> None:
        self.market.set_price(security_id, price)

    def _call(self, coro, timeout: float = 5.0):
        if self._loop is None:
            raise RuntimeError("the stand-in feed is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- server ----------------------------------------------------------------------------------------
    async def _handler(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        token, client_id = query.get("token", [""])[0], query.get("clientId", [""])[0]
        self.connections_total += 1
        if not client_id:
            await self._disconnect(_Conn(0, ws, ""), 808)
            return
        if not token or (self.expected_token is not None and token != self.expected_token):
            await self._disconnect(_Conn(0, ws, client_id), 809)
            return
        conn = _Conn(next(self._numbers), ws, client_id)
        self.client_ids.append(client_id)
        if len(self._conns) >= self.max_connections:
            await self._disconnect(self._conns[0], 805)
        self._conns.append(conn)
        try:
            async for msg in ws:
                if isinstance(msg, str) and not await self._request(conn, msg):
                    break
        except ConnectionClosed:
            pass
        finally:
            if conn in self._conns:
                self._conns.remove(conn)
            self._subs_changed = True

    async def _request(self, conn: _Conn, msg: str) -> bool:
        """Handle one JSON request; ``False`` ends the connection."""
        try:
            req = json.loads(msg)
            code = int(req["RequestCode"])
        except (ValueError, KeyError, TypeError):
            return True
        if code == RequestCode.DISCONNECT:
            await conn.ws.close(1000, "client disconnect")
            return False
        items = tuple((str(i["ExchangeSegment"]), str(i["SecurityId"])) for i in req.get("InstrumentList", []))
        self.subscribe_log.append(SubscribeRecord(conn.no, code, items, time.monotonic()))
        self._subs_changed = True
        if code in RequestCode.SUBSCRIBE:
            fresh = []
            for seg, sid in items:
                if sid not in conn.subs:
                    fresh.append(sid)
                conn.subs[sid] = code
                self.market.state(sid, SEGMENT_CODES.get(seg, 2))
            for sid in fresh:
                st = self.market.states[sid]
                await conn.ws.send(pack_prev_close(sid, st.prev_close, st.oi, st.segment))
        elif code - 1 in RequestCode.SUBSCRIBE:
            for _, sid in items:
                conn.subs.pop(sid, None)
        return True

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        t0, n, rr, order = loop.time(), 0, 0, []
        while True:
            now = loop.time()
            silent = self._silent_until - time.monotonic()
            if self._subs_changed:
                self._subs_changed = False
                order = list(dict.fromkeys(sid for c in list(self._conns) for sid in c.subs))
            if silent > 0 or not order:
                await asyncio.sleep(min(silent, 0.05) if silent > 0 else 0.01)
                t0, n = loop.time(), 0
                continue
            due = min(int((now - t0) * self.rate) - n, max(1, int(self.rate / 10)))
            if due <= 0:
                await asyncio.sleep((n + 1) / self.rate - (now - t0))
                continue
            if due >= max(1, int(self.rate / 10)):  # fell behind by 0.1 s: do not burst to catch up
                t0 = now - (n + due) / self.rate
            for _ in range(due):
                sid = order[rr % len(order)]
                rr += 1
                n += 1
                await self._tick(sid)

    async def _tick(self, sid: str) -> None:
        st = self.market.step(sid)
        self.ticks_sent += 1
        for c in list(self._conns):
            mode = c.subs.get(sid)
            if mode is None:
                continue
            try:
                if mode == RequestCode.QUOTE and st.ticks % 10 == 0:
                    await c.ws.send(pack_oi(sid, st.oi, st.segment))
                if self.record_sends and mode != RequestCode.TICKER:
                    self.sent_at[(sid, st.volume)] = time.perf_counter()
                await c.ws.send(self.market.packet(st, mode))
                self.packets_sent += 1
            except ConnectionClosed:
                continue

    async def serve_forever(self) -> None:
        """Serve until :meth:`stop` (inside a running event loop)."""
        self._loop = asyncio.get_running_loop()
        self._stop_evt = asyncio.Event()
        async with serve(self._handler, self.host, self.port, ping_interval=self.ping_interval,
                         ping_timeout=self.ping_timeout, compression=None, close_timeout=1.0,
                         logger=redacting_logger(__name__ + ".ws")) as server:
            self.port = server.sockets[0].getsockname()[1]
            pump = asyncio.create_task(self._pump())
            self._ready.set()
            try:
                await self._stop_evt.wait()
            finally:
                pump.cancel()
                for c in list(self._conns):
                    c.ws.transport.abort()

    def start(self, timeout: float = 10.0) -> StandInFeed:
        if self._thread is None:
            self._thread = threading.Thread(target=lambda: asyncio.run(self.serve_forever()),
                                            name="standin-feed", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout):
                raise RuntimeError("the stand-in feed did not start")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._stop_evt is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop_evt.set)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> StandInFeed:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Dhan market feed v2 stand-in on 127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--rate", type=float, default=50.0, help="ticks per second over all instruments")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("prices", nargs="*", help="SECURITY_ID=START_PRICE")
    a = ap.parse_args(argv)
    prices = dict(p.split("=", 1) for p in a.prices)
    feed = StandInFeed({k: float(v) for k, v in prices.items()}, seed=a.seed, rate=a.rate, port=a.port).start()
    print(f"stand-in market feed on {feed.url} (Ctrl-C stops it)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        feed.stop()


if __name__ == "__main__":
    main()
