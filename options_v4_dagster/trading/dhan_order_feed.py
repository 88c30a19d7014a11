"""Following fills of Dhan orders: by polling (:class:`PollingOrderFeed`, works with any Broker) or
through Dhan's order-update WebSocket (:class:`DhanOrderStream`).

Both hand :class:`~.dhan_rows.OrderUpdate` values (normalized status, side, quantities, average
price) to ``on_update``. The polling feed asks the broker for each watched order (by order id once
known, else by correlation id) and reports changes of status or traded quantity. The stream uses
the SDK's ``OrderUpdate`` (its ``order_feed_wss`` pointed wherever ``url`` says), logs in with the
client id and token, and — since the SDK neither reconnects nor keeps the token out of its output
(it prints the login message) — connects through a subclass that does not print, inside a loop that
reconnects with exponential back-off until :meth:`DhanOrderStream.stop`. The stream reports orders
placed from every platform of the account; filter by correlation id where that matters.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from .broker import Broker, BrokerOrder, BrokerRateLimited, BrokerUnavailable, OrderNotFound
from .dhan_rows import OrderUpdate, order_update_from_message

log = logging.getLogger(__name__)
UpdateFn = Callable[[OrderUpdate], None]
DEFAULT_ORDER_FEED_URL = "wss://api-order-update.dhan.co"


def update_from_order(bo: BrokerOrder) -> OrderUpdate:
    return OrderUpdate(bo.order_id, bo.correlation_id, bo.security_id, bo.side, bo.status, bo.quantity,
                       bo.filled_quantity, bo.average_price, 0.0, bo.reason, bo.updated_at, {"source": "poll"})


class PollingOrderFeed:
    """Polls the broker for the watched correlation ids; ``poll`` returns (and passes to ``on_update``)
    the orders whose status or traded quantity changed since the previous poll."""

    def __init__(self, broker: Broker, correlation_ids: Iterable[str] = (), *, interval: float = 0.5,
                 on_update: UpdateFn | None = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.broker, self.interval, self.on_update = broker, interval, on_update
        self.clock, self.sleep = clock, sleep
        self.latest: dict[str, BrokerOrder | None] = {}
        for cid in correlation_ids:
            self.watch(cid)

    def watch(self, correlation_id: str) -> None:
        self.latest.setdefault(correlation_id, None)

    def poll(self) -> list[OrderUpdate]:
        changed = []
        for cid, last in list(self.latest.items()):
            if last is not None and last.status.terminal:
                continue
            try:
                bo = self.broker.order(last.order_id) if last is not None else self.broker.order_by_correlation_id(cid)
            except (BrokerUnavailable, BrokerRateLimited, OrderNotFound) as exc:
                log.warning("order feed: %s could not be read: %s", cid, exc)
                continue
            if bo is None or (last is not None and (bo.status, bo.filled_quantity) == (last.status, last.filled_quantity)):
                continue
            self.latest[cid] = bo
            up = update_from_order(bo)
            changed.append(up)
            if self.on_update is not None:
                self.on_update(up)
        return changed

    def follow(self, timeout: float) -> dict[str, BrokerOrder | None]:
        """Poll until every watched order is terminal or ``timeout`` seconds pass; the last states."""
        deadline = self.clock() + timeout
        while True:
            self.poll()
            done = all(o is not None and o.status.terminal for o in self.latest.values())
            if done or self.clock() >= deadline:
                return dict(self.latest)
            self.sleep(self.interval)


def _quiet_order_update_class():
    from dhanhq import OrderUpdate as SdkOrderUpdate

    class QuietOrderUpdate(SdkOrderUpdate):
        """The SDK's OrderUpdate without printing the login message (it holds the access token);
        keeps the socket so that :meth:`DhanOrderStream.stop` can close it."""

        websocket = None
        on_connect: Callable[[], None] | None = None

        async def connect_order_update(self):
            import websockets

            async with websockets.connect(self.order_feed_wss, open_timeout=10) as ws:
                self.websocket = ws
                await ws.send(json.dumps({"LoginReq": {"MsgCode": 42, "ClientId": str(self.client_id),
                                                       "Token": str(self.access_token)}, "UserType": "SELF"}))
                if self.on_connect is not None:
                    self.on_connect()
                async for message in ws:
                    try:
                        self.handle_order_update(json.loads(message))
                    except ValueError:
                        log.warning("order feed: an unreadable message was skipped")

    return QuietOrderUpdate


class DhanOrderStream:
    """Dhan's order-update WebSocket in a background thread, reconnecting until stopped.

    ``updates`` keeps every normalized update; ``connections`` counts successful connects (a
    reconnect makes it 2, ...). Messages other than ``order_alert`` are ignored."""

    def __init__(self, context, *, on_update: UpdateFn | None = None, url: str | None = None,
                 reconnect_delay: float = 0.5, max_delay: float = 30.0) -> None:
        self._sdk = _quiet_order_update_class()(context)
        if url:
            self._sdk.order_feed_wss = url
        self._sdk.on_update = self._handle
        self._sdk.on_connect = self._connected
        self.on_update = on_update
        self.reconnect_delay, self.max_delay = reconnect_delay, max_delay
        self.updates: list[OrderUpdate] = []
        self.connections = 0
        self.last_error: str | None = None
        self.connected = threading.Event()  # set on every (re)connect; tests clear and wait on it
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_client(cls, client, **kw) -> DhanOrderStream:
        """On a :class:`~options_v4_dagster.market.dhan_client.DhanClient`'s credentials."""
        return cls(client._ctx, **kw)

    def _connected(self) -> None:
        self.connections += 1
        self.connected.set()

    def _handle(self, message: dict) -> None:
        up = order_update_from_message(message)
        if up is None:
            return
        self.updates.append(up)
        if self.on_update is not None:
            self.on_update(up)

    def start(self) -> DhanOrderStream:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dhan-order-stream", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        import websockets

        self._loop = asyncio.new_event_loop()
        delay = self.reconnect_delay
        while not self._stop.is_set():
            try:
                task = self._loop.create_task(self._session())
                self._loop.run_until_complete(task)
                delay = self.reconnect_delay  # a clean close: reconnect soon
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("order feed: connection lost (%s); reconnecting in %.1f s", self.last_error, delay)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.max_delay)
        self._loop.close()

    async def _session(self) -> None:
        await self._sdk.connect_order_update()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        ws, loop = self._sdk.websocket, self._loop
        if ws is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(ws.close(), loop)
        if self._thread is not None:
            self._thread.join(timeout)
