"""The one entry point of trade execution: ``options-v4 execute`` and the ``execute_allocation`` job
both call :func:`execute_approval` (store read -> broker -> reconcile -> :func:`~.execution.execute_allocation`
-> store). No Dagster here.

Brokers:

* ``paper`` (default): a :class:`~.paper.PaperBroker` at the allocation session's stored quotes
  (``session_quote_book``) on a simulated clock (:func:`~.replay.paper_execution`). Its account
  starts with ``capital`` (default: the snapshot's) and carries every open position stored for
  earlier paper executions (:func:`~..store.execution_queries.open_account_positions`), so the
  funds and margin check counts them, whichever process executed them.
* ``dhan``: a :class:`~.dhan_broker.DhanBroker` with the account's shared order-rate limiter, live.

**Live needs every switch** (:func:`check_live`): broker ``dhan``, its credentials
(``DHAN_CLIENT_ID`` / ``DHAN_ACCESS_TOKEN``), ``OPTIONS_V4_LIVE=1`` in the environment of the
process that places the orders, and ``live`` asked explicitly (``--execute`` on the CLI, ``live:
true`` in the run config). Anything less raises :class:`LiveTradingRefused` naming what is missing,
before anything is read or sent. A dhan request without ``live`` is refused too (never silently
paper-traded); ``live`` with the paper broker is refused as ambiguous.

Every execution first reconciles the broker's orders with the store (:func:`~.placement.reconcile`:
restart recovery), then executes; executing an approval again places nothing.

**Daily loss limit.** When a monitoring cycle of the entry's session recorded the portfolio's daily
loss limit as breached (``block_new_orders``; the ``daily_loss_limit`` audit row of a cycle whose
mode covers the broker: simulation / alert-only for paper, live / alert-only for dhan), new entry
orders are refused that session with :class:`DailyLossLimitBreached` (naming the day and the loss)
before anything is sent; an allocation whose positions were all executed already still reports.
The entry's session: the allocation's for a replayed paper session, today's (IST) otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from .. import calendar
from ..errors import ConfigError
from ..store.execution_queries import approvals_of, open_account_positions
from ..store.monitoring import daily_loss_breach
from ..store.trading import TradingStore
from ..store.trading_queries import (
    Approval,
    ApprovalError,
    allocation_plan,
    get_approval,
    positions_by_number,
    session_quote_book,
)
from ..store.warehouse import Warehouse
from .execution import SETTLED, ExecutionReport, PreTradeCheckFailed, execute_allocation
from .placement import ExecutionConfig, ReconcileReport, reconcile
from .plan import AllocationPlan
from .replay import paper_execution
from .rules import TICK_SIZE, InstrumentSpec, load_freeze_limits

__all__ = ["BROKERS", "LIVE_ENV", "DailyLossLimitBreached", "DhanCredentials", "LiveTradingRefused", "check_live",
           "execute_approval",
           "live_enabled", "resolve_approvals",
           "default_broker"]

BrokerName = Literal["paper", "dhan"]
BROKERS: tuple[str, ...] = ("paper", "dhan")
LIVE_ENV = "OPTIONS_V4_LIVE"
BROKER_ENV = "OPTIONS_V4_BROKER"


class LiveTradingRefused(ConfigError):
    """A live execution was asked without every switch (``missing`` names them); nothing was sent."""

    def __init__(self, message: str, missing: Sequence[str] = ()) -> None:
        self.missing = list(missing)
        super().__init__(message)


class DailyLossLimitBreached(PreTradeCheckFailed):
    """The day's monitor found the portfolio's daily loss limit breached: no new entry orders that
    session (module docstring). ``day``, ``daily_pnl`` (INR, negative) and ``limit`` (INR) say why."""

    def __init__(self, day: dt.date, daily_pnl: float, limit: float | None, as_of: str | None = None) -> None:
        self.day, self.daily_pnl, self.limit = day, daily_pnl, limit
        lim = f" at or below the daily loss limit -INR {limit:,.0f}" if limit is not None else ""
        super().__init__("daily_loss_limit", f"the daily loss limit was breached on {day}: the day's P&L INR "
                         f"{daily_pnl:,.0f} is{lim} (recorded by the monitor"
                         + (f" at {as_of}" if as_of else "") + "); no new entry orders until the next session")


#: the monitoring modes whose daily loss limit breach stops the entries of a broker
_BREACH_MODES = {"paper": ("simulation", "alert_only"), "dhan": ("live", "alert_only")}


@dataclass(frozen=True)
class DhanCredentials:
    """Dhan API credentials (never printed: ``repr`` leaves the token out)."""

    client_id: str
    access_token: str = field(repr=False)
    base_url: str | None = None

    @property
    def complete(self) -> bool:
        return bool(self.client_id.strip() and self.access_token.strip())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DhanCredentials:
        env = os.environ if env is None else env
        return cls(env.get("DHAN_CLIENT_ID", ""), env.get("DHAN_ACCESS_TOKEN", ""),
                   env.get("DHAN_API_BASE_URL", "").strip() or None)


def default_broker(env: Mapping[str, str] | None = None) -> str:
    """The broker of this deployment: ``OPTIONS_V4_BROKER`` (default paper), what
    ``approved_allocations_sensor`` and ``options-v4 execute`` without ``--broker`` execute on. For
    the sensor, ``dhan`` asks for live runs (:func:`check_live` still wants the other switches)."""
    name = (os.environ if env is None else env).get(BROKER_ENV, "").strip() or "paper"
    if name not in BROKERS:
        raise ConfigError(f"{BROKER_ENV}={name!r} is not a broker (one of {', '.join(BROKERS)})")
    return name


def live_enabled(env: Mapping[str, str] | None = None) -> bool:
    """``OPTIONS_V4_LIVE`` is exactly ``1`` (nothing else counts)."""
    return (os.environ if env is None else env).get(LIVE_ENV, "").strip() == "1"


def check_live(broker: str, *, live: bool, credentials: DhanCredentials | None,
               live_flag: str = "--execute", env: Mapping[str, str] | None = None) -> None:
    """Refuse (:class:`LiveTradingRefused`, one line naming every missing switch) unless the request is
    paper without ``live``, or dhan with credentials, ``OPTIONS_V4_LIVE=1`` and ``live``.
    ``live_flag``: how the caller asks for live (``--execute``, ``live: true in the run config``)."""
    if broker not in BROKERS:
        raise ConfigError(f"unknown broker {broker!r} (one of {', '.join(BROKERS)})")
    if broker == "paper":
        if live:
            raise LiveTradingRefused(f"{live_flag} places live orders and needs broker dhan; the paper broker "
                                     f"executes without it", ["broker dhan"])
        return
    missing = []
    if credentials is None or not credentials.complete:
        missing.append("Dhan credentials (DHAN_CLIENT_ID and DHAN_ACCESS_TOKEN)")
    if not live_enabled(env):
        missing.append(f"{LIVE_ENV}=1 in the environment")
    if not live:
        missing.append(live_flag)
    if missing:
        raise LiveTradingRefused("live trading on dhan refused, nothing sent: missing " + ", ".join(missing)
                                 + " (paper trading: broker paper)", missing)


def resolve_approvals(wh: Warehouse, approval_id: str | None = None, *, allocation_id: str | None = None,
                      position_numbers: Sequence[int] | None = None) -> list[tuple[Approval, list[str] | None]]:
    """What to execute: (approval, position_ids or None for all it approved) pairs.

    ``approval_id``: that approval (``position_numbers`` narrow it). ``allocation_id``: with
    ``position_numbers``, the oldest approval covering them all; without, an approval of every
    position if there is one, else each approval of the allocation in turn. ApprovalError (naming
    ``options-v4 approve``) when nothing approves what is asked."""
    if approval_id is not None:
        approval = get_approval(wh, approval_id)
        if approval is None:
            raise ApprovalError(f"approval {approval_id} does not exist")
        if not position_numbers:
            return [(approval, None)]
        pids = positions_by_number(wh, approval.allocation_id, position_numbers)
        outside = [n for n, p in zip(position_numbers, pids, strict=True)
                   if approval.position_ids is not None and p not in approval.position_ids]
        if outside:
            raise ApprovalError(f"approval {approval_id} does not cover position(s) {outside}")
        return [(approval, pids)]
    if allocation_id is None:
        raise ApprovalError("name an approval or an allocation")
    approvals = approvals_of(wh, allocation_id)
    hint = f"options-v4 approve {allocation_id}"
    if position_numbers:
        pids = positions_by_number(wh, allocation_id, position_numbers)
        for a in sorted(approvals, key=lambda a: a.position_ids is not None):
            if a.position_ids is None or set(pids) <= set(a.position_ids):
                return [(a, pids)]
        nums = ",".join(str(n) for n in position_numbers)
        raise ApprovalError(f"position(s) {nums} of allocation {allocation_id} are not approved: "
                            f"run `{hint} --positions {nums}` first")
    if not approvals:
        raise ApprovalError(f"allocation {allocation_id} is not approved: run `{hint}` first")
    every = [a for a in approvals if a.position_ids is None]
    return [(every[0], None)] if every else [(a, None) for a in approvals]


def execute_approval(wh: Warehouse, approval_id: str | None = None, *, allocation_id: str | None = None,
                     position_numbers: Sequence[int] | None = None, broker: BrokerName = "paper",
                     live: bool = False, credentials: DhanCredentials | None = None,
                     live_flag: str = "--execute", capital: float | None = None,
                     config: ExecutionConfig | None = None, env: Mapping[str, str] | None = None) -> ExecutionReport:
    """Execute an approval (``approval_id``) or an allocation's approved positions (``allocation_id``,
    optionally ``position_numbers``: see :func:`resolve_approvals`) on ``broker`` (module docstring).
    ``capital``: the paper account's (default the snapshot's). ``config``: execution settings (the
    paper broker binds its clock and sleep to the simulated clock). Raises LiveTradingRefused,
    ApprovalError, PreTradeCheckFailed or a broker error; ``seconds`` of the report covers the whole
    call (plan, quotes, reconciliation, orders)."""
    check_live(broker, live=live, credentials=credentials, live_flag=live_flag, env=env)
    start = time.perf_counter()
    todo = resolve_approvals(wh, approval_id, allocation_id=allocation_id, position_numbers=position_numbers)
    store = TradingStore(wh)
    reports = []
    for approval, pids in todo:
        plan = allocation_plan(wh, approval.allocation_id, pids if pids is not None else approval.position_ids,
                               approval_id=approval.approval_id)
        _check_daily_loss(wh, plan, store, broker, config)
        if broker == "paper":
            reports.append(_paper(wh, plan, store, capital, config))
        else:
            reports.append(_dhan(plan, store, credentials, config))
    report = _merge(reports)
    return replace(report, seconds=time.perf_counter() - start)


def _check_daily_loss(wh: Warehouse, plan: AllocationPlan, store: TradingStore, broker: str,
                      config: ExecutionConfig | None) -> None:
    """Raise :class:`DailyLossLimitBreached` when the entry's session had its daily loss limit breached
    and the plan still has positions to enter (module docstring)."""
    if broker == "paper":
        day = paper_start(plan.trade_date).astimezone(calendar.IST).date()
    else:
        day = (config.clock() if config is not None else dt.datetime.now(dt.UTC)).astimezone(calendar.IST).date()
    breach = daily_loss_breach(wh, day, modes=_BREACH_MODES[broker])
    if breach is None:
        return
    pending = [p for p in plan.positions
               if (st := store.strategy_status(p.allocation_id, p.position_id)) is None or st.state not in SETTLED]
    if pending:
        raise DailyLossLimitBreached(day, float(breach["daily_pnl"]), breach.get("limit"), breach.get("as_of"))


def _paper(wh: Warehouse, plan: AllocationPlan, store: TradingStore, capital: float | None,
           config: ExecutionConfig | None) -> ExecutionReport:
    book = session_quote_book(wh, plan.trade_date, plan.symbols)
    px = paper_execution(book, capital=capital if capital is not None else plan.capital, config=config,
                         start=paper_start(plan.trade_date))
    carried = carry_open_positions(px.broker, wh)
    report = _run(plan, px.broker, store, px.config)
    if carried:
        report.messages.insert(0, f"paper account: {carried} open leg(s) of earlier executions carried "
                                  "into funds and margin")
    return report


#: A past session's entries are replayed at its stored quotes as of this IST time (the monitor replays
#: the session's exits at 15:25, after them).
ENTRY_REPLAY_TIME = dt.time(15, 20)


def paper_start(session: dt.date, now: dt.datetime | None = None) -> dt.datetime:
    """When a paper execution of ``session`` happens: now for today's (or a later) session; for a past
    session 15:20 IST of that day, so its orders, fills and entry times carry the session's date."""
    now = now or dt.datetime.now(dt.UTC)
    if session >= now.astimezone(calendar.IST).date():
        return now
    return dt.datetime.combine(session, ENTRY_REPLAY_TIME, calendar.IST).astimezone(dt.UTC)


