"""A settable clock for the paper broker, the executor's timeouts and tests: nothing sleeps.

Anything in ``trading/`` that needs the time takes a ``clock`` callable returning a tz-aware
datetime (default: ``datetime.now(IST)``); tests pass a :class:`ManualClock`.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["ManualClock"]


class ManualClock:
    """A settable clock for tests and benchmarks: each call returns the current time and then moves
    it on by ``step`` seconds (0: stands still until :meth:`advance`)."""

    def __init__(self, start: dt.datetime, step: float = 0.0) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a tz-aware start")
        self.now = start
        self.step = dt.timedelta(seconds=step)

    def __call__(self) -> dt.datetime:
        t = self.now
        self.now = t + self.step
        return t

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
