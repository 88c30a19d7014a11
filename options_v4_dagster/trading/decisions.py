"""What monitoring decides for an open strategy: actions, urgencies, rules and their precedence,
and the exit **intent key** that makes an exit exactly-once.

An intent key is ``"{strategy_id}:{rule}:{level}"`` (``1234:scale_out:50``,
``20250717-NIFTY-bull_call_spread-moderate:stop_loss:stop``). The polling job, the real-time
monitor and any retry compute the same key from the same position, so one intent produces one
exit order set (:func:`~.orders.exit_correlation_id` derives the orders' ids from it). A key in
the executed set never fires again; once a strategy has an executed ``EXIT_ALL`` intent no other
exit fires for it (its exit path owns the retries), which is what keeps two different rules --
a stop seen by the real-time monitor, a time exit seen by the sensor -- from doubling an exit.

Precedence (:data:`PRECEDENCE`, lower wins) when several rules fire on one strategy:

1. ``stop_loss`` -- losses first, always;
2. ``daily_loss_limit`` -- the portfolio limit (only when configured to exit everything);
3. ``physical_settlement_cutoff`` -- a stock option leg in (or near) the money before expiry;
4. ``time_exit`` -- DTE threshold / time-exit date, maximum holding period, theta decay;
5. ``profit_target`` -- the primary target closes everything;
6. ``scale_out`` -- partial profit taking (every step crossed and not yet executed fires);
7. ``trailing_stop`` -- a give-back from the high-water mark after activation;
8. ``breakeven_breached``, 9. ``short_delta``, 10. ``offensive_add`` -- alerts / adjustment
   suggestions, never orders;
11. ``hold`` -- nothing fired.

The **primary** decision of a strategy is its highest-precedence one. What is **actionable**
(turned into exit orders, :mod:`.exit_orders`): the primary decision when it is ``EXIT_ALL``;
when it is a scale-out, every scale-out step that fired; nothing otherwise. Alerts and ADJUST
suggestions are kept in the decisions for the record and the dashboard.
"""

from __future__ import annotations

from enum import StrEnum

import polars as pl

__all__ = [
    "DECISION_SCHEMA", "EXIT_ALL_RULES", "LEG_QUANTITY_SCHEMA", "PRECEDENCE", "Action", "Rule", "Urgency",
    "intent_key", "intent_key_expr", "parse_intent_key",
]


class Action(StrEnum):
    HOLD = "HOLD"
    ALERT = "ALERT"
    EXIT_PARTIAL = "EXIT_PARTIAL"
    EXIT_ALL = "EXIT_ALL"
    ADJUST = "ADJUST"


class Urgency(StrEnum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    NORMAL = "NORMAL"


class Rule(StrEnum):
    STOP_LOSS = "stop_loss"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    PHYSICAL_SETTLEMENT_CUTOFF = "physical_settlement_cutoff"
    TIME_EXIT = "time_exit"
    PROFIT_TARGET = "profit_target"
    SCALE_OUT = "scale_out"
    TRAILING_STOP = "trailing_stop"
    BREAKEVEN_BREACHED = "breakeven_breached"
    SHORT_DELTA = "short_delta"
    OFFENSIVE_ADD = "offensive_add"
    HOLD = "hold"


PRECEDENCE: dict[Rule, int] = {r: i for i, r in enumerate(Rule, start=1)}
#: rules whose exit closes the whole strategy (a scale-out may too, when it closes what is left)
EXIT_ALL_RULES = frozenset({Rule.STOP_LOSS, Rule.DAILY_LOSS_LIMIT, Rule.PHYSICAL_SETTLEMENT_CUTOFF, Rule.TIME_EXIT,
                            Rule.PROFIT_TARGET, Rule.TRAILING_STOP})

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "strategy_id": pl.Utf8,
    "action": pl.Utf8,  # Action
    "urgency": pl.Utf8,  # Urgency
    "rule": pl.Utf8,  # Rule
    "level": pl.Utf8,
    "intent_key": pl.Utf8,  # strategy_id:rule:level
    "value": pl.Float64,  # what was measured (P&L INR, DTE, spot, |delta| ...)
    "threshold": pl.Float64,  # the level it crossed
    "lots": pl.Int64,  # lots closed (largest over the legs); 0 for alerts
    "reason": pl.Utf8,
    "precedence": pl.Int64,
    "primary": pl.Boolean,  # the strategy's highest-precedence decision
    "actionable": pl.Boolean,  # becomes exit orders
}

#: per actionable exit decision and leg: shares to close (positive) and the side that closes them
LEG_QUANTITY_SCHEMA: dict[str, pl.DataType] = {
    "intent_key": pl.Utf8,
    "strategy_id": pl.Utf8,
    "allocation_id": pl.Utf8,
    "position_id": pl.Utf8,
    "leg": pl.Int64,
    "security_id": pl.Utf8,
    "quantity": pl.Int64,  # shares to close, a whole number of lots
    "lots": pl.Int64,
    "close_side": pl.Utf8,  # SELL for a long leg, BUY for a short one
}


def intent_key(strategy_id: str, rule: Rule | str, level: object) -> str:
    """``"{strategy_id}:{rule}:{level}"`` -- the exactly-once key of an exit intent."""
    return f"{strategy_id}:{Rule(rule).value}:{level}"


def intent_key_expr(strategy_id: str = "strategy_id", rule: str = "rule", level: str = "level") -> pl.Expr:
    """:func:`intent_key` over columns (vectorized)."""
    return pl.concat_str([pl.col(strategy_id), pl.col(rule), pl.col(level)], separator=":")


def parse_intent_key(key: str) -> tuple[str, str, str]:
    """(strategy_id, rule, level) of an intent key (the strategy id may itself contain ``:``)."""
    parts = key.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not an intent key (strategy:rule:level): {key!r}")
    return parts[0], parts[1], parts[2]
