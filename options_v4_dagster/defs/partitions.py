"""Daily partitions: one per NSE trading session (XBOM calendar), Asia/Kolkata.

A run materializes one session, or a range of sessions when a backfill groups them (the assets'
:data:`session_ranges` backfill policy): :func:`sessions_of` gives the run's sessions in order, and
inside :func:`options_v4_dagster.defs.ranges.per_session` :func:`session_of` gives the session being
processed."""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
from collections.abc import Iterator

import dagster as dg

from options_v4_dagster import calendar, config

#: Sessions per run of a backfill (``BackfillPolicy.multi_run``): a backfill of N sessions runs in
#: ceil(N / SESSIONS_PER_RUN) runs, each processing its sessions in order in one process.
SESSIONS_PER_RUN = config.BACKFILL_SESSIONS_PER_RUN


def _build() -> dg.TimeWindowPartitionsDefinition:
    start = dt.date.fromisoformat(config.partition_start())
    holidays = calendar.weekday_holidays(start, calendar.holidays_known_until())
    return dg.TimeWindowPartitionsDefinition(
        start=start.isoformat(),
        fmt="%Y-%m-%d",
        cron_schedule="0 0 * * 1-5",
        timezone=calendar.TZ_NAME,
        exclusions=[dt.datetime.combine(d, dt.time(0), tzinfo=calendar.IST) for d in holidays],
        end_offset=1,
    )


nse_sessions = _build()

#: Backfill policy of the per-session assets: ranges of up to SESSIONS_PER_RUN sessions per run.
session_ranges = dg.BackfillPolicy.multi_run(max_partitions_per_run=SESSIONS_PER_RUN)
#: Backfill policy of an asset that needs the earlier sessions first (iv_percentiles, self-dependent):
#: every session whose predecessors are done, in one run.
ordered_sessions = dg.BackfillPolicy.single_run()

# The session being processed inside a range run (set by defs.ranges.per_session).
_CURRENT: contextvars.ContextVar[tuple[dt.date, bool] | None] = contextvars.ContextVar("options_v4_session",
                                                                                       default=None)


def sessions_of(context) -> list[dt.date]:
    """The run's sessions, oldest first: one, or every session of a backfill's partition-key range."""
    return sorted(dt.date.fromisoformat(k) for k in context.partition_keys)


def session_of(context) -> dt.date:
    """The session being materialized: the run's partition, or inside :func:`~options_v4_dagster.defs.ranges.
    per_session` the session of the range being processed (a multi-partition run otherwise raises)."""
    current = _CURRENT.get()
    if current is not None:
        return current[0]
    return dt.date.fromisoformat(context.partition_key)


def is_last_session(context) -> bool:
    """False while a range run processes any session but its last (e.g. charts only for the last)."""
    current = _CURRENT.get()
    return current is None or current[1]


@contextlib.contextmanager
def processing(session: dt.date, last: bool) -> Iterator[None]:
    """Make :func:`session_of` return ``session`` inside the block."""
    token = _CURRENT.set((session, last))
    try:
        yield
    finally:
        _CURRENT.reset(token)
