"""NSE trading sessions and F&O expiry rules.

Sessions come from exchange_calendars' ``XBOM`` calendar (NSE and BSE share holidays). The
library records holidays only up to a bound year; past it, weekdays are taken as sessions and
:func:`holidays_known_until` says where that begins.

Expiry rules (by the contract's expiry date):
- monthly contracts (all underlyings): the last Thursday of the month, the last Tuesday for
  contracts expiring from 2025-09-01 (SEBI/NSE change of expiry day);
- NIFTY weekly contracts: Thursday, Tuesday from 2025-09-01;
- other index weeklies (BANKNIFTY Wed, FINNIFTY Tue, MIDCPNIFTY Mon, NIFTYNXT50 Fri) were
  discontinued after 2024-11-20 (SEBI, one weekly benchmark per exchange);
- an expiry that falls on a holiday moves to the previous session.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

#: THE Indian time zone (one definition; everything else imports it)
TZ_NAME = "Asia/Kolkata"
IST = ZoneInfo(TZ_NAME)
CALENDAR_NAME = "XBOM"
CALENDAR_START = "2010-01-04"
MARKET_CLOSE = dt.time(15, 30)
TUESDAY_EXPIRY_FROM = dt.date(2025, 9, 1)
INDEX_WEEKLIES_END = dt.date(2024, 11, 20)
WEEKLY_WEEKDAY_BEFORE_2025_09 = {"NIFTY": 3, "BANKNIFTY": 2, "FINNIFTY": 1, "MIDCPNIFTY": 0, "NIFTYNXT50": 4}


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xc

    return xc.get_calendar(CALENDAR_NAME, start=CALENDAR_START)


@lru_cache(maxsize=1)
def _known_sessions() -> np.ndarray:
    """Sorted numpy datetime64[D] array of the calendar's sessions."""
    return _calendar().sessions.values.astype("datetime64[D]")


def holidays_known_until() -> dt.date:
    return pd.Timestamp(_calendar().last_session).date()


def _to_d64(d: dt.date) -> np.datetime64:
    return np.datetime64(d, "D")


def is_session(d: dt.date) -> bool:
    if d > holidays_known_until():
        return d.weekday() < 5
    arr = _known_sessions()
    i = np.searchsorted(arr, _to_d64(d))
    return bool(i < len(arr) and arr[i] == _to_d64(d))


def sessions_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Sessions in [start, end], both included."""
    if end < start:
        return []
    known_end = holidays_known_until()
    arr = _known_sessions()
    lo, hi = np.searchsorted(arr, _to_d64(start)), np.searchsorted(arr, _to_d64(min(end, known_end)), "right")
    out = [d.astype(object) for d in arr[lo:hi]] if start <= known_end else []
    if end > known_end:
        extra = pd.bdate_range(max(start, known_end + dt.timedelta(days=1)), end)
        out.extend(d.date() for d in extra)
    return out


def previous_session(d: dt.date, *, inclusive: bool = False) -> dt.date:
    """The latest session before ``d`` (on or before when ``inclusive``)."""
    probe = d if inclusive else d - dt.timedelta(days=1)
    for _ in range(30):
        if is_session(probe):
            return probe
        probe -= dt.timedelta(days=1)
    raise ValueError(f"no NSE session within 30 days before {d}")


def next_session(d: dt.date, *, inclusive: bool = False) -> dt.date:
    probe = d if inclusive else d + dt.timedelta(days=1)
    for _ in range(30):
        if is_session(probe):
            return probe
        probe += dt.timedelta(days=1)
    raise ValueError(f"no NSE session within 30 days after {d}")


def sessions_back(d: dt.date, n: int) -> list[dt.date]:
    """The ``n`` sessions ending at ``d`` (inclusive when ``d`` is a session), oldest first."""
    span = dt.timedelta(days=int(n * 7 / 5) + 30)
    out = sessions_between(d - span, d)
    while len(out) < n:
        span *= 2
        out = sessions_between(d - span, d)
    return out[-n:]


def latest_session(now: dt.datetime | None = None, *, cutoff: dt.time = MARKET_CLOSE) -> dt.date:
    """The latest session whose close has passed (IST); today once it is after 15:30 (or ``cutoff``)."""
    now = (now or dt.datetime.now(IST)).astimezone(IST)
    today = now.date()
    if is_session(today) and now.time() >= cutoff:
        return today
    return previous_session(today)


def weekday_holidays(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays in [start, end] that are not sessions (for the Dagster partition exclusions)."""
    end = min(end, holidays_known_until())
    if end < start:
        return []
    all_weekdays = {d.date() for d in pd.bdate_range(start, end)}
    return sorted(all_weekdays - set(sessions_between(start, end)))


