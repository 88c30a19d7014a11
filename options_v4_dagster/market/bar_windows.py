"""The daily-bar windows a range of sessions needs, fetched once each.

A session's ``underlying_bars`` fetch a year of bars ending at the session, per underlying of its
universe. Over a range of sessions these windows overlap almost entirely: :func:`bar_windows` merges
each symbol's windows into the few spans that cover exactly their union, so a range run fetches and
writes each bar once and ends with the rows day-by-day runs leave (every date of every window, each
from one fetch of a deterministic source)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

Span = tuple[dt.date, dt.date]


def session_window(session: dt.date, days: int) -> Span:
    """The bars one session fetches: ``days`` calendar days back to the session, both included."""
    return session - dt.timedelta(days=days), session


def bar_windows(sessions_by_symbol: Mapping[str, Iterable[dt.date]], days: int) -> dict[str, list[Span]]:
    """``{symbol: [(start, end), ...]}``: the union of the symbol's session windows as disjoint spans,
    oldest first (windows that overlap or touch are merged)."""
    out: dict[str, list[Span]] = {}
    for symbol, sessions in sessions_by_symbol.items():
        spans: list[Span] = []
        for start, end in sorted(session_window(s, days) for s in set(sessions)):
            if spans and start <= spans[-1][1] + dt.timedelta(days=1):
                spans[-1] = (spans[-1][0], max(spans[-1][1], end))
            else:
                spans.append((start, end))
        if spans:
            out[symbol] = spans
    return out
