"""A blocking rate limiter shared by every process on the machine: sliding windows kept in a SQLite
ledger, changed only under an exclusive ``flock`` of a lock file beside it.

Dhan enforces its limits per user, while Dagster runs steps in parallel processes and several runs at
once, a CLI run may overlap them, and the real-time monitor runs on its own. A per-process throttle
lets N processes send N times the limit; :class:`SharedRateLimiter` makes them draw from one budget.
The machine is the right scope: Dhan accepts order requests only from the account's whitelisted
static IP, and the data APIs are called from the same deployment.

A *bucket* is a key (an account and an API class, e.g. ``dhan_1000000001:data-api``) and its rates
``((n, window_ms), ...)``: at most ``n`` requests in any ``window_ms``. One request may need several
buckets at once (an option chain counts against the data APIs' 5/s and against its own underlying and
expiry's one per 3 s): :meth:`SharedRateLimiter.slot` takes one slot in each, atomically, under the
lock.

Each request holds its slots from before it is sent until its answer (or failure) comes back: a
request's arrival at the server lies somewhere between the two, so a request still in flight counts
as arriving *now*, and a finished one at the time its answer came. A new request is sent only when
fewer than ``n`` requests so counted fall in the last window, which guarantees at most ``n`` arrivals
in any window whatever the network latency. (pyrate_limiter, tried first, logs a request's time when
its slot is taken; with that, latency jitter let 11 requests arrive within one second at the Dhan
stand-in on a loaded machine, even with a 100 ms margin.) A slot of a process that died mid-request
stops counting as in flight after ``inflight_timeout`` seconds.

``slot`` blocks until every window of every bucket has room, at most ``max_wait`` seconds, then raises
the error ``timeout_error`` builds (nothing was sent; the caller may retry the same request).
``margin_ms`` lengthens every window (default 0: the in-flight rule already covers latency). The
ledger keeps each row for its bucket's longest window (``retain_seconds`` keeps them longer, e.g. for
a test that checks the windows afterwards: :meth:`SharedRateLimiter.ledger`).
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

#: (requests, window in ms) pairs
Rates = Sequence[tuple[int, int]]
#: a bucket: (key, rates)
Bucket = tuple[str, Rates]

_POLL = 0.02  # seconds between checks while waiting for a slot
_SWEEP_EVERY = 60.0  # seconds between sweeps of every key's stale rows
_SWEEP_AGE = 2 * 86_400.0  # rows older than this are stale for any bucket (the longest window is a day)


class RateLimitTimeout(Exception):
    """No slot within ``max_wait`` (the default error; callers pass their own typed one)."""


def bucket_key(*parts: object) -> str:
    """A ledger key from parts (an account, an API class, an underlying...): ``a:b:c``, safe characters only."""
    return ":".join(re.sub(r"[^A-Za-z0-9_.-]", "_", str(p)) for p in parts)


class SharedRateLimiter:
    """A blocking, cross-process sliding-window limiter over one ledger file (see the module docstring)."""

    def __init__(self, path: str | Path, *, table: str = "rate_slots", margin_ms: int = 0, max_wait: float = 30.0,
                 inflight_timeout: float = 120.0, retain_seconds: float = 0.0,
                 timeout_error: Callable[[str, str], Exception] | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_wait < 0 or margin_ms < 0 or retain_seconds < 0:
            raise ValueError("max_wait, margin_ms and retain_seconds must be >= 0")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
            raise ValueError(f"table {table!r} is not a plain identifier")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self.margin = int(margin_ms) / 1000.0
        self.max_wait, self.inflight_timeout = float(max_wait), float(inflight_timeout)
        self.retain = float(retain_seconds)
        self.timeout_error = timeout_error or (lambda label, msg: RateLimitTimeout(msg))
        self.clock, self.sleep = clock, sleep
        self._thread_lock = threading.Lock()
        self._swept = float("-inf")
        self._lock_fd = os.open(str(self.path) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        with self._locked() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT NOT NULL, label TEXT, sent REAL NOT NULL, "
                       "done REAL)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {table}_key_sent ON {table} (key, sent)")
            db.execute(f"CREATE INDEX IF NOT EXISTS {table}_sent ON {table} (sent)")
        #: seconds waited for each slot taken by this object (for logs, tests and the benchmark)
        self.waited: list[float] = []

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        with self._thread_lock:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                yield self._db
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _windows(self, rates: Rates) -> list[tuple[int, float]]:
        if not rates:
            raise ValueError("a bucket needs at least one (requests, window_ms) rate")
        return sorted((int(n), int(ms) / 1000.0 + self.margin) for n, ms in rates)

    def _wait_needed(self, db: sqlite3.Connection, now: float, buckets: Sequence[Bucket]) -> float:
        """Seconds until every window of every bucket has room (0: now), in-flight slots arriving now."""
        wait = 0.0
        for key, rates in buckets:
            windows = self._windows(rates)
            keep = max(windows[-1][1], self.retain)
            db.execute(f"DELETE FROM {self.table} WHERE key = ? AND COALESCE(done, sent + ?) < ?",
                       (key, self.inflight_timeout, now - keep))
            effective = sorted(
                (done if done is not None else (now if sent + self.inflight_timeout > now
                                                else sent + self.inflight_timeout))
                for sent, done in db.execute(f"SELECT sent, done FROM {self.table} WHERE key = ?", (key,)))
            effective.reverse()  # newest first
            for n, window in windows:
                if sum(1 for t in effective if t > now - window) >= n:
                    wait = max(wait, effective[n - 1] + window - now)
        if now - self._swept > _SWEEP_EVERY:  # keys no longer asked for (an expiry's chain key) leave too
            db.execute(f"DELETE FROM {self.table} WHERE sent < ?", (now - max(_SWEEP_AGE, self.retain),))
            self._swept = now
        return max(wait, 0.0)

    def take(self, label: str, buckets: Sequence[Bucket]) -> list[int]:
        """Block until every bucket has room, then record one slot in each (ledger row ids). Prefer :meth:`slot`."""
        buckets = [(str(k), r) for k, r in buckets]
        start = self.clock()
        while True:
            with self._locked() as db:
                now = self.clock()
                wait = self._wait_needed(db, now, buckets)
                if wait <= 0:
                    ids = [int(db.execute(f"INSERT INTO {self.table} (key, label, sent) VALUES (?, ?, ?)",
                                          (key, label, now)).lastrowid) for key, _ in buckets]
                    self.waited.append(now - start)
                    return ids
            left = self.max_wait - (self.clock() - start)
            if left <= 0:
                raise self.timeout_error(label, f"no slot within {self.max_wait:g} s for {label} under "
                                         f"{self.describe(buckets)} (shared through {self.path})")
            self.sleep(max(min(wait, _POLL, left), 0.001))

    def release(self, ids: Sequence[int]) -> None:
        """Mark the slots' request answered (now)."""
        if not ids:
            return
        with self._locked() as db:
            now = self.clock()
            db.executemany(f"UPDATE {self.table} SET done = ? WHERE rowid = ?", [(now, i) for i in ids])

    @contextmanager
    def slot(self, label: str, buckets: Sequence[Bucket]) -> Iterator[None]:
        """Hold one slot in each bucket while the request is sent and answered (see the module docstring)."""
        if not buckets:
            yield
            return
        ids = self.take(label, buckets)
        try:
            yield
        finally:
            self.release(ids)

    def count(self, key: str | None = None) -> int:
        """Requests in the ledger (of ``key``; the retained ones)."""
        with self._locked() as db:
            if key is None:
                return db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
            return db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE key = ?", (key,)).fetchone()[0]

    def ledger(self, key: str | None = None) -> list[tuple[str, str, float, float | None]]:
        """The retained rows (key, label, sent, done), oldest first: what a test checks the windows against."""
        with self._locked() as db:
            q = f"SELECT key, label, sent, done FROM {self.table}"
            rows = db.execute(q + " WHERE key = ? ORDER BY sent", (key,)) if key is not None else \
                db.execute(q + " ORDER BY sent")
            return [tuple(r) for r in rows]

    def describe(self, buckets: Sequence[Bucket]) -> str:
        return "; ".join(f"{key}: " + ", ".join(f"{n} per {w:g} s" for n, w in self._windows(rates))
                         for key, rates in buckets)

    def close(self) -> None:
        self._db.close()
        os.close(self._lock_fd)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r})"


def window_violations(rows: Sequence[tuple[float, float | None]], rates: Rates) -> list[str]:
    """Check a bucket's ledger rows ``(sent, done)`` against ``rates``: for every request, fewer than ``n``
    earlier requests may count in the window before it was sent (a finished one at its ``done``, one
    still in flight - ``done`` after this ``sent`` or None - as arriving then). Returns one line per
    violation (empty: the limiter kept every window), so at most ``n`` requests can have arrived at the
    server in any window whatever their latency."""
    out = []
    ordered = sorted(rows)
    for j, (sent_j, _) in enumerate(ordered):
        for n, ms in rates:
            window = ms / 1000.0
            counted = sum(1 for sent_i, done_i in ordered[:j]
                          if done_i is None or done_i > sent_j - window)
            if counted >= n:
                out.append(f"request {j} sent at {sent_j:.6f}: {counted} earlier requests count in its "
                           f"{window:g} s window (limit {n})")
    return out
