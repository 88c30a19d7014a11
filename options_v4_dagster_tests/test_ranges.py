"""Range runs: per_session (one step materializes a backfill's range of sessions, oldest first) and the
merged bar windows of a range."""

import datetime as dt

import dagster as dg
import pytest

from options_v4_dagster.defs.partitions import is_last_session, nse_sessions, session_of, session_ranges
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.market.bar_windows import bar_windows

SESSIONS = ["2025-07-14", "2025-07-15", "2025-07-16"]
RANGE = {"dagster/asset_partition_range_start": SESSIONS[0], "dagster/asset_partition_range_end": SESSIONS[-1]}


def _toy_assets(seen: list):
    @dg.asset(partitions_def=nse_sessions, backfill_policy=session_ranges,
              check_specs=[dg.AssetCheckSpec("even_day", asset="toy")])
    @per_session(keep_last=("chart",))
    def toy(context: dg.AssetExecutionContext):
        session = session_of(context)
        seen.append((session, is_last_session(context)))
        yield dg.MaterializeResult(metadata={"dagster/row_count": session.day, "chart": f"chart of {session}",
                                             **({"missing_session": True} if session.day == 15 else {})})
        yield dg.AssetCheckResult(check_name="even_day", passed=session.day % 2 == 0, description=str(session))

    @dg.asset(partitions_def=nse_sessions, backfill_policy=session_ranges, deps=[toy])
    @per_session
    def plain(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"dagster/row_count": 1, "day": session_of(context).day})

    return toy, plain


def _mats(result, key: str) -> list:
    return [e.event_specific_data.materialization for e in result.get_asset_materialization_events()
            if e.asset_key.to_user_string() == key]


def test_a_range_run_calls_the_asset_once_per_session_in_order_and_records_every_partition():
    seen: list = []
    toy, plain = _toy_assets(seen)
    result = dg.materialize([toy, plain], tags=RANGE, raise_on_error=False)
    assert result.success
    assert seen == [(dt.date(2025, 7, 14), False), (dt.date(2025, 7, 15), False), (dt.date(2025, 7, 16), True)]
    mats = _mats(result, "toy")
    assert sorted(m.partition for m in mats) == SESSIONS  # Dagster records the range's materialization per session
    meta = mats[0].metadata
    assert meta["sessions"].value == 3 and meta["session_range"].value == "2025-07-14 .. 2025-07-16"
    assert meta["rows_written"].value == 14 + 15 + 16
    assert "dagster/row_count" not in meta  # not the same for every partition
    assert meta["missing_sessions"].value == ["2025-07-15"]
    assert meta["chart (2025-07-16)"].value == "chart of 2025-07-16"
    assert "| 2025-07-15 | 15 |" in meta["rows_per_session"].value
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed  # the 15th is odd
    assert check.description.startswith("1 of 3 sessions failed (2025-07-15); 2025-07-15: 2025-07-15")
    assert check.metadata["failed_sessions"].value == ["2025-07-15"]
    assert sorted(m.partition for m in _mats(result, "plain")) == SESSIONS


def test_a_single_session_run_is_unchanged():
    seen: list = []
    toy, plain = _toy_assets(seen)
    result = dg.materialize([toy, plain], partition_key="2025-07-16")
    assert seen == [(dt.date(2025, 7, 16), True)]
    (mat,) = _mats(result, "toy")
    assert mat.metadata["dagster/row_count"].value == 16 and "sessions" not in mat.metadata
    assert result.get_asset_check_evaluations()[0].passed


def test_a_failing_session_fails_the_range_step_after_writing_the_sessions_before_it():
    done: list = []

    @dg.asset(partitions_def=nse_sessions, backfill_policy=session_ranges)
    @per_session
    def flaky(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        session = session_of(context)
        if session.day == 15:
            raise dg.Failure(f"no data for {session}")
        done.append(session)
        return dg.MaterializeResult()

    result = dg.materialize([flaky], tags=RANGE, raise_on_error=False)
    assert not result.success and done == [dt.date(2025, 7, 14)]


def test_session_of_outside_per_session_refuses_a_range():
    @dg.asset(partitions_def=nse_sessions)
    def bare(context: dg.AssetExecutionContext) -> None:
        session_of(context)

    with pytest.raises(Exception, match="partition"):
        dg.materialize([bare], tags=RANGE)


def test_bar_windows_merge_overlapping_windows_and_keep_gaps():
    d = dt.date
    out = bar_windows({"NIFTY": [d(2025, 7, 16), d(2025, 7, 14), d(2025, 7, 15)],
                       "NEWCO": [d(2025, 7, 16)],
                       "GAPPY": [d(2024, 1, 1), d(2025, 7, 16)]}, days=365)
    assert out["NIFTY"] == [(d(2024, 7, 14), d(2025, 7, 16))]
    assert out["NEWCO"] == [(d(2024, 7, 16), d(2025, 7, 16))]
    assert out["GAPPY"] == [(d(2023, 1, 1), d(2024, 1, 1)), (d(2024, 7, 16), d(2025, 7, 16))]
    # windows that touch merge: the union is one span
    assert bar_windows({"X": [d(2025, 1, 1), d(2026, 1, 2)]}, days=365) == {"X": [(d(2024, 1, 2), d(2026, 1, 2))]}


def test_multi_assets_one_spec_per_table_get_one_range_result_per_spec():
    specs = [dg.AssetSpec("table_a", partitions_def=nse_sessions), dg.AssetSpec("table_b", partitions_def=nse_sessions)]

    @dg.multi_asset(specs=specs, check_specs=[dg.AssetCheckSpec("rows", asset="table_b")],
                    backfill_policy=session_ranges)
    @per_session
    def yielding(context: dg.AssetExecutionContext):
        day = session_of(context).day
        yield dg.MaterializeResult(asset_key="table_a", metadata={"dagster/row_count": day})
        yield dg.MaterializeResult(asset_key="table_b", metadata={"dagster/row_count": 2 * day})
        yield dg.AssetCheckResult(asset_key="table_b", check_name="rows", passed=True)

    result = dg.materialize([yielding], tags=RANGE)
    assert result.success
    assert _mats(result, "table_a")[0].metadata["rows_written"].value == 45
    assert sorted(m.partition for m in _mats(result, "table_b")) == SESSIONS
    assert _mats(result, "table_b")[0].metadata["rows_written"].value == 90
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]

    specs2 = [dg.AssetSpec("table_c", partitions_def=nse_sessions), dg.AssetSpec("table_d", partitions_def=nse_sessions)]

    @dg.multi_asset(specs=specs2)
    @per_session
    def returning(context: dg.AssetExecutionContext):
        day = session_of(context).day
        return (dg.MaterializeResult(asset_key="table_c", metadata={"dagster/row_count": day}),
                dg.MaterializeResult(asset_key="table_d", metadata={"dagster/row_count": 1}))

    result = dg.materialize([returning], tags=RANGE)
    assert _mats(result, "table_c")[0].metadata["rows_written"].value == 45
    assert _mats(result, "table_d")[0].metadata["sessions"].value == 3
