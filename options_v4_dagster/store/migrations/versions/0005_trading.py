"""Issue 11: the trading tables (append-only; no re-materialization deletes their rows).

allocation_approvals (what was approved for execution, by whom, when), orders (one row per correlation
id, written before the request is sent), order_events (every state change and broker message), trades
(fills, unique per broker), positions (per allocation, position and leg, derived from trades) and
strategy_execution_status (one row per executed position with its state across legs). New tables only:
no data moves.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('orders',
    sa.Column('correlation_id', sa.String(length=32), nullable=False, comment='deterministic (allocation, position, leg, slice, attempt) or exit intent; written before the request is sent: one key, one order'),
    sa.Column('allocation_id', sa.String(length=64), nullable=True, comment='null for an adopted order of unknown origin'),
    sa.Column('position_id', sa.String(length=128), nullable=True),
    sa.Column('position_no', sa.Integer(), nullable=True, comment='1-based position number within the snapshot (in the id)'),
    sa.Column('strategy_id', sa.String(length=96), nullable=True),
    sa.Column('leg', sa.Integer(), nullable=False),
    sa.Column('slice_no', sa.Integer(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=8), nullable=False, comment='entry / exit'),
    sa.Column('intent', sa.String(length=128), nullable=True, comment='exit intent key (e.g. unwind, strategy:rule:level)'),
    sa.Column('broker', sa.String(length=16), nullable=False, comment='paper / dhan'),
    sa.Column('security_id', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('option_type', sa.String(length=3), nullable=True, comment='CE / PE / FUT / EQ'),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False, comment='shares ordered'),
    sa.Column('lot_size', sa.Integer(), nullable=True),
    sa.Column('order_type', sa.String(length=8), nullable=False),
    sa.Column('price', sa.Float(), nullable=True, comment='limit price per share, INR (the latest after repricing)'),
    sa.Column('modifications', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False, comment='INITIALIZED, SUBMITTED, UNKNOWN, TRANSIT, PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED'),
    sa.Column('version', sa.Integer(), nullable=False, comment='compare-and-set counter of updates'),
    sa.Column('broker_order_id', sa.String(length=64), nullable=True),
    sa.Column('filled_quantity', sa.Integer(), nullable=False),
    sa.Column('average_price', sa.Float(), nullable=True, comment='volume-weighted over fills; null when nothing traded'),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('adopted', sa.Boolean(), nullable=False, comment='found at the broker by reconciliation, not placed by this store'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('correlation_id'),
    comment='Every order, one row per correlation id, written before the request is sent; append-only'
    )
    op.create_index(op.f('ix_orders_allocation_id'), 'orders', ['allocation_id'], unique=False)
    op.create_index(op.f('ix_orders_broker_order_id'), 'orders', ['broker_order_id'], unique=False)
    op.create_index('ix_orders_position', 'orders', ['allocation_id', 'position_id', 'leg'], unique=False)
    op.create_index('ix_orders_status', 'orders', ['status'], unique=False)
    op.create_table('positions',
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_id', sa.String(length=128), nullable=False),
    sa.Column('leg', sa.Integer(), nullable=False),
    sa.Column('strategy_id', sa.String(length=96), nullable=True),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('security_id', sa.String(length=32), nullable=False),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('option_type', sa.String(length=3), nullable=True),
    sa.Column('entry_side', sa.String(length=4), nullable=True, comment='side of the entry order (BUY / SELL)'),
    sa.Column('quantity', sa.Integer(), nullable=False, comment='open shares, signed: + long, - short'),
    sa.Column('average_price', sa.Float(), nullable=True, comment='average entry price of the open quantity, INR; null when flat'),
    sa.Column('entry_quantity', sa.Integer(), nullable=False, comment='shares filled by entry orders'),
    sa.Column('entry_price', sa.Float(), nullable=True, comment='VWAP of the entry fills (across slices and partial fills)'),
    sa.Column('buy_quantity', sa.Integer(), nullable=False),
    sa.Column('buy_value', sa.Float(), nullable=False, comment='INR'),
    sa.Column('sell_quantity', sa.Integer(), nullable=False),
    sa.Column('sell_value', sa.Float(), nullable=False, comment='INR'),
    sa.Column('realized_pnl', sa.Float(), nullable=False, comment='INR, before fees (average cost)'),
    sa.Column('fees', sa.Float(), nullable=False, comment="INR, total of the fills' charges"),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('allocation_id', 'position_id', 'leg'),
    comment='Per allocation, position and leg: open quantity, entry prices and realized P&L, derived from trades'
    )
    op.create_table('strategy_execution_status',
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_id', sa.String(length=128), nullable=False),
    sa.Column('position_no', sa.Integer(), nullable=True),
    sa.Column('strategy_id', sa.String(length=96), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('strategy_name', sa.String(length=48), nullable=True),
    sa.Column('approval_id', sa.String(length=40), nullable=True, comment='the approval whose execution started it'),
    sa.Column('broker', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=24), nullable=False, comment='PENDING, PARTIALLY_ESTABLISHED, OPEN, FAILED, UNWOUND, PARTIALLY_EXITED, CLOSED'),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('legs', sa.Integer(), nullable=True),
    sa.Column('entry_premium', sa.Float(), nullable=True, comment='INR: sells minus buys of the entry fills (> 0 credit)'),
    sa.Column('fees', sa.Float(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('allocation_id', 'position_id'),
    comment="One row per executed strategy position (the seed's table) with its state across legs"
    )
    op.create_index('ix_strategy_execution_status_state', 'strategy_execution_status', ['state'], unique=False)
    op.create_index(op.f('ix_strategy_execution_status_strategy_id'), 'strategy_execution_status', ['strategy_id'], unique=False)
    op.create_table('allocation_approvals',
    sa.Column('approval_id', sa.String(length=40), nullable=False, comment="deterministic: ap- + sha256 of (allocation_id, position_set); the sensor's run key"),
    sa.Column('allocation_id', sa.String(length=64), nullable=False),
    sa.Column('position_set', sa.String(length=64), nullable=False, comment="'*' = every position, else sha256 of the sorted position_ids"),
    sa.Column('position_ids', sa.Text(), nullable=True, comment='JSON list of the approved position_ids; null = all'),
    sa.Column('approved_by', sa.String(length=64), nullable=False),
    sa.Column('approved_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('approval_id'),
    sa.UniqueConstraint('allocation_id', 'position_set', name='uq_allocation_approvals_position_set'),
    sa.ForeignKeyConstraint(['allocation_id'], ['portfolio_allocation_summary.allocation_id'], ),
    comment="Approvals of an allocation snapshot (or some of its positions) for execution (the seed's mark_for_execution); append-only"
    )
    op.create_index(op.f('ix_allocation_approvals_allocation_id'), 'allocation_approvals', ['allocation_id'], unique=False)
    op.create_table('order_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('correlation_id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False, comment='local / broker / reconcile / check'),
    sa.Column('payload', sa.Text(), nullable=True, comment="JSON: the request, the broker's answer or message"),
    sa.ForeignKeyConstraint(['correlation_id'], ['orders.correlation_id'], ),
    sa.PrimaryKeyConstraint('id'),
    comment='Append-only log of every order state change and broker message'
    )
    op.create_index(op.f('ix_order_events_correlation_id'), 'order_events', ['correlation_id'], unique=False)
    op.create_table('trades',
    sa.Column('broker', sa.String(length=16), nullable=False),
    sa.Column('trade_id', sa.String(length=64), nullable=False),
    sa.Column('correlation_id', sa.String(length=32), nullable=False),
    sa.Column('broker_order_id', sa.String(length=64), nullable=True),
    sa.Column('allocation_id', sa.String(length=64), nullable=True),
    sa.Column('position_id', sa.String(length=128), nullable=True),
    sa.Column('strategy_id', sa.String(length=96), nullable=True),
    sa.Column('leg', sa.Integer(), nullable=True),
    sa.Column('purpose', sa.String(length=8), nullable=True),
    sa.Column('security_id', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=True),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('option_type', sa.String(length=3), nullable=True),
    sa.Column('side', sa.String(length=4), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False, comment='shares'),
    sa.Column('price', sa.Float(), nullable=False, comment='INR per share'),
    sa.Column('brokerage', sa.Float(), nullable=True),
    sa.Column('stt', sa.Float(), nullable=True),
    sa.Column('exchange_charges', sa.Float(), nullable=True),
    sa.Column('sebi_fees', sa.Float(), nullable=True),
    sa.Column('stamp_duty', sa.Float(), nullable=True),
    sa.Column('gst', sa.Float(), nullable=True),
    sa.Column('fees', sa.Float(), nullable=False, comment='INR, total of the charges above'),
    sa.Column('traded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['correlation_id'], ['orders.correlation_id'], ),
    sa.PrimaryKeyConstraint('broker', 'trade_id'),
    comment="Fills (the seed's table name): one row per trade, unique per broker; append-only"
    )
    op.create_index(op.f('ix_trades_allocation_id'), 'trades', ['allocation_id'], unique=False)
    op.create_index(op.f('ix_trades_correlation_id'), 'trades', ['correlation_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_trades_correlation_id'), table_name='trades')
    op.drop_index(op.f('ix_trades_allocation_id'), table_name='trades')
    op.drop_table('trades')
    op.drop_index(op.f('ix_order_events_correlation_id'), table_name='order_events')
    op.drop_table('order_events')
    op.drop_index(op.f('ix_allocation_approvals_allocation_id'), table_name='allocation_approvals')
    op.drop_table('allocation_approvals')
    op.drop_index(op.f('ix_strategy_execution_status_strategy_id'), table_name='strategy_execution_status')
    op.drop_index('ix_strategy_execution_status_state', table_name='strategy_execution_status')
    op.drop_table('strategy_execution_status')
    op.drop_table('positions')
    op.drop_index('ix_orders_status', table_name='orders')
    op.drop_index('ix_orders_position', table_name='orders')
    op.drop_index(op.f('ix_orders_broker_order_id'), table_name='orders')
    op.drop_index(op.f('ix_orders_allocation_id'), table_name='orders')
    op.drop_table('orders')
