"""Issue 13 (retention): archived_sessions, the manifest of the sessions of option_chain_data and
option_greeks moved to Parquet files by ``options-v4 archive`` (store/archive.py). A new table: no
data moves.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('archived_sessions',
    sa.Column('table_name', sa.String(length=64), nullable=False, comment='option_chain_data or option_greeks'),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('path', sa.String(length=512), nullable=False, comment='the Parquet file, relative to the archive root: TABLE/session=YYYY-MM-DD/part-HASH.parquet'),
    sa.Column('row_count', sa.Integer(), nullable=False, comment='rows in the file (those deleted from the table)'),
    sa.Column('checksum', sa.String(length=64), nullable=False, comment='sha256 of the rows in canonical form (typed, sorted by the primary key)'),
    sa.Column('file_bytes', sa.BigInteger(), nullable=False),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('table_name', 'trade_date'),
    comment='Sessions of contract-level tables moved to Parquet (options-v4 archive); written in the transaction that deletes their rows, removed by any later write of the session'
    )


def downgrade() -> None:
    op.drop_table('archived_sessions')
