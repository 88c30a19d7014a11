"""The real-time monitor's fast path: the monitoring cycle's pieces (:class:`~.monitor._Cycle`) run on
monitor inputs kept in memory, so a tick costs a valuation and an evaluation of the strategies that
ticked, not a read of the trading tables. No Dagster here.

:class:`MonitorCache` holds, for every open strategy of the mode's broker(s): the valuation inputs
(:func:`~..store.monitoring.monitor_inputs`: open legs, facts, strategies), the exit levels decoded
once (:func:`~.exit_rules.prepare_levels`) and the evaluation context (:class:`~.monitor.EvalContext`:
stored intents, ``monitor_state`` with the trailing high-water marks and day-start P&L, the day's
closed P&L). It is loaded (:meth:`MonitorCache.load`) at start and again whenever something changed --
the caller decides when: a notification or a changed :func:`~..store.changes.trading_version`, a cycle
that placed orders, the position poll; between loads the high-water marks and day-start P&L move in
memory exactly as the cycle would persist them (and are written on the snapshot cadence).

:func:`fast_cycle` is :func:`~.monitor.monitor_cycle` over those inputs for the ticked ``keys``:
value, evaluate, and when an exit is due **write the intent** (the same ``exit_intents`` row and key:
reserved before any order, a key another writer holds places nothing), audit it with its decision,
read the strategy's intents back into the cache (the next tick's executed set), and exit through the
same :class:`~.exit_path.ExitPath` / :class:`~.placement.OrderDesk` -- there, or handed to the caller
as an :class:`ExitJob` (the real-time monitor's exit worker); the paper broker of simulation exits is
built only then (``make_broker``). Snapshots (``strategy_monitoring``), ``monitor_state`` and the
audit of non-actionable decisions are kept per strategy (the latest) and written by
:meth:`MonitorCache.flush` on the caller's cadence, at once for the strategies of a cycle that acted
(:meth:`MonitorCache.finish`), and at stop; a ``cycle`` audit row goes with each flush. A
``monitor_state`` row is never written over a strategy already closed (its close recorded the final
P&L). :func:`fast_cycle` returns None when the cache cannot serve the cycle (a leg at or past its
expiry's close: settlement is the full cycle's; a new IST day): the caller then runs
:func:`~.monitor.monitor_cycle` and reloads.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import polars as pl

from .. import calendar
from ..store import monitoring as ms
from ..store.audit import append_audit
from ..store.changes import trading_version
from ..store.warehouse import Warehouse
from .broker import Broker
from .exit_config import ExitRulesConfig, load_exit_rules
from .exit_rules import PreparedLevels, prepare_levels
from .monitor import EvalContext, MonitorConfig, _Cycle
from .monitor_report import CycleReport
from .placement import ExecutionConfig
from .service import DhanCredentials
from .valuation import value_positions

__all__ = ["ExitJob", "MonitorCache", "fast_cycle"]

SOURCE = "realtime"


def _rows_by_key(frame: pl.DataFrame, col: str) -> dict[str, np.ndarray]:
    if col not in frame.columns or frame.height == 0:
        return {}
    keys = frame.get_column(col).to_list()
    out: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}


class MonitorCache:
    """The monitor inputs of every open strategy of ``mode``'s broker(s), kept between ticks (module
    docstring). ``version`` is the :func:`~..store.changes.trading_version` read just before the last
    completed load (a change during the load shows on the next check)."""

    def __init__(self, wh: Warehouse, mode: str, config: MonitorConfig | None = None,
                 rules: ExitRulesConfig | None = None) -> None:
        self.wh, self.mode = wh, mode
        self.config = config or MonitorConfig()
        self.rules = rules or self.config.exit_rules or load_exit_rules()
        self.brokers = None if mode == "alert_only" else (["dhan"] if mode == "live" else ["paper"])
        self.inputs: ms.MonitorInputs | None = None
        self.levels: PreparedLevels | None = None
        self.ctx: EvalContext | None = None
        self.version: tuple | None = None
        self.day: dt.date | None = None
        self.first_close: dt.datetime | None = None  # the earliest close of an open leg's expiry (UTC)
        self.loads = 0
        self.valid = False
        self._snaps: dict[str, dict] = {}
        self._states: dict[str, dict] = {}
        self._decisions: dict[str, tuple] = {}
        self._evaluations = 0
        self._last_as_of: dt.datetime | None = None

    # -- loading ------------------------------------------------------------------------------------
    def load(self, as_of: dt.datetime) -> ms.MonitorInputs:
        """Read everything again (intents left unfinished are reopened, as a cycle does)."""
        version = trading_version(self.wh)  # before the reads: a change during them shows on the next check
        inputs = ms.monitor_inputs(self.wh, as_of, brokers=self.brokers)
        keys = inputs.strategies.filter(pl.col("open_legs") > 0).get_column("strategy_key").to_list()
        day = as_of.astimezone(calendar.IST).date()
        cycle = _Cycle(self.wh, day, as_of, self.mode, SOURCE, self.config, self.rules)
        ctx = cycle.load_context(keys)
        for k, row in self._states.items():  # evaluations not yet written are the newer state
            stored = ctx.state.get(k, {})
            hw = [h for h in (stored.get("high_water_mark"), row.get("high_water_mark")) if h is not None]
            ctx.state[k] = {**stored, **row, "high_water_mark": max(hw) if hw else None}
        expiries = [e for e in inputs.legs.get_column("expiry").unique().to_list() if e is not None] \
            if inputs.legs.height else []
        self.inputs, self.ctx, self.levels, self.day = inputs, ctx, prepare_levels(inputs.levels), day
        self._rows = {name: _rows_by_key(frame, col) for name, frame, col in (
            ("legs", inputs.legs, "strategy_id"), ("facts", inputs.facts, "strategy_id"),
            ("strategies", inputs.strategies, "strategy_key"))}
        self.first_close = min((calendar.session_close(e).astimezone(dt.UTC) for e in expiries), default=None)
        self.loads += 1
        self.valid, self.version = True, version
        return inputs

    def changed(self) -> bool:
        """Whether the trading tables moved since the last load (one cheap query)."""
        return trading_version(self.wh) != self.version

    def invalidate(self) -> None:
        self.valid = False

    def can_serve(self, as_of: dt.datetime) -> bool:
        return (self.valid and self.inputs is not None and self.day == as_of.astimezone(calendar.IST).date()
                and (self.first_close is None or as_of < self.first_close))

    def subset(self, keys: Sequence[str]) -> ms.MonitorInputs:
        """The cached inputs of ``keys`` (row gathers, in the cache's order: legs stay sorted by strategy and leg)."""
        i = self.inputs

        def take(name: str, frame: pl.DataFrame) -> pl.DataFrame:
            rows = self._rows[name]
            parts = [rows[k] for k in keys if k in rows]
            idx = np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)
            return frame[idx] if frame.width else frame

        return ms.MonitorInputs(take("legs", i.legs), take("facts", i.facts), i.levels, take("strategies", i.strategies))

    # -- what a cycle would persist -----------------------------------------------------------------
    def note(self, snaps: list[dict], states: list[dict], decisions: list[tuple], as_of: dt.datetime) -> None:
        """Keep one evaluation's rows (the latest per strategy) and move the in-memory monitor state."""
        for r in snaps:
            self._snaps[r["strategy_key"]] = r
        for r in states:
            k = r["strategy_key"]
            self._states[k] = r
            self.ctx.state[k] = {**self.ctx.state.get(k, {}), **r}
        for e in decisions:
            self._decisions[e[1]] = e
        self._evaluations += 1
        self._last_as_of = as_of

    def states_changed(self, states: Mapping[str, str]) -> None:
        """Strategy states a cycle's exits moved: its kept snapshot shows the new state; a closed
        strategy's state row is dropped (its close wrote the final one)."""
        for k, st in states.items():
            if k in self._snaps:
                self._snaps[k] = {**self._snaps[k], "state": st}
            if st == "CLOSED":
                self._states.pop(k, None)

    def intents_written(self, keys: Sequence[str]) -> None:
        """Read the intents of ``keys`` back after a cycle wrote (or met) them: the next evaluation's
        executed set, without a reload (the exits' fills reload the cache when they are done)."""
        for r in ms.intents(self.wh, strategy_keys=list(keys)):
            self.ctx.stored[r["intent_key"]] = r

    def finish(self, job: ExitJob) -> None:
        """After a cycle's exits ran (the monitor's thread): the states they moved, the acting strategies'
        rows written now (the rest on the cadence), and a reload before the next evaluation when orders
        were driven (positions moved)."""
        self.states_changed(job.cycle.states)
        if job.todo:
            self.invalidate()
        self.flush(sorted(set(job.keys) | set(job.cycle.states)))

    def flush(self, keys: Sequence[str] | None = None) -> int:
        """Write the kept snapshots and states (of ``keys``; default all) in one transaction, then their
        audit rows; the snapshots written."""
        if keys is None:
            take = list(dict.fromkeys([*self._snaps, *self._states]))
        else:
            take = [k for k in keys if k in self._snaps or k in self._states]
        if not take:
            return 0
        snaps = [self._snaps.pop(k) for k in take if k in self._snaps]
        states = [self._states.pop(k) for k in take if k in self._states]
        mine = set(take)
        decisions = [e for e in self._decisions.values() if keys is None or _strategy_of(e) in mine]
        for e in decisions:
            self._decisions.pop(e[1], None)
        n = ms.write_cycle(self.wh, snaps, states, open_only=True)
        append_audit(self.wh, [("cycle", self.mode, {"source": SOURCE, "session": self.day, "as_of": self._last_as_of,
                                                     "evaluations": self._evaluations, "snapshots": n}),
                               *decisions])
        if keys is None:
            self._evaluations = 0
        return n


