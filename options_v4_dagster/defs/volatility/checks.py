"""Asset checks of the volatility tables, per session (partitioned like their assets): the share of
contracts with an IV (option_greeks) and of underlyings with a 30-day ATM IV (iv_history), against
floors set in the check's config. Non-blocking: a thin session is flagged (WARN, or ERROR below the
error floor or with values out of range), the rest of the pipeline still runs."""

import dagster as dg

from options_v4_dagster import quality
from options_v4_dagster.defs.checks_common import outcome_result, recorded_gap
from options_v4_dagster.defs.partitions import nse_sessions, session_of
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import WarehouseResource


class IVCoverageConfig(dg.Config):
    warn_below: float = 0.5  # share of contracts with an IV: WARN below
    error_below: float = 0.2  # ERROR below
    max_iv: float = quality.MAX_IV  # an IV above it (fraction: 5.0 = 500%) is extreme
    max_extreme_share: float = 0.01  # WARN when more of the IVs are extreme


@dg.asset_check(
    asset="option_greeks",
    name="iv_coverage",
    partitions_def=nse_sessions,
    description="The share of the session's contracts with an implied vol is above the configured floors "
    "(warn_below 50%: WARN, error_below 20%: ERROR); an IV <= 0 is an ERROR, more than max_extreme_share (1%) of "
    "the IVs above max_iv (500%) a WARN. A session the universe recorded as missing passes with its reason.",
)
@per_session  # a backfill range run: each session checked, one combined result
def iv_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                config: IVCoverageConfig) -> dg.AssetCheckResult:
    session = session_of(context)
    wh = warehouse.get()
    greeks = wh.read_partition("option_greeks", session, ["iv", "iv_reason"])
    if greeks.height == 0 and (gap := recorded_gap(wh, session)) is not None:
        return gap
    return outcome_result(quality.iv_coverage(greeks, warn_below=config.warn_below, error_below=config.error_below,
                                              max_iv=config.max_iv, max_extreme_share=config.max_extreme_share))


class ATMIVCoverageConfig(dg.Config):
    warn_below: float = 0.8  # share of underlyings with a 30-day ATM IV: WARN below
    error_below: float = 0.5  # ERROR below
    max_iv: float = quality.MAX_IV


@dg.asset_check(
    asset="iv_history",
    name="atm_iv_coverage",
    partitions_def=nse_sessions,
    description="historical_iv_summary has a row for every underlying with option greeks on the session (else "
    "ERROR), 30-day ATM IVs in (0, max_iv] and realized vols >= 0 (else ERROR), and the share of underlyings "
    "with a 30-day ATM IV is above the floors (warn_below 80%: WARN, error_below 50%: ERROR).",
)
@per_session  # a backfill range run: each session checked, one combined result
def atm_iv_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                    config: ATMIVCoverageConfig) -> dg.AssetCheckResult:
    session = session_of(context)
    wh = warehouse.get()
    summary = wh.read_partition("historical_iv_summary", session, ["symbol", "atm_iv_30d", "rv_20"])
    symbols = wh.read_partition("option_greeks", session, ["symbol"]).get_column("symbol").unique().to_list() \
        if wh.count("option_greeks", session) else []
    if summary.height == 0 and not symbols and (gap := recorded_gap(wh, session)) is not None:
        return gap
    return outcome_result(quality.atm_iv_coverage(summary, symbols, warn_below=config.warn_below,
                                                  error_below=config.error_below, max_iv=config.max_iv))
