"""Reads of the track record (:mod:`options_v4_dagster.track_record`): the replay's paper account
(cash from its fills, open legs), and per executed strategy its fills, predictions, candidate legs and
exit intents. The replay runs in a warehouse of its own, so "every row" is the replay's rows."""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa

from .schema import (
    exit_intents,
    option_chain_data,
    orders,
    portfolio_allocation,
    positions,
    strategy_details,
    strategy_execution_status,
    trades,
)
from .warehouse import Warehouse

__all__ = ["account_cash", "candidate_legs", "chain_quotes_of", "executed_strategies", "exit_intent_rows", "open_legs",
           "replay_fills"]


def account_cash(wh: Warehouse) -> tuple[float, float]:
    """(sells minus buys, fees) over every fill of the warehouse, INR."""
    t = trades
    signed = sa.case((t.c.side == "SELL", t.c.price * t.c.quantity), else_=-t.c.price * t.c.quantity)
    with wh.engine.connect() as conn:
        flow, fees = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(signed), 0.0),
                                            sa.func.coalesce(sa.func.sum(t.c.fees), 0.0))).one()
    return float(flow), float(fees)


def open_legs(wh: Warehouse) -> pl.DataFrame:
    """Every open leg (quantity != 0): allocation_id, position_id, leg, symbol, security_id, expiry,
    strike, option_type, quantity (signed shares), average_price."""
    p = positions
    return wh.read(sa.select(p.c.allocation_id, p.c.position_id, p.c.leg, p.c.symbol, p.c.security_id, p.c.expiry,
                             p.c.strike, p.c.option_type, p.c.quantity, p.c.average_price)
                   .where(p.c.quantity != 0).order_by(p.c.allocation_id, p.c.position_id, p.c.leg))


def replay_fills(wh: Warehouse) -> pl.DataFrame:
    """Every fill with its order's purpose and exit intent: allocation_id, position_id, leg, purpose,
    intent, security_id, side, quantity, price, fees, traded_at."""
    t, o = trades, orders
    return wh.read(sa.select(t.c.allocation_id, t.c.position_id, t.c.leg, t.c.purpose, o.c.intent, t.c.security_id,
                             t.c.symbol, t.c.side, t.c.quantity, t.c.price, t.c.fees, t.c.traded_at)
                   .select_from(t.join(o, o.c.correlation_id == t.c.correlation_id))
                   .order_by(t.c.traded_at, t.c.allocation_id, t.c.position_id, t.c.leg, t.c.trade_id))


def executed_strategies(wh: Warehouse) -> pl.DataFrame:
    """One row per executed strategy: its state and stored realized P&L, with what the allocation
    predicted for it (POP, expected value over its life, capital, t_years) and how it was classified
    (strategy, category, conviction, tier)."""
    e, pa = strategy_execution_status, portfolio_allocation
    return wh.read(
        sa.select(e.c.allocation_id, e.c.position_id, e.c.position_no, e.c.strategy_id, e.c.symbol,
                  e.c.strategy_name, e.c.state, e.c.reason, e.c.entry_premium, e.c.fees.label("status_fees"),
                  e.c.opened_at, e.c.closed_at, e.c.realized_pnl.label("status_realized_pnl"),
                  pa.c.trade_date, pa.c.category, pa.c.conviction, pa.c.tier, pa.c.lots, pa.c.lot_size,
                  pa.c.capital_used, pa.c.pop, pa.c.expected_value, pa.c.max_loss, pa.c.t_years)
        .select_from(e.outerjoin(pa, (pa.c.allocation_id == e.c.allocation_id) & (pa.c.position_id == e.c.position_id)))
        .order_by(pa.c.trade_date, e.c.allocation_id, e.c.position_no))


def candidate_legs(wh: Warehouse, strategy_ids: list[str]) -> pl.DataFrame:
    """The candidates' legs as created: strategy_id, leg, side, instrument, strike, expiry, delta (per
    share, spot delta of the option)."""
    d = strategy_details
    if not strategy_ids:
        return pl.DataFrame(schema={"strategy_id": pl.Utf8, "leg": pl.Int64, "side": pl.Utf8, "instrument": pl.Utf8,
                                    "strike": pl.Float64, "expiry": pl.Date, "delta": pl.Float64})
    return wh.read(sa.select(d.c.strategy_id, d.c.leg, d.c.side, d.c.instrument, d.c.strike, d.c.expiry, d.c.delta)
                   .where(d.c.strategy_id.in_(sorted(set(strategy_ids)))).order_by(d.c.strategy_id, d.c.leg))


def exit_intent_rows(wh: Warehouse) -> pl.DataFrame:
    """Every exit intent: intent_key, allocation_id, position_id, rule, level, action, state, trade_date."""
    i = exit_intents
    return wh.read(sa.select(i.c.intent_key, i.c.allocation_id, i.c.position_id, i.c.rule, i.c.level, i.c.action,
                             i.c.state, i.c.trade_date).order_by(i.c.trade_date, i.c.intent_key))


def chain_quotes_of(wh: Warehouse, security_ids: list[str]) -> pl.DataFrame:
    """The stored quotes (trade_date, security_id, bid, ask) of these contracts on every session."""
    c = option_chain_data
    if not security_ids:
        return pl.DataFrame(schema={"trade_date": pl.Date, "security_id": pl.Utf8, "bid": pl.Float64, "ask": pl.Float64})
    ids = sorted(set(security_ids))
    parts = [wh.read(sa.select(c.c.trade_date, c.c.security_id, c.c.bid, c.c.ask).where(c.c.security_id.in_(ids[i:i + 5000])))
             for i in range(0, len(ids), 5000)]
    return pl.concat([p for p in parts if p.height]) if any(p.height for p in parts) else parts[0]
