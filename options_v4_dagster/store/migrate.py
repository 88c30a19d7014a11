"""Schema migrations of the warehouse (Alembic; the environment is in ``store/migrations``).

:func:`upgrade` brings a database to the newest revision ("head"): an empty database gets every
table; a database created by a release before migrations (``metadata.create_all``: our tables, no
version table) is first checked against the baseline revision and stamped at it, keeping its rows;
a database whose tables do not match the baseline is a :class:`ConfigError` naming what differs,
and is left untouched.

Concurrency: on PostgreSQL the whole upgrade runs in one transaction under an advisory lock (DDL is
transactional there), so two processes starting on an empty database run one after the other and
the second finds it at head. On SQLite it runs in one ``BEGIN IMMEDIATE`` transaction (a writer lock
on the file, waited for up to the busy timeout). Within a process a lock serializes upgrades, since
Alembic's ``context`` is process-global.

The version table is ``options_v4_alembic_version``, not Alembic's default ``alembic_version``: the
Dagster instance storage (dagster-postgres) keeps its own Alembic version in ``alembic_version``
and may share the database.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..errors import ConfigError
from .schema import metadata

if TYPE_CHECKING:  # alembic is imported where a migration step needs it: the code location loads without it
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "options_v4_alembic_version"
#: The revision that creates the schema of the last release without migrations (create_all).
BASELINE = "0001"
#: Tables and columns of the baseline: a database created by ``create_all`` before migrations
#: existed must have exactly these to be stamped at :data:`BASELINE`. Frozen here on purpose: later
#: revisions change ``schema.py``, never this.
BASELINE_TABLES: dict[str, tuple[str, ...]] = {
    "fno_universe": ("trade_date", "symbol", "name", "instrument", "lot_size", "strike_step", "industry",
                     "dhan_security_id", "dhan_segment", "source"),
    "option_chain_data": ("trade_date", "symbol", "expiry", "strike", "option_type", "bid", "ask", "bid_qty",
                          "ask_qty", "ltp", "close", "volume", "oi", "oi_change", "exchange_iv",
                          "underlying_price", "futures_price", "lot_size", "security_id", "snapshot_ts",
                          "source"),
    "underlying_bars": ("symbol", "date", "open", "high", "low", "close", "volume", "source"),
    "nifty_historical_data": ("date", "open", "high", "low", "close", "volume", "source"),
    "india_vix_data": ("date", "open", "high", "low", "close", "volume", "source"),
    "market_conditions": ("trade_date", "nifty_close", "nifty_ema20", "nifty_ema50", "nifty_return_20d",
                          "nifty_trend", "trend_strength", "india_vix", "vix_band", "pcr_oi", "pcr_volume",
                          "pcr_sentiment", "market_state", "notes", "source"),
    "pipeline_failures": ("trade_date", "asset", "symbol", "stage", "kind", "reason", "recorded_at"),
    "option_greeks": ("trade_date", "symbol", "expiry", "strike", "option_type", "iv", "iv_price",
                      "iv_price_kind", "iv_reason", "iv_nse", "delta", "gamma", "vega", "theta", "forward",
                      "forward_method", "t_years"),
    "historical_iv_summary": ("trade_date", "symbol", "spot", "atm_iv_30d", "atm_iv_30d_method", "atm_iv_near",
                              "near_expiry", "atm_iv_far", "far_expiry", "skew_25d", "term_slope", "rv_20",
                              "rv_60", "iv_minus_rv", "pcr_oi", "pcr_volume", "india_vix", "expiries",
                              "contracts_with_iv"),
    "iv_percentiles": ("trade_date", "symbol", "atm_iv_30d", "iv_percentile", "iv_rank", "history_days",
                       "window_min", "window_max", "iv_environment", "reason"),
    "technical_signals": ("trade_date", "symbol", "close", "ema20", "ema50", "ema200", "rsi14", "macd",
                          "macd_signal", "macd_hist", "bb_width", "atr14", "atr_pct", "volume_ratio",
                          "consolidation", "breakout", "direction", "strength", "iv_environment",
                          "market_state", "volatility_bucket", "liquidity_bucket", "rv_20", "notes"),
    "strategies": ("strategy_id", "trade_date", "symbol", "strategy_name", "category", "outlook",
                   "iv_preference", "risk_tolerance", "market_state", "total_score", "conviction", "rank",
                   "unlimited_risk", "lots", "lot_size", "created_at"),
    "strategy_details": ("strategy_id", "leg", "trade_date", "side", "instrument", "strike", "expiry",
                         "quantity", "price", "price_kind", "iv", "delta", "security_id"),
    "strategy_parameters": ("strategy_id", "trade_date", "net_premium", "max_profit", "max_loss", "breakevens",
                            "pop", "pop_forward", "pop_sigma", "pop_t_years", "expected_value", "reward_risk",
                            "delta", "gamma", "theta", "vega", "margin", "return_on_margin",
                            "score_components", "details"),
    "strategy_exit_levels": ("strategy_id", "trade_date", "profit_target", "profit_target_pct", "scale_out",
                             "stop_loss", "stop_loss_pct", "time_exit_dte", "time_exit_date",
                             "trailing_activation", "trailing_distance", "adjustments"),
    "industry_allocations_current": ("industry", "weight", "position_type", "source", "updated_at"),
    "sector_allocations_current": ("sector", "weight", "updated_at"),
    "stock_industry_mapping": ("symbol", "industry", "sector", "updated_at"),
    "portfolio_allocation": ("allocation_id", "trade_date", "strategy_id", "symbol", "strategy_name", "tier",
                             "industry", "sector", "position_type", "category", "outlook", "conviction",
                             "total_score", "fallback_level", "lots", "lot_size",
                             "quantity", "margin_per_lot", "capital_used", "weight", "kelly_fraction", "pop",
                             "payoff_ratio", "expected_value", "expected_return", "max_loss", "unlimited_risk",
                             "t_years", "delta", "gamma", "theta", "vega", "capital", "status", "created_at"),
    "portfolio_allocation_summary": ("trade_date", "capital", "capital_used", "deployment", "positions",
                                     "expected_monthly_return", "target_monthly_return", "market_state",
                                     "summary", "created_at"),
}

_process_lock = threading.Lock()


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`upgrade` did: ``before`` is None for an empty database; ``stamped`` names the
    revision a database without a version table was recognised as (and stamped at)."""

    before: str | None
    after: str
    stamped: str | None = None

    @property
    def changed(self) -> bool:
        return self.stamped is not None or self.before != self.after


