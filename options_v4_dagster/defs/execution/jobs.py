"""The ``execute_allocation`` job: one op, in the ``broker_account`` concurrency pool (limit 1 in the
instance's dagster.yaml: one execution per account at a time), calling the same entry point as
``options-v4 execute`` (:func:`~options_v4_dagster.trading.service.execute_approval`)."""

from typing import Literal

import dagster as dg

from options_v4_dagster.defs.execution.resources import BrokerResource
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.errors import OptionsV4Error
from options_v4_dagster.trading.execution import ExecutionReport
from options_v4_dagster.trading.service import LiveTradingRefused, execute_approval

#: the concurrency pool of every op that places orders on the broker account
POOL = "broker_account"
OP = "place_approved_orders"
TAG_ALLOCATION, TAG_APPROVAL, TAG_BROKER = "options_v4/allocation_id", "options_v4/approval_id", "options_v4/broker"
LIVE_FLAG = "live: true in the run config"


class ExecuteAllocationConfig(dg.Config):
    approval_id: str
    broker: Literal["paper", "dhan"] = "paper"
    live: bool = False  # live orders: also needs broker dhan, its credentials and OPTIONS_V4_LIVE=1


def run_config(approval_id: str, broker: str = "paper", live: bool = False) -> dict:
    """The run config of an execution of ``approval_id``."""
    return {"ops": {OP: {"config": {"approval_id": approval_id, "broker": broker, "live": live}}}}


def _cell(v) -> str:
    return "" if v is None else str(v).replace("|", "/")


def report_markdown(report: ExecutionReport) -> str:
    """Per strategy and leg: state, status, filled quantity and average price."""
    lines = ["| # | symbol | strategy | state | leg | side | contract | qty | status | filled | avg price |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in report.strategies:
        for leg in s.legs:
            contract = f"{leg.instrument} {leg.strike:g} {leg.expiry}" if leg.strike is not None else leg.instrument
            avg = "" if leg.average_price is None else f"{leg.average_price:,.2f}"
            lines.append(f"| {s.position_no} | {s.symbol} | {_cell(s.strategy_name)} | {s.state} | {leg.leg} | "
                         f"{leg.side} | {contract} | {leg.quantity} | {leg.status} | {leg.filled_quantity} | {avg} |")
        if s.reason:
            lines.append(f"| {s.position_no} | | | reason: {_cell(s.reason)[:200]} | | | | | | | |")
    return "\n".join(lines) if report.strategies else "_no positions_"


@dg.op(
    pool=POOL,
    description="Execute an approved allocation snapshot (or its approved positions) on the broker: reconcile "
    "open orders with the broker, then pre-trade checks, buy legs first, then sell legs, each order exactly once "
    "per correlation id. Re-executing places nothing. Paper by default; live needs broker dhan, its "
    "credentials, OPTIONS_V4_LIVE=1 and live: true.",
)
def place_approved_orders(context: dg.OpExecutionContext, config: ExecuteAllocationConfig,
                          warehouse: WarehouseResource, broker: BrokerResource) -> dg.Output[dict]:
    wh = warehouse.get()
    try:
        report = execute_approval(wh, config.approval_id, broker=config.broker, live=config.live,
                                  credentials=broker.credentials(), live_flag=LIVE_FLAG)
    except LiveTradingRefused as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except OptionsV4Error as exc:  # approval, pre-trade check, broker and ledger errors: one line
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
    for m in report.messages:
        context.log.info(m)
    states: dict[str, int] = {}
    for s in report.strategies:
        states[s.state] = states.get(s.state, 0) + 1
    return dg.Output(
        {"allocation_id": report.allocation_id, "orders_placed": report.orders_placed, "states": states},
        metadata={
            "allocation_id": dg.MetadataValue.text(report.allocation_id),
            "approval_id": dg.MetadataValue.text(config.approval_id),
            "broker": dg.MetadataValue.text(config.broker),
            "orders_placed": dg.MetadataValue.int(report.orders_placed),
            "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
            "nothing_to_do": dg.MetadataValue.bool(report.nothing_to_do),
            "states": dg.MetadataValue.json(states),
            "strategies": dg.MetadataValue.md(report_markdown(report)),
            "messages": dg.MetadataValue.md("\n".join(f"- {m}" for m in report.messages) or "_none_"),
        })


@dg.job(
    tags={"options_v4/area": "execution"},
    description="Place an approved allocation's orders (launched by approved_allocations_sensor, or from the "
    "launchpad with an approval_id). One run per account at a time (pool broker_account).",
)
def execute_allocation():
    place_approved_orders()
