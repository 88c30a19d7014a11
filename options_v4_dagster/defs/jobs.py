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

#: what a monitoring cycle needs to replay a session (trading/held.py names this job when it is missing):
#: the chains (quotes, spot), the underlyings' bars (closes for settlement) and the instruments (lots, ids)
#: (underlying_bars is a multi-asset: its three tables are selected together)
SESSION_CHAIN_ASSETS = ("universe", "option_chains", "underlying_bars", "nifty_historical_data", "india_vix_data",
                        "instruments")

session_chains = dg.define_asset_job(
    "session_chains",
    selection=dg.AssetSelection.assets(*SESSION_CHAIN_ASSETS),
    partitions_def=nse_sessions,
    description="Store one session's option chains, underlying bars and instruments (with the chain checks): the "
    "quotes a monitoring cycle replays a past session at, in seconds rather than the whole daily pipeline.",
)
