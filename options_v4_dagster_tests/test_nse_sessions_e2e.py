"""Every dated set of real NSE files runs through the whole daily pipeline to portfolio_allocation.

Each session runs in its own process (the partitions are fixed at import from
OPTIONS_V4_PARTITION_START, which must reach back to 2020) with its own DAGSTER_HOME and warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest

from options_v4_dagster import calendar
from options_v4_dagster.market.nse_files import NseFilesProvider

pytestmark = [pytest.mark.slow, pytest.mark.nse_data]

SESSIONS = ["2020-04-17", "2020-05-14", "2022-03-28", "2023-05-02", "2023-05-03", "2025-02-03", "2025-07-17",
            "2025-09-11"]
STEPS = {"universe", "option_chains", "underlying_bars", "market_conditions", "option_greeks", "iv_history",
         "iv_percentiles", "technical_signals", "strategy_candidates", "portfolio_allocation"}

_SNIPPET = """
import datetime as dt, json, sys
from options_v4_dagster.cli import run_pipeline
result, _ = run_pipeline(dt.date.fromisoformat(sys.argv[1]), "nse_files", sys.argv[2], log_level="WARNING")
mats = sorted({e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"})
failed = [(e.step_key, str(e.event_specific_data.error)[:2000]) for e in result.all_events
          if e.event_type_value == "STEP_FAILURE"]
print("RESULT " + json.dumps({"success": result.success, "materialized": mats, "failed": failed}))
"""


def test_the_listed_sessions_are_every_dated_set_in_the_folder(nse_data_dir):
    assert sorted(d.isoformat() for d in NseFilesProvider(nse_data_dir).sessions_available()) == SESSIONS


@pytest.mark.parametrize("session", SESSIONS)
def test_real_files_of_the_session_run_to_portfolio_allocation(session, nse_data_dir, tmp_path):
    day = dt.date.fromisoformat(session)
    if not calendar.is_session(day):
        pytest.skip(f"{session} is not an NSE trading session")
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "DATABASE_URL": f"sqlite:///{tmp_path / 'wh.db'}",
           "OPTIONS_V4_PARTITION_START": "2020-01-01", "OPTIONS_V4_HOME": str(tmp_path / "home"),
           "OPTIONS_V4_NSE_DATA_DIR": str(nse_data_dir)}
    env.pop("OPTIONS_V4_MARKET_DATA", None)
    proc = subprocess.run([sys.executable, "-c", _SNIPPET, session, str(nse_data_dir)], env=env,
                          capture_output=True, text=True, timeout=900)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    out = json.loads(line[len("RESULT "):])
    assert out["success"] and not out["failed"], out["failed"]
    assert STEPS <= set(out["materialized"]), STEPS - set(out["materialized"])
