"""The monitoring cycle: the one entry point the Dagster sensor and jobs, the real-time monitor and
``options-v4 monitor once|poll`` call (:func:`monitor_cycle`). No Dagster here: store read ->
domain (valuation, exit rules, settlement, exit planning) -> broker -> store.

One cycle at ``as_of`` (default: now for today's session; 15:25 IST of a past session, which is
replayed at its stored chain; a session without it raises :class:`~.held.QuotesUnavailable` after
step 1 -- nothing evaluated, no intent, no order -- and runs once the chain is stored):

1. **Settle** legs past their expiry close at intrinsic value against the underlying's close
   (:func:`~.settlement.settle_expired`; recorded as a TRADED exit with one fill, so positions,
   realized P&L and fees come from trades as for any exit) and close strategies with nothing open.
2. **Value** every open strategy at the session's quotes (the stored chain, or the ``quotes`` /
   ``spot`` given: the real-time monitor's) and **evaluate** the exit rules with the executed intent
   keys, the persisted high-water marks and day-start P&L. Strategies left FAILED for a human and
   strategies with an unquoted leg get alerts instead of exits (:mod:`.held`).
3. **Persist** the snapshot (``strategy_monitoring``) and ``monitor_state`` in one transaction.
4. **Intents first**: each actionable exit is written to ``exit_intents`` under its unique key
   *before* any order. A key that exists is not placed again: a second cycle, the real-time
   monitor or a retry gets the stored row. Only an intent left PARTIAL or FAILED (or PENDING /
   PLACED and not touched for ``lease_seconds``: its process died) is taken over -- by
   compare-and-set, so by one process -- and driven again with the next attempt numbers.
5. **Exits** (modes ``simulation`` and ``live``) through :class:`~.exit_path.ExitPath`: the same
   :class:`~.placement.OrderDesk`, correlation ids and legging as entries, confirmed from fills;
   strategy states follow the positions (PARTIALLY_EXITED, CLOSED with the realized P&L after fees).
   ``alert_only`` writes the intents as ALERTED and places nothing; a later executing cycle in which
   the rule still fires takes an ALERTED intent over and executes it.

Modes and brokers: ``simulation`` (default) exits the paper broker's strategies on a fresh
:class:`~.paper.PaperBroker` at the session's stored quotes carrying the paper account's open
positions (as ``service.py`` does for entries); ``live`` exits the dhan strategies and needs every
switch entries need (:func:`~.service.check_live`: broker dhan, credentials, ``OPTIONS_V4_LIVE=1``,
``live=True`` from ``--execute``) and the NSE session open (else its intents stay FAILED with the
reason, and the next cycle in market hours takes them over); ``alert_only`` covers every broker's
strategies. Every decision, intent, order request and response, settlement and mode change is
appended to the audit log.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import polars as pl

from .. import calendar
from ..store import monitoring as ms
from ..store.audit import append_audit, audit_rows
from ..store.trading import TradingStore
from ..store.warehouse import Warehouse
from .broker import Broker
from .decisions import EXIT_ALL_RULES, Action
from .execution import nse_market_open
from .exit_config import ExitRulesConfig, load_exit_rules
from .exit_path import ExitPath
from .exit_rules import ExitEvaluation, evaluate_exits
from .held import QuotesUnavailable, hold_exits, unquoted
from .ledger import ConcurrentUpdate
from .monitor_report import CycleReport, IntentReport, position_reports, snapshot_rows
from .orders import IllegalTransition, StrategyState
from .paper import PaperConfig
from .placement import ExecutionConfig, OrderDesk, reconcile
from .replay import paper_execution
from .rules import load_freeze_limits
from .service import DhanCredentials, carry_open_positions, check_live
from .settlement import settle_expired
from .valuation import Valuation, value_positions

__all__ = ["MODES", "SOURCES", "MonitorConfig", "QuotesUnavailable", "default_as_of", "monitor_cycle"]

Mode = Literal["simulation", "alert_only", "live"]
Source = Literal["sensor", "realtime", "cli"]
MODES: tuple[str, ...] = ("simulation", "alert_only", "live")
SOURCES: tuple[str, ...] = ("sensor", "realtime", "cli")
#: intent states that stop a key from firing again (ALERTED too while alert-only)
_DONE = frozenset({"PENDING", "PLACED", "FILLED"})
_RETRY = frozenset({"PARTIAL", "FAILED"})
_REPLAY_TIME = dt.time(15, 25)


@dataclass(frozen=True)
class MonitorConfig:
    exit_rules: ExitRulesConfig | None = None  # default: the packaged config/exit_rules.yaml
    execution: ExecutionConfig | None = None  # live / a given broker; paper: its simulated clock is bound in
    max_attempts: int = 3  # order attempts per drive of an intent (each after an unfilled / rejected one)
    lease_seconds: float = 120.0  # a PENDING / PLACED intent untouched this long is taken over
    #: The wall clock of intent timestamps and of the lease (never ``as_of``: a replayed session and a live
    #: cycle on other clocks must not take each other's live intent over).
    lease_clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    portfolio_capital: float | None = None  # for the daily loss limit's share of capital


def default_as_of(session: dt.date | None, now: dt.datetime | None = None) -> tuple[dt.date, dt.datetime]:
    """(session, as_of): today's session at ``now``; a past session at 15:25 IST (its stored chain)."""
    now = now or dt.datetime.now(dt.UTC)
    today = now.astimezone(calendar.IST).date()
    if session is None or session >= today:
        return session or today, now
    return session, dt.datetime.combine(session, _REPLAY_TIME, calendar.IST).astimezone(dt.UTC)


