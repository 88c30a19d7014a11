"""Issue 12: the trade-monitoring tables and the realized P&L of a strategy.

exit_intents (one row per exit intent, its key unique: the exactly-once key of every exit, written
before any order), strategy_monitoring (one snapshot per open strategy per monitoring cycle, the
seed's table), monitor_state (high-water mark and day-start P&L kept between cycles) and audit_log
(append-only, hash-chained); strategy_execution_status.realized_pnl (INR, after every fee; null on
rows written before this revision until their next state change). New tables and a nullable column:
no data moves.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False, comment='1, 2, ... in chain order'),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False, comment='order_request, order_response, exit_decision, intent, settlement, feed_connect, feed_disconnect, mode_change, ...'),
    sa.Column('subject', sa.String(length=192), nullable=True, comment='what it is about: an intent key, a correlation id, a feed'),
    sa.Column('payload', sa.Text(), nullable=True, comment='canonical JSON'),
    sa.Column('prev_hash', sa.String(length=64), nullable=False, comment='the hash of the previous row (64 zeros for the first): unique, so the chain cannot fork'),
    sa.Column('hash', sa.String(length=64), nullable=False, comment="sha256 of prev_hash and the row's canonical JSON (id, at, kind, subject, payload)"),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prev_hash'),
    sa.UniqueConstraint('hash'),
    comment='Append-only audit trail, each row carrying the hash of the previous one'
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_kind', ['kind'], unique=False)

    op.create_table('exit_intents',
    sa.Column('intent_key', sa.String(length=192), nullable=False, comment='strategy_key:rule:level, the exactly-once key: the polling job, the real-time monitor and any retry write the same key and get the one row'),
    sa.Column('strategy_key', sa.String(length=128), nullable=False, comment='the monitored position: strategy_id@allocation prefix'),
    sa.Column('strategy_id', sa.String(length=96), nullable=False),
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_id', sa.String(length=128), nullable=False),
    sa.Column('trade_date', sa.Date(), nullable=False, comment='the session of the cycle that wrote it'),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('level', sa.String(length=32), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False, comment='EXIT_ALL / EXIT_PARTIAL'),
    sa.Column('urgency', sa.String(length=8), nullable=False, comment='HIGH / MEDIUM / NORMAL'),
    sa.Column('quantities', sa.Text(), nullable=False, comment='JSON [{leg, security_id, quantity (shares), lots, close_side}] at the decision'),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('mode', sa.String(length=16), nullable=False, comment='simulation / alert_only / live'),
    sa.Column('source', sa.String(length=16), nullable=False, comment='sensor / realtime / cli'),
    sa.Column('broker', sa.String(length=16), nullable=True, comment='paper / dhan; null when alert-only'),
    sa.Column('state', sa.String(length=16), nullable=False, comment='PENDING, PLACED, FILLED, PARTIAL, FAILED, ALERTED'),
    sa.Column('attempt', sa.Integer(), nullable=False, comment='the next order attempt number of its correlation ids (bumped by each retry)'),
    sa.Column('version', sa.Integer(), nullable=False, comment='compare-and-set counter of updates'),
    sa.Column('note', sa.Text(), nullable=True, comment='the last outcome: fills, what failed and was escalated'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('intent_key'),
    comment='One row per exit intent, written before any of its orders; append-only'
    )
    with op.batch_alter_table('exit_intents', schema=None) as batch_op:
        batch_op.create_index('ix_exit_intents_state', ['state'], unique=False)
        batch_op.create_index(batch_op.f('ix_exit_intents_strategy_key'), ['strategy_key'], unique=False)

    op.create_table('monitor_state',
    sa.Column('strategy_key', sa.String(length=128), nullable=False),
    sa.Column('strategy_id', sa.String(length=96), nullable=False),
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_id', sa.String(length=128), nullable=False),
    sa.Column('high_water_mark', sa.Float(), nullable=True, comment="INR: the trailing stop's high-water mark of the P&L"),
    sa.Column('trailing_armed', sa.Boolean(), nullable=False),
    sa.Column('day', sa.Date(), nullable=True, comment='IST date of day_start_pnl'),
    sa.Column('day_start_pnl', sa.Float(), nullable=True, comment='INR at the mark when the day started (the daily loss limit)'),
    sa.Column('last_pnl', sa.Float(), nullable=True, comment='INR at the mark at the last cycle'),
    sa.Column('last_as_of', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_day', sa.Date(), nullable=True, comment='IST date the strategy was closed (its day P&L still counts that day)'),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('strategy_key'),
    comment='What the monitor keeps per strategy between cycles: the high-water mark, the day-start P&L'
    )
    op.create_table('strategy_monitoring',
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False, comment='the time the quotes were valued at'),
    sa.Column('strategy_key', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False, comment='sensor / realtime / cli'),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('strategy_id', sa.String(length=96), nullable=False),
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_id', sa.String(length=128), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('strategy_name', sa.String(length=48), nullable=True),
    sa.Column('state', sa.String(length=24), nullable=True, comment="the strategy's execution state after the cycle"),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('spot', sa.Float(), nullable=True),
    sa.Column('pnl_mid', sa.Float(), nullable=True, comment='INR at the mark: unrealized + realized - fees'),
    sa.Column('pnl_close', sa.Float(), nullable=True, comment='INR at the close-out prices (bid to sell, ask to buy)'),
    sa.Column('realized_net', sa.Float(), nullable=True, comment='INR realized less every fee paid'),
    sa.Column('fees', sa.Float(), nullable=True),
    sa.Column('pnl_pct_max_loss', sa.Float(), nullable=True, comment='pnl_close / max loss'),
    sa.Column('pnl_pct_capital', sa.Float(), nullable=True),
    sa.Column('max_loss', sa.Float(), nullable=True),
    sa.Column('max_profit', sa.Float(), nullable=True),
    sa.Column('front_dte', sa.Integer(), nullable=True, comment='calendar days to the front expiry'),
    sa.Column('days_in_trade', sa.Integer(), nullable=True),
    sa.Column('delta', sa.Float(), nullable=True, comment='shares of the underlying'),
    sa.Column('gamma', sa.Float(), nullable=True),
    sa.Column('vega', sa.Float(), nullable=True, comment='INR per vol point'),
    sa.Column('theta', sa.Float(), nullable=True, comment='INR per calendar day'),
    sa.Column('quotes_missing', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=True, comment='the primary decision'),
    sa.Column('urgency', sa.String(length=8), nullable=True),
    sa.Column('rule', sa.String(length=32), nullable=True),
    sa.Column('intent_key', sa.String(length=192), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('decisions', sa.Text(), nullable=True, comment='JSON: every rule that fired [{action, rule, level, urgency, lots, reason}]'),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('as_of', 'strategy_key', 'source'),
    comment="One snapshot per open strategy per monitoring cycle (the seed's table): P&L, DTE, greeks and the primary decision"
    )
    with op.batch_alter_table('strategy_monitoring', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_strategy_monitoring_trade_date'), ['trade_date'], unique=False)

    with op.batch_alter_table('strategy_execution_status') as batch_op:  # SQLite: ADD COLUMN, no copy
        batch_op.add_column(sa.Column('realized_pnl', sa.Float(), nullable=True, comment='INR: realized P&L of every leg (exits and settlements) less every fee; final once CLOSED'))



def downgrade() -> None:
    with op.batch_alter_table('strategy_execution_status', schema=None) as batch_op:
        batch_op.drop_column('realized_pnl')

    with op.batch_alter_table('strategy_monitoring', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_strategy_monitoring_trade_date'))

    op.drop_table('strategy_monitoring')
    op.drop_table('monitor_state')
    with op.batch_alter_table('exit_intents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_exit_intents_strategy_key'))
        batch_op.drop_index('ix_exit_intents_state')

    op.drop_table('exit_intents')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_kind')

    op.drop_table('audit_log')
