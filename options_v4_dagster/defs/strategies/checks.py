"""Asset check of technical_signals, per session: a row per underlying of the universe, indicators in
their ranges, and the share of underlyings with a direction. Non-blocking."""

import dagster as dg

from options_v4_dagster import quality
from options_v4_dagster.defs.checks_common import outcome_result, recorded_gap
from options_v4_dagster.defs.partitions import nse_sessions, session_of
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import WarehouseResource


class SignalCoverageConfig(dg.Config):
    warn_below: float = 0.8  # share of underlyings with a direction: WARN below


@dg.asset_check(
    asset="technical_signals",
    name="signal_coverage",
    partitions_def=nse_sessions,
    description="technical_signals has a row for every underlying of the session's universe, RSI in [0, 100] "
    "and strength in [0, 1] (else ERROR); the share of underlyings with a direction is above warn_below (80%; "
    "else WARN: an underlying without a year of bars has none and is recorded in pipeline_failures).",
)
@per_session  # a backfill range run: each session checked, one combined result
def signal_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                    config: SignalCoverageConfig) -> dg.AssetCheckResult:
    session = session_of(context)
    wh = warehouse.get()
    signals = wh.read_partition("technical_signals", session, ["symbol", "direction", "rsi14", "strength"])
    universe = wh.read_partition("fno_universe", session, ["symbol"]).get_column("symbol").to_list() \
        if wh.count("fno_universe", session) else []
    if signals.height == 0 and not universe and (gap := recorded_gap(wh, session)) is not None:
        return gap
    return outcome_result(quality.signal_coverage(signals, universe, warn_below=config.warn_below))
