"""Jobs: the daily pipeline over one NSE session."""

from __future__ import annotations

import dagster as dg

from options_v4_dagster.defs.executor import job_executor
from options_v4_dagster.defs.partitions import nse_sessions

DAILY_GROUPS = ("market_data", "volatility", "strategies", "allocation")

daily_pipeline = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS),
    partitions_def=nse_sessions,
    executor_def=job_executor(),  # the deployment's executor (OPTIONS_V4_EXECUTOR=celery: defs/executor.py)
    description="Materialize one NSE session end to end, group by group: market_data (universe, option chains, "
    "underlying bars, market conditions), volatility (option greeks and implied vols, IV history, IV "
    "percentiles), strategies (technical signals; strategy candidates with analytics, scores, exit levels and "
    "payoff charts) and allocation (the portfolio allocation snapshot), with the assets' checks.",
)
