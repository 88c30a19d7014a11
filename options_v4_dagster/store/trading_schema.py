"""The trading tables: approvals, orders, their events, fills, positions and strategy states.

Append-only: no re-materialization deletes these rows (orders carry a unique correlation id
written before the request is sent). Defined on :data:`options_v4_dagster.store.schema.metadata`
and re-exported by ``schema``.
"""

from __future__ import annotations

import sqlalchemy as sa

from .schema import UTCDateTime, _now, metadata

# -- trading (append-only: no re-materialization deletes these rows) --------------------------------------------

allocation_approvals = sa.Table(
    "allocation_approvals", metadata,
    sa.Column("approval_id", sa.String(40), primary_key=True,
              comment="deterministic: ap- + sha256 of (allocation_id, position_set); the sensor's run key"),
    sa.Column("allocation_id", sa.String(64), sa.ForeignKey("portfolio_allocation_summary.allocation_id"),
              nullable=False, index=True),
    sa.Column("position_set", sa.String(64), nullable=False,
              comment="'*' = every position, else sha256 of the sorted position_ids"),
    sa.Column("position_ids", sa.Text, comment="JSON list of the approved position_ids; null = all"),
    sa.Column("approved_by", sa.String(64), nullable=False),
    sa.Column("approved_at", UTCDateTime, nullable=False, default=_now),
    sa.UniqueConstraint("allocation_id", "position_set", name="uq_allocation_approvals_position_set"),
    comment="Approvals of an allocation snapshot (or some of its positions) for execution (the seed's "
    "mark_for_execution); append-only",
)

orders = sa.Table(
    "orders", metadata,
    sa.Column("correlation_id", sa.String(32), primary_key=True,
              comment="deterministic (allocation, position, leg, slice, attempt) or exit intent; written "
              "before the request is sent: one key, one order"),
    sa.Column("allocation_id", sa.String(64), index=True, comment="null for an adopted order of unknown origin"),
    sa.Column("position_id", sa.String(128)),
    sa.Column("position_no", sa.Integer, comment="1-based position number within the snapshot (in the id)"),
    sa.Column("strategy_id", sa.String(96)),
    sa.Column("leg", sa.Integer, nullable=False),
    sa.Column("slice_no", sa.Integer, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("purpose", sa.String(8), nullable=False, comment="entry / exit"),
    sa.Column("intent", sa.String(128), comment="exit intent key (e.g. unwind, strategy:rule:level)"),
    sa.Column("broker", sa.String(16), nullable=False, comment="paper / dhan"),
    sa.Column("security_id", sa.String(32), nullable=False),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("expiry", sa.Date),
    sa.Column("strike", sa.Float),
    sa.Column("option_type", sa.String(3), comment="CE / PE / FUT / EQ"),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False, comment="shares ordered"),
    sa.Column("lot_size", sa.Integer),
    sa.Column("order_type", sa.String(8), nullable=False),
    sa.Column("price", sa.Float, comment="limit price per share, INR (the latest after repricing)"),
    sa.Column("modifications", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False,
              comment="INITIALIZED, SUBMITTED, UNKNOWN, TRANSIT, PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED"),
    sa.Column("version", sa.Integer, nullable=False, default=0, comment="compare-and-set counter of updates"),
    sa.Column("broker_order_id", sa.String(64), index=True),
    sa.Column("filled_quantity", sa.Integer, nullable=False, default=0),
    sa.Column("average_price", sa.Float, comment="volume-weighted over fills; null when nothing traded"),
    sa.Column("reason", sa.Text),
    sa.Column("error_code", sa.String(32)),
    sa.Column("adopted", sa.Boolean, nullable=False, default=False,
              comment="found at the broker by reconciliation, not placed by this store"),
    sa.Column("created_at", UTCDateTime, nullable=False, default=_now),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="Every order, one row per correlation id, written before the request is sent; append-only",
)

order_events = sa.Table(
    "order_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("correlation_id", sa.String(32), sa.ForeignKey("orders.correlation_id"), nullable=False, index=True),
    sa.Column("at", UTCDateTime, nullable=False, default=_now),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16)),
    sa.Column("source", sa.String(16), nullable=False, comment="local / broker / reconcile / check"),
    sa.Column("payload", sa.Text, comment="JSON: the request, the broker's answer or message"),
    comment="Append-only log of every order state change and broker message",
)

