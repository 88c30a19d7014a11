import datetime as dt

import pytest

from options_v4_dagster import calendar
from options_v4_dagster.defs.partitions import nse_sessions

D = dt.date


def test_partitions_are_nse_sessions():
    keys = set(nse_sessions.get_partition_keys())
    assert "2025-10-20" in keys and "2025-10-23" in keys
    assert "2025-10-21" not in keys and "2025-10-22" not in keys  # Diwali holidays
    assert "2025-10-18" not in keys  # Saturday
    assert min(keys) == "2024-01-01"
    # every partition up to the calendar's bound is a session and vice versa
    known = calendar.holidays_known_until()
    sessions = {d.isoformat() for d in calendar.sessions_between(D(2024, 1, 1), min(known, D.today()))}
    assert {k for k in keys if k <= min(known, D.today()).isoformat()} == sessions


def test_sessions_between_and_neighbours():
    s = calendar.sessions_between(D(2025, 10, 17), D(2025, 10, 24))
    assert s == [D(2025, 10, 17), D(2025, 10, 20), D(2025, 10, 23), D(2025, 10, 24)]
    assert calendar.previous_session(D(2025, 10, 23)) == D(2025, 10, 20)
    assert calendar.next_session(D(2025, 10, 20)) == D(2025, 10, 23)
    assert calendar.sessions_back(D(2025, 10, 23), 3) == [D(2025, 10, 17), D(2025, 10, 20), D(2025, 10, 23)]


def test_latest_session_respects_close_time():
    ist = calendar.IST
    assert calendar.latest_session(dt.datetime(2025, 10, 24, 15, 0, tzinfo=ist)) == D(2025, 10, 23)
    assert calendar.latest_session(dt.datetime(2025, 10, 24, 15, 31, tzinfo=ist)) == D(2025, 10, 24)
    assert calendar.latest_session(dt.datetime(2025, 10, 26, 12, 0, tzinfo=ist)) == D(2025, 10, 24)


@pytest.mark.parametrize(
    "year,month,expected",
    [
        (2025, 7, D(2025, 7, 31)),  # last Thursday
        (2025, 8, D(2025, 8, 28)),
        (2025, 9, D(2025, 9, 30)),  # last Tuesday from September 2025
        (2025, 10, D(2025, 10, 28)),
        (2024, 3, D(2024, 3, 28)),
        (2025, 12, D(2025, 12, 30)),
    ],
)
def test_monthly_expiry(year, month, expected):
    assert calendar.monthly_expiry(year, month) == expected


def test_holiday_moves_expiry_to_previous_session():
    # 2025-10-21 (Tue) is a holiday; a Tuesday NIFTY weekly that week moves to Monday 2025-10-20.
    assert D(2025, 10, 20) in calendar.weekly_expiries("NIFTY", D(2025, 10, 17))
    # Thursday 2024-08-15 (Independence Day) moved the NIFTY weekly to Wednesday 2024-08-14
    assert D(2024, 8, 14) in calendar.weekly_expiries("NIFTY", D(2024, 8, 12))


def test_listed_expiries_match_nse_snapshot_dates():
    # NSE's 17-Jul-2025 NIFTY chain lists 17, 24, 31 Jul, 7, 14, 28 Aug inside 45 days.
    got = calendar.listed_expiries("NIFTY", D(2025, 7, 17), is_index=True, horizon_days=45)
    assert got == [D(2025, 7, 17), D(2025, 7, 24), D(2025, 7, 31), D(2025, 8, 7), D(2025, 8, 14), D(2025, 8, 28)]
    assert calendar.listed_expiries("RELIANCE", D(2025, 7, 17), is_index=False) == [
        D(2025, 7, 31), D(2025, 8, 28), D(2025, 9, 30)]
    # BANKNIFTY weeklies ended in November 2024
    assert calendar.listed_expiries("BANKNIFTY", D(2025, 9, 11), is_index=True) == [
        D(2025, 9, 30), D(2025, 10, 28), D(2025, 11, 25)]
    assert all(e.weekday() == 1 for e in calendar.weekly_expiries("NIFTY", D(2025, 9, 11)))
