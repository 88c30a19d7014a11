"""Argument validators (argparse ``type=``): a bad value is one line naming the argument, status 2.

The calendar (pandas, exchange_calendars) and the F&O universe (polars) are imported when a value is
checked, not when the parser is built, so ``options-v4 --help`` does not load them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from pathlib import Path

from options_v4_dagster import config
from options_v4_dagster.errors import ConfigError, DataError

DATE_HELP = "session YYYY-MM-DD (default: the latest completed session)"


def last_partition(now: dt.datetime | None = None) -> dt.date:
    """The last daily partition: today's session in IST (the partitions def has ``end_offset=1``), or the
    latest session before today on a weekend or holiday. Later dates are in the future and have no data."""
    from options_v4_dagster import calendar

    today = (now or dt.datetime.now(calendar.IST)).astimezone(calendar.IST).date()
    return calendar.previous_session(today, inclusive=True)


def date_arg(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a calendar date in YYYY-MM-DD form") from None


def session_arg(value: str) -> dt.date:
    """A session the pipeline has a partition for: a trading day from the first partition to the last."""
    from options_v4_dagster import calendar

    d = date_arg(value)
    last = last_partition()
    if d > last:
        raise argparse.ArgumentTypeError(f"{d} is after the last partition {last} (today's session at the latest): "
                                         "a future session has no market data")
    if not calendar.is_session(d):
        before, after = calendar.previous_session(d), calendar.next_session(d)
        raise argparse.ArgumentTypeError(f"{d} ({d:%A}) is not an NSE trading session; the sessions around it are "
                                         f"{before} and {after}")
    start = config.partition_start()
    if d < dt.date.fromisoformat(start):
        raise argparse.ArgumentTypeError(f"{d} is before the first partition {start} "
                                         "(set OPTIONS_V4_PARTITION_START to go further back)")
    return d


def positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def positions_arg(value: str) -> list[int]:
    """``1,3,5``: position numbers of an allocation snapshot (1-based, as `options-v4 execute` shows them)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{value!r} names no position")
    return sorted({positive_int(p) for p in parts})


def capital_arg(value: str) -> float:
    try:
        x = float(value.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"capital {value!r} is not a number of rupees") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"capital {value!r} must be a positive number of rupees")
    return x


def symbol_arg(value: str) -> str:
    from options_v4_dagster import universe as fno

    sym = value.strip().upper()
    try:
        fno.get(sym)
    except DataError:
        raise argparse.ArgumentTypeError(f"{sym or value!r} is not an underlying in the F&O universe "
                                         "(options_v4_dagster/reference/fno_universe.csv)") from None
    return sym


def symbols_arg(value: str) -> list[str]:
    from options_v4_dagster import universe as fno

    syms = [s.strip().upper() for s in value.split(",") if s.strip()]
    if not syms:
        raise argparse.ArgumentTypeError(f"{value!r} names no symbol")
    unknown = [s for s in syms if s not in set(fno.symbols())]
    if unknown:
        raise argparse.ArgumentTypeError(f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in the "
                                         "F&O universe (options_v4_dagster/reference/fno_universe.csv)")
    return list(dict.fromkeys(syms))


def existing_dir(value: str) -> str:
    if not Path(value).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a folder")
    return value


def existing_file(value: str) -> str:
    if not Path(value).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"{value} is not a file")
    return value


def parse_session(value: str | dt.date | None) -> dt.date:
    """A session date from the command line; ``None`` is the latest completed session."""
    if value is None:
        from options_v4_dagster import calendar

        return calendar.latest_session()
    if isinstance(value, dt.date):
        return value
    try:
        return session_arg(value)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--date: {exc}") from None