trades = sa.Table(
    "trades", metadata,
    sa.Column("broker", sa.String(16), primary_key=True),
    sa.Column("trade_id", sa.String(64), primary_key=True),
    sa.Column("correlation_id", sa.String(32), sa.ForeignKey("orders.correlation_id"), nullable=False, index=True),
    sa.Column("broker_order_id", sa.String(64)),
    sa.Column("allocation_id", sa.String(64), index=True),
    sa.Column("position_id", sa.String(128)),
    sa.Column("strategy_id", sa.String(96)),
    sa.Column("leg", sa.Integer),
    sa.Column("purpose", sa.String(8)),
    sa.Column("security_id", sa.String(32), nullable=False),
    sa.Column("symbol", sa.String(32)),
    sa.Column("expiry", sa.Date),
    sa.Column("strike", sa.Float),
    sa.Column("option_type", sa.String(3)),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False, comment="shares"),
    sa.Column("price", sa.Float, nullable=False, comment="INR per share"),
    sa.Column("brokerage", sa.Float),
    sa.Column("stt", sa.Float),
    sa.Column("exchange_charges", sa.Float),
    sa.Column("sebi_fees", sa.Float),
    sa.Column("stamp_duty", sa.Float),
    sa.Column("gst", sa.Float),
    sa.Column("fees", sa.Float, nullable=False, comment="INR, total of the charges above"),
    sa.Column("traded_at", UTCDateTime, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False, default=_now),
    comment="Fills (the seed's table name): one row per trade, unique per broker; append-only",
)

positions = sa.Table(
    "positions", metadata,
    sa.Column("allocation_id", sa.String(64), primary_key=True),
    sa.Column("position_id", sa.String(128), primary_key=True),
    sa.Column("leg", sa.Integer, primary_key=True),
    sa.Column("strategy_id", sa.String(96)),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("security_id", sa.String(32), nullable=False),
    sa.Column("expiry", sa.Date),
    sa.Column("strike", sa.Float),
    sa.Column("option_type", sa.String(3)),
    sa.Column("entry_side", sa.String(4), comment="side of the entry order (BUY / SELL)"),
    sa.Column("quantity", sa.Integer, nullable=False, comment="open shares, signed: + long, - short"),
    sa.Column("average_price", sa.Float, comment="average entry price of the open quantity, INR; null when flat"),
    sa.Column("entry_quantity", sa.Integer, nullable=False, default=0, comment="shares filled by entry orders"),
    sa.Column("entry_price", sa.Float, comment="VWAP of the entry fills (across slices and partial fills)"),
    sa.Column("buy_quantity", sa.Integer, nullable=False, default=0),
    sa.Column("buy_value", sa.Float, nullable=False, default=0.0, comment="INR"),
    sa.Column("sell_quantity", sa.Integer, nullable=False, default=0),
    sa.Column("sell_value", sa.Float, nullable=False, default=0.0, comment="INR"),
    sa.Column("realized_pnl", sa.Float, nullable=False, default=0.0, comment="INR, before fees (average cost)"),
    sa.Column("fees", sa.Float, nullable=False, default=0.0, comment="INR, total of the fills' charges"),
    sa.Column("opened_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    comment="Per allocation, position and leg: open quantity, entry prices and realized P&L, derived from trades",
)

strategy_execution_status = sa.Table(
    "strategy_execution_status", metadata,
    sa.Column("allocation_id", sa.String(64), primary_key=True),
    sa.Column("position_id", sa.String(128), primary_key=True),
    sa.Column("position_no", sa.Integer),
    sa.Column("strategy_id", sa.String(96), nullable=False, index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("strategy_name", sa.String(48)),
    sa.Column("approval_id", sa.String(40), comment="the approval whose execution started it"),
    sa.Column("broker", sa.String(16), nullable=False),
    sa.Column("state", sa.String(24), nullable=False,
              comment="PENDING, PARTIALLY_ESTABLISHED, OPEN, FAILED, UNWOUND, PARTIALLY_EXITED, CLOSED"),
    sa.Column("reason", sa.Text),
    sa.Column("legs", sa.Integer),
    sa.Column("entry_premium", sa.Float, comment="INR: sells minus buys of the entry fills (> 0 credit)"),
    sa.Column("fees", sa.Float),
    sa.Column("started_at", UTCDateTime, nullable=False, default=_now),
    sa.Column("opened_at", UTCDateTime),
    sa.Column("closed_at", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False, default=_now),
    sa.Column("realized_pnl", sa.Float,
              comment="INR: realized P&L of every leg (exits and settlements) less every fee; final once CLOSED"),
    comment="One row per executed strategy position (the seed's table) with its state across legs",
)

sa.Index("ix_orders_position", orders.c.allocation_id, orders.c.position_id, orders.c.leg)
sa.Index("ix_orders_status", orders.c.status)
sa.Index("ix_strategy_execution_status_state", strategy_execution_status.c.state)

#: Trading tables: append-only, never part of a partition replace.
TRADING_TABLES = ("allocation_approvals", "orders", "order_events", "trades", "positions", "strategy_execution_status")
