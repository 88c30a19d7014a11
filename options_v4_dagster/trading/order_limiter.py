"""Dhan's order-rate limits, shared by every process that places orders for one account.

Dhan allows 10 order requests a second, 250 a minute, 1,000 an hour and 7,000 a day per user
(place, modify and cancel all count). :class:`OrderRateLimiter` is the project's cross-process limiter
(:class:`~options_v4_dagster.rate_limiter.SharedRateLimiter`: a sliding-window ledger in a SQLite file
changed only under an exclusive ``flock``, a request holding its slot from before it is sent until its
answer comes back) with one bucket, the account's order requests, so two executions, a CLI run and a
Dagster run on the same machine draw from one budget. The market-data and order-read calls of the same
account go through the same class (:mod:`options_v4_dagster.market.dhan_limits`).

``slot`` blocks until every window has room, at most ``max_wait`` seconds, then raises
:class:`~.broker.BrokerRateLimited` (nothing was sent; the caller may retry the same request).
``margin_ms`` lengthens every window (default 0: the in-flight rule already covers latency).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..rate_limiter import SharedRateLimiter, bucket_key
from .broker import BrokerRateLimited

#: (requests, window in ms): Dhan's published order limits per user.
DHAN_ORDER_RATES: tuple[tuple[int, int], ...] = ((10, 1_000), (250, 60_000), (1_000, 3_600_000), (7_000, 86_400_000))
LOCAL_LIMIT_CODE = "LOCAL-RATE-LIMIT"


class OrderRateLimiter(SharedRateLimiter):
    """A blocking, cross-process sliding-window order-rate limiter for one account (``key``)."""

    def __init__(self, path: str | Path, *, key: str = "dhan", rates: Sequence[tuple[int, int]] = DHAN_ORDER_RATES,
                 margin_ms: int = 0, max_wait: float = 30.0, inflight_timeout: float = 120.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        if not rates:
            raise ValueError("rates must not be empty")
        super().__init__(path, table="order_slots", margin_ms=margin_ms, max_wait=max_wait,
                         inflight_timeout=inflight_timeout, timeout_error=self._refused, clock=clock, sleep=sleep)
        self.key = bucket_key(key)
        self.rates = tuple((int(n), int(ms)) for n, ms in rates)

    def _refused(self, label: str, message: str) -> BrokerRateLimited:
        return BrokerRateLimited(f"no order slot within {self.max_wait:g} s under Dhan's order limits "
                                 f"({self.describe()}; shared through {self.path})",
                                 code=LOCAL_LIMIT_CODE, correlation_id=label)

    def _take(self, label: str) -> int:
        return self.take(label, [(self.key, self.rates)])[0]

    @contextmanager
    def slot(self, label: str = "order", buckets: Sequence | None = None) -> Iterator[None]:
        """Hold one order slot while the request is sent and answered (see the module docstring)."""
        with super().slot(label, [(self.key, self.rates)] if buckets is None else buckets):
            yield

    def count(self, key: str | None = None) -> int:
        """Requests in the log (the last day's)."""
        return super().count(self.key if key is None else key)

    def describe(self, buckets: Sequence | None = None) -> str:
        if buckets is not None:
            return super().describe(buckets)
        return ", ".join(f"{n} per {w:g} s" for n, w in self._windows(self.rates))

    def __repr__(self) -> str:
        return f"OrderRateLimiter(path={str(self.path)!r}, key={self.key!r})"