def include_name(name: str | None, type_: str, parent_names: dict) -> bool:
    """Autogenerate sees only the warehouse's own tables (and their columns/indexes): another
    application's tables in the same database (Dagster's storage, Supabase's) are not dropped."""
    if type_ == "table":
        return name in metadata.tables
    return True


def alembic_config(connection: sa.Connection | None = None) -> Config:
    """The Alembic configuration, built in code (no alembic.ini needed in an installed package)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision of the migrations shipped with this package."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise ConfigError(f"the warehouse migrations have {len(heads)} heads ({', '.join(heads)}): "
                          "merge them (alembic merge) before upgrading")
    return heads[0]


def current(conn: sa.Connection) -> str | None:
    """The database's revision (None: no version table or an empty one)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def history() -> list[tuple[str, str | None, str]]:
    """(revision, down revision, message) from the newest to the baseline."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [(s.revision, s.down_revision if isinstance(s.down_revision, str) else None, s.doc or "")
            for s in script.walk_revisions()]


def legacy_mismatch(conn: sa.Connection, expected: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """Why the warehouse tables of a database without a version table are not those of
    ``expected`` (default: the baseline's): missing tables, and missing or extra columns of the
    tables that exist. Empty: they match. Tables of other applications are ignored."""
    expected = BASELINE_TABLES if expected is None else expected
    insp = sa.inspect(conn)
    present = set(insp.get_table_names())
    problems = []
    missing = sorted(set(expected) - present)
    if missing:
        problems.append(f"missing tables {', '.join(missing)}")
    for table in sorted(set(expected) & present):
        have = {c["name"] for c in insp.get_columns(table)}
        want = set(expected[table])
        if want - have:
            problems.append(f"{table} lacks columns {', '.join(sorted(want - have))}")
        if have - want:
            problems.append(f"{table} has columns not in the baseline: {', '.join(sorted(have - want))}")
    return problems


def _comment_legacy_columns(conn: sa.Connection) -> None:
    """PostgreSQL: the previous release's ``sql/schema.sql`` carried table comments only, while
    ``create_all`` (and revision 0001) also comment the columns. Set the column comments of the
    baseline columns, so a stamped database is the same as a migrated one. Comments only."""
    if conn.dialect.name != "postgresql":
        return
    for name, columns in BASELINE_TABLES.items():
        table = metadata.tables.get(name)
        for col in table.columns if table is not None else ():
            if col.comment and col.name in columns:
                conn.execute(sa.schema.SetColumnComment(col))


def _head_tables() -> dict[str, tuple[str, ...]]:
    return {name: tuple(t.columns.keys()) for name, t in metadata.tables.items()}


def _has_warehouse_tables(conn: sa.Connection) -> bool:
    return bool(set(sa.inspect(conn).get_table_names()) & set(BASELINE_TABLES))


def advisory_lock_key(*parts: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock (the same in every process)."""
    digest = hashlib.blake2b("|".join(("options_v4", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _migration_engine(engine: sa.Engine) -> sa.Engine:
    """SQLite: a separate engine whose transactions start with BEGIN IMMEDIATE (pysqlite would run
    DDL outside any transaction), so an upgrade is atomic and two processes do not interleave."""
    if engine.dialect.name != "sqlite":
        return engine
    eng = sa.create_engine(engine.url, poolclass=sa.pool.NullPool,
                           connect_args={"timeout": 60, "isolation_level": None})

    @sa.event.listens_for(eng, "begin")
    def _begin(conn):  # noqa: ANN001
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return eng


def upgrade(engine: sa.Engine, target: str = "head") -> UpgradeResult:
    """Upgrade the database to ``target`` (see the module docstring). Cheap when already at head:
    one read of the version table, no lock."""
    from alembic import command

    goal = head() if target == "head" else target
    with engine.connect() as conn:
        now = current(conn)
    if now == goal:
        return UpgradeResult(now, now)
    with _process_lock:
        eng = _migration_engine(engine)
        try:
            with eng.begin() as conn:
                if conn.dialect.name == "postgresql":  # the key create_all took: old releases wait too
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": advisory_lock_key("create_all")})
                before = current(conn)  # again, under the lock: another process may have upgraded
                stamped = None
                if before is None and _has_warehouse_tables(conn):
                    problems = legacy_mismatch(conn)
                    if problems and not legacy_mismatch(conn, _head_tables()):
                        stamped = head()  # this release's sql/schema.sql applied by hand: already at head
                    elif problems:
                        where = engine.url.render_as_string(hide_password=True)
                        raise ConfigError(
                            f"the warehouse at {where} has tables but no schema version "
                            f"({VERSION_TABLE}), and they are not those of the baseline revision {BASELINE}: "
                            f"{'; '.join(problems)}. Nothing was changed; fix the tables (or use an empty "
                            "database) and run `options-v4 db upgrade`")
                    else:
                        _comment_legacy_columns(conn)
                        stamped = BASELINE
                    command.stamp(alembic_config(conn), stamped)
                if current(conn) != goal:
                    command.upgrade(alembic_config(conn), goal)
                after = current(conn)
        finally:
            if eng is not engine:
                eng.dispose()
    return UpgradeResult(before, after, stamped)


def describe_current(engine: sa.Engine) -> str:
    """One line on the database's revision, for ``options-v4 db current`` (changes nothing)."""
    with engine.connect() as conn:
        now = current(conn)
        legacy = now is None and _has_warehouse_tables(conn)
    top = head()
    if now == top:
        return f"{now} (head)"
    if now is not None:
        return f"{now}; head is {top}: run `options-v4 db upgrade`"
    if legacy:
        return (f"none: tables of a release before migrations (no {VERSION_TABLE}); "
                f"`options-v4 db upgrade` stamps them at {BASELINE} and upgrades to {top}")
    return f"none: an empty database; `options-v4 db upgrade` (or `options-v4 run`) creates the schema at {top}"
