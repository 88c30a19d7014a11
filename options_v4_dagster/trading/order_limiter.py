"""Dhan's order-rate limits, shared by every process that places orders for one account.

Dhan allows 10 order requests a second, 250 a minute, 1,000 an hour and 7,000 a day per user
(place, modify and cancel all count). :class:`OrderRateLimiter` keeps a sliding-window log of the
requests in a SQLite file, changed only under an exclusive ``flock`` of a lock file beside it, so
two executions, a CLI run and a Dagster run on the same machine draw from one budget. The machine is
the right scope: Dhan accepts order requests only from the account's whitelisted static IP, so every
process that can place orders runs behind it.

Each request holds its slot from before it is sent until its answer (or failure) comes back
(:meth:`OrderRateLimiter.slot`): a request's arrival at Dhan lies somewhere between the two, so a
request still in flight counts as arriving *now*, and a finished one at the time its answer came.
A new request is sent only when fewer than N requests so counted fall in the last window, which
guarantees at most N arrivals at Dhan in any window whatever the network latency. (pyrate_limiter,
tried first, logs a request's time when its slot is taken; with that, latency jitter let 11 requests
arrive within one second at the stand-in on a loaded machine, even with a 100 ms margin.) A slot of
a process that died mid-request stops counting as in flight after ``inflight_timeout`` seconds.

``slot`` blocks until every window has room, at most ``max_wait`` seconds, then raises
:class:`~.broker.BrokerRateLimited` (nothing was sent; the caller may retry the same request).
``margin_ms`` lengthens every window (default 0: the in-flight rule already covers latency).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .broker import BrokerRateLimited

#: (requests, window in ms): Dhan's published order limits per user.
DHAN_ORDER_RATES: tuple[tuple[int, int], ...] = ((10, 1_000), (250, 60_000), (1_000, 3_600_000), (7_000, 86_400_000))
LOCAL_LIMIT_CODE = "LOCAL-RATE-LIMIT"
_POLL = 0.02  # seconds between checks while waiting for a slot


class OrderRateLimiter:
    """A blocking, cross-process sliding-window order-rate limiter for one account (``key``)."""

    def __init__(self, path: str | Path, *, key: str = "dhan", rates: Sequence[tuple[int, int]] = DHAN_ORDER_RATES,
                 margin_ms: int = 0, max_wait: float = 30.0, inflight_timeout: float = 120.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_wait < 0 or margin_ms < 0 or not rates:
            raise ValueError("max_wait and margin_ms must be >= 0 and rates not empty")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = re.sub(r"[^A-Za-z0-9_]", "_", key)
        self.rates = sorted((int(n), (int(ms) + int(margin_ms)) / 1000.0) for n, ms in rates)
        self.max_wait, self.inflight_timeout = float(max_wait), float(inflight_timeout)
        self.clock, self.sleep = clock, sleep
        self._thread_lock = threading.Lock()
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        with self._locked() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS order_slots (key TEXT NOT NULL, label TEXT, sent REAL NOT NULL, "
                       "done REAL)")
            db.execute("CREATE INDEX IF NOT EXISTS order_slots_key_sent ON order_slots (key, sent)")
        #: seconds waited for each slot taken by this process (for logs, tests and the benchmark)
        self.waited: list[float] = []

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._db
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _wait_needed(self, db: sqlite3.Connection, now: float) -> float:
        """Seconds until every window has room (0: now), counting in-flight slots as arriving now."""
        longest = self.rates[-1][1]
        db.execute("DELETE FROM order_slots WHERE key = ? AND COALESCE(done, sent + ?) < ?",
                   (self.key, self.inflight_timeout, now - longest))
        effective = sorted((done if done is not None else (now if sent + self.inflight_timeout > now
                                                           else sent + self.inflight_timeout))
                           for sent, done in db.execute("SELECT sent, done FROM order_slots WHERE key = ?", (self.key,)))
        effective.reverse()  # newest first
        wait = 0.0
        for n, window in self.rates:
            if sum(1 for t in effective if t > now - window) >= n:
                wait = max(wait, effective[n - 1] + window - now)
        return max(wait, 0.0)

    def _take(self, label: str) -> int:
        start = self.clock()
        while True:
            with self._locked() as db:
                now = self.clock()
                wait = self._wait_needed(db, now)
                if wait <= 0:
                    cur = db.execute("INSERT INTO order_slots (key, label, sent) VALUES (?, ?, ?)", (self.key, label, now))
                    self.waited.append(now - start)
                    return int(cur.lastrowid)
            left = self.max_wait - (self.clock() - start)
            if left <= 0:
                raise BrokerRateLimited(f"no order slot within {self.max_wait:g} s under Dhan's order limits "
                                        f"({self.describe()}; shared through {self.path})",
                                        code=LOCAL_LIMIT_CODE, correlation_id=label)
            self.sleep(max(min(wait, _POLL, left), 0.001))

    def _release(self, slot_id: int) -> None:
        with self._locked() as db:
            db.execute("UPDATE order_slots SET done = ? WHERE rowid = ?", (self.clock(), slot_id))

    @contextmanager
    def slot(self, label: str = "order") -> Iterator[None]:
        """Hold one order slot while the request is sent and answered (see the module docstring)."""
        slot_id = self._take(label)
        try:
            yield
        finally:
            self._release(slot_id)

    def count(self) -> int:
        """Requests in the log (the last day's)."""
        with self._locked() as db:
            return db.execute("SELECT COUNT(*) FROM order_slots WHERE key = ?", (self.key,)).fetchone()[0]

    def describe(self) -> str:
        return ", ".join(f"{n} per {w:g} s" for n, w in self.rates)

    def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)

    def __repr__(self) -> str:
        return f"OrderRateLimiter(path={str(self.path)!r}, key={self.key!r})"
