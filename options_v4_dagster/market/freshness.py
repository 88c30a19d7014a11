"""Freshness of a session's option chains: end-of-day chains must be snapshots taken near or after the
session's close (15:30 IST). A symbol whose newest stored snapshot is older than ``close - max_age``
(an intraday fetch, a provider re-serving an earlier day, a symbol kept from an earlier run) makes
the session's chains older than expected; a session with no stored chain at all fails too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from options_v4_dagster.calendar import IST, session_close

#: how long before the close a snapshot still counts as the session's end-of-day chain
DEFAULT_MAX_AGE = dt.timedelta(minutes=30)


@dataclass(frozen=True)
class ChainFreshness:
    session: dt.date
    expected_after: dt.datetime  # IST
    symbols: int
    stale: Mapping[str, dt.datetime | None]  # symbol -> its newest snapshot (None: no snapshot time)

    @property
    def passed(self) -> bool:
        return self.symbols > 0 and not self.stale

    def description(self) -> str:
        after = f"{self.expected_after:%H:%M} IST"
        if not self.symbols:
            return f"no option chains stored for {self.session} (expected snapshots after {after})"
        if not self.stale:
            return f"{self.symbols} symbols' chains of {self.session} are snapshots after {after}"
        first = sorted(self.stale.items(), key=lambda kv: (kv[1] is not None, kv[1] or dt.datetime.min, kv[0]))[:5]
        shown = ", ".join(f"{s} {_ist(t)}" for s, t in first)
        return (f"{len(self.stale)} of {self.symbols} symbols' chains of {self.session} are older than expected "
                f"(snapshot before {after}): {shown}" + (" ..." if len(self.stale) > len(first) else ""))


def _ist(t: dt.datetime | None) -> str:
    return "(no snapshot time)" if t is None else f"{t.astimezone(IST):%Y-%m-%d %H:%M} IST"


def chain_freshness(session: dt.date, newest_by_symbol: Mapping[str, dt.datetime | None],
                    max_age: dt.timedelta = DEFAULT_MAX_AGE) -> ChainFreshness:
    """Judge ``newest_by_symbol`` (each symbol's newest stored snapshot of the session, tz-aware)."""
    expected = (session_close(session) - max_age).astimezone(IST)
    stale = {s: t for s, t in newest_by_symbol.items() if t is None or t < expected}
    return ChainFreshness(session, expected, len(newest_by_symbol), stale)
