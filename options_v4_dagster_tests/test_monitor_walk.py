"""Trade monitoring end to end (issue 12, "Done when"): the daily pipeline on 2025-07-17 (simulated),
allocate --save, approve and execute on paper, then ``options-v4 monitor once --date D --json`` for every
NSE session from 2025-07-18 up to the last expiry held, each date twice.

One position is left FAILED for a human at entry (its short leg finds no bid; execution leaves the
filled long leg open): it is valued and alerted HIGH every session, never exited automatically, and
its long leg settles at intrinsic value after the expiry. On the first session one position's stored
profit target and another's stop are set where that session's P&L crosses them (each rule's case).

Quotes: a replayed date needs its option chain stored. The first session is monitored before its chain
exists: the cycle refuses, naming the date and the job that stores it, and leaves nothing behind. Each
later session's chain is stored with ``options-v4 backfill --job session_chains`` (universe, option
chains, underlying bars and instruments: a few seconds, against ~25 s for the whole daily pipeline),
and only while something is still open (a cycle with nothing open reads no quotes).

Asserted for every session D: every open position whose DTE at D is at or below its time-exit threshold
(the stored ``time_exit_dte`` / ``time_exit_date``, else ``config/exit_rules.yaml``) gets an exit at D
and is CLOSED by it (unless closed earlier); profit target, stop and time exit fire exactly where the
stored levels and the session's P&L / DTE say; breakeven alerts only where spot crossed a trigger
since the entry; no position stays open on an expired contract; the second run of D places nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster import calendar
from options_v4_dagster.store import Warehouse, schema
from options_v4_dagster.store import monitoring as ms
from options_v4_dagster.store.trading_queries import allocation_plan
from options_v4_dagster.trading.decisions import EXIT_ALL_RULES
from options_v4_dagster.trading.execution import ExecutionConfig
from options_v4_dagster.trading.exit_config import load_exit_rules
from options_v4_dagster.trading.monitor import default_as_of
from options_v4_dagster.trading.service import execute_approval
from options_v4_dagster.trading.valuation import value_positions

from .pipeline_run import cli_call, run_session

pytestmark = pytest.mark.slow

D = dt.date(2025, 7, 17)
FIRST = calendar.next_session(D)
RULES = load_exit_rules()
TOP_KEYS = {"date", "positions", "exits_placed"}
POSITION_KEYS = {"strategy_id", "symbol", "strategy_name", "state", "pnl", "pnl_pct_of_max_loss", "dte", "actions"}
ACTION_KEYS = {"action", "rule", "urgency", "quantity", "reason"}
EXIT_RULES = {str(r) for r in EXIT_ALL_RULES} | {"scale_out"}


def _wh(env) -> Warehouse:
    return Warehouse(env["DATABASE_URL"], create=False)


def _count(wh, table) -> int:
    with wh.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def _orders(wh) -> int:
    """Orders sent to a broker (settlements at expiry are recorded as orders too, never sent)."""
    o = schema.orders
    with wh.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(o).where(
            sa.or_(o.c.intent.is_(None), o.c.intent.not_like("%:settlement:%")))).scalar_one())


def _has_chain(wh, d: dt.date) -> bool:
    c = schema.option_chain_data
    with wh.engine.connect() as conn:
        return conn.execute(sa.select(c.c.trade_date).where(c.c.trade_date == d).limit(1)).first() is not None


def _store_chain(env, d: dt.date) -> None:
    code, out, err = cli_call(env, ["backfill", "--start", d.isoformat(), "--end", d.isoformat(),
                                    "--job", "session_chains", "--source", "simulated"])
    assert code == 0, out + err


def _monitor(env, d: dt.date) -> tuple[int, dict | None, str]:
    code, out, err = cli_call(env, ["monitor", "once", "--date", d.isoformat(), "--json"])
    return code, (json.loads(out) if out.strip() else None), err


def _leave_one_failed(wh, aid: str) -> str:
    """Execute one position with a short leg that finds no bid and ``on_leg_failure: leave``: its long
    leg is filled and left for a human (FAILED). Its strategy key."""
    plan = allocation_plan(wh, aid)
    pos = next(p for p in plan.positions if {str(g.side) for g in p.legs} == {"BUY", "SELL"}
               and len({g.expiry for g in p.legs}) == 1)
    c = schema.option_chain_data
    with wh.engine.begin() as conn:  # nobody bids for the short leg's contract at the entry
        for g in pos.legs:
            if str(g.side) == "SELL":
                conn.execute(c.update().where(c.c.trade_date == D, c.c.symbol == pos.symbol, c.c.expiry == g.expiry,
                                              c.c.strike == g.strike, c.c.option_type == g.instrument)
                             .values(bid=None, bid_qty=None))
    rep = execute_approval(wh, allocation_id=aid, position_numbers=[pos.position_no],
                           config=ExecutionConfig(on_leg_failure="leave"))
    (st,) = rep.strategies
    assert st.state == "FAILED" and "left open" in st.reason
    return ms.strategy_key(pos.strategy_id, aid)


def _levels(wh) -> dict[str, dict]:
    """strategy key -> the levels the monitor compares (money scaled to the position, as it reads them)."""
    inputs = ms.monitor_inputs(wh, dt.datetime.now(dt.UTC))
    facts = {r["strategy_id"]: r for r in inputs.facts.iter_rows(named=True)}
    out = {}
    for r in inputs.levels.iter_rows(named=True):
        f = facts[r["strategy_id"]]
        mp, ml = f["max_profit"], f["max_loss"]
        target = r["profit_target"] if r["profit_target"] is not None else (
            RULES.profit_target.default_pct_of_max_profit * mp if mp is not None else math.nan)
        caps = [x for x in (r["stop_loss"], RULES.stop_loss.max_loss_share * ml if ml and ml > 0 else None,
                            RULES.stop_loss.max_inr) if x is not None]
        out[r["strategy_id"]] = dict(
            target=target, stop=min(caps) if caps else math.nan,
            dte=r["time_exit_dte"] if r["time_exit_dte"] is not None else RULES.time_exit.default_dte,
            date=r["time_exit_date"],
            breakevens=[a for a in json.loads(r["adjustments"] or "[]") if a["trigger"] == "breakeven_breached"])
    return out


def _construct_target_and_stop(wh, failed: str) -> tuple[str, str]:
    """On FIRST, put one open position's stored profit target and another's stop where its P&L at that
    session's stored chain crosses them (90% of the P&L / of the loss). (target key, stop key)"""
    _, as_of = default_as_of(FIRST)
    inputs = ms.monitor_inputs(wh, as_of, brokers=["paper"])
    sq = ms.session_quotes(wh, FIRST, inputs.strategies.get_column("symbol").to_list())
    val = value_positions(inputs.legs, inputs.facts, sq.quotes, sq.spot, as_of, rate=RULES.rate).strategies
    lv = inputs.levels.select("strategy_id", "profit_target", "stop_loss")
    v = val.join(lv, on="strategy_id").filter((pl.col("strategy_id") != failed)
                                              & pl.col("profit_target").is_not_null() & pl.col("stop_loss").is_not_null())
    tgt = v.filter(pl.col("pnl_close") > 0).sort("pnl_close", descending=True).row(0, named=True)
    stp = v.filter((pl.col("pnl_mid") < 0) & (pl.col("strategy_id") != tgt["strategy_id"])).sort("pnl_mid").row(
        0, named=True)
    e = schema.strategy_exit_levels
    with wh.engine.begin() as conn:
        for row, col, scaled in ((tgt, "profit_target", 0.9 * tgt["pnl_close"]), (stp, "stop_loss", -0.9 * stp["pnl_mid"])):
            sid = row["strategy_id"].split("@")[0]
            stored = conn.execute(sa.select(e.c[col]).where(e.c.strategy_id == sid)).scalar_one()
            conn.execute(e.update().where(e.c.strategy_id == sid).values({col: stored * scaled / row[col]}))
    return tgt["strategy_id"], stp["strategy_id"]


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    env = run_session(tmp_path_factory.mktemp("monitor_walk"), D)
    assert env["exit_code"] == 0
    code, out, err = cli_call(env, ["allocate", "1500000", "--date", D.isoformat(), "--save", "--json"])
    assert code == 0, err
    aid = json.loads(out)["allocation_id"]
    code, out, err = cli_call(env, ["approve", aid, "--json"])
    assert code == 0, err
    wh = _wh(env)
    failed = _leave_one_failed(wh, aid)
    code, out, err = cli_call(env, ["execute", "--allocation", aid, "--json"])
    assert code == 0, err
    states = {s["state"] for s in json.loads(out)["strategies"]}
    assert states == {"OPEN", "FAILED"}
    p = schema.positions
    last_expiry = wh.read(sa.select(sa.func.max(p.c.expiry))).item()
    last_expiry = dt.date.fromisoformat(last_expiry) if isinstance(last_expiry, str) else last_expiry
    sessions = calendar.sessions_between(FIRST, last_expiry)

    # the first session before its chain is stored: refused, nothing left behind
    before = (_count(wh, schema.exit_intents), _orders(wh))
    code, report, err = _monitor(env, FIRST)
    refused = {"code": code, "report": report, "err": err,
               "left": (_count(wh, schema.exit_intents), _orders(wh)) != before}
    _store_chain(env, FIRST)
    constructed = _construct_target_and_stop(wh, failed)
    levels = _levels(wh)

    days = []
    for d in sessions:
        if ms.open_position_count(wh) and not _has_chain(wh, d):
            _store_chain(env, d)
        n0 = _orders(wh)
        code1, first, err1 = _monitor(env, d)
        n1, i1 = _orders(wh), _count(wh, schema.exit_intents)
        pp = schema.positions
        open_legs = wh.read(sa.select(pp.c.position_id, pp.c.expiry, pp.c.quantity).where(pp.c.quantity != 0))
        snaps = wh.read(sa.select(schema.strategy_monitoring).where(
            schema.strategy_monitoring.c.trade_date == d, schema.strategy_monitoring.c.source == "cli"))
        code2, second, err2 = _monitor(env, d)
        days.append(dict(date=d, code=(code1, code2), err=(err1, err2), first=first, second=second,
                         orders=(n0, n1, _orders(wh)), intents=(i1, _count(wh, schema.exit_intents)),
                         open_legs=open_legs, snaps=snaps))
    e = schema.strategy_execution_status
    final = dict(wh.read(sa.select(e.c.strategy_id, e.c.state).where(e.c.allocation_id == aid)).iter_rows())
    yield dict(env=env, aid=aid, failed=failed, refused=refused, constructed=constructed, levels=levels, days=days,
               sessions=sessions, final=final, intents=ms.intents(wh))
    wh.dispose()