@lru_cache(maxsize=1)
def _holiday_names() -> dict[dt.date, str]:
    """NSE's names of its trading holidays (``reference/nse_holidays.csv``, from NSE's yearly circulars)."""
    import csv
    from pathlib import Path

    path = Path(__file__).resolve().parent / "reference" / "nse_holidays.csv"
    with path.open(newline="") as fh:
        return {dt.date.fromisoformat(r["date"]): r["name"] for r in csv.DictReader(fh)}


def holiday_name(d: dt.date) -> str | None:
    """NSE's name of the trading holiday on ``d`` (None on a session, a weekend or an unnamed holiday)."""
    return None if is_session(d) else _holiday_names().get(d)


def non_session_reason(d: dt.date) -> str | None:
    """Why ``d`` is not an NSE session, for a person: ``"2025-10-21 (Tuesday) is an NSE trading holiday:
    Diwali Laxmi Pujan"``, ``"2025-07-19 is a Saturday (weekend)"``. None when ``d`` is a session."""
    if is_session(d):
        return None
    if d.weekday() >= 5:
        return f"{d} is a {d:%A} (weekend)"
    name = holiday_name(d)
    return f"{d} ({d:%A}) is an NSE trading holiday" + (f": {name}" if name else "")


# --- expiries -----------------------------------------------------------------------------

def _expiry_weekday(d: dt.date) -> int:
    """Weekday of the expiry rule that applies to a contract expiring near ``d``."""
    return 1 if d >= TUESDAY_EXPIRY_FROM else 3


def _roll_back_to_session(d: dt.date) -> dt.date:
    return previous_session(d, inclusive=True)


def monthly_expiry(year: int, month: int) -> dt.date:
    """Monthly F&O expiry of a calendar month (last Thursday / last Tuesday, holiday-adjusted)."""
    last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1))
    wd = _expiry_weekday(dt.date(year, month, 1))
    d = last - dt.timedelta(days=(last.weekday() - wd) % 7)
    return _roll_back_to_session(d)


def _months_from(d: dt.date, n: int) -> list[tuple[int, int]]:
    out, y, m = [], d.year, d.month
    for _ in range(n):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def monthly_expiries(session: dt.date, count: int = 3) -> list[dt.date]:
    """The next ``count`` monthly expiries on or after ``session``."""
    out: list[dt.date] = []
    for y, m in _months_from(session, count + 2):
        e = monthly_expiry(y, m)
        if e >= session:
            out.append(e)
        if len(out) == count:
            break
    return out


def weekly_expiries(symbol: str, session: dt.date, count: int = 4) -> list[dt.date]:
    """The next ``count`` weekly expiries of an index after ``session`` (plus the session itself when
    it is an expiry day); empty once the index's weeklies were discontinued."""
    if symbol not in WEEKLY_WEEKDAY_BEFORE_2025_09:
        return []
    out: list[dt.date] = []
    week_start = session - dt.timedelta(days=session.weekday())
    for k in range(count + 3):
        monday = week_start + dt.timedelta(weeks=k)
        if symbol == "NIFTY":
            wd = 1 if monday + dt.timedelta(days=1) >= TUESDAY_EXPIRY_FROM else 3
        else:
            wd = WEEKLY_WEEKDAY_BEFORE_2025_09[symbol]
        raw = monday + dt.timedelta(days=wd)
        if symbol != "NIFTY" and raw > INDEX_WEEKLIES_END:
            break
        e = _roll_back_to_session(raw)
        if e >= session and e not in out:
            out.append(e)
        if len([x for x in out if x > session]) == count:
            break
    return out


def listed_expiries(symbol: str, session: dt.date, *, is_index: bool, horizon_days: int = 90) -> list[dt.date]:
    """Expiries an underlying has listed on ``session`` within ``horizon_days`` calendar days.

    Stocks: three serial monthlies. Indices: three serial monthlies, plus four weeklies where
    the index has weeklies on that date. Sorted, unique, all on or after the session.
    """
    exp = set(monthly_expiries(session, 3))
    if is_index:
        exp.update(weekly_expiries(symbol, session, 4))
    limit = session + dt.timedelta(days=horizon_days)
    return sorted(e for e in exp if e <= limit)


def expiry_close(expiry: dt.date) -> dt.datetime:
    """15:30 IST on the expiry date, tz-aware."""
    return dt.datetime.combine(expiry, MARKET_CLOSE, tzinfo=IST)


def session_close(session: dt.date) -> dt.datetime:
    return dt.datetime.combine(session, MARKET_CLOSE, tzinfo=IST)
