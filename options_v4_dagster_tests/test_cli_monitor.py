"""The monitoring CLI on a session executed on paper (run -> allocate --save -> approve -> execute on
2025-07-17): `monitor once --date D --json` lists every position with its actions and a second call
places nothing; `monitor poll --cycles 1`, `monitor dashboard`; `status` exit codes; `audit verify`
exit 0, and 1 naming the first broken row after a row is tampered with."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from options_v4_dagster.cli import USES_WAREHOUSE, build_parser
from options_v4_dagster.store import Warehouse
from options_v4_dagster.store.audit import audit_rows
from options_v4_dagster.store.monitoring import intents, snapshot_count
from options_v4_dagster.store.monitoring_schema import audit_log

from .monitor_session import D, executed_session
from .pipeline_run import cli_call

POSITION_KEYS = {"strategy_id", "symbol", "strategy_name", "state", "pnl", "pnl_pct_of_max_loss", "dte", "actions"}
ACTION_KEYS = {"action", "rule", "urgency", "quantity", "reason"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return executed_session(tmp_path_factory.mktemp("cli_monitor"))


def test_parser_and_warehouse_commands():
    p = build_parser()
    a = p.parse_args(["monitor", "once", "--date", D.isoformat(), "--alert-only", "--json"])
    assert a.monitor_command == "once" and a.alert_only and not a.execute and a.json
    a = p.parse_args(["monitor", "poll"])
    assert a.interval == 5.0 and a.cycles is None
    with pytest.raises(SystemExit):
        p.parse_args(["monitor", "once", "--alert-only", "--execute"])
    assert {"monitor", "status", "audit"} <= USES_WAREHOUSE


def test_monitor_once_lists_every_position_and_a_second_call_places_nothing(session):
    code, out, err = cli_call(session, ["monitor", "once", "--date", D.isoformat(), "--json"])
    assert code == 0, err
    first = json.loads(out)
    assert first["date"] == D.isoformat() and first["mode"] == "simulation"
    executed = {(s["symbol"], s["strategy_name"]) for s in session["executed"]["strategies"]}
    assert {(p["symbol"], p["strategy_name"]) for p in first["positions"]} == executed
    for p in first["positions"]:
        assert POSITION_KEYS <= set(p) and p["actions"] is not None
        assert p["pnl"] is not None and p["dte"] is not None
        for a in p["actions"]:
            assert ACTION_KEYS <= set(a)
    code, out, err = cli_call(session, ["monitor", "once", "--date", D.isoformat(), "--json"])
    assert code == 0, err
    second = json.loads(out)
    assert second["exits_placed"] == 0
    assert all(not i["created"] for i in second["intents"])
    wh = Warehouse(session["DATABASE_URL"], create=False)
    assert snapshot_count(wh, trade_date=D, source="cli") >= len(first["positions"])
    assert all(i["state"] not in ("PARTIAL", "FAILED") for i in intents(wh))
    wh.dispose()


def test_poll_dashboard_and_refusals(session):
    code, out, err = cli_call(session, ["monitor", "poll", "--date", D.isoformat(), "--cycles", "1", "--alert-only"])
    assert code == 0, err
    assert "cycle 1 (alert_only, 2025-07-17)" in out and "exits placed: 0" in out
    code, out, err = cli_call(session, ["monitor", "dashboard", "--date", D.isoformat(), "--detailed"])
    assert code == 0, err
    assert "portfolio" in out and "legs" in out and "win(s)" in out
    code, out, err = cli_call(session, ["monitor", "once", "--date", D.isoformat(), "--execute"])
    assert code == 2 and out == "" and "OPTIONS_V4_LIVE=1" in err  # live needs every switch, as entries


def test_status_and_audit_verify(session):
    code, out, err = cli_call(session, ["monitor", "once", "--date", D.isoformat(), "--json"])
    assert code == 0, err
    code, out, err = cli_call(session, ["status", "--date", D.isoformat(), "--json"])
    st = json.loads(out)
    assert st["audit_ok"] and st["provenance"] and st["allocations"]
    assert st["allocations"][0]["approvals"] and st["executions"]
    assert code == (1 if st["attention"] else 0), st["attention"]
    code, out, err = cli_call(session, ["status", "--date", D.isoformat()])
    assert f"session {D}" in out and "audit chain: verified" in out and code == (1 if st["attention"] else 0)

    code, out, err = cli_call(session, ["audit", "verify"])
    assert code == 0 and "audit chain verified" in out, err
    wh = Warehouse(session["DATABASE_URL"], create=False)
    victim = int(audit_rows(wh).get_column("id")[1])
    with wh.engine.begin() as conn:
        conn.execute(sa.update(audit_log).where(audit_log.c.id == victim).values(subject="tampered"))
    wh.dispose()
    code, out, err = cli_call(session, ["audit", "verify"])
    assert code == 1 and f"row {victim}" in err
    code, out, err = cli_call(session, ["status", "--date", D.isoformat(), "--json"])
    assert code == 1 and not json.loads(out)["audit_ok"]
