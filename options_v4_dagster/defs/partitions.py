"""Daily partitions: one per NSE trading session (XBOM calendar), Asia/Kolkata."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from options_v4_dagster import calendar, config


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


def session_of(context) -> dt.date:
    """The partition's session as a date (raises a clear error for a multi-partition run)."""
    return dt.date.fromisoformat(context.partition_key)
