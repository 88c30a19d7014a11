"""Dhan's order-rate limits, shared by every process that places orders for one account.

Dhan allows 10 order requests a second, 250 a minute, 1,000 an hour and 7,000 a day per user
(place, modify and cancel all count). :class:`OrderRateLimiter` keeps a sliding-window log of the
requests in a SQLite file guarded by a file lock (``pyrate_limiter``'s ``SQLiteBucket`` with
``use_file_lock``), so two executions, a CLI run and a Dagster run on the same machine draw from
one budget. The machine is the right scope: Dhan accepts order requests only from the account's
whitelisted static IP, so every process that can place orders runs behind it (a PostgreSQL bucket
for processes on several hosts behind one NAT'd IP is not provided).

``acquire`` blocks until every window has room, at most ``max_wait`` seconds, then raises
:class:`~.broker.BrokerRateLimited` (nothing was sent; the caller may retry the same request).
Each window is ``margin_ms`` longer than Dhan's so that the spread of network latencies between
our clock and Dhan's never lets 11 requests arrive within one of Dhan's seconds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from pyrate_limiter import Limiter, Rate, SQLiteBucket

from .broker import BrokerRateLimited

#: (requests, window in ms): Dhan's published order limits per user.
DHAN_ORDER_RATES: tuple[tuple[int, int], ...] = ((10, 1_000), (250, 60_000), (1_000, 3_600_000), (7_000, 86_400_000))
DEFAULT_FILE = "dhan_order_limiter.sqlite"
LOCAL_LIMIT_CODE = "LOCAL-RATE-LIMIT"


class OrderRateLimiter:
    """A blocking, cross-process order-rate limiter for one account (``key``) in ``path``."""

    def __init__(self, path: str | Path, *, key: str = "dhan", rates: Sequence[tuple[int, int]] = DHAN_ORDER_RATES,
                 margin_ms: int = 100, max_wait: float = 30.0) -> None:
        if max_wait < 0:
            raise ValueError("max_wait must be >= 0")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.key = key
        self.max_wait = float(max_wait)
        self.rates = [Rate(n, ms + margin_ms) for n, ms in sorted(rates, key=lambda r: r[1])]
        table = "orders_" + re.sub(r"[^A-Za-z0-9_]", "_", key)
        self._bucket = SQLiteBucket.init_from_file(self.rates, table=table, db_path=str(self.path),
                                                   use_file_lock=True)
        self._limiter = Limiter(self._bucket, buffer_ms=5)
        #: seconds waited by the requests of this process (for logs, tests and the benchmark)
        self.waited: list[float] = []

    def acquire(self, label: str = "order") -> float:
        """Take one slot (blocking up to ``max_wait``); the seconds waited. Raises BrokerRateLimited."""
        t0 = time.monotonic()
        ok = self._limiter.try_acquire(label, blocking=True, timeout=self.max_wait)
        waited = time.monotonic() - t0
        if not ok:
            raise BrokerRateLimited(f"no order slot within {self.max_wait:g} s under Dhan's limits "
                                    f"({', '.join(map(str, self.rates))}; shared through {self.path})",
                                    code=LOCAL_LIMIT_CODE, correlation_id=label)
        self.waited.append(waited)
        return waited

    def count(self) -> int:
        """Requests recorded in the log (the last day's, until they are leaked)."""
        return self._bucket.count()

    def close(self) -> None:
        self._limiter.close()

    def __repr__(self) -> str:
        return f"OrderRateLimiter(path={str(self.path)!r}, key={self.key!r})"