def monitor_cycle(wh: Warehouse, session: dt.date | None = None, *, as_of: dt.datetime | None = None,
                  mode: Mode = "simulation", source: Source = "cli", broker: Broker | None = None,
                  live: bool = False, credentials: DhanCredentials | None = None,
                  env: Mapping[str, str] | None = None, quotes: pl.DataFrame | None = None,
                  spot: Mapping[str, float] | None = None, keys: Sequence[str] | None = None,
                  config: MonitorConfig | None = None) -> CycleReport:
    """One monitoring cycle (module docstring). ``broker``: the broker to exit on (default: a paper
    broker at the stored quotes for simulation, Dhan from ``credentials`` for live); ``quotes`` /
    ``spot``: current quotes (:data:`~.valuation.QUOTES_SCHEMA` frame, symbol -> price) instead of the
    stored chain; ``keys``: only these strategy keys (the real-time monitor's ticked strategies).
    Raises :class:`~.service.LiveTradingRefused` (live without every switch) before anything is read."""
    if mode not in MODES or source not in SOURCES:
        raise ValueError(f"mode must be one of {MODES} and source one of {SOURCES}")
    if mode == "live":
        check_live("dhan", live=live, credentials=credentials, env=env)
    elif live:
        check_live("paper", live=True, credentials=None, env=env)
    cfg = config or MonitorConfig()
    rules = cfg.exit_rules or load_exit_rules()
    start = time.perf_counter()
    if as_of is None:
        session, as_of = default_as_of(session)
    elif session is None:
        session = as_of.astimezone(calendar.IST).date()
    cycle = _Cycle(wh, session, as_of, mode, source, cfg, rules)
    cycle.audit_mode()
    brokers = None if mode == "alert_only" else (["dhan"] if mode == "live" else ["paper"])
    inputs = ms.monitor_inputs(wh, as_of, brokers=brokers, keys=keys)
    if cycle.settle(inputs):
        inputs = ms.monitor_inputs(wh, as_of, brokers=brokers, keys=keys)
    cycle.close_flat(inputs.strategies)
    live_strats = inputs.strategies.filter(pl.col("open_legs") > 0)
    if live_strats.height == 0:
        return cycle.report(inputs.strategies, None, None, start)
    if quotes is None:
        sq = ms.session_quotes(wh, session, live_strats.get_column("symbol").unique().to_list())
        quotes_frame, spots, book = sq.quotes, dict(sq.spot), sq.book
        if book is None:
            raise QuotesUnavailable(session, live_strats.get_column("symbol").to_list(), len(cycle.settled))
    else:
        quotes_frame, spots, book = quotes, {}, None
    spots.update(spot or {})
    valuation = value_positions(inputs.legs, inputs.facts, quotes_frame, spots, as_of, rate=rules.rate)
    ev = cycle.hold(cycle.evaluate(valuation, inputs), valuation, live_strats)
    cycle.persist(valuation, ev, inputs.strategies)
    if ev.actionable.height:
        cycle.act(ev, valuation, inputs.strategies, broker, book, credentials)
    cycle.refresh_states(inputs.strategies)
    return cycle.report(inputs.strategies, valuation, ev, start)


