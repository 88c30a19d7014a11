"""The issue's Done-when through the CLI: `options-v4 run --date 2025-07-17` (simulated) into a scratch
warehouse, `allocate 1500000 --save --json` (its allocation_id), `approve ID`, then `execute
--allocation ID --json` fills every position on the paper broker at non-zero entry prices, and a
second `execute` places nothing. Plus the refusals: no approval, and each missing live switch."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from options_v4_dagster.cli import build_parser
from options_v4_dagster.store import Warehouse
from options_v4_dagster.trading.paper import PaperBroker
from options_v4_dagster.trading.quotes import StaticQuoteBook
from options_v4_dagster.trading.service import BROKERS, carry_open_positions

from .pipeline_run import cli_call, run_session

D = dt.date(2025, 7, 17)
STRATEGY_KEYS = {"strategy_id", "symbol", "strategy_name", "state", "legs"}
LEG_KEYS = {"correlation_id", "side", "instrument", "strike", "expiry", "quantity", "status", "filled_quantity",
            "average_price"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    env = run_session(tmp_path_factory.mktemp("cli_trading"), D)
    assert env["exit_code"] == 0
    code, out, err = cli_call(env, ["allocate", "1500000", "--date", D.isoformat(), "--save", "--json"])
    assert code == 0, err
    env["allocation_id"] = json.loads(out)["allocation_id"]
    return env


def test_execute_refuses_what_is_not_approved_and_live_without_every_switch(session):
    aid = session["allocation_id"]
    code, out, err = cli_call(session, ["execute", "--allocation", aid])
    assert code == 2 and out == ""
    assert f"options-v4 approve {aid}" in err and len(err.strip().splitlines()) == 1

    creds = {"DHAN_CLIENT_ID": "1000000001", "DHAN_ACCESS_TOKEN": "secret-token-value"}
    cases = [  # (argv tail, env, what the one line must name, what it must not)
        (["--broker", "dhan"], {}, ("DHAN_CLIENT_ID", "OPTIONS_V4_LIVE=1", "--execute"), ()),
        (["--broker", "dhan", "--execute"], {"OPTIONS_V4_LIVE": "1"}, ("DHAN_CLIENT_ID",), ("--execute",)),
        (["--broker", "dhan", "--execute"], creds, ("OPTIONS_V4_LIVE=1",), ("DHAN_CLIENT_ID", "--execute")),
        (["--broker", "dhan"], {**creds, "OPTIONS_V4_LIVE": "1"}, ("--execute",), ("DHAN_CLIENT_ID", "OPTIONS_V4_LIVE")),
        (["--broker", "dhan", "--execute"], {**creds, "OPTIONS_V4_LIVE": "yes"}, ("OPTIONS_V4_LIVE=1",), ()),
        (["--execute"], {**creds, "OPTIONS_V4_LIVE": "1"}, ("needs broker dhan",), ()),  # paper + --execute
        ([], {**creds, "OPTIONS_V4_BROKER": "dhan"}, ("OPTIONS_V4_LIVE=1", "--execute"), ("DHAN_CLIENT_ID",)),
    ]
    for tail, extra, named, unnamed in cases:
        code, out, err = cli_call(session, ["execute", "--allocation", aid, *tail], **extra)
        assert code == 2 and out == "", (tail, extra, out)
        line = err.strip()
        assert len(line.splitlines()) == 1, err
        assert all(n in line for n in named) and not any(n in line for n in unnamed), (tail, extra, line)
        assert "secret-token-value" not in line
    # nothing was sent or stored by any refusal
    code, out, _ = cli_call(session, ["orders", "--json"])
    assert code == 0 and json.loads(out) == []


def test_approve_execute_fills_every_position_on_paper_once(session):
    aid = session["allocation_id"]
    code, out, err = cli_call(session, ["approve", aid, "--by", "trader", "--json"])
    assert code == 0, err
    approval = json.loads(out)
    assert approval["created"] and approval["approved_by"] == "trader" and approval["approval_id"].startswith("ap-")
    code, out, _ = cli_call(session, ["approve", aid])
    assert code == 0 and "already approved" in out and approval["approval_id"] in out  # idempotent

    code, out, err = cli_call(session, ["execute", "--allocation", aid, "--json"])
    assert code == 0, err
    report = json.loads(out)
    assert set(report) == {"allocation_id", "strategies", "orders_placed", "seconds"}
    assert report["allocation_id"] == aid and isinstance(report["seconds"], float)
    strategies = report["strategies"]
    assert len(strategies) >= 15
    assert [s["strategy_id"] for s in strategies] == list(range(1, len(strategies) + 1))
    legs = [leg for s in strategies for leg in s["legs"]]
    for s in strategies:
        assert set(s) == STRATEGY_KEYS and s["state"] == "OPEN", s
        for leg in s["legs"]:
            assert set(leg) == LEG_KEYS
            assert leg["status"] == "TRADED" and leg["filled_quantity"] == leg["quantity"] > 0, leg
            assert leg["average_price"] > 0 and leg["correlation_id"].startswith("e" + aid[:10]), leg
    assert report["orders_placed"] >= len(legs)

    # positions: every leg open with its entry price (the fills' VWAP); no order left working
    code, out, _ = cli_call(session, ["positions", "--json"])
    positions = json.loads(out)
    assert code == 0 and len(positions) == len(legs)
    assert all(p["entry_price"] > 0 and p["quantity"] != 0 and p["state"] == "OPEN" for p in positions)
    code, out, _ = cli_call(session, ["orders", "--json"])
    assert len(json.loads(out)) == report["orders_placed"]
    code, out, _ = cli_call(session, ["orders", "--open", "--json"])
    assert json.loads(out) == []

    # a second execute places nothing, says so, exit 0
    code, out, err = cli_call(session, ["execute", "--allocation", aid, "--json"])
    again = json.loads(out)
    assert code == 0 and again["orders_placed"] == 0 and "nothing placed" in err
    assert [s["state"] for s in again["strategies"]] == ["OPEN"] * len(strategies)
    code, out, _ = cli_call(session, ["execute", "--allocation", aid])
    assert code == 0 and "nothing placed" in out
    # one position by its number
    code, out, _ = cli_call(session, ["execute", "--allocation", aid, "--strategy-id", "2", "--json"])
    one = json.loads(out)
    assert code == 0 and [s["strategy_id"] for s in one["strategies"]] == [2] and one["orders_placed"] == 0
    code, _, err = cli_call(session, ["execute", "--allocation", aid, "--strategy-id", "999"])
    assert code == 2 and "999" in err
    code, out, _ = cli_call(session, ["orders", "--json"])
    assert len(json.loads(out)) == report["orders_placed"]

    # the paper account across processes: a fresh paper broker carries the stored open legs into funds and margin
    wh = Warehouse(session["DATABASE_URL"], create=False)
    broker = PaperBroker(StaticQuoteBook({}))
    before = broker.funds()
    assert carry_open_positions(broker, wh) == len(legs)
    after = broker.funds()
    assert after.used_margin > 0 and after.available < before.available
    wh.dispose()


def test_parser_broker_choices_are_the_service_brokers():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    broker = next(a for a in sub.choices["execute"]._actions if a.dest == "broker")
    assert tuple(broker.choices) == BROKERS