def _strategy_of(entry: tuple) -> str | None:
    """The strategy key of an audit entry of a decision (its payload's ``strategy_id``)."""
    payload = entry[2]
    return payload.get("strategy_id") if isinstance(payload, Mapping) else None


class ExitJob:
    """The exits of one fast cycle, after their intents were written: :meth:`run` drives them through
    the exit path (the store and the broker only: any thread); :meth:`MonitorCache.finish` then updates
    the cache on the monitor's thread; :meth:`report` is the cycle's report with the exits."""

    def __init__(self, cycle: _Cycle, todo: list, valuation, ev, strategies: pl.DataFrame,
                 credentials: DhanCredentials | None, start: float) -> None:
        self.cycle, self.todo, self.valuation, self.ev, self.strategies = cycle, todo, valuation, ev, strategies
        self.credentials, self.start = credentials, start
        self.keys = sorted(set(ev.actionable.get_column("strategy_id").to_list()))

    def run(self) -> ExitJob:
        if self.todo:
            self.cycle.execute(self.todo, self.valuation, None, None, self.credentials)
        self.cycle.refresh_states(self.strategies)  # (cycle.snaps is empty: the states go into the kept rows)
        return self

    def report(self) -> CycleReport:
        return self.cycle.report(self.strategies, self.valuation, self.ev, self.start)