def _acts(p: dict, rule: str, level: str | None = None) -> list[dict]:
    return [a for a in p["actions"] if a["rule"] == rule and (level is None or a["level"] == level)]


def test_a_date_without_its_chain_is_refused_naming_it_and_nothing_is_left_behind(walk):
    r = walk["refused"]
    d = FIRST.isoformat()
    assert r["code"] == 2 and r["report"] is None and not r["left"]
    assert f"no stored option chain for {d}" in r["err"]
    assert f"options-v4 backfill --start {d} --end {d} --job session_chains" in r["err"]


def test_every_session_up_to_the_last_expiry_runs_twice_and_the_second_run_places_nothing(walk):
    assert walk["sessions"][0] == FIRST and walk["sessions"][-1] >= dt.date(2025, 7, 31)
    assert [x["date"] for x in walk["days"]] == walk["sessions"]
    placed = 0
    for x in walk["days"]:
        assert x["code"] == (0, 0), (x["date"], x["err"])
        first, second = x["first"], x["second"]
        for rep in (first, second):  # the JSON every trader-facing tool reads
            assert TOP_KEYS <= set(rep) and rep["date"] == x["date"].isoformat()
            for p in rep["positions"]:
                assert POSITION_KEYS <= set(p), p
                assert all(ACTION_KEYS <= set(a) for a in p["actions"]), p
        n0, n1, n2 = x["orders"]
        assert first["exits_placed"] == n1 - n0
        assert second["exits_placed"] == 0 and n2 == n1, x["date"]
        assert x["intents"][0] == x["intents"][1] and not any(i["created"] for i in second["intents"])
        placed += first["exits_placed"]
    assert placed > 0


