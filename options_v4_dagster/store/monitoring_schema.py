"""The trade-monitoring tables: exit intents (the exactly-once key of every exit), the per-cycle
snapshots of every open strategy (the seed's ``strategy_monitoring``), the state the monitor keeps
between cycles, and the hash-chained audit log.

Append-only like the trading tables: no re-materialization deletes these rows. Defined on
:data:`options_v4_dagster.store.schema.metadata` and re-exported by ``schema``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import UTCDateTime, _now, metadata

exit_intents = sa.Table(
    "exit_intents", metadata,
    sa.Column("intent_key", sa.String(192), primary_key=True,
              comment="strategy_key:rule:level, the exactly-once key: the polling job, the real-time monitor and "
              "any retry write the same key and get the one row"),
    sa.Column("strategy_key", sa.String(128), nullable=False, index=True,
              comment="the monitored position: strategy_id@allocation prefix"),
    sa.Column("strategy_id", sa.String(96), nullable=False),
    sa.Column("allocation_id", sa.String(64), nullable=False),
    sa.Column("position_id", sa.String(128), nullable=False),
    sa.Column("trade_date", sa.Date, nullable=False, comment="the session of the cycle that wrote it"),
    sa.Column("rule", sa.String(32), nullable=False),
    sa.Column("level", sa.String(32), nullable=False),
    sa.Column("action", sa.String(16), nullable=False, comment="EXIT_ALL / EXIT_PARTIAL"),
    sa.Column("urgency", sa.String(8), nullable=False, comment="HIGH / MEDIUM / NORMAL"),
    sa.Column("quantities", sa.Text, nullable=False,
              comment="JSON [{leg, security_id, quantity (shares), lots, close_side}] at the decision"),
    sa.Column("reason", sa.Text),
    sa.Column("mode", sa.String(16), nullable=False, comment="simulation / alert_only / live"),
    sa.Column("source", sa.String(16), nullable=False, comment="sensor / realtime / cli"),
    sa.Column("broker", sa.String(16), comment="paper / dhan; null when alert-only"),
    sa.Column("state", sa.String(16), nullable=False,
              comment="PENDING, PLACED, FILLED, PARTIAL, FAILED, ALERTED"),
    sa.Column("attempt", sa.Integer, nullable=False, default=0,
              comment="the next order attempt number of its correlation ids (bumped by each retry)"),
    sa.Column("version", sa.Integer, nullable=False, default=0, comment="compare-and-set counter of updates"),
    sa.Column("note", sa.Text, comment="the last outcome: fills, what failed and was escalated"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=_now),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="One row per exit intent, written before any of its orders; append-only",
)

strategy_monitoring = sa.Table(
    "strategy_monitoring", metadata,
    sa.Column("as_of", UTCDateTime, primary_key=True, comment="the time the quotes were valued at"),
    sa.Column("strategy_key", sa.String(128), primary_key=True),
    sa.Column("source", sa.String(16), primary_key=True, comment="sensor / realtime / cli"),
    sa.Column("trade_date", sa.Date, nullable=False, index=True),
    sa.Column("strategy_id", sa.String(96), nullable=False),
    sa.Column("allocation_id", sa.String(64), nullable=False),
    sa.Column("position_id", sa.String(128), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("strategy_name", sa.String(48)),
    sa.Column("state", sa.String(24), comment="the strategy's execution state after the cycle"),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("spot", sa.Float),
    sa.Column("pnl_mid", sa.Float, comment="INR at the mark: unrealized + realized - fees"),
    sa.Column("pnl_close", sa.Float, comment="INR at the close-out prices (bid to sell, ask to buy)"),
    sa.Column("realized_net", sa.Float, comment="INR realized less every fee paid"),
    sa.Column("fees", sa.Float),
    sa.Column("pnl_pct_max_loss", sa.Float, comment="pnl_close / max loss"),
    sa.Column("pnl_pct_capital", sa.Float),
    sa.Column("max_loss", sa.Float),
    sa.Column("max_profit", sa.Float),
    sa.Column("front_dte", sa.Integer, comment="calendar days to the front expiry"),
    sa.Column("days_in_trade", sa.Integer),
    sa.Column("delta", sa.Float, comment="shares of the underlying"),
    sa.Column("gamma", sa.Float),
    sa.Column("vega", sa.Float, comment="INR per vol point"),
    sa.Column("theta", sa.Float, comment="INR per calendar day"),
    sa.Column("quotes_missing", sa.Integer),
    sa.Column("action", sa.String(16), comment="the primary decision"),
    sa.Column("urgency", sa.String(8)),
    sa.Column("rule", sa.String(32)),
    sa.Column("intent_key", sa.String(192)),
    sa.Column("reason", sa.Text),
    sa.Column("decisions", sa.Text, comment="JSON: every rule that fired [{action, rule, level, urgency, lots, reason}]"),
    sa.Column("recorded_at", UTCDateTime, nullable=False, default=_now),
    comment="One snapshot per open strategy per monitoring cycle (the seed's table): P&L, DTE, greeks and "
    "the primary decision",
)

monitor_state = sa.Table(
    "monitor_state", metadata,
    sa.Column("strategy_key", sa.String(128), primary_key=True),
    sa.Column("strategy_id", sa.String(96), nullable=False),
    sa.Column("allocation_id", sa.String(64), nullable=False),
    sa.Column("position_id", sa.String(128), nullable=False),
    sa.Column("high_water_mark", sa.Float, comment="INR: the trailing stop's high-water mark of the P&L"),
    sa.Column("trailing_armed", sa.Boolean, nullable=False, default=False),
    sa.Column("day", sa.Date, comment="IST date of day_start_pnl"),
    sa.Column("day_start_pnl", sa.Float, comment="INR at the mark when the day started (the daily loss limit)"),
    sa.Column("last_pnl", sa.Float, comment="INR at the mark at the last cycle"),
    sa.Column("last_as_of", UTCDateTime),
    sa.Column("closed_day", sa.Date, comment="IST date the strategy was closed (its day P&L still counts that day)"),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="What the monitor keeps per strategy between cycles: the high-water mark, the day-start P&L",
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False, comment="1, 2, ... in chain order"),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False,
              comment="order_request, order_response, exit_decision, intent, settlement, feed_connect, "
              "feed_disconnect, mode_change, ..."),
    sa.Column("subject", sa.String(192), comment="what it is about: an intent key, a correlation id, a feed"),
    sa.Column("payload", sa.Text, comment="canonical JSON"),
    sa.Column("prev_hash", sa.String(64), nullable=False, unique=True,
              comment="the hash of the previous row (64 zeros for the first): unique, so the chain cannot fork"),
    sa.Column("hash", sa.String(64), nullable=False, unique=True,
              comment="sha256 of prev_hash and the row's canonical JSON (id, at, kind, subject, payload)"),
    comment="Append-only audit trail, each row carrying the hash of the previous one",
)

sa.Index("ix_exit_intents_state", exit_intents.c.state)
sa.Index("ix_audit_log_kind", audit_log.c.kind)

#: Monitoring tables: append-only (monitor_state is updated in place), never part of a partition replace.
MONITORING_TABLES = ("exit_intents", "strategy_monitoring", "monitor_state", "audit_log")
