"""``chains_fresh``: a session whose option chains are older than expected (WARN, not blocking).

It runs after the chains in every run that materializes them (the IV collection, ``daily_pipeline``,
backfills: the run's session, the last one of a range), and alone at 16:30 IST from
``chain_freshness_schedule`` (the session in its config; empty: the latest session past 16:30 IST), when a
session with no stored chain fails it too."""

import datetime as dt

import dagster as dg

from options_v4_dagster import calendar
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.market.freshness import DEFAULT_MAX_AGE, chain_freshness
from options_v4_dagster.store.freshness import chain_snapshot_times

MAX_AGE_MINUTES = int(DEFAULT_MAX_AGE.total_seconds() // 60)
#: by then a session's end-of-day chains are expected in the warehouse (the 15:45 collection's deadline)
DEADLINE = dt.time(16, 30)


class ChainFreshnessConfig(dg.Config):
    session: str = ""  # YYYY-MM-DD; empty: the run's session, else the latest session past 16:30 IST


def checked_session(context: dg.AssetCheckExecutionContext, config: ChainFreshnessConfig) -> dt.date:
    if config.session:
        return dt.date.fromisoformat(config.session)
    tags = context.op_execution_context.run.tags  # the check itself is not partitioned: the run's session(s)
    key = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_end")
    if key:
        return dt.date.fromisoformat(key)
    return calendar.latest_session(dt.datetime.now(calendar.IST), cutoff=DEADLINE)


@dg.asset_check(
    asset="option_chains",
    name="chains_fresh",
    description=f"The session's stored chains are end-of-day snapshots: every symbol's newest snapshot is at most "
    f"{MAX_AGE_MINUTES} minutes before the 15:30 IST close (or later). Fails (WARN) naming the stale symbols and "
    "their snapshot times, or when the session has no stored chain.",
)
def chains_fresh(context: dg.AssetCheckExecutionContext, config: ChainFreshnessConfig,
                 warehouse: WarehouseResource) -> dg.AssetCheckResult:
    session = checked_session(context, config)
    report = chain_freshness(session, chain_snapshot_times(warehouse.get(), session))
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=report.description(),
        metadata={"session": dg.MetadataValue.text(session.isoformat()),
                  "symbols": dg.MetadataValue.int(report.symbols),
                  "stale_symbols": dg.MetadataValue.int(len(report.stale)),
                  "expected_after": dg.MetadataValue.text(f"{report.expected_after:%Y-%m-%d %H:%M} IST")},
    )