def test_positions_at_or_below_their_time_exit_threshold_exit_that_day(walk):
    lv, failed = walk["levels"], walk["failed"]
    due_seen = 0
    exits: dict[tuple, list[dict]] = {}
    for i in walk["intents"]:
        if i["rule"] in EXIT_RULES:
            exits.setdefault((i["strategy_key"], i["trade_date"]), []).append(i)
    for x in walk["days"]:
        d = x["date"]
        for p in x["first"]["positions"]:
            k = p["strategy_key"]
            if p["dte"] is None:  # settled in this cycle (nothing left to value)
                continue
            due = p["dte"] <= lv[k]["dte"] or (lv[k]["date"] is not None and d >= lv[k]["date"])
            assert bool(_acts(p, "time_exit", "dte")) == due, (d, k, p["dte"], lv[k])
            if not due:
                continue
            due_seen += 1
            if k == failed:  # left for a human: alerted, never exited automatically
                assert p["state"] == "FAILED" and all(a["action"] == "ALERT" and a["urgency"] == "HIGH"
                                                      for a in p["actions"])
                continue
            assert any(a["action"] == "EXIT_ALL" for a in p["actions"]), (d, k)
            assert p["state"] == "CLOSED", (d, k, p["state"])
            assert any(i["state"] == "FILLED" and i["action"] == "EXIT_ALL" for i in exits[(k, d)]), (d, k)
    assert due_seen >= 2
    assert set(walk["final"].values()) <= {"CLOSED", "UNWOUND"}