def fast_cycle(cache: MonitorCache, *, as_of: dt.datetime, quotes: pl.DataFrame, keys: Sequence[str],
               spot: Mapping[str, float] | None = None,
               make_broker: Callable[[], tuple[Broker, ExecutionConfig]] | None = None,
               credentials: DhanCredentials | None = None,
               exits: Callable[[ExitJob], None] | None = None) -> CycleReport | None:
    """One cycle over ``keys`` at ``quotes`` / ``spot`` from the cache (module docstring); None when the
    cache cannot serve it. ``make_broker``: the exit broker and its config, built only when an exit is
    placed (default: as :func:`~.monitor.monitor_cycle` for the mode without a broker). ``exits``: takes
    the :class:`ExitJob` once the intents are written (the real-time monitor's exit worker, so the next
    ticks are evaluated while orders work); None drives the exits here and reports them."""
    if not cache.can_serve(as_of):
        return None
    start = time.perf_counter()
    cycle = _Cycle(cache.wh, cache.day, as_of, cache.mode, SOURCE, cache.config, cache.rules)
    cycle.make_broker = make_broker
    inputs = cache.subset(keys)
    live = inputs.strategies.filter(pl.col("open_legs") > 0)
    if live.height == 0:
        return cycle.report(inputs.strategies, None, None, start)
    valuation = value_positions(inputs.legs, inputs.facts, quotes, dict(spot or {}), as_of, rate=cache.rules.rate)
    # as monitor_cycle: FAILED strategies and unquoted legs are held back (HIGH alerts, no exit)
    ev = cycle.hold(cycle.evaluate(valuation, inputs, cache.ctx, cache.levels), valuation, live)
    snaps, states, decisions = cycle.rows(valuation, ev, inputs.strategies)
    actionable = ev.actionable
    if actionable.height == 0:
        cache.note(snaps, states, decisions, as_of)
        return cycle.report(inputs.strategies, valuation, ev, start)
    due = set(actionable.get_column("intent_key").to_list())
    first = [e[1] in due or e[0] == "daily_loss_limit" for e in decisions]
    cache.note(snaps, states, [e for e, f in zip(decisions, first, strict=True) if not f], as_of)
    # intents first, each row committed before any order; the decisions behind them are audited with
    # the first intent's audit row (after its commit, before any order)
    todo = cycle.reserve(ev, inputs.strategies, [e for e, f in zip(decisions, first, strict=True) if f])
    cache.intents_written(sorted(set(actionable.get_column("strategy_id").to_list())))
    job = ExitJob(cycle, todo, valuation, ev, inputs.strategies, credentials, start)
    if exits is not None and todo:
        exits(job)
        return cycle.report(inputs.strategies, valuation, ev, start)  # (the driven intents come with the job)
    cache.finish(job.run())
    return job.report()
