"""A Dhan market feed v2 client for the real-time monitor: :class:`MarketFeedClient`.

It connects to ``<base_url>?version=2&token=..&clientId=..&authType=2`` (``base_url`` defaults to
Dhan's ``wss://api-feed.dhan.co``; the stand-in feed or a test passes ``ws://127.0.0.1:<port>``),
subscribes every instrument in JSON frames of at most 100, parses each binary frame
(:mod:`.packets`) and hands every packet to ``on_tick`` *on the feed's own thread / event loop* —
keep the callback short or hand the tick to a queue.

Health: ``connected``, ``last_packet_at`` and ``stats``. No packet for ``stale_after`` seconds (Dhan
pings every 10 s and drops a client silent for 40 s; a half-open socket shows nothing at all) calls
``on_stale`` and drops the connection; any loss calls ``on_disconnect`` with a
:class:`DisconnectReason` (the monitor's cue to fall back to REST quotes) and the client reconnects
with exponential back-off and subscribes everything again. Disconnect packets for a bad plan, an
expired token or failed authentication (806-809) stop it (``fatal``) — reconnecting with the same
credentials cannot help — unless the token is a callable, asked again before each connect (then 807
and 809 are retried).
:meth:`MarketFeedClient.subscribe` works while running (new positions) and before :meth:`start`.

The access token is never logged: the SDK's ``MarketFeed`` prints it and websockets' debug log shows
the request line with the query, so this client connects with websockets itself, under a logger that
masks ``token=`` and the token's value (:class:`_RedactSecrets`), and masks it in every error text it
keeps or logs. Client keepalive pings are off (``ping_interval=None``): Dhan pings the client, and
the SDK's keepalive timeouts are one of its known troubles; staleness is judged from packets.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from .packets import (
    DISCONNECT_REASONS,
    FATAL_DISCONNECT_CODES,
    MAX_INSTRUMENTS_PER_CONNECTION,
    FeedTick,
    FrameError,
    Instrument,
    RequestCode,
    disconnect_message,
    normalize_instrument,
    parse_frame,
    subscription_messages,
)

__all__ = ["DHAN_FEED_URL", "DisconnectReason", "FeedCapacityError", "FeedStats", "MarketFeedClient"]

log = logging.getLogger(__name__)
DHAN_FEED_URL = "wss://api-feed.dhan.co"  # = dhanhq.marketfeed.MarketFeed.market_feed_wss
_TOKEN_PARAM = re.compile(r"(token=)[^&\s'\"]+", re.IGNORECASE)


class _RedactSecrets(logging.Filter):
    """Masks ``token=<...>`` and every registered secret in records of the logger it sits on."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def redact(self, text: str) -> str:
        text = _TOKEN_PARAM.sub(r"\1***", text)
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = self.redact(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        return True


_REDACT = _RedactSecrets()


def redacting_logger(name: str) -> logging.Logger:
    """A logger for websockets (its debug output includes the request line with the token) that
    masks the token in every record."""
    logger = logging.getLogger(name)
    if _REDACT not in logger.filters:
        logger.addFilter(_REDACT)
    return logger


_WS_LOG = redacting_logger(__name__ + ".ws")


class FeedCapacityError(ValueError):
    """More instruments than one connection takes (Dhan: 5,000)."""


@dataclass(frozen=True)
class DisconnectReason:
    """Why a connection ended. ``kind``: ``dropped`` (socket lost / closed by the server), ``stale``
    (no packet for ``stale_after``), ``server`` (a disconnect packet; ``code`` 805-809), ``stopped``
    (:meth:`MarketFeedClient.stop`), ``failed`` (a callback raised; the exception is in
    ``MarketFeedClient.failure``). ``fatal``: the client will not reconnect."""

    kind: str
    detail: str
    code: int | None = None
    fatal: bool = False


@dataclass
class FeedStats:
    connections: int = 0  # successful connects (a reconnect makes it 2, ...)
    connect_failures: int = 0
    disconnects: int = 0
    stale_events: int = 0
    frames: int = 0
    packets: int = 0
    text_frames: int = 0
    parse_errors: int = 0
    subscribe_messages: int = 0
    by_kind: Counter = field(default_factory=Counter)


TickFn = Callable[[FeedTick], None]


class MarketFeedClient:
    """See the module docstring. ``mode`` is the default subscription (``RequestCode.FULL``: bid/ask
    with 5 depth levels; ``TICKER``: LTP only; ``QUOTE``: LTP, OHLC, volume)."""

    def __init__(self, client_id: str, access_token: str | Callable[[], str], *, base_url: str = DHAN_FEED_URL,
                 on_tick: TickFn | None = None, on_connect: Callable[[], None] | None = None,
                 on_disconnect: Callable[[DisconnectReason], None] | None = None,
                 on_stale: Callable[[float], None] | None = None, mode: int = RequestCode.FULL,
                 stale_after: float = 30.0, reconnect_delay: float = 0.5, max_delay: float = 30.0,
                 open_timeout: float = 10.0, max_instruments: int = MAX_INSTRUMENTS_PER_CONNECTION) -> None:
        if not str(client_id).strip():
            raise ValueError("a Dhan client id is required")
        if mode not in RequestCode.SUBSCRIBE:
            raise ValueError(f"mode must be one of {RequestCode.SUBSCRIBE}, got {mode}")
        if urlsplit(base_url).scheme not in ("ws", "wss"):
            raise ValueError(f"the feed URL must be ws:// or wss://, got {base_url!r}")
        self.client_id = str(client_id).strip()
        self._token = access_token
        if isinstance(access_token, str):
            if not access_token.strip():
                raise ValueError("a Dhan access token is required")
            _REDACT.secrets.add(access_token)
        self.base_url = base_url
        self.on_tick, self.on_connect, self.on_disconnect, self.on_stale = on_tick, on_connect, on_disconnect, on_stale
        self.mode, self.stale_after, self.open_timeout = mode, stale_after, open_timeout
        self.reconnect_delay, self.max_delay, self.max_instruments = reconnect_delay, max_delay, max_instruments
        self.stats = FeedStats()
        self.fatal: DisconnectReason | None = None
        self.last_disconnect: DisconnectReason | None = None
        self.last_error: str | None = None
        self.failure: BaseException | None = None  # what ended the thread, if not stop()/fatal
        self._subs: dict[Instrument, int] = {}
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._stale_hit = False
        self._last_rx: float | None = None  # time.monotonic() of the last frame
        self._connected_at = 0.0  # time.monotonic() of the current connection's start
        self._connected_evt = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_context(cls, ctx, **kw) -> MarketFeedClient:
        """On a ``dhanhq.DhanContext`` (``DhanClient._ctx``)."""
        return cls(ctx.get_client_id(), ctx.get_access_token(), **kw)

    # -- state -----------------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def last_packet_at(self) -> dt.datetime | None:
        """Wall-clock time (UTC) of the last frame received, ``None`` before the first."""
        if self._last_rx is None:
            return None
        return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=time.monotonic() - self._last_rx)

    @property
    def seconds_since_packet(self) -> float | None:
        """Seconds since the last frame, ``None`` before the first."""
        return None if self._last_rx is None else time.monotonic() - self._last_rx

    @property
    def subscriptions(self) -> dict[Instrument, int]:
        with self._lock:
            return dict(self._subs)

    def redact(self, text: str) -> str:
        return _REDACT.redact(text)

    def _access_token(self) -> str:
        token = self._token() if callable(self._token) else self._token
        _REDACT.secrets.add(token)
        return token

    def _url(self) -> str:
        query = urlencode({"version": 2, "token": self._access_token(), "clientId": self.client_id, "authType": 2})
        return f"{self.base_url}{'&' if '?' in self.base_url else '?'}{query}"

    # -- subscriptions ---------------------------------------------------------------------------------
    def subscribe(self, instruments: Iterable, mode: int | None = None) -> list[Instrument]:
        """Add instruments (``(segment, security_id)`` pairs or bare NSE F&O ids); sent at once when
        connected, else on the next connect. Returns those that were new (or changed mode)."""
        mode = self.mode if mode is None else mode
        if mode not in RequestCode.SUBSCRIBE:
            raise ValueError(f"mode must be one of {RequestCode.SUBSCRIBE}, got {mode}")
        items = list(dict.fromkeys(normalize_instrument(i) for i in instruments))
        with self._lock:
            new = [i for i in items if self._subs.get(i) != mode]
            total = len(self._subs.keys() | set(new))
            if total > self.max_instruments:
                raise FeedCapacityError(f"{total} instruments exceed {self.max_instruments} per connection")
            self._subs.update(dict.fromkeys(new, mode))
            ws = self._ws
        if new and ws is not None:
            self._send_soon(ws, subscription_messages(new, mode))
        return new

    def unsubscribe(self, instruments: Iterable) -> list[Instrument]:
        items = [normalize_instrument(i) for i in instruments]
        with self._lock:
            gone = {i: self._subs.pop(i) for i in items if i in self._subs}
            ws = self._ws
        if gone and ws is not None:
            for mode in set(gone.values()):
                self._send_soon(ws, subscription_messages([i for i, m in gone.items() if m == mode], mode + 1))
        return list(gone)

    def _send_soon(self, ws: ClientConnection, messages: list[str]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._send_all(ws, messages), loop)

    async def _send_all(self, ws: ClientConnection, messages: list[str]) -> None:
        try:
            for m in messages:
                await ws.send(m)
                self.stats.subscribe_messages += 1
        except ConnectionClosed:
            log.debug("market feed: a subscription was not sent (connection closing); the reconnect resends it")

    def _subscription_frames(self) -> list[str]:
        by_mode: dict[int, list[Instrument]] = {}
        for inst, mode in self._subs.items():
            by_mode.setdefault(mode, []).append(inst)
        return [m for mode, insts in by_mode.items() for m in subscription_messages(insts, mode)]

    # -- running ---------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, receive and reconnect until :meth:`stop` or a fatal disconnect."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        delay = self.reconnect_delay
        while not self._stopping:
            packets_before = self.stats.packets
            reason = await self._connect_and_receive()
            if reason is not None:
                self.last_disconnect = reason
                self.stats.disconnects += 1
                log.log(logging.INFO if reason.kind == "stopped" else logging.WARNING,
                        "market feed: disconnected (%s: %s)%s", reason.kind, reason.detail,
                        "; not reconnecting" if reason.fatal else "")
                if self.on_disconnect is not None:
                    self.on_disconnect(reason)
                if reason.fatal:
                    self.fatal = reason
                    break
            if self._stopping:
                break
            if self.stats.packets > packets_before:
                delay = self.reconnect_delay
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self.max_delay)

    async def _connect_and_receive(self) -> DisconnectReason | None:
        """One connection; its end (``None``: the connect itself failed)."""
        url = self._url()
        host = urlsplit(self.base_url).hostname or ""
        proxy = None if host in ("127.0.0.1", "localhost", "::1") else True
        try:
            ws = await connect(url, open_timeout=self.open_timeout, ping_interval=None, close_timeout=2.0,
                               max_size=2**20, logger=_WS_LOG, proxy=proxy)
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            self.stats.connect_failures += 1
            self.last_error = self.redact(f"{type(exc).__name__}: {exc}")
            log.warning("market feed: connect to %s failed (%s)", self.base_url, self.last_error)
            return None
        with self._lock:
            self._ws = ws
            frames = self._subscription_frames()
        self._stale_hit = False
        self._connected_at = time.monotonic()
        self.stats.connections += 1
        watchdog = asyncio.create_task(self._watch(ws))
        try:
            await self._send_all(ws, frames)
            log.info("market feed: connected to %s, %d instruments in %d subscribe messages",
                     self.base_url, len(self._subs), len(frames))
            self._connected_evt.set()
            if self.on_connect is not None:
                self.on_connect()
            return await self._receive(ws)
        except ConnectionClosed as exc:
            if self._stopping:
                return DisconnectReason("stopped", "stop() was called")
            if self._stale_hit:
                return DisconnectReason("stale", f"no packet for {self.stale_after:g} s")
            return DisconnectReason("dropped", self.redact(f"{type(exc).__name__}: {exc}"))
        finally:
            watchdog.cancel()
            if ws.state is not State.CLOSED:  # a callback raised: do not leave the socket open
                ws.transport.abort()
            with self._lock:
                self._ws = None
            self._connected_evt.clear()

    async def _receive(self, ws: ClientConnection) -> DisconnectReason:
        on_tick, stats = self.on_tick, self.stats
        async for frame in ws:
            now = time.perf_counter()
            self._last_rx = time.monotonic()
            stats.frames += 1
            if isinstance(frame, str):
                stats.text_frames += 1
                log.info("market feed: text frame from the server: %s", self.redact(frame[:200]))
                continue
            try:
                ticks = parse_frame(frame, now)
            except FrameError as exc:
                stats.parse_errors += 1
                log.warning("market feed: unreadable frame skipped (%s)", exc)
                continue
            for tick in ticks:
                stats.packets += 1
                stats.by_kind[tick.kind] += 1
                if tick.disconnect_code is not None:
                    await ws.close()
                    return self._server_disconnect(tick.disconnect_code)
                if on_tick is not None:
                    on_tick(tick)
        if self._stopping:
            return DisconnectReason("stopped", "stop() was called")
        if self._stale_hit:
            return DisconnectReason("stale", f"no packet for {self.stale_after:g} s")
        return DisconnectReason("dropped", f"closed by the server ({ws.close_code} {ws.close_reason or ''})".strip())

    def _server_disconnect(self, code: int) -> DisconnectReason:
        fatal = code in FATAL_DISCONNECT_CODES and not (code in (807, 809) and callable(self._token))
        return DisconnectReason("server", f"{code} {DISCONNECT_REASONS.get(code, 'unknown reason')}", code, fatal)

    async def _watch(self, ws: ClientConnection) -> None:
        step = max(0.05, min(1.0, self.stale_after / 4))
        while True:
            await asyncio.sleep(step)
            silent = time.monotonic() - max(self._last_rx or 0.0, self._connected_at)
            if silent > self.stale_after:
                self._stale_hit = True
                self.stats.stale_events += 1
                log.warning("market feed: no packet for %.1f s; dropping the connection", silent)
                if self.on_stale is not None:
                    self.on_stale(silent)
                ws.transport.abort()  # close() can hang on a dead socket (a known SDK trouble)
                return

    # -- thread wrapper --------------------------------------------------------------------------------
    def start(self) -> MarketFeedClient:
        """Run in a daemon thread with its own event loop."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run_thread, name="market-feed", daemon=True)
            self._thread.start()
        return self

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self.run())
        except Exception as exc:  # the thread's boundary: a callback's error ends the client, for the owner to see
            self.failure = exc
            reason = DisconnectReason("failed", self.redact(f"{type(exc).__name__}: {exc}"), fatal=True)
            self.fatal = self.last_disconnect = reason
            log.error("market feed: stopped by %s (see MarketFeedClient.failure)", reason.detail)
            if self.on_disconnect is not None:
                self.on_disconnect(reason)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_evt.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def aclose(self) -> None:
        """Stop from inside the loop: ask the server to disconnect (``RequestCode 12``) and close."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        ws = self._ws
        if ws is not None:
            try:
                await ws.send(disconnect_message())
            except ConnectionClosed:
                pass
            await ws.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed() and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.aclose(), loop)
            try:
                fut.result(timeout)
            except (TimeoutError, ConnectionClosed, RuntimeError):
                pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> MarketFeedClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
