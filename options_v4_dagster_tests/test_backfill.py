"""Backfills as Dagster runs them: an asset backfill of N sessions, launched on a real instance as the
UI launches it (GraphQL launchPartitionBackfill), launches the work of those N sessions only, in
ranges (the assets' backfill policies), and writes the same rows as day-by-day runs."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from options_v4_dagster.defs.volatility.schedules import IV_COLLECTION_ASSETS
from options_v4_dagster_tests.backfills import (
    assert_same_rows,
    backfill_iteration,
    backfill_runs,
    launch_ui_backfill,
    run_backfill,
    scratch_workspace,
    target_partitions,
)
from options_v4_dagster_tests.pipeline_run import cli_call

TWO = ["2025-07-14", "2025-07-15"]
THREE = ["2025-07-14", "2025-07-15", "2025-07-16"]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture(scope="module")
def day_by_day(tmp_path_factory) -> str:
    """The warehouse of day-by-day runs of iv_collection for THREE, in session order (what the daily
    schedule or `options-v4 iv collect` does): one in-process run per session."""
    from options_v4_dagster.cli.instance import run_pipeline

    base = tmp_path_factory.mktemp("day_by_day")
    url = f"sqlite:///{base / 'wh.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", url)
        mp.setenv("OPTIONS_V4_HOME", str(base / "home"))
        mp.delenv("OPTIONS_V4_MARKET_DATA", raising=False)
        instance = dg.DagsterInstance.ephemeral()
        for s in THREE:
            result, _ = run_pipeline(dt.date.fromisoformat(s), "simulated", job_name="iv_collection",
                                     log_level="WARNING", instance=instance)
            assert result.success, s
    return url


def test_ui_backfill_of_two_sessions_launches_the_work_of_those_two_only(tmp_path, monkeypatch):
    """The issue's broken backfill: 2 sessions of the IV-collection assets from the UI submitted 256 runs
    (iv_percentiles' 252-session mapping fanned each iv_history partition out to 252 later sessions)."""
    with scratch_workspace(tmp_path, monkeypatch, queued=True) as (instance, workspace):
        backfill_id = launch_ui_backfill(workspace, IV_COLLECTION_ASSETS, TWO)
        assert target_partitions(instance, backfill_id) == {a: TWO for a in IV_COLLECTION_ASSETS}
        backfill_iteration(workspace)  # the daemon's first tick: the runs it requests stay queued here
        runs = backfill_runs(instance, backfill_id)
        # one run for both sessions of every asset but iv_percentiles, which waits for them (it reads
        # the earlier sessions' IV history: a self-dependency on the previous session orders it)
        assert len(runs) == 1, [(r.tags.get(RANGE_START), r.tags.get(RANGE_END)) for r in runs]
        (run,) = runs
        assert (run.tags[RANGE_START], run.tags[RANGE_END]) == tuple(TWO)
        assert {k.to_user_string() for k in run.asset_selection} == set(IV_COLLECTION_ASSETS) - {"iv_percentiles"}
        backfill_iteration(workspace)  # nothing materialized yet: no new run
        assert len(backfill_runs(instance, backfill_id)) == 1


@pytest.mark.slow
def test_backfill_through_the_instance_runs_ranges_and_writes_the_rows_of_day_by_day_runs(
        tmp_path, monkeypatch, day_by_day):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with scratch_workspace(tmp_path, monkeypatch, env={"DATABASE_URL": url,
                                                       "OPTIONS_V4_HOME": str(tmp_path / "home")}) as (instance, ws):
        backfill_id = launch_ui_backfill(ws, IV_COLLECTION_ASSETS, THREE)
        runs = run_backfill(instance, ws, backfill_id, max_runs=2)
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
        # the three sessions of the upstream assets in one run, then iv_percentiles' three in another
        assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in runs] == [(THREE[0], THREE[-1])] * 2
        assert {k.to_user_string() for k in runs[1].asset_selection} == {"iv_percentiles"}
        for asset in IV_COLLECTION_ASSETS:
            done = instance.get_materialized_partitions(dg.AssetKey(asset))
            assert sorted(done) == THREE, asset
    counts = assert_same_rows(url, day_by_day)
    assert counts["iv_percentiles"] == counts["historical_iv_summary"] > 0


def _cli_env(tmp_path) -> dict:
    (tmp_path / "dagster_home").mkdir()
    return {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "DATABASE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
            "OPTIONS_V4_HOME": str(tmp_path / "home")}


@pytest.mark.slow
def test_cli_backfill_runs_ranges_in_process_and_writes_the_rows_of_day_by_day_runs(tmp_path, day_by_day):
    env = _cli_env(tmp_path)
    code, out, err = cli_call(env, ["backfill", "--start", THREE[0], "--end", THREE[-1], "--job", "iv_collection",
                                    "--sessions-per-run", "2"])
    assert code == 0, out + err
    out = " ".join(out.split())  # the console wraps long lines
    assert "3 sessions 2025-07-14 .. 2025-07-16" in out and "2 run(s) of up to 2 sessions" in out
    assert "[1/2] 2025-07-14 .. 2025-07-15 (2 sessions) ok" in out and "[2/2] 2025-07-16 (1 sessions) ok" in out
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            runs = list(reversed(instance.get_runs()))
            assert [(r.tags.get(RANGE_START), r.tags.get(RANGE_END), r.tags.get("dagster/partition")) for r in runs] \
                == [(THREE[0], THREE[1], None), (None, None, THREE[2])]
            assert sorted(instance.get_materialized_partitions(dg.AssetKey("iv_percentiles"))) == THREE
    assert_same_rows(env["DATABASE_URL"], day_by_day)
    code, out, _ = cli_call(env, ["runs"])  # a range run names its range
    assert code == 0 and "2025-07-14 .. 2025-07-15" in out and "2025-07-16" in out


def test_cli_backfill_submit_adds_an_asset_backfill_the_daemon_runs(tmp_path):
    env = _cli_env(tmp_path)
    code, out, err = cli_call(env, ["backfill", "--start", TWO[0], "--end", TWO[-1], "--job", "iv_collection",
                                    "--submit"])
    assert code == 0, out + err
    out = " ".join(out.split())
    assert "submitted backfill" in out and "the Dagster daemon runs it" in out
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
        with dg.DagsterInstance.get() as instance:
            (backfill,) = instance.get_backfills()
            assert backfill.backfill_id in out
            assert target_partitions(instance, backfill.backfill_id) == {a: TWO for a in IV_COLLECTION_ASSETS}
            assert backfill.run_config["resources"]["market_data"]["config"]["source"] == "simulated"
            assert instance.get_runs() == []  # nothing runs without the daemon


def test_cli_backfill_wait_needs_submit(tmp_path):
    code, _, err = cli_call(_cli_env(tmp_path), ["backfill", "--start", TWO[0], "--end", TWO[-1], "--wait"])
    assert code == 2 and "--wait" in err
