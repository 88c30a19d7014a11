"""Issue 10: immutable allocation snapshots.

portfolio_allocation_summary becomes one row per snapshot (primary key ``allocation_id``, a content
hash; with the rules, industry views, risk tolerance and source used); portfolio_allocation rows are
keyed by (allocation_id, position_id) and lose ``status`` (execution status lives in the trading
tables); portfolio_allocation_runs logs every materialization (the latest row of a session names its
latest snapshot).

Data: the tables are rebuilt (renamed aside, created anew, copied, dropped). Each session allocated by
an earlier release becomes one snapshot ``legacy-YYYY-MM-DD`` holding its positions unchanged (the
old per-position id becomes ``position_id``); its rules and industry views were not recorded then, so
they are stored as ``{"unknown": ...}``; a run-log row makes it the session's latest snapshot.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNKNOWN = '{"unknown": "allocated before snapshots recorded their inputs"}'
SUMMARY_COLUMNS = ("trade_date", "capital", "capital_used", "deployment", "positions", "expected_monthly_return",
                   "target_monthly_return", "market_state", "summary", "created_at")


def _legacy_id(column: str) -> str:
    """SQL for 'legacy-' || the session date as YYYY-MM-DD (SQLite stores dates as that text)."""
    if op.get_bind().dialect.name == "postgresql":
        return f"'legacy-' || to_char({column}, 'YYYY-MM-DD')"
    return f"'legacy-' || {column}"


def upgrade() -> None:
    op.drop_index('ix_portfolio_allocation_trade_date', table_name='portfolio_allocation')
    op.rename_table('portfolio_allocation', 'portfolio_allocation_0002')
    op.rename_table('portfolio_allocation_summary', 'portfolio_allocation_summary_0002')
    if op.get_bind().dialect.name == "postgresql":  # primary-key index names are schema-wide there
        op.execute("ALTER INDEX portfolio_allocation_pkey RENAME TO portfolio_allocation_0002_pkey")
        op.execute("ALTER INDEX portfolio_allocation_summary_pkey RENAME TO portfolio_allocation_summary_0002_pkey")
    op.create_table('portfolio_allocation_summary',
    sa.Column('allocation_id', sa.String(length=64), nullable=False, comment='sha256 of the canonical JSON of session, capital, rules, industry views, risk tolerance and positions (allocation/snapshot.py)'),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('capital', sa.Float(), nullable=False),
    sa.Column('capital_used', sa.Float(), nullable=False),
    sa.Column('deployment', sa.Float(), nullable=False),
    sa.Column('positions', sa.Integer(), nullable=False),
    sa.Column('expected_monthly_return', sa.Float(), nullable=True, comment='fraction of capital'),
    sa.Column('target_monthly_return', sa.Float(), nullable=True),
    sa.Column('market_state', sa.String(length=32), nullable=True),
    sa.Column('risk_tolerance', sa.String(length=16), nullable=True, comment='of the strategy candidates allocated'),
    sa.Column('source', sa.String(length=16), nullable=True, comment='market-data source of the inputs (session_provenance)'),
    sa.Column('rules', sa.Text(), nullable=False, comment='JSON: the resolved market_conditions.yaml rules used'),
    sa.Column('industry_views', sa.Text(), nullable=False, comment='JSON: industry weights, LONG/SHORT views and symbol -> industry mapping used'),
    sa.Column('summary', sa.Text(), nullable=True, comment='JSON: tiers, industries, limits, greeks, notes'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('allocation_id'),
    comment='One row per allocation snapshot (immutable, append-only): its inputs and totals'
    )
    op.create_index(op.f('ix_portfolio_allocation_summary_trade_date'), 'portfolio_allocation_summary', ['trade_date'], unique=False)
    op.create_table('portfolio_allocation',
    sa.Column('allocation_id', sa.String(length=64), nullable=False, comment='the snapshot (portfolio_allocation_summary)'),
    sa.Column('position_id', sa.String(length=128), nullable=False, comment='the position within the snapshot'),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('strategy_id', sa.String(length=96), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('strategy_name', sa.String(length=48), nullable=False),
    sa.Column('tier', sa.String(length=8), nullable=False),
    sa.Column('industry', sa.String(length=96), nullable=True),
    sa.Column('sector', sa.String(length=64), nullable=True),
    sa.Column('position_type', sa.String(length=8), nullable=True),
    sa.Column('category', sa.String(length=24), nullable=True),
    sa.Column('outlook', sa.String(length=16), nullable=True),
    sa.Column('conviction', sa.String(length=12), nullable=True),
    sa.Column('total_score', sa.Float(), nullable=True),
    sa.Column('fallback_level', sa.Integer(), nullable=True, comment='0 preferred strategy .. 3 any not opposing the view'),
    sa.Column('selection_reason', sa.Text(), nullable=True, comment='why this strategy: market-state preference, category fallback, view match or any-strategy'),
    sa.Column('lots', sa.Integer(), nullable=False),
    sa.Column('lot_size', sa.Integer(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=True, comment='shares per leg unit (lots x lot size)'),
    sa.Column('margin_per_lot', sa.Float(), nullable=True, comment='INR: margin for short premium, debit for long'),
    sa.Column('capital_used', sa.Float(), nullable=False, comment='INR'),
    sa.Column('weight', sa.Float(), nullable=True, comment='capital_used / capital'),
    sa.Column('kelly_fraction', sa.Float(), nullable=True),
    sa.Column('pop', sa.Float(), nullable=True),
    sa.Column('payoff_ratio', sa.Float(), nullable=True),
    sa.Column('expected_value', sa.Float(), nullable=True, comment="INR over the position's life"),
    sa.Column('expected_return', sa.Float(), nullable=True, comment='INR per month'),
    sa.Column('max_loss', sa.Float(), nullable=True, comment='INR; null = unbounded'),
    sa.Column('unlimited_risk', sa.Boolean(), nullable=True),
    sa.Column('t_years', sa.Float(), nullable=True),
    sa.Column('delta', sa.Float(), nullable=True),
    sa.Column('gamma', sa.Float(), nullable=True),
    sa.Column('theta', sa.Float(), nullable=True),
    sa.Column('vega', sa.Float(), nullable=True),
    sa.Column('capital', sa.Float(), nullable=False, comment='INR allocated over'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['allocation_id'], ['portfolio_allocation_summary.allocation_id'], ),
    sa.PrimaryKeyConstraint('allocation_id', 'position_id'),
    comment="Positions of an allocation snapshot (append-only: a snapshot's rows are never changed; execution status lives in the trading tables)"
    )
    op.create_index(op.f('ix_portfolio_allocation_trade_date'), 'portfolio_allocation', ['trade_date'], unique=False)
    op.create_table('portfolio_allocation_runs',
    sa.Column('run_id', sa.String(length=64), nullable=False, comment='the Dagster run'),
    sa.Column('materialized_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('allocation_id', sa.String(length=64), nullable=True, comment='the snapshot this materialization gave; null = no candidates to allocate'),
    sa.ForeignKeyConstraint(['allocation_id'], ['portfolio_allocation_summary.allocation_id'], ),
    sa.PrimaryKeyConstraint('run_id', 'materialized_at'),
    comment='Append-only log of portfolio_allocation materializations: the latest row of a session names its latest snapshot'
    )
    op.create_index(op.f('ix_portfolio_allocation_runs_trade_date'), 'portfolio_allocation_runs', ['trade_date'], unique=False)

    bind = op.get_bind()
    old_cols = {c["name"] for c in sa.inspect(bind).get_columns("portfolio_allocation_0002")}
    new_cols = [c["name"] for c in sa.inspect(bind).get_columns("portfolio_allocation")]
    shared = [c for c in new_cols if c in old_cols and c != "allocation_id"]
    cols = ", ".join(SUMMARY_COLUMNS)
    # one snapshot per session of the earlier release: its summary row, or one built from its positions
    op.execute(f"INSERT INTO portfolio_allocation_summary (allocation_id, {cols}, rules, industry_views) "
               f"SELECT {_legacy_id('trade_date')}, {cols}, '{UNKNOWN}', '{UNKNOWN}' "
               f"FROM portfolio_allocation_summary_0002")
    op.execute(f"INSERT INTO portfolio_allocation_summary (allocation_id, trade_date, capital, capital_used, "
               f"deployment, positions, created_at, rules, industry_views) "
               f"SELECT {_legacy_id('trade_date')}, trade_date, max(capital), sum(capital_used), "
               f"sum(capital_used) / max(capital), count(*), max(created_at), '{UNKNOWN}', '{UNKNOWN}' "
               f"FROM portfolio_allocation_0002 p WHERE NOT EXISTS (SELECT 1 FROM portfolio_allocation_summary_0002 s "
               f"WHERE s.trade_date = p.trade_date) GROUP BY trade_date")
    op.execute(f"INSERT INTO portfolio_allocation (allocation_id, position_id, {', '.join(shared)}) "
               f"SELECT {_legacy_id('trade_date')}, allocation_id, {', '.join(shared)} FROM portfolio_allocation_0002")
    op.execute("INSERT INTO portfolio_allocation_runs (run_id, materialized_at, trade_date, allocation_id) "
               "SELECT 'before-snapshots', created_at, trade_date, allocation_id FROM portfolio_allocation_summary")
    op.drop_table('portfolio_allocation_0002')
    op.drop_table('portfolio_allocation_summary_0002')


def downgrade() -> None:
    raise NotImplementedError("0003 cannot be undone without losing snapshots: an earlier release keeps one "
                              "allocation per session; restore a backup taken before the upgrade instead")
