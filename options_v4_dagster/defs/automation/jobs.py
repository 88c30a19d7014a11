"""The jobs of the day's automation.

- ``session_refresh``: what ``daily_pipeline`` adds to the IV collection (instruments, technical signals,
  strategy candidates, the portfolio allocation), for one session, from the chains and IVs that the
  15:45 IST ``iv_collection`` run stored. Launched by ``session_refresh_sensor``.
- ``chain_freshness``: the ``chains_fresh`` check alone, for the session in its config (``chain_freshness_schedule``).
"""

import dagster as dg

from options_v4_dagster.defs.automation.checks import chains_fresh
from options_v4_dagster.defs.executor import job_executor
from options_v4_dagster.defs.jobs import DAILY_GROUPS
from options_v4_dagster.defs.partitions import nse_sessions
from options_v4_dagster.defs.volatility.schedules import IV_COLLECTION_ASSETS

TAG_TRIGGER, TAG_AFTER = "options_v4/trigger", "options_v4/after_run"

session_refresh = dg.define_asset_job(
    "session_refresh",
    selection=dg.AssetSelection.groups(*DAILY_GROUPS) - dg.AssetSelection.assets(*IV_COLLECTION_ASSETS),
    partitions_def=nse_sessions,
    executor_def=job_executor(),
    description="The rest of daily_pipeline after the IV collection, for one session: instruments, technical "
    "signals, strategy candidates and the portfolio allocation (with their checks), from the stored chains and "
    "IVs. Launched by session_refresh_sensor when an iv_collection run of a session succeeds.",
)

chain_freshness = dg.define_asset_job(
    "chain_freshness",
    selection=dg.AssetSelection.checks(chains_fresh),
    description="The chains_fresh check alone: the session's stored option chains are end-of-day snapshots "
    "(config session; empty: the latest session past 16:30 IST).",
)


def chain_freshness_config(session: str) -> dict:
    return {"ops": {"option_chains_chains_fresh": {"config": {"session": session}}}}
