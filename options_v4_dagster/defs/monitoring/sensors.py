"""``open_positions_sensor``: every ``OPTIONS_V4_MONITOR_INTERVAL_SECONDS`` (default 300) it launches
``monitor_positions`` when strategies are open (run key ``monitor:SESSION:SLOT``, one per session and
interval slot) and one ``exit_positions`` run per exit intent left PARTIAL or FAILED (run key
``intent_key:attempt``: a retry whose attempt did not move is not launched twice).

The mode: ``OPTIONS_V4_MONITOR_MODE`` (simulation / alert_only / live) if set, else live when
``OPTIONS_V4_BROKER=dhan`` (as ``approved_allocations_sensor``), else simulation. Live runs only during
NSE market hours on sessions and with every live switch; simulation any time, replaying the newest
session with a stored option chain."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping

import dagster as dg

from options_v4_dagster import calendar
from options_v4_dagster.defs.execution.resources import BrokerResource
from options_v4_dagster.defs.monitoring.jobs import (
    TAG_INTENT,
    TAG_MODE,
    TAG_SESSION,
    exit_positions,
    monitor_positions,
    run_config,
)
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.store.monitoring import intents, latest_chain_session, open_position_count
from options_v4_dagster.trading.execution import nse_market_open
from options_v4_dagster.trading.monitor import MODES
from options_v4_dagster.trading.service import LiveTradingRefused, check_live, default_broker

INTERVAL_ENV, MODE_ENV = "OPTIONS_V4_MONITOR_INTERVAL_SECONDS", "OPTIONS_V4_MONITOR_MODE"
DEFAULT_INTERVAL = 300
RETRY_STATES = ("PARTIAL", "FAILED")


def monitor_interval(env: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{INTERVAL_ENV}={raw!r} is not a positive number of seconds")
    return value


def monitor_mode(env: Mapping[str, str] | None = None) -> str:
    e = os.environ if env is None else env
    raw = e.get(MODE_ENV, "").strip()
    if raw:
        if raw not in MODES:
            raise ConfigError(f"{MODE_ENV}={raw!r} is not a mode (one of {', '.join(MODES)})")
        return raw
    return "live" if default_broker(e) == "dhan" else "simulation"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def slot_key(session: dt.date, now: dt.datetime, interval: int) -> str:
    return f"monitor:{session.isoformat()}:{int(now.timestamp()) // interval}"


INTERVAL = monitor_interval()


@dg.sensor(
    jobs=[monitor_positions, exit_positions],
    minimum_interval_seconds=INTERVAL,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=f"Every {INTERVAL} s ({INTERVAL_ENV}): monitor_positions when strategies are open (run key per "
    "session and interval slot), exit_positions per exit intent left PARTIAL/FAILED (run key intent_key:attempt). "
    f"Mode {MODE_ENV}, else live when OPTIONS_V4_BROKER=dhan, else simulation; live only in NSE market hours.",
)
def open_positions_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource,
                          broker: BrokerResource):
    wh = warehouse.get()
    mode = monitor_mode()
    now = _now()
    live = mode == "live"
    if live:
        if not nse_market_open(now):
            return dg.SkipReason(f"live monitoring: the NSE market is closed at {now.astimezone(calendar.IST):%Y-%m-%d %H:%M} IST")
        try:
            check_live("dhan", live=True, credentials=broker.credentials(), live_flag="OPTIONS_V4_BROKER=dhan")
        except LiveTradingRefused as exc:
            return dg.SkipReason(f"live monitoring refused: {exc}")
        session = now.astimezone(calendar.IST).date()
    else:
        session = latest_chain_session(wh, until=now.astimezone(calendar.IST).date()) or \
            calendar.latest_session(now)
    brokers = None if mode == "alert_only" else (["dhan"] if live else ["paper"])
    n_open = open_position_count(wh, brokers=brokers)
    requests = []
    if n_open:
        requests.append(dg.RunRequest(run_key=slot_key(session, now, INTERVAL), job_name=monitor_positions.name,
                                      run_config=run_config(session, mode, live),
                                      tags={TAG_SESSION: session.isoformat(), TAG_MODE: mode}))
    if mode != "alert_only":
        for i in intents(wh, states=RETRY_STATES):
            if brokers is not None and i["broker"] not in brokers:
                continue
            key = f"{i['intent_key']}:{i['attempt']}"
            requests.append(dg.RunRequest(run_key=key, job_name=exit_positions.name,
                                          run_config=run_config(session, mode, live, [i["strategy_key"]]),
                                          tags={TAG_SESSION: session.isoformat(), TAG_MODE: mode,
                                                TAG_INTENT: i["intent_key"]}))
    if not requests:
        return dg.SkipReason(f"no open positions ({mode}) and no exit intent to retry")
    return dg.SensorResult(run_requests=requests)
