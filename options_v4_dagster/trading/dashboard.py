"""What ``options-v4 monitor dashboard`` shows: every open strategy and leg valued at the session's
quotes and the exit rules evaluated -- read-only (no snapshot, no intent, no order: the monitor's
cycles do those). Store read -> valuation -> exit rules; no Dagster."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from ..store import monitoring as ms
from ..store.warehouse import Warehouse
from .exit_config import load_exit_rules
from .exit_rules import evaluate_exits
from .monitor import default_as_of
from .valuation import value_positions

__all__ = ["DashboardView", "dashboard_view"]


@dataclass
class DashboardView:
    session: dt.date
    as_of: dt.datetime
    strategies: pl.DataFrame  # the store's strategies joined with their valuation (pnl_close, pnl_pct_max_loss, ...)
    legs: pl.DataFrame  # valued open legs: strategy_id (= strategy_key), leg, strike, option_type, expiry, quantity,
    #                     average_price (entry), mid, close_price, pnl_close
    decisions: pl.DataFrame  # every rule that fired (HOLD when none), with urgency and reason
    intents: list[dict] = field(default_factory=list)  # stored exit intents of these strategies
    closed: dict[str, int] = field(default_factory=dict)  # {"wins": n, "losses": n} of CLOSED strategies
    messages: list[str] = field(default_factory=list)


def dashboard_view(wh: Warehouse, session: dt.date | None = None) -> DashboardView:
    session, as_of = default_as_of(session)
    rules = load_exit_rules()
    inputs = ms.monitor_inputs(wh, as_of)
    closed = ms.closed_results(wh)
    live = inputs.strategies.filter(pl.col("open_legs") > 0)
    empty = pl.DataFrame()
    if live.height == 0:
        return DashboardView(session, as_of, inputs.strategies, empty, empty, [], closed)
    sq = ms.session_quotes(wh, session, live.get_column("symbol").unique().to_list())
    msgs = [] if sq.book is not None else [f"no stored option chain for {session}: legs valued without quotes"]
    valuation = value_positions(inputs.legs, inputs.facts, sq.quotes, dict(sq.spot), as_of, rate=rules.rate)
    keys = valuation.strategies.get_column("strategy_id").to_list()
    stored = ms.intents(wh, strategy_keys=keys)
    done = [i["intent_key"] for i in stored if i["state"] in ("PENDING", "PLACED", "FILLED")]
    hw = {k: s["high_water_mark"] for k, s in ms.read_monitor_state(wh, keys).items()
          if s["high_water_mark"] is not None}
    ev = evaluate_exits(valuation, inputs.levels, config=rules, executed_intents=done, high_water=hw)
    strategies = inputs.strategies.join(valuation.strategies.rename({"strategy_id": "strategy_key"}),
                                        on="strategy_key", how="left", suffix="_v")
    return DashboardView(session, as_of, strategies, valuation.legs, ev.decisions, stored, closed, msgs)
