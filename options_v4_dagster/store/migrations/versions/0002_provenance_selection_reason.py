"""Issue 9: session_provenance (the market-data source of each asset's rows of a session) and
portfolio_allocation.selection_reason (why each position's strategy was chosen).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('session_provenance',
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('asset', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('trade_date', 'asset'),
    comment="The market-data source behind each asset's rows of a session (written in the asset's own "
    "transaction): every row from fno_universe to portfolio_allocation joins here on (trade_date, asset)"
    )
    with op.batch_alter_table('portfolio_allocation') as batch:
        batch.add_column(sa.Column('selection_reason', sa.Text(), nullable=True,
                                   comment='why this strategy: market-state preference, category fallback, view '
                                   'match or any-strategy'))


def downgrade() -> None:
    with op.batch_alter_table('portfolio_allocation') as batch:
        batch.drop_column('selection_reason')
    op.drop_table('session_provenance')
