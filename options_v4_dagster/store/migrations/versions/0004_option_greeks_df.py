"""Issue 10: option_greeks.df, the discount factor the stored IVs used (so strategy creation reads the
stored greeks instead of recomputing IVs at default rates).

Rows written before this revision have no df: strategy creation refuses them with an error naming
the session and field until option_greeks is re-materialized for that session.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('option_greeks') as batch:  # SQLite: ALTER TABLE ADD COLUMN, no table copy
        batch.add_column(sa.Column('df', sa.Float(), nullable=True,
                                   comment='discount factor to expiry, exp(-rate * T) at the rate the IVs used'))


def downgrade() -> None:
    with op.batch_alter_table('option_greeks') as batch:
        batch.drop_column('df')