def test_profit_targets_and_stops_fire_where_the_stored_levels_say(walk):
    lv = walk["levels"]
    seen = {"profit_target": 0, "stop_loss": 0}
    for x in walk["days"]:
        acts = {p["strategy_key"]: p for p in x["first"]["positions"]}
        for s in x["snaps"].iter_rows(named=True):
            k = s["strategy_key"]
            hit_t = s["pnl_close"] >= lv[k]["target"]
            hit_s = s["pnl_mid"] <= -lv[k]["stop"]
            assert bool(_acts(acts[k], "profit_target")) == hit_t, (x["date"], k, s["pnl_close"], lv[k]["target"])
            assert bool(_acts(acts[k], "stop_loss")) == hit_s, (x["date"], k, s["pnl_mid"], lv[k]["stop"])
            seen["profit_target"] += hit_t
            seen["stop_loss"] += hit_s
    assert seen["profit_target"] >= 1 and seen["stop_loss"] >= 1
    target, stop = walk["constructed"]
    by_key = {i["intent_key"]: i for i in walk["intents"]}
    first = walk["days"][0]["first"]
    for key, rule, level in ((target, "profit_target", "primary"), (stop, "stop_loss", "stop")):
        i = by_key[f"{key}:{rule}:{level}"]
        assert i["state"] == "FILLED" and i["trade_date"] == FIRST
        (p,) = [p for p in first["positions"] if p["strategy_key"] == key]
        assert p["state"] == "CLOSED" and p["actions"][0]["rule"] == rule


def test_breakeven_alerts_only_where_spot_crossed_a_trigger_since_the_entry(walk):
    lv = walk["levels"]
    for x in walk["days"]:
        acts = {p["strategy_key"]: p for p in x["first"]["positions"]}
        for s in x["snaps"].iter_rows(named=True):
            k, spot = s["strategy_key"], s["spot"]
            want = sorted(b["side"] for b in lv[k]["breakevens"]
                          if (b["side"] == "below" and spot <= b["price"] < b["entry_spot"])
                          or (b["side"] == "above" and spot >= b["price"] > b["entry_spot"]))
            got = sorted(a["level"] for a in _acts(acts[k], "breakeven_breached"))
            assert got == want, (x["date"], k, spot, lv[k]["breakevens"])
    first = walk["days"][0]["first"]["positions"]
    noisy = [p for p in first if _acts(p, "breakeven_breached")]
    assert len(noisy) < len(first) / 2  # was 19 of 21 on the entry day


def test_the_failed_position_is_alerted_every_session_and_settles_after_its_expiry(walk):
    k = walk["failed"]
    alerted, settled_on = [], None
    for x in walk["days"]:
        for p in x["first"]["positions"]:
            if p["strategy_key"] != k:
                continue
            if p["state"] == "FAILED":
                assert _acts(p, "left_for_human")[0]["urgency"] == "HIGH" and p["pnl"] is not None
                alerted.append(x["date"])
        if any(s["strategy_id"] == k for s in x["first"]["settled"]):
            settled_on = x["date"]
    assert alerted and alerted[0] == FIRST
    assert settled_on is not None and settled_on == calendar.next_session(alerted[-1])
    assert walk["final"][k.split("@")[0]] == "UNWOUND"
    assert [i["rule"] for i in walk["intents"] if i["strategy_key"] == k] == ["settlement"]


def test_nothing_stays_open_on_an_expired_contract(walk):
    for x in walk["days"]:
        stale = x["open_legs"].filter(pl.col("expiry").cast(pl.Date) < x["date"])
        assert stale.height == 0, (x["date"], stale)
    assert walk["days"][-1]["open_legs"].height == 0
