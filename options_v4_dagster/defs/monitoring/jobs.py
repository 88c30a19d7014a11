"""The ``monitor_positions`` and ``exit_positions`` jobs: one op calling the same entry point as
``options-v4 monitor once`` (:func:`~options_v4_dagster.trading.monitor.monitor_cycle`, source
``sensor``). ``exit_positions`` is that op restricted to the strategy keys of the intents it retries.
The op is in the ``broker_account`` pool of the executions: exits and entries never place orders on the
account at the same time."""


import datetime as dt
from typing import Literal

import dagster as dg

from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs.execution.jobs import POOL
from options_v4_dagster.defs.execution.resources import BrokerResource
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.errors import OptionsV4Error
from options_v4_dagster.trading.monitor import monitor_cycle
from options_v4_dagster.trading.monitor_report import CycleReport
from options_v4_dagster.trading.service import LiveTradingRefused

OP = "monitor_open_positions"
TAG_SESSION, TAG_MODE, TAG_INTENT = "options_v4/session", "options_v4/monitor_mode", "options_v4/intent_key"


class MonitorPositionsConfig(dg.Config):
    session: str | None = None  # YYYY-MM-DD; None = today's session (now), a past one replays its stored chain
    mode: Literal["simulation", "alert_only", "live"] = "simulation"
    live: bool = False  # live orders: also mode live, Dhan's credentials and OPTIONS_V4_LIVE=1
    keys: list[str] | None = None  # only these strategy keys (exit_positions: the intents' strategies)


def run_config(session: dt.date | None, mode: str = "simulation", live: bool = False,
               keys: list[str] | None = None) -> dict:
    cfg: dict = {"session": session.isoformat() if session else None, "mode": mode, "live": live}
    if keys is not None:
        cfg["keys"] = list(keys)
    return {"ops": {OP: {"config": cfg}}}


def _cell(v) -> str:
    return "" if v is None else str(v).replace("|", "/")


def _f(v, fmt: str) -> str:
    return "" if v is None else fmt.format(v)


def primary_action(p) -> str:
    acts = [a for a in p.actions if a.action != "HOLD"]
    return f"{acts[0].action} ({acts[0].rule}, {acts[0].urgency})" if acts else "HOLD"


def positions_markdown(report: CycleReport) -> str:
    """Per monitored strategy: state, P&L, % of max loss, DTE and the primary action."""
    lines = ["| strategy | symbol | name | state | P&L (INR) | % of max loss | DTE | action |",
             "|---|---|---|---|---|---|---|---|"]
    for p in report.positions:
        pct = None if p.pnl_pct_of_max_loss is None else 100 * p.pnl_pct_of_max_loss
        lines.append(f"| {_cell(p.strategy_key)} | {p.symbol} | {_cell(p.strategy_name)} | {p.state} | "
                     f"{_f(p.pnl, '{:,.0f}')} | {_f(pct, '{:.1f}')} | {_f(p.dte, '{}')} | "
                     f"{_cell(primary_action(p))} |")
    return "\n".join(lines) if report.positions else "_no open positions_"


@dg.op(
    pool=POOL,
    description="One monitoring cycle (source sensor): settle expired legs, value every open strategy, evaluate "
    "the exit rules, snapshot into strategy_monitoring, write each exit intent (strategy_key:rule:level) before "
    "any order and place it once. Modes: simulation (paper, default), alert_only (no orders), live (needs "
    "Dhan's credentials, OPTIONS_V4_LIVE=1 and live: true).",
)
def monitor_open_positions(context: dg.OpExecutionContext, config: MonitorPositionsConfig,
                           warehouse: WarehouseResource, broker: BrokerResource) -> dg.Output[dict]:
    session = dt.date.fromisoformat(config.session) if config.session else None
    try:
        report = monitor_cycle(warehouse.get(), session, mode=config.mode, source="sensor", live=config.live,
                               credentials=broker.credentials(), keys=config.keys)
    except LiveTradingRefused as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except OptionsV4Error as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
    for m in report.messages:
        context.log.info(m)
    for i in report.escalated:
        context.log.warning(f"exit {i.intent_key} left {i.state}: {i.note}")
    open_n = sum(1 for p in report.positions if p.state in ("OPEN", "PARTIALLY_EXITED"))
    pnl = sum(p.pnl for p in report.positions if p.pnl is not None)
    out = {"date": report.date.isoformat(), "open_positions": open_n, "pnl_total": round(pnl, 2),
           "alerts": dict(report.alerts), "exits_placed": report.exits_placed}
    return dg.Output(out, metadata={
        "session": dg.MetadataValue.text(report.date.isoformat()),
        "mode": dg.MetadataValue.text(report.mode),
        "open_positions": dg.MetadataValue.int(open_n),
        "pnl_total": fmt.inr(pnl, 2),
        "alerts_by_urgency": dg.MetadataValue.json(dict(report.alerts)),
        "exits_placed": dg.MetadataValue.int(report.exits_placed),
        "intents": dg.MetadataValue.json({i.intent_key: i.state for i in report.intents}),
        "settled_legs": dg.MetadataValue.int(len(report.settled)),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "positions": dg.MetadataValue.md(positions_markdown(report)),
        "messages": dg.MetadataValue.md("\n".join(f"- {m}" for m in report.messages) or "_none_"),
    })


@dg.job(tags={"options_v4/area": "monitoring"},
        description="Snapshot and enforce the exit rules on every open position (launched by open_positions_sensor "
        "every interval, or from the launchpad). Pool broker_account.")
def monitor_positions():
    monitor_open_positions()


@dg.job(tags={"options_v4/area": "monitoring"},
        description="Retry the exit intents left PARTIAL or FAILED (config keys: their strategies; run key "
        "intent_key:attempt from open_positions_sensor). The same op and exit path as monitor_positions.")
def exit_positions():
    monitor_open_positions()
