import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from options_v4_dagster.definitions import build_defs

ROOT = Path(__file__).resolve().parents[1]


def test_definitions_load_with_the_daily_assets():
    defs = build_defs()
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"universe", "option_chains", "underlying_bars", "market_conditions"} <= keys
    job = defs.resolve_job_def("daily_pipeline")
    assert job.partitions_def is not None
    assert {"warehouse", "market_data"} <= set(defs.resources)


def test_dg_check_defs_passes(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    dg_bin = Path(sys.executable).parent / "dg"
    out = subprocess.run([str(dg_bin), "check", "defs"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All definitions loaded successfully" in out.stdout + out.stderr


def test_option_chain_check_is_blocking():
    defs = build_defs()
    graph = defs.resolve_asset_graph()
    spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("option_chains"), "chain_sanity"))
    assert spec.blocking
