"""Issue 11 item 7: the instruments table (the original system's import_scrip_master.py).

Per session (partitioned by trade_date) every tradable contract with the broker's security id and
exchange segment, lot size, tick size (INR) and freeze quantity, from Dhan's scrip master or derived
from the session's option chain; order validation and both brokers read lots, ticks, freeze limits and
security ids from it. A new table only: no data moves (sessions without rows fall back to
strategy_details and config/freeze_limits.yaml, and say so in the execution plan).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('instruments',
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('security_id', sa.String(length=32), nullable=False, comment="the broker's id (Dhan's scrip master), else the chain's id or the contract key"),
    sa.Column('exchange_segment', sa.String(length=16), nullable=False, comment='Dhan v2 segment: NSE_FNO, NSE_EQ, IDX_I'),
    sa.Column('symbol', sa.String(length=32), nullable=False, comment='the underlying'),
    sa.Column('instrument_type', sa.String(length=8), nullable=False, comment='OPTIDX, OPTSTK, FUTIDX, FUTSTK, INDEX, EQUITY'),
    sa.Column('expiry', sa.Date(), nullable=True),
    sa.Column('strike', sa.Float(), nullable=True),
    sa.Column('option_type', sa.String(length=2), nullable=True, comment='CE / PE; null for futures and underlyings'),
    sa.Column('lot_size', sa.Integer(), nullable=False, comment='shares'),
    sa.Column('tick_size', sa.Float(), nullable=True, comment="INR (Dhan's scrip master states paise); null for an index"),
    sa.Column('freeze_quantity', sa.Integer(), nullable=True, comment='shares: every order stays strictly below it; null for underlyings'),
    sa.Column('trading_symbol', sa.String(length=64), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.CheckConstraint("option_type in ('CE', 'PE')", name='ck_instruments_option_type'),
    sa.PrimaryKeyConstraint('trade_date', 'security_id', 'exchange_segment'),
    comment="Tradable contracts per session (the broker's scrip master or the session's chain): security id, lot size, tick size and freeze quantity, what order validation and both brokers read"
    )
    op.create_index('ix_instruments_contract', 'instruments',
                    ['trade_date', 'symbol', 'expiry', 'strike', 'option_type'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_instruments_contract', table_name='instruments')
    op.drop_table('instruments')