class _Cycle:
    def __init__(self, wh: Warehouse, session: dt.date, as_of: dt.datetime, mode: str, source: str,
                 cfg: MonitorConfig, rules: ExitRulesConfig) -> None:
        self.wh, self.session, self.as_of, self.mode, self.source = wh, session, as_of, mode, source
        self.cfg, self.rules = cfg, rules
        self.wall = cfg.lease_clock()  # intents' updated_at and the lease are on this clock (MonitorConfig)
        self.store = TradingStore(wh)
        self.day = as_of.astimezone(calendar.IST).date()
        self.messages: list[str] = []
        self.intents: list[IntentReport] = []
        self.settled: list[dict] = []
        self.placed = 0
        self.touched: dict[str, str] = {}  # strategy key -> rule of the exit that filled
        self.states: dict[str, str] = {}
        self.realized: dict[str, float | None] = {}
        self.snaps: list[dict] = []

    def audit(self, entries) -> None:
        append_audit(self.wh, entries)

    def audit_mode(self) -> None:
        last = audit_rows(self.wh, kind="cycle", last=1)
        prev = None if last.height == 0 else last.item(0, "subject")
        entries = [("cycle", self.mode, {"source": self.source, "session": self.session, "as_of": self.as_of})]
        if prev is not None and prev != self.mode:
            entries.insert(0, ("mode_change", self.mode, {"from": prev, "to": self.mode, "source": self.source}))
        self.audit(entries)

    # -- settlement and flat strategies -----------------------------------------------------------
    def settle(self, inputs: ms.MonitorInputs) -> bool:
        legs = inputs.legs
        if legs.height == 0:
            return False
        close_utc = {e: calendar.session_close(e).astimezone(dt.UTC) for e in legs.get_column("expiry").unique()
                     if e is not None}
        due = legs.filter(pl.col("expiry").is_in([e for e, t in close_utc.items() if t <= self.as_of]))
        if due.height == 0:
            return False
        closes = ms.underlying_closes(self.wh, due.select("symbol", "expiry").unique().iter_rows())
        meta = {r["strategy_key"]: r for r in inputs.strategies.iter_rows(named=True)}
        done = False
        for (expiry,), part in due.group_by(["expiry"], maintain_order=True):
            res = settle_expired(part, {s: c for (s, e), c in closes.items() if e == expiry}, self.as_of,
                                 self.rules.settlement)
            for sym in res.missing_close:
                self.messages.append(f"{sym} legs expired {expiry} are not settled: no close of the underlying "
                                     "stored for that day")
            for rec in res.records.iter_rows(named=True):
                m = meta[rec["strategy_id"]]
                key = f"{rec['strategy_id']}:settlement:{expiry.isoformat()}"
                rec = {**rec, "candidate_id": m["strategy_id"]}
                at = close_utc[expiry]
                ms.reserve_intent(self.wh, dict(
                    intent_key=key, strategy_key=rec["strategy_id"], strategy_id=m["strategy_id"],
                    allocation_id=m["allocation_id"], position_id=m["position_id"], trade_date=self.session,
                    rule="settlement", level=expiry.isoformat(), action=Action.EXIT_ALL.value, urgency="HIGH",
                    quantities=[], reason=f"expired {expiry}: settled at intrinsic value", mode=self.mode,
                    source=self.source, broker=m["broker"], state="FILLED"), at=self.wall)
                if ms.record_settlement(self.store, rec, broker=m["broker"], intent_key=key, at=at):
                    done = True
                    self.touched.setdefault(rec["strategy_id"], "settlement")
                    self.settled.append({k: rec[k] for k in ("strategy_id", "leg", "symbol", "expiry", "strike",
                                                             "option_type", "quantity", "settlement_price", "method",
                                                             "delivery_quantity", "realized_pnl", "stt")})
                    entries = [("settlement", key, rec)]
                    if rec["delivery_quantity"]:
                        msg = (f"{rec['symbol']} {rec['strike']:g} {rec['option_type']} expired in the money: "
                               f"{rec['delivery_quantity']:+d} shares to deliver/receive -- for a human")
                        self.messages.append(msg)
                        entries.append(("settlement_delivery", key, {"message": msg}))
                    self.audit(entries)
        return done

    def close_flat(self, strategies: pl.DataFrame) -> None:
        for r in strategies.filter(pl.col("open_legs") == 0).iter_rows(named=True):
            self._set_state(r, StrategyState.CLOSED, f"every leg closed ({self.touched.get(r['strategy_key'], 'exit')})")

    def _set_state(self, r: Mapping, state: StrategyState, reason: str) -> None:
        if r["state"] == StrategyState.FAILED:  # left for a human: UNWOUND once nothing is open (module .held)
            if state is not StrategyState.CLOSED:
                return
            state = StrategyState.UNWOUND
        try:
            st = self.store.set_strategy_state(r["allocation_id"], r["position_id"], state, reason=reason,
                                               at=self.as_of)
        except (IllegalTransition, ConcurrentUpdate):
            # another cycle (the sensor and the real-time monitor race) moved it first: done if it is there
            st = self.store.strategy_status(r["allocation_id"], r["position_id"])
            if st is None or str(st.state) != str(state):
                raise
            self.states[r["strategy_key"]] = str(st.state)
            self.realized[r["strategy_key"]] = st.realized_pnl
            return
        self.states[r["strategy_key"]] = str(st.state)
        self.realized[r["strategy_key"]] = st.realized_pnl
        if state in (StrategyState.CLOSED, StrategyState.UNWOUND):
            ms.write_cycle(self.wh, [], [dict(strategy_key=r["strategy_key"], strategy_id=r["strategy_id"],
                                              allocation_id=r["allocation_id"], position_id=r["position_id"],
                                              closed_day=self.day, last_pnl=st.realized_pnl)])
            self.audit([("strategy_closed", r["strategy_key"], {"reason": reason, "realized_pnl": st.realized_pnl})])

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, valuation: Valuation, inputs: ms.MonitorInputs) -> ExitEvaluation:
        keys = valuation.strategies.get_column("strategy_id").to_list()
        self.stored = {i["intent_key"]: i for i in ms.intents(self.wh, strategy_keys=keys)}
        self._reopen_unfinished(keys)
        stale = self.wall - dt.timedelta(seconds=self.cfg.lease_seconds)
        done = _DONE | ({"ALERTED"} if self.mode == "alert_only" else set())
        executed = [k for k, i in self.stored.items() if i["state"] in done
                    and not (i["state"] in ("PENDING", "PLACED") and i["updated_at"] < stale)]
        state = ms.read_monitor_state(self.wh, keys)
        pnl = dict(valuation.strategies.select("strategy_id", "pnl_mid").iter_rows())
        entered = dict(inputs.facts.select("strategy_id", "entered_at").iter_rows())
        day_start = {}
        for k in keys:
            s = state.get(k)
            if s and s["day"] == self.day:
                day_start[k] = s["day_start_pnl"]
            elif s and s["last_pnl"] is not None:
                day_start[k] = s["last_pnl"]
            elif entered.get(k) is not None and entered[k].astimezone(calendar.IST).date() < self.day:
                day_start[k] = pnl.get(k)
        self.day_start = day_start
        hw = {k: s["high_water_mark"] for k, s in state.items() if s["high_water_mark"] is not None}
        return evaluate_exits(valuation, inputs.levels, config=self.rules, executed_intents=executed, high_water=hw,
                              day_start_pnl={k: v for k, v in day_start.items() if v is not None},
                              closed_today_pnl=ms.closed_today_pnl(self.wh, self.day, exclude=keys),
                              portfolio_capital=self.cfg.portfolio_capital)

    def hold(self, ev: ExitEvaluation, valuation: Valuation, strategies: pl.DataFrame) -> ExitEvaluation:
        """No exit for FAILED strategies (HIGH alerts) nor for those with an unquoted leg (:mod:`.held`)."""
        failed = {r["strategy_key"]: f"strategy FAILED at entry, {r['open_legs']} open leg(s) left for a human: close "
                  f"or adopt them (no automatic exit)" for r in strategies.iter_rows(named=True)
                  if r["state"] == StrategyState.FAILED}
        unpriced = {k: v for k, v in unquoted(valuation.strategies, self.session).items() if k not in failed}
        for k, why in unpriced.items():
            if ev.actionable.filter(pl.col("strategy_id") == k).height:
                self.messages.append(f"exits of {k} {why}")
        return hold_exits(ev, failed=failed, unpriced=unpriced)

    def _reopen_unfinished(self, keys: Sequence[str]) -> None:
        """An EXIT_ALL intent FILLED while its strategy still holds open legs (another intent's working
        orders ended unfilled) is PARTIAL again, so this cycle finishes the exit."""
        for k, i in self.stored.items():
            if i["state"] == "FILLED" and i["rule"] in EXIT_ALL_RULES and i["strategy_key"] in keys:
                open_q = ms.open_leg_quantities(self.wh, i["allocation_id"], i["position_id"])
                more = [{**q, "quantity": int(q["quantity"]) + abs(open_q.get(int(q["leg"]), 0))}
                        for q in i["quantities"]]
                got = ms.claim_intent(self.wh, k, expected_version=i["version"], state="PARTIAL", quantities=more,
                                      note="its strategy still holds open legs", at=self.wall)
                if got:
                    self.stored[k] = got

    def persist(self, valuation: Valuation, ev: ExitEvaluation, strategies: pl.DataFrame) -> None:
        snaps = snapshot_rows(valuation.strategies, ev.decisions, strategies, as_of=self.as_of, session=self.session,
                              mode=self.mode, source=self.source, states=self.states)
        meta = {r["strategy_key"]: r for r in strategies.iter_rows(named=True)}
        hw = {r["strategy_id"]: r for r in ev.high_water.iter_rows(named=True)}
        states = []
        for v in valuation.strategies.iter_rows(named=True):
            k, m = v["strategy_id"], meta[v["strategy_id"]]
            h = hw.get(k, {})
            states.append(dict(strategy_key=k, strategy_id=m["strategy_id"], allocation_id=m["allocation_id"],
                               position_id=m["position_id"], high_water_mark=h.get("high_water_mark"),
                               trailing_armed=bool(h.get("trailing_armed")), day=self.day,
                               day_start_pnl=self.day_start.get(k, 0.0), last_pnl=v["pnl_mid"], last_as_of=self.as_of))
        ms.write_cycle(self.wh, snaps, states)
        self.snaps = snaps
        fired = ev.decisions.filter(pl.col("action") != Action.HOLD.value)
        entries = [("exit_decision", r["intent_key"], r) for r in fired.iter_rows(named=True)]
        if ev.portfolio.breached:  # what the entry path reads (service.py: no new entries that day)
            entries.append(("daily_loss_limit", ev.portfolio.intent_key,
                            {**vars(ev.portfolio), "mode": self.mode, "session": self.session, "as_of": self.as_of}))
        if entries:
            self.audit(entries)

    # -- intents and exits ------------------------------------------------------------------------
    def act(self, ev: ExitEvaluation, valuation: Valuation, strategies: pl.DataFrame, broker: Broker | None,
            book, credentials: DhanCredentials | None) -> None:
        meta = {r["strategy_key"]: r for r in strategies.iter_rows(named=True)}
        todo = []
        for d in ev.actionable.iter_rows(named=True):
            m = meta[d["strategy_id"]]
            q = ev.leg_quantities.filter(pl.col("intent_key") == d["intent_key"]).select(
                "leg", "security_id", "quantity", "lots", "close_side").to_dicts()
            state = "ALERTED" if self.mode == "alert_only" else "PENDING"
            row, created = ms.reserve_intent(self.wh, dict(
                intent_key=d["intent_key"], strategy_key=d["strategy_id"], strategy_id=m["strategy_id"],
                allocation_id=m["allocation_id"], position_id=m["position_id"], trade_date=self.session,
                rule=d["rule"], level=d["level"], action=d["action"], urgency=d["urgency"], quantities=q,
                reason=d["reason"], mode=self.mode, source=self.source,
                broker=None if self.mode == "alert_only" else m["broker"], state=state), at=self.wall)
            self.audit([("intent", d["intent_key"], {"created": created, "state": row["state"], "rule": d["rule"],
                                                     "action": d["action"], "urgency": d["urgency"], "legs": q})])
            if self.mode == "alert_only":
                self.intents.append(IntentReport(d["intent_key"], row["state"], created, False))
                continue
            if not created:
                row = self._take_over(row)
                if row is None:
                    stored = ms.get_intent(self.wh, d["intent_key"])
                    self.intents.append(IntentReport(d["intent_key"], stored["state"], False, False))
                    continue
            todo.append((row, created, m))
        if todo:
            self._execute(todo, valuation, broker, book, credentials)

    def _take_over(self, row: dict) -> dict | None:
        """The stored intent, claimed for this cycle when it may be driven again (module docstring)."""
        stale = self.wall - dt.timedelta(seconds=self.cfg.lease_seconds)
        st = row["state"]
        if not (st in _RETRY or st == "ALERTED" or (st in ("PENDING", "PLACED") and row["updated_at"] < stale)):
            return None
        return ms.claim_intent(self.wh, row["intent_key"], expected_version=row["version"], state="PENDING",
                               mode=self.mode, source=self.source, at=self.wall)

    def _execute(self, todo, valuation: Valuation, broker: Broker | None, book,
                 credentials: DhanCredentials | None) -> None:
        ex_cfg, owned = self._broker(todo, broker, book, credentials)
        try:
            refused = self._refused(ex_cfg, book, broker)
            desk = OrderDesk(ex_cfg.broker, self.store, ex_cfg.config) if refused is None else None
            if desk is not None:
                rec = reconcile(desk.broker, self.store, ex_cfg.config)
                if rec.rejected or rec.adopted:
                    self.messages.append(f"reconciled before exiting: {len(rec.adopted)} adopted, "
                                         f"{len(rec.rejected)} rejected as lost")
            path = ExitPath(desk, self.store, ex_cfg.config, audit=self.audit, max_attempts=self.cfg.max_attempts,
                            open_quantities=lambda a, p: ms.open_leg_quantities(self.wh, a, p),
                            freeze=load_freeze_limits()) if desk else None
            for row, created, m in todo:
                key = row["intent_key"]
                if path is None:
                    ms.claim_intent(self.wh, key, expected_version=row["version"], state="FAILED",
                                    note=f"not placed: {refused}", at=self.wall)
                    self.intents.append(IntentReport(key, "FAILED", created, False, note=f"not placed: {refused}"))
                    self.audit([("intent_escalated", key, {"state": "FAILED", "note": refused})])
                    continue
                self._drive(path, row, created, m, valuation)
            if desk is not None:
                self.placed += len(desk.placed)
        finally:
            if owned is not None:
                owned.close()

    def _drive(self, path: ExitPath, row: dict, created: bool, m: Mapping, valuation: Valuation) -> None:
        key = row["intent_key"]
        current = {"row": row}

        def claim(attempt: int) -> bool:
            got = ms.claim_intent(self.wh, key, expected_version=current["row"]["version"], state="PLACED",
                                  attempt=attempt, at=self.wall)
            if got:
                current["row"] = got
            return got is not None

        legs = valuation.legs.filter(pl.col("strategy_id") == row["strategy_key"])
        res = path.drive(row, legs, claim=claim, meta={"position_no": m["position_no"], "strategy_id": m["strategy_id"]})
        note = (f"filled {res.filled}" + (f"; left {res.left}: {res.note}" if res.escalated else ""))
        if res.state != "PLACED":
            ms.claim_intent(self.wh, key, expected_version=current["row"]["version"], state=res.state,
                            attempt=res.attempt, note=note, at=self.wall)
        if any(res.filled.values()):
            self.touched[row["strategy_key"]] = row["rule"]
        self.intents.append(IntentReport(key, res.state, created, True, res.orders, res.left, note))
        self.audit([("intent_escalated" if res.escalated else "intent_done", key,
                     {"state": res.state, "filled": res.filled, "left": res.left, "note": res.note,
                      "orders": res.orders})])
        if res.escalated:
            self.messages.append(f"exit {key} {res.state}: {note} -- escalated, the next cycle tries again")

    def _broker(self, todo, broker: Broker | None, book, credentials: DhanCredentials | None):
        """(an object with ``broker`` and ``config``, the broker to close afterwards or None)."""
        cfg = self.cfg.execution or ExecutionConfig(live=self.mode == "live")
        if broker is not None:
            return _Exec(broker, cfg), None
        if self.mode == "live":
            from .dhan_broker import DhanBroker

            b = DhanBroker.from_credentials(credentials.client_id, credentials.access_token, credentials.base_url)
            return _Exec(b, replace(cfg, live=True)), b
        if book is None:
            return _Exec(None, cfg), None
        aids = sorted({m["allocation_id"] for _, _, m in todo})
        last = ms.last_trade_at(self.wh, aids)
        start = max(self.as_of, last + dt.timedelta(seconds=1)) if last else self.as_of
        # seed None (the default): ids drawn from the OS, unique across processes (trades are keyed by
        # (broker, trade_id))
        paper = PaperConfig(capital=ms.allocation_capital(self.wh, aids) or PaperConfig.capital)
        px = paper_execution(book, paper=paper, start=start, config=cfg)
        carry_open_positions(px.broker, self.wh)
        return _Exec(px.broker, px.config), None

    def _refused(self, ex, book, broker) -> str | None:
        if ex.broker is None:
            return f"no stored option chain for {self.session} to fill paper exits at"
        if ex.config.killed():
            return "the kill switch is on"
        if self.mode == "live" and not (ex.config.market_open or nse_market_open)(ex.config.clock()):
            return "the NSE session is closed"
        return None

    # -- states and the report --------------------------------------------------------------------
    def refresh_states(self, strategies: pl.DataFrame) -> None:
        for r in strategies.filter(pl.col("open_legs") > 0).iter_rows(named=True):
            k = r["strategy_key"]
            if k not in self.touched:
                continue
            open_q = ms.open_leg_quantities(self.wh, r["allocation_id"], r["position_id"])
            rule = self.touched[k]
            if not any(open_q.values()):
                self._set_state(r, StrategyState.CLOSED, f"closed by {rule}")
            else:
                self._set_state(r, StrategyState.PARTIALLY_EXITED, f"partly closed by {rule}")
        changed = [{**s, "state": self.states[s["strategy_key"]]} for s in self.snaps if s["strategy_key"] in self.states]
        if changed:  # the cycle's snapshot shows the state its exits left
            ms.write_cycle(self.wh, changed, [])

    def report(self, strategies: pl.DataFrame, valuation: Valuation | None, ev: ExitEvaluation | None,
               start: float) -> CycleReport:
        alerts: dict[str, int] = {}
        if ev is not None:
            for u, n in ev.decisions.filter(pl.col("action") != Action.HOLD.value).group_by("urgency").len().iter_rows():
                alerts[u] = n
        return CycleReport(self.session, self.as_of, self.mode, self.source,
                           position_reports(strategies, valuation.strategies if valuation else None,
                                            ev.decisions if ev else None, self.states, self.realized),
                           self.intents, self.placed, self.settled, alerts,
                           vars(ev.portfolio) if ev is not None else None, self.messages,
                           time.perf_counter() - start)


@dataclass
class _Exec:
    broker: Broker | None
    config: ExecutionConfig
