"""What a monitoring cycle reports (:class:`CycleReport`, ``options-v4 monitor once --json``) and the
rows it stores per strategy (``strategy_monitoring`` snapshots). Pure: frames in, dataclasses out."""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field

import polars as pl

from .decisions import Action

__all__ = ["ActionReport", "CycleReport", "IntentReport", "PositionReport", "position_reports", "snapshot_rows"]


@dataclass
class ActionReport:
    action: str
    rule: str
    urgency: str
    quantity: int  # lots closed (the largest over the legs); 0 for alerts and HOLD
    reason: str
    level: str
    intent_key: str


@dataclass
class PositionReport:
    strategy_id: str  # the candidate's id
    strategy_key: str  # the monitored position (strategy_id@allocation prefix): the intent keys' first part
    allocation_id: str
    position_id: str
    symbol: str
    strategy_name: str | None
    state: str  # after the cycle
    pnl: float | None  # INR at the close-out prices (unrealized + realized - fees)
    pnl_pct_of_max_loss: float | None
    dte: int | None
    actions: list[ActionReport] = field(default_factory=list)


@dataclass
class IntentReport:
    intent_key: str
    state: str
    created: bool  # this cycle wrote the key (False: it existed)
    driven: bool  # this cycle placed / followed its orders
    orders: list[str] = field(default_factory=list)  # correlation ids submitted by this cycle
    left: dict[int, int] = field(default_factory=dict)  # leg -> shares still open for it
    note: str = ""


@dataclass
class CycleReport:
    date: dt.date
    as_of: dt.datetime
    mode: str
    source: str
    positions: list[PositionReport]
    intents: list[IntentReport]
    exits_placed: int  # orders this cycle sent to the broker
    settled: list[dict] = field(default_factory=list)  # legs settled at expiry in this cycle
    alerts: dict[str, int] = field(default_factory=dict)  # urgency -> non-HOLD decisions
    portfolio: dict | None = None  # the daily loss limit's decision
    messages: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def escalated(self) -> list[IntentReport]:
        return [i for i in self.intents if i.driven and i.state in ("PARTIAL", "FAILED")]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["date"] = self.date.isoformat()
        d["as_of"] = self.as_of.isoformat()
        return json.loads(json.dumps(d, default=str))


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)


def position_reports(strategies: pl.DataFrame, valuation: pl.DataFrame | None, decisions: pl.DataFrame | None,
                     states: dict[str, str], realized: dict[str, float | None]) -> list[PositionReport]:
    """One report per monitored strategy (``strategies``: the store's frame), its valued numbers and
    every decision (HOLD when none fired); ``states``: strategy key -> state after the cycle;
    ``realized``: the realized P&L of those closed in the cycle (their ``pnl``)."""
    vals = {r["strategy_id"]: r for r in valuation.iter_rows(named=True)} if valuation is not None else {}
    acts: dict[str, list[ActionReport]] = {}
    if decisions is not None:
        for r in decisions.iter_rows(named=True):
            acts.setdefault(r["strategy_id"], []).append(ActionReport(
                r["action"], r["rule"], r["urgency"], int(r["lots"] or 0), r["reason"], r["level"], r["intent_key"]))
    out = []
    for s in strategies.iter_rows(named=True):
        k = s["strategy_key"]
        v = vals.get(k, {})
        state = states.get(k, s["state"])
        pnl = realized.get(k) if state == "CLOSED" and k in realized else v.get("pnl_close")
        out.append(PositionReport(s["strategy_id"], k, s["allocation_id"], s["position_id"], s["symbol"],
                                  s["strategy_name"], state, _num(pnl),
                                  _num(v.get("pnl_pct_max_loss")), v.get("front_dte"), acts.get(k, [])))
    return out


def snapshot_rows(valuation: pl.DataFrame, decisions: pl.DataFrame, strategies: pl.DataFrame, *,
                  as_of: dt.datetime, session: dt.date, mode: str, source: str,
                  states: dict[str, str]) -> list[dict]:
    """The ``strategy_monitoring`` rows of one cycle."""
    meta = {r["strategy_key"]: r for r in strategies.iter_rows(named=True)}
    fired: dict[str, list[dict]] = {}
    primary: dict[str, dict] = {}
    for r in decisions.iter_rows(named=True):
        if r["primary"]:
            primary[r["strategy_id"]] = r
        if r["action"] != Action.HOLD.value:
            fired.setdefault(r["strategy_id"], []).append(
                {k: r[k] for k in ("action", "rule", "level", "urgency", "lots", "reason")})
    rows = []
    for v in valuation.iter_rows(named=True):
        k = v["strategy_id"]
        m, p = meta[k], primary.get(k, {})
        rows.append(dict(
            as_of=as_of, strategy_key=k, source=source, trade_date=session, strategy_id=m["strategy_id"],
            allocation_id=m["allocation_id"], position_id=m["position_id"], symbol=m["symbol"],
            strategy_name=m["strategy_name"], state=states.get(k, m["state"]), mode=mode, spot=_num(v["spot"]),
            pnl_mid=_num(v["pnl_mid"]), pnl_close=_num(v["pnl_close"]), realized_net=_num(v["realized_net"]),
            fees=_num(v["fees"]), pnl_pct_max_loss=_num(v["pnl_pct_max_loss"]),
            pnl_pct_capital=_num(v["pnl_pct_capital"]), max_loss=_num(v["max_loss"]), max_profit=_num(v["max_profit"]),
            front_dte=v["front_dte"], days_in_trade=v["days_in_trade"], delta=_num(v["delta"]), gamma=_num(v["gamma"]),
            vega=_num(v["vega"]), theta=_num(v["theta"]), quotes_missing=v["quotes_missing"], action=p.get("action"),
            urgency=p.get("urgency"), rule=p.get("rule"), intent_key=p.get("intent_key"), reason=p.get("reason"),
            decisions=json.dumps(fired.get(k, []), default=str)))
    return rows
