"""Daily IV collection: at 15:45 Asia/Kolkata on NSE sessions, the day's chains through iv_percentiles."""

import datetime as dt

import dagster as dg

from options_v4_dagster import calendar
from options_v4_dagster.defs.partitions import nse_sessions

IV_COLLECTION_ASSETS = ("universe", "option_chains", "underlying_bars", "nifty_historical_data", "india_vix_data",
                        "market_conditions", "option_greeks", "iv_history", "iv_percentiles")

iv_collection = dg.define_asset_job(
    "iv_collection",
    selection=dg.AssetSelection.assets(*IV_COLLECTION_ASSETS),
    partitions_def=nse_sessions,
    description="Collect one session's option chains and compute its IVs, IV history row and IV percentiles.",
)


@dg.schedule(
    job=iv_collection,
    cron_schedule="45 15 * * 1-5",
    execution_timezone=calendar.TZ_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="15:45 IST on NSE trading sessions (holidays are skipped with a reason).",
)
def daily_iv_schedule(context: dg.ScheduleEvaluationContext):
    tick = context.scheduled_execution_time
    session = tick.astimezone(calendar.IST).date() if tick else dt.datetime.now(calendar.IST).date()
    if not calendar.is_session(session):
        return dg.SkipReason(f"{session} ({session:%A}) is not an NSE trading session")
    return dg.RunRequest(run_key=f"iv_collection:{session.isoformat()}", partition_key=session.isoformat(),
                         tags={"options_v4/trigger": "daily_iv_schedule"})




iv_analysis = dg.define_asset_job(
    "iv_analysis",
    selection=dg.AssetSelection.assets("option_greeks", "iv_history", "iv_percentiles"),
    partitions_def=nse_sessions,
    description="Recompute IVs, the IV history row and IV percentiles from the session's stored chains.",
)