def carry_open_positions(broker, wh: Warehouse) -> int:
    """Give a fresh paper broker the paper account's stored open legs (see the module docstring)."""
    legs = open_account_positions(wh, broker.name)
    freeze = load_freeze_limits()
    n = 0
    for r in legs.iter_rows(named=True):
        if r["option_type"] not in ("CE", "PE") or r["expiry"] is None or r["strike"] is None:
            continue
        lot = int(r["lot_size"] or 1)
        spec = InstrumentSpec(r["security_id"], r["symbol"], r["expiry"], float(r["strike"]), r["option_type"], lot,
                              TICK_SIZE, freeze.freeze_quantity(r["symbol"], lot))
        broker.carry_position(spec, int(r["quantity"]), float(r["average_price"] or 0.0))
        n += 1
    return n


def _dhan(plan: AllocationPlan, store: TradingStore, credentials: DhanCredentials,
          config: ExecutionConfig | None) -> ExecutionReport:
    from .dhan_broker import DhanBroker

    broker = DhanBroker.from_credentials(credentials.client_id, credentials.access_token, credentials.base_url)
    try:
        return _run(plan, broker, store, replace(config or ExecutionConfig(), live=True))
    finally:
        broker.close()


def _run(plan: AllocationPlan, broker, store: TradingStore, config: ExecutionConfig) -> ExecutionReport:
    rec = reconcile(broker, store, config)
    report = execute_allocation(plan, broker, store, config)
    note = _reconcile_note(rec)
    if note:
        report.messages.insert(0, note)
    return report


def _reconcile_note(rec: ReconcileReport) -> str | None:
    parts = [f"{len(v)} {k}" for k, v in (("adopted", rec.adopted), ("updated", rec.updated),
                                          ("rejected as lost", rec.rejected), ("unresolved", rec.unresolved)) if v]
    return ("reconciled with the broker before executing: " + ", ".join(parts)) if parts else None


def _merge(reports: list[ExecutionReport]) -> ExecutionReport:
    if len(reports) == 1:
        return reports[0]
    seen, strategies = set(), []
    for r in reports:
        for s in r.strategies:
            if s.position_id not in seen:
                seen.add(s.position_id)
                strategies.append(s)
    strategies.sort(key=lambda s: s.position_no)
    return ExecutionReport(reports[0].allocation_id, strategies, sum(r.orders_placed for r in reports),
                           sum(r.seconds for r in reports), nothing_to_do=all(r.nothing_to_do for r in reports),
                           messages=[m for r in reports for m in r.messages])
