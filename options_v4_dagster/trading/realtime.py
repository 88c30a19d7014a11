"""The real-time monitor: a long-running process outside Dagster runs (a run cannot react in under a
second) that watches every open leg on the market feed and sends the strategies whose instruments
ticked through the monitoring cycle's pieces on cached inputs (:mod:`.monitor_fast`; the cycle itself,
:func:`~.monitor.monitor_cycle` with ``source="realtime"``, when the cache cannot serve), so intents,
exits and the exactly-once machinery are the polling sensor's. No Dagster here.

:class:`RealtimeMonitor`:

* **Subscriptions and the cache.** The open strategies of the mode's broker(s) are read from the
  trading tables into a :class:`~.monitor_fast.MonitorCache` (legs, facts, prepared exit levels,
  intents, high-water marks) at start and again whenever something changed: on PostgreSQL a
  ``NOTIFY`` from the trading store (a fill, a state change, a new position;
  :class:`~..store.changes.ChangeListener`), elsewhere -- or while the listener is down -- a changed
  :func:`~..store.changes.trading_version` checked once per step; after every cycle that placed
  orders (the intents a cycle writes are read back into the cache); and every
  ``poll_positions_every`` seconds regardless -- though not while this monitor's own exits are in
  flight unless the cache cannot serve (their fills notify too; it reloads once they are done). Every
  open leg's
  security id is subscribed on the feed (the client splits them into messages of at most 100), so a
  position entered while the monitor runs is watched without a restart. Ids that are not exchange ids
  (a paper leg keyed by its contract) cannot be subscribed and are only valued from the REST source.
* **Ticks -> cycles.** The feed's ``on_tick`` (on the feed's thread) only merges the tick into a
  :class:`~.feed.FeedQuoteBook` and marks its strategies due; the monitor's thread batches what ticked
  and runs at most one cycle per ``interval`` over those strategies only, valued at the book's quotes
  and ``spot``: :func:`~.monitor_fast.fast_cycle` on the cache (the intent is written at once, through
  the same keys and exit path as :func:`~.monitor.monitor_cycle`; snapshots every ``snapshot_every``
  seconds, and at stop), or ``monitor_cycle(keys=...)`` itself when the cache cannot serve (a leg at
  its expiry: settlement; a new day) or ``fast=False``.
* **Exits.** Once a cycle's intents are written, their orders are driven by one exit worker thread
  (:class:`~.monitor_fast.ExitJob`: the same exit path, one job at a time), so the next ticks are
  evaluated while orders work -- an evaluation of that strategy meanwhile finds its intent executed;
  the monitor's thread takes each finished job (:meth:`RealtimeMonitor.drain_exits`: states, stats,
  its strategies' snapshots) and reloads the cache; :meth:`close` waits for the jobs in flight.
  :meth:`evaluate` called directly (``--once``, tests) drives its exits before it returns.
* **Pauses.** After the start's load, ``gc.freeze()`` (``freeze_gc``): a full collection no longer
  walks the modules and the cache (one took 0.3-0.45 s here, inside a tick's cycle).
* **Outages.** ``on_disconnect`` / ``on_stale`` flag the feed down; while it is down every open
  strategy is evaluated once per refresh of ``rest_quotes(security_ids)`` (a quotes frame with
  ``security_id, bid, ask, ltp`` [``bid_qty, ask_qty``] or a :class:`~.quotes.QuoteBook`), called at most
  once per ``rest_interval`` (1 s: Dhan's quote API budget). The client reconnects with back-off and
  subscribes everything again by itself; a reconnect makes every strategy due once.
* **Audit.** ``feed_connect`` / ``feed_disconnect`` / ``feed_stale`` rows (written by the monitor's
  thread, not the feed's) and ``mode_change`` when the monitor starts in a mode other than the last
  cycle's (the cycle writes it too, as for every caller).
* **Simulation.** Exits fill on a paper broker over the live book (feed quotes, else REST quotes)
  carrying the paper account's open positions, on a clock at the cycle's ``as_of``; ``alert_only``
  places nothing; ``live`` needs every switch entries need (checked once at construction).

``clock`` gives the cycle's ``as_of`` (default: now); a replayed past session passes a clock in that
session. :meth:`run` (``until`` a ``time.monotonic()`` deadline or :meth:`stop`); :meth:`run_once`
evaluates every open strategy once (after the feed's first quotes, or REST) and returns.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import polars as pl

from ..store import monitoring as ms
from ..store.audit import append_audit, audit_rows
from ..store.changes import ChangeListener
from ..store.warehouse import Warehouse
from .feed import FeedQuoteBook
from .feed.client import DisconnectReason
from .feed.packets import FeedTick
from .live_books import LiveBook, rest_book
from .monitor import MODES, MonitorConfig, monitor_cycle
from .monitor_fast import ExitJob, MonitorCache, fast_cycle
from .monitor_report import CycleReport
from .paper import PaperConfig
from .quotes import QuoteBook
from .replay import paper_execution
from .service import DhanCredentials, carry_open_positions, check_live
from .valuation import quotes_frame

__all__ = ["RealtimeMonitor", "RealtimeStats", "rest_book"]

log = logging.getLogger(__name__)
FeedFactory = Callable[..., object]  # (on_tick=, on_connect=, on_disconnect=, on_stale=, stale_after=) -> client
RestQuotes = Callable[[list[str]], "pl.DataFrame | QuoteBook"]


@dataclass
class RealtimeStats:
    ticks: int = 0
    cycles: int = 0
    rest_calls: int = 0
    rest_cycles: int = 0  # cycles valued with the feed down
    connects: int = 0
    disconnects: int = 0
    position_refreshes: int = 0  # loads of the cache (start, changes, polls)
    version_checks: int = 0  # trading_version queries (no listener)
    notifications: int = 0  # NOTIFYs received (PostgreSQL)
    slow_cycles: int = 0  # evaluations by monitor_cycle (the cache could not serve them)
    snapshot_flushes: int = 0
    intents_created: int = 0
    exits_placed: int = 0
    last_cycle_seconds: float = 0.0
    #: intent key -> time.perf_counter() when this monitor committed its row (before any of its orders)
    intent_at: dict[str, float] = field(default_factory=dict)
    #: intent key -> time.perf_counter() when the cycle that created it returned (its exit orders placed)
    cycle_done_at: dict[str, float] = field(default_factory=dict)


class RealtimeMonitor:
    """See the module docstring. ``feed_factory(on_tick=, on_connect=, on_disconnect=, on_stale=,
    stale_after=)`` returns a started-or-not :class:`~.feed.MarketFeedClient` (or anything with
    ``subscribe``, ``start``, ``stop``); ``on_event(kind, payload)`` sees ``tick`` (sampled),
    ``cycle``, ``intent``, ``feed`` and ``positions`` events (the CLI prints them). ``listen``: LISTEN for
    the trading store's notifications when the warehouse is PostgreSQL; ``fast``: the cached fast path;
    ``freeze_gc``: ``gc.freeze()`` once started, so the objects of the start (modules, the cache) are
    never walked again by a full collection (one took 0.3-0.45 s here, in the middle of a tick's cycle)."""

    def __init__(self, wh: Warehouse, feed_factory: FeedFactory, *, mode: str = "simulation", live: bool = False,
                 rest_quotes: RestQuotes | None = None, interval: float = 0.5, poll_positions_every: float = 5.0,
                 stale_after: float = 10.0, rest_interval: float = 1.0, clock: Callable[[], dt.datetime] | None = None,
                 spot: Mapping[str, float] | Callable[[], Mapping[str, float]] | None = None,
                 credentials: DhanCredentials | None = None, env: Mapping[str, str] | None = None,
                 config: MonitorConfig | None = None, on_event: Callable[[str, dict], None] | None = None,
                 snapshot_every: float = 5.0, listen: bool = True, fast: bool = True, freeze_gc: bool = True) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        if mode == "live":
            check_live("dhan", live=live, credentials=credentials, env=env)
        self.wh, self.mode, self.live, self.credentials, self.env = wh, mode, live, credentials, env
        self.rest_quotes, self.interval, self.poll_every = rest_quotes, float(interval), float(poll_positions_every)
        self.rest_interval, self.clock = float(rest_interval), clock or (lambda: dt.datetime.now(dt.UTC))
        self._spot, self.on_event = spot, on_event
        cfg = config or MonitorConfig()
        self.config = replace(cfg, on_intent=self._intent_written(cfg.on_intent))
        self.snapshot_every, self.fast, self.freeze_gc = float(snapshot_every), fast, freeze_gc
        self.cache = MonitorCache(wh, mode, self.config)
        self.listener = ChangeListener(wh.engine.url, self._on_change) if listen and wh.dialect == "postgresql" \
            else None
        self._changed = False  # a notification (or an own exit) says the cache is stale
        self._exits = ThreadPoolExecutor(max_workers=1, thread_name_prefix="options-v4-exits")
        self._jobs: list[tuple[Future, int]] = []  # exit jobs in flight (future, intents already reported)
        self.book = FeedQuoteBook()
        self.stats = RealtimeStats()
        self.sid_keys: dict[str, set[str]] = {}  # security id -> strategy keys holding it open
        self.keys: set[str] = set()
        self.symbols: dict[str, str] = {}  # strategy key -> symbol
        self.last_report: CycleReport | None = None
        self.feed_up = False
        self._lock = threading.Lock()
        self._due: set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pending_audit: deque = deque()
        self._rest: QuoteBook | None = None
        self._rest_at = float("-inf")
        self._last_cycle = float("-inf")
        self._last_poll = float("-inf")
        self._last_flush = time.monotonic()
        self._first_ids: set[str] = set()
        self.feed = feed_factory(on_tick=self._on_tick, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
                                 on_stale=self._on_stale, stale_after=stale_after)

    # -- feed callbacks (the feed's thread: keep them short) --------------------------------------------
    def _on_tick(self, tick: FeedTick) -> None:
        if self.book.apply(tick) is None:
            return
        keys = self.sid_keys.get(tick.security_id)
        with self._lock:
            self.stats.ticks += 1
            if keys:
                self._due |= keys
                self._wake.set()

    def _on_connect(self) -> None:
        self.feed_up = True
        self.stats.connects += 1
        with self._lock:
            self._pending_audit.append(("feed_connect", "market_feed", {"connections": self.stats.connects,
                                                                        "instruments": len(self.sid_keys)}))
            self._due |= self.keys  # anything may have moved while the feed was down
        self._wake.set()

    def _on_disconnect(self, reason: DisconnectReason) -> None:
        self.feed_up = False
        self.stats.disconnects += 1
        with self._lock:
            self._pending_audit.append(("feed_disconnect", "market_feed",
                                        {"kind": reason.kind, "detail": reason.detail, "code": reason.code,
                                         "fatal": reason.fatal}))
        self._wake.set()

    def _on_stale(self, silent: float) -> None:
        self.feed_up = False
        with self._lock:
            self._pending_audit.append(("feed_stale", "market_feed", {"silent_seconds": round(silent, 3)}))
        self._wake.set()

    def _on_change(self, payload: str | None) -> None:  # the listener's thread
        if payload is not None:
            self.stats.notifications += 1
        self._changed = True
        self._wake.set()

    def _intent_written(self, chained: Callable[[str, bool], None] | None) -> Callable[[str, bool], None]:
        def on_intent(key: str, created: bool) -> None:
            if created:
                self.stats.intent_at.setdefault(key, time.perf_counter())
            if chained is not None:
                chained(key, created)
        return on_intent

    @property
    def listening(self) -> bool:
        return self.listener is not None and self.listener.connected

    # -- positions ------------------------------------------------------------------------------------
    def _stale(self) -> bool:
        """Whether the cache must be loaded again (module docstring). While this monitor's exits are in
        flight only when it cannot serve (an exit finished): the notifications of their fills are mostly
        its own, and the changes wait for the reload after them."""
        if not self.cache.valid:
            return True
        if self._jobs:
            return False
        if self._changed or time.monotonic() - self._last_poll >= self.poll_every:
            return True
        if self.listening:
            return False
        self.stats.version_checks += 1
        return self.cache.changed()

    def refresh_positions(self) -> list[str]:
        """Load the cache (the open strategies and their inputs), subscribe new legs; the strategy keys
        that are new."""
        self._last_poll = time.monotonic()
        self._changed = False  # (before the read: a change during it makes the next step load again)
        self.stats.position_refreshes += 1
        inputs = self.cache.load(self.clock())
        sid_keys: dict[str, set[str]] = {}
        if inputs.legs.height:  # (nothing open: a frame without the leg columns)
            for key, sid in inputs.legs.select("strategy_id", "security_id").drop_nulls("security_id").iter_rows():
                sid_keys.setdefault(str(sid), set()).add(key)
        symbols = dict(inputs.strategies.select("strategy_key", "symbol").iter_rows())
        keys = set(inputs.strategies.filter(pl.col("open_legs") > 0).get_column("strategy_key").to_list())
        new = sorted(keys - self.keys)
        self.sid_keys, self.symbols, self.keys = sid_keys, symbols, keys
        ids = [s for s in sid_keys if s.isdigit()]
        if ids:
            added = self.feed.subscribe(ids)
            if added:
                self._emit("positions", {"strategies": len(keys), "new": new, "subscribed": len(added)})
        if new:
            with self._lock:
                self._due |= set(new)
            self._wake.set()
        return new

    # -- one cycle --------------------------------------------------------------------------------------
    def _rest_refresh(self, ids: list[str]) -> bool:
        """Ask the REST source (at most once per ``rest_interval``); whether a new answer came."""
        if self.rest_quotes is None or not ids or time.monotonic() - self._rest_at < self.rest_interval:
            return False
        self._rest_at = time.monotonic()
        self.stats.rest_calls += 1
        self._rest = rest_book(self.rest_quotes(ids))
        return True

    def _spots(self) -> Mapping[str, float] | None:
        return self._spot() if callable(self._spot) else self._spot

    def _paper(self, book: QuoteBook, keys: list[str], as_of: dt.datetime, aids: list[str] | None = None):
        """A paper broker over ``book`` at ``as_of`` carrying the paper account (simulation exits)."""
        if aids is None:
            aids = self._allocations(keys, as_of)
        last = ms.last_trade_at(self.wh, aids) if aids else None
        start = max(as_of, last + dt.timedelta(seconds=1)) if last else as_of
        paper = PaperConfig(capital=(ms.allocation_capital(self.wh, aids) if aids else None) or PaperConfig.capital)
        px = paper_execution(book, paper=paper, start=start, config=self.config.execution)
        carry_open_positions(px.broker, self.wh)
        return px

    def _allocations(self, keys: list[str], as_of: dt.datetime) -> list[str]:
        strategies = self.cache.inputs.strategies if self.cache.inputs is not None else \
            ms.monitor_inputs(self.wh, as_of, brokers=["paper"], keys=keys).strategies
        return strategies.filter(pl.col("strategy_key").is_in(list(keys))).get_column("allocation_id").unique().to_list()

    def flush_snapshots(self) -> int:
        """Write the kept snapshots now (the fast path's cadence)."""
        self._last_flush = time.monotonic()
        n = self.cache.flush()
        if n:
            self.stats.snapshot_flushes += 1
        return n

    def _submit(self, job: ExitJob) -> None:
        """Hand a cycle's exits to the exit worker (its intents are written); the monitor's thread
        takes the result in :meth:`drain_exits`."""
        fut = self._exits.submit(job.run)
        fut.add_done_callback(lambda _f: self._wake.set())
        self._jobs.append((fut, len(job.cycle.intents)))

    def drain_exits(self, wait: bool = False) -> int:
        """Take the finished exit jobs (all of them with ``wait``): the cache, stats and events follow
        their fills; an exception raised by a job is raised here."""
        n = 0
        while self._jobs and (wait or self._jobs[0][0].done()):
            fut, seen = self._jobs.pop(0)
            job = fut.result()
            self.cache.finish(job)
            report = job.report()
            self._account(report, job.keys, report.intents[seen:], time.perf_counter())
            n += 1
        return n

    def evaluate(self, keys: list[str], wait: bool = True) -> CycleReport | None:
        """One cycle over ``keys`` at the live book (the feed's, or REST while it is down). ``wait``: the
        exits it places are driven before it returns (else by the exit worker: :meth:`drain_exits`)."""
        keys = [k for k in keys if k in self.keys]
        if not keys:
            return None
        wanted = set(keys)
        ids = sorted({s for s, ks in self.sid_keys.items() if ks & wanted})
        if not self.feed_up:
            self._rest_refresh(sorted(self.sid_keys))
            self.stats.rest_cycles += 1
        book = LiveBook(self.book, self._rest, feed_first=self.feed_up)
        frame = quotes_frame(book, ids)
        as_of = self.clock()
        t0 = time.perf_counter()
        report = None
        if self.fast:
            make = None
            if self.mode == "simulation":
                aids = self._allocations(keys, as_of)

                def make():
                    px = self._paper(book, keys, as_of, aids)
                    return px.broker, px.config
            report = fast_cycle(self.cache, as_of=as_of, quotes=frame, keys=keys, spot=self._spots(),
                                make_broker=make, credentials=self.credentials, exits=None if wait else self._submit)
        if report is None:
            self.stats.slow_cycles += 1
            broker, cfg = None, self.config
            if self.mode == "simulation":
                px = self._paper(book, keys, as_of)
                broker, cfg = px.broker, replace(self.config, execution=px.config)
            report = monitor_cycle(self.wh, as_of=as_of, mode=self.mode, source="realtime", broker=broker,
                                   live=self.live, credentials=self.credentials, env=self.env, quotes=frame,
                                   spot=self._spots(), keys=keys, config=cfg)
            if self.fast:  # (the cycle may have settled or exited: the cache reloads before serving again)
                self.cache.invalidate()
        done = time.perf_counter()
        self._last_cycle = time.monotonic()
        self.last_report = report
        st = self.stats
        st.cycles += 1
        st.last_cycle_seconds = done - t0
        self._account(report, keys, report.intents, done)
        self._emit("cycle", {"keys": len(keys), "ticks": st.ticks, "seconds": round(done - t0, 4), "feed_up": self.feed_up,
                             "exits_placed": report.exits_placed, "alerts": dict(report.alerts)})
        return report

    def _account(self, report: CycleReport, keys: list[str], intents: list, done: float) -> None:
        """Stats and events of a cycle's intents and exits; a strategy it closed stops being watched."""
        st = self.stats
        st.exits_placed += report.exits_placed
        for i in intents:
            if i.created:
                st.intents_created += 1
                st.intent_at.setdefault(i.intent_key, done)
                if i.driven or self.mode == "alert_only":
                    st.cycle_done_at.setdefault(i.intent_key, done)
            self._emit("intent", {"intent_key": i.intent_key, "state": i.state, "created": i.created,
                                  "orders": len(i.orders or ()), "note": i.note})
        for k in keys:
            p = next((p for p in report.positions if p.strategy_key == k), None)
            if p is not None and p.state == "CLOSED":
                self.keys.discard(k)

    # -- running ----------------------------------------------------------------------------------------
    def _emit(self, kind: str, payload: dict) -> None:
        if self.on_event is not None:
            self.on_event(kind, payload)

    def flush_audit(self) -> None:
        with self._lock:
            entries = list(self._pending_audit)
            self._pending_audit.clear()
        if entries:
            append_audit(self.wh, entries)
            for kind, _, payload in entries:
                self._emit("feed", {"event": kind, **payload})

    def _audit_mode(self) -> None:
        last = audit_rows(self.wh, kind="cycle", last=1)
        prev = None if last.height == 0 else last.item(0, "subject")
        entries = [("realtime_start", self.mode, {"interval": self.interval, "poll_positions_every": self.poll_every})]
        if prev is not None and prev != self.mode:
            entries.insert(0, ("mode_change", self.mode, {"from": prev, "to": self.mode, "source": "realtime"}))
        append_audit(self.wh, entries)

    def start(self) -> RealtimeMonitor:
        self._audit_mode()
        if self.listener is not None:
            self.listener.start(wait=2.0)
        self.refresh_positions()
        if self.freeze_gc:  # a full collection walks only what is allocated from now on (no 0.3 s pauses)
            gc.collect()
            gc.freeze()
        self.feed.start()
        return self

    def step(self, timeout: float) -> CycleReport | None:
        """Wait up to ``timeout`` for ticks, then (at most once per ``interval``) evaluate what is due."""
        self.drain_exits()
        if self._stale():
            self.refresh_positions()
        if time.monotonic() - self._last_flush >= self.snapshot_every:
            self.flush_snapshots()
        self._wake.wait(timeout)
        self.flush_audit()
        wait = self._last_cycle + self.interval - time.monotonic()
        if wait > 0:
            if self._stopping.wait(wait):
                return None
        with self._lock:
            due, self._due = self._due, set()
            self._wake.clear()
        if not self.feed_up and self.rest_quotes is not None and self.keys \
                and time.monotonic() - self._rest_at >= self.rest_interval:
            due |= self.keys  # the feed is down: REST quotes keep every strategy evaluated
        return self.evaluate(sorted(due), wait=False) if due else None

    def run(self, until: float | None = None) -> RealtimeStats:
        """Run until ``until`` (a ``time.monotonic()`` value), :meth:`stop` or a fatal feed error."""
        self.start()
        try:
            while not self._stopping.is_set():
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    break
                if getattr(self.feed, "fatal", None) is not None and self.rest_quotes is None:
                    log.error("realtime monitor: the feed stopped for good (%s)", self.feed.fatal.detail)
                    break
                self.step(min(self.interval, left) if left is not None else self.interval)
        finally:
            self.close()
        return self.stats

    def run_once(self, wait: float = 5.0) -> CycleReport | None:
        """``--once``: one evaluation of every open strategy (feed quotes once every subscribed leg has
        one or ``wait`` passed, REST quotes where the feed gave none), then stop."""
        self.start()
        try:
            deadline = time.monotonic() + wait
            ids = [s for s in self.sid_keys if s.isdigit()]
            while time.monotonic() < deadline and not all(self.book.quote(s) for s in ids):
                time.sleep(0.05)
            self.flush_audit()
            if not all(self.book.quote(s) for s in self.sid_keys):
                self._rest_refresh(sorted(self.sid_keys))
            return self.evaluate(sorted(self.keys))
        finally:
            self.close()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        self.feed.stop()
        try:
            self.drain_exits(wait=True)  # the exits in flight finish (their orders are being worked)
        finally:
            self._exits.shutdown(wait=True)
            if self.listener is not None:
                self.listener.stop()
            self.flush_audit()
            self.flush_snapshots()
