"""Asset backfills on a real Dagster instance, as the UI launches them, for the backfill tests.

:func:`scratch_workspace` gives a DagsterInstance in a temporary DAGSTER_HOME and the code location
(``options_v4_dagster.definitions``, served by a gRPC code server as the daemon serves it);
:func:`launch_ui_backfill` is the webserver's GraphQL ``launchPartitionBackfill``;
:func:`run_backfill` drives the backfill daemon's iteration (``execute_backfill_iteration``, what
``dagster-daemon`` runs every 30 s) until the backfill ends, with the instance's run launcher
executing each run in its own process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

#: the instance: SQLite storage; runs launched at once (DefaultRunCoordinator) or, ``queued``, waiting
#: in the queue (no run-queue daemon here), so a backfill iteration's run requests can be counted
#: without executing them
_YAML = "telemetry:\n  enabled: false\nrun_coordinator:\n  module: dagster.core.run_coordinator\n  class: {}\n"

LAUNCH = """
mutation($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""


@contextlib.contextmanager
def scratch_workspace(base: Path, monkeypatch: pytest.MonkeyPatch, *, queued: bool = False,
                      env: dict | None = None) -> Iterator[tuple[dg.DagsterInstance, object]]:
    """(instance, workspace process context) over a new DAGSTER_HOME in ``base`` and ``env`` (set before
    the code server starts, so the runs it launches inherit it)."""
    from dagster._core.test_utils import create_test_daemon_workspace_context
    from dagster._core.workspace.load_target import ModuleTarget

    home = base / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(_YAML.format("QueuedRunCoordinator" if queued else "DefaultRunCoordinator"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    target = ModuleTarget(module_name="options_v4_dagster.definitions", attribute=None,
                          working_directory=str(Path(__file__).resolve().parents[1]),
                          location_name="options_v4_dagster")
    with dg.DagsterInstance.get() as instance:
        with create_test_daemon_workspace_context(target, instance) as process_context:
            yield instance, process_context


def launch_ui_backfill(process_context, assets: Sequence[str], sessions: Sequence[str]) -> str:
    """The UI's "Materialize -> Launch backfill" of ``assets`` for ``sessions``: GraphQL launchPartitionBackfill."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    result = execute_dagster_graphql(process_context.create_request_context(), LAUNCH, {"backfillParams": {
        "partitionNames": list(sessions), "assetSelection": [{"path": [a]} for a in assets]}})
    assert result.errors is None, result.errors
    data = result.data["launchPartitionBackfill"]
    assert data["__typename"] == "LaunchBackfillSuccess", data
    return data["backfillId"]


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list:
    from dagster._core.storage.tags import BACKFILL_ID_TAG

    return list(reversed(instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id}))))


def backfill_iteration(process_context) -> None:
    """One tick of the backfill daemon."""
    from dagster._daemon.backfill import execute_backfill_iteration

    for err in execute_backfill_iteration(process_context, logging.getLogger("backfill_test")):
        if err is not None:
            raise AssertionError(f"backfill daemon error: {err}")


def target_partitions(instance: dg.DagsterInstance, backfill_id: str) -> dict[str, list[str]]:
    """{asset: its sorted partition keys} targeted by the backfill."""
    target = instance.get_backfill(backfill_id).asset_backfill_data.target_subset
    return {k.to_user_string(): sorted(target.get_partitions_subset(k).get_partition_keys())
            for k in target.asset_keys}


def run_backfill(instance: dg.DagsterInstance, process_context, backfill_id: str, *, max_runs: int,
                 timeout: float = 900.0) -> list:
    """Tick the backfill daemon until the backfill ends, waiting for its runs between ticks. Fails as soon
    as the backfill has launched more than ``max_runs`` runs. Returns its runs, oldest first."""
    from dagster._core.execution.backfill import BulkActionStatus

    deadline = time.monotonic() + timeout
    while True:
        backfill_iteration(process_context)
        runs = backfill_runs(instance, backfill_id)
        assert len(runs) <= max_runs, (f"the backfill launched {len(runs)} runs (at most {max_runs} expected): "
                                       + ", ".join(sorted({r.tags.get('dagster/partition', '') or
                                                           r.tags.get('dagster/asset_partition_range_start', '')
                                                           for r in runs})[:20]))
        status = instance.get_backfill(backfill_id).status
        if status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING, BulkActionStatus.FAILING):
            return runs
        assert time.monotonic() < deadline, f"backfill {backfill_id} still {status} after {timeout:.0f}s"
        while any(not r.is_finished for r in backfill_runs(instance, backfill_id)):
            assert time.monotonic() < deadline, "backfill runs still running"
            time.sleep(1.0)


#: the tables of the IV-collection assets, and columns that hold the time of writing (not compared)
IV_TABLES = ("fno_universe", "option_chain_data", "underlying_bars", "nifty_historical_data", "india_vix_data",
             "market_conditions", "option_greeks", "historical_iv_summary", "iv_percentiles", "pipeline_failures",
             "session_provenance")
WRITE_TIME_COLUMNS = ("recorded_at", "written_at", "created_at", "updated_at")


def table_rows(url: str, table: str) -> pl.DataFrame:
    """Every row of ``table`` in a canonical order, without the columns that hold the time of writing."""
    from options_v4_dagster.store import Warehouse

    wh = Warehouse(url, create=False)
    try:
        frame = wh.read(f'SELECT * FROM "{table}"')
    finally:
        wh.dispose()
    frame = frame.drop([c for c in frame.columns if c in WRITE_TIME_COLUMNS])
    return frame.sort(frame.columns, nulls_last=True) if frame.height else frame


def assert_same_rows(url_a: str, url_b: str, tables: Sequence[str] = IV_TABLES) -> dict[str, int]:
    """The tables hold the same rows in both warehouses; {table: rows}."""
    from polars.testing import assert_frame_equal

    counts = {}
    for t in tables:
        a, b = table_rows(url_a, t), table_rows(url_b, t)
        assert a.height == b.height, f"{t}: {a.height} rows against {b.height}"
        if a.height:
            assert_frame_equal(a, b, check_dtypes=False, check_exact=True), t
        counts[t] = a.height
    return counts
