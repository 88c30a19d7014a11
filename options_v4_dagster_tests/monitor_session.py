"""A session run, allocated, approved and executed on paper through the CLI (2025-07-17) in a scratch
folder: what the monitoring tests monitor."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from .pipeline_run import cli_call, run_session

D = dt.date(2025, 7, 17)


def executed_session(base: Path, session: dt.date = D) -> dict:
    env = run_session(base, session)
    assert env["exit_code"] == 0
    code, out, err = cli_call(env, ["allocate", "1500000", "--date", session.isoformat(), "--save", "--json"])
    assert code == 0, err
    env["allocation_id"] = json.loads(out)["allocation_id"]
    code, out, err = cli_call(env, ["approve", env["allocation_id"], "--json"])
    assert code == 0, err
    code, out, err = cli_call(env, ["execute", "--allocation", env["allocation_id"], "--json"])
    assert code == 0, err
    env["executed"] = json.loads(out)
    assert env["executed"]["strategies"] and {s["state"] for s in env["executed"]["strategies"]} == {"OPEN"}
    return env
