"""Volatility assets: option_greeks, iv_history (historical_iv_summary), iv_percentiles."""

import time

import dagster as dg
import polars as pl

from options_v4_dagster import calendar
from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs.common import frame_markdown, record_failures, upstream_source
from options_v4_dagster.defs.lineage import VOLATILITY, asset_attrs
from options_v4_dagster.defs.market_data.assets import option_chains
from options_v4_dagster.defs.partitions import (
    is_last_session,
    nse_sessions,
    ordered_sessions,
    session_of,
    session_ranges,
)
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.quant import iv_stats, regime, surface
from options_v4_dagster.reports import iv_chart
from options_v4_dagster.store import Replace, failures, market_queries, volatility_queries

GROUP = "volatility"
HISTORY_WINDOW = iv_stats.DEFAULT_WINDOW
#: the stored chain columns surface.chain_iv reads (quotes, spot, futures, snapshot time; exchange IV for
#: the metadata's comparison), and the option_greeks columns surface.iv_summary reads: a range run reads
#: every session's 65,000 contracts twice, so it reads only these
CHAIN_IV_INPUTS = ("trade_date", "symbol", "expiry", "strike", "option_type", "bid", "ask", "ltp",
                   "underlying_price", "futures_price", "snapshot_ts", "exchange_iv")
SUMMARY_GREEKS = ("symbol", "expiry", "strike", "option_type", "iv", "forward", "t_years")


class IVSettings(dg.Config):
    rate: float = surface.DEFAULT_RATE
    nse_rate: float = surface.NSE_RATE
    low_percentile: float = 30.0
    high_percentile: float = 70.0
    min_history: int = iv_stats.DEFAULT_MIN_HISTORY
    iv_charts: int = 3  # metadata IV charts: NIFTY, BANKNIFTY + this many top-IV-percentile symbols


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[option_chains],
    **asset_attrs("option_greeks", VOLATILITY, grain="contract"),
    backfill_policy=session_ranges,
    description="Implied vol (forward convention: Black-76 on the put-call-parity or futures forward, from mid "
    "else LTP; NSE convention: BS on spot at r=10% from LTP) and Black-76 greeks per contract. "
    "Table option_greeks; null IVs carry their reason.",
)
@per_session
def option_greeks(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  config: IVSettings) -> dg.MaterializeResult:
    session = session_of(context)
    wh = warehouse.get()
    t0 = time.perf_counter()
    chain = wh.read_partition("option_chain_data", session, CHAIN_IV_INPUTS)
    if chain.height == 0:
        return _missing(context, wh, session, "option_greeks", "option_greeks", "option_chain_data")
    iv = surface.chain_iv(chain, surface.IVConfig(rate=config.rate, nse_rate=config.nse_rate))
    solve_s = time.perf_counter() - t0
    res = record_failures(wh, session, "option_greeks", [], Replace.partition("option_greeks", session, iv),
                          source=upstream_source(wh, session, "option_greeks", ["option_chains"]))[0]
    reasons = iv.group_by("iv_reason").len().drop_nulls("iv_reason")
    reason_counts = {r["iv_reason"]: int(r["len"]) for r in reasons.iter_rows(named=True)}
    # how closely our NSE-convention IV reproduces the exchange's own published IV
    cmp = iv.filter(pl.col("exchange_iv").is_not_null() & (pl.col("exchange_iv") > 0) & pl.col("iv_nse").is_not_null())
    diff = (cmp.get_column("iv_nse") - cmp.get_column("exchange_iv")).abs() * 100 if cmp.height else None
    methods = iv.unique(["symbol", "expiry"]).group_by("forward_method").len()
    context.log.info(f"option_greeks {session}: {iv.height} contracts, {iv['iv'].is_not_null().sum()} IVs "
                     f"in {solve_s:.2f}s; null reasons {reason_counts}")
    meta = {
        "dagster/row_count": iv.height,
        "with_iv": fmt.count(iv.get_column("iv").is_not_null().sum()),
        "with_iv_share": fmt.pct(iv.get_column("iv").is_not_null().mean() if iv.height else None),
        "with_iv_nse": fmt.count(iv.get_column("iv_nse").is_not_null().sum()),
        "null_iv_reasons": dg.MetadataValue.json(reason_counts),
        "forward_methods": dg.MetadataValue.json({r["forward_method"]: int(r["len"])
                                                  for r in methods.iter_rows(named=True)}),
        "solve_seconds": fmt.seconds(solve_s),
        "write_seconds": fmt.seconds(res.seconds),
    }
    if diff is not None and diff.len():
        meta["iv_nse_vs_exchange_median_abs_vol_pts"] = round(float(diff.median()), 4)
        meta["iv_nse_vs_exchange_p90_abs_vol_pts"] = round(float(diff.quantile(0.9)), 4)
        meta["iv_nse_vs_exchange_legs"] = fmt.count(diff.len())
    return dg.MaterializeResult(metadata=meta)


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[option_greeks, option_chains, "underlying_bars", "india_vix_data"],
    **asset_attrs("historical_iv_summary", VOLATILITY, grain="underlying"),
    backfill_policy=session_ranges,
    description="Per underlying and session: 30-day ATM IV (variance-time interpolated), near and far ATM IV, "
    "25-delta skew, term slope, realized vol 20/60, IV - RV, put-call ratios, India VIX. "
    "Table historical_iv_summary.",
)
@per_session
def iv_history(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    session = session_of(context)
    wh = warehouse.get()
    t0 = time.perf_counter()
    greeks = wh.read_partition("option_greeks", session, SUMMARY_GREEKS)
    chain = wh.read_partition("option_chain_data", session,
                              ["symbol", "expiry", "strike", "option_type", "underlying_price", "oi", "volume"])
    if greeks.height == 0:
        return _missing(context, wh, session, "iv_history", "historical_iv_summary", "option_greeks")
    iv = greeks.join(chain, on=["symbol", "expiry", "strike", "option_type"], how="left")
    summary = surface.iv_summary(iv)
    pcr = regime.put_call_ratios(chain)
    first = calendar.sessions_back(session, surface.RV_HISTORY_SESSIONS)[0]
    rv = surface.realized_vols(market_queries.closes_between(wh, first, session))
    vix_value = market_queries.vix_on(wh, session)
    out = (summary.join(pcr, on="symbol", how="left").join(rv, on="symbol", how="left")
           .with_columns((pl.col("atm_iv_30d") - pl.col("rv_20")).alias("iv_minus_rv"),
                         pl.lit(vix_value, dtype=pl.Float64).alias("india_vix"),
                         pl.lit(session).alias("trade_date"))
           .with_columns(pl.col(pl.Float64).fill_nan(None)))
    res = record_failures(wh, session, "iv_history", [], Replace.partition("historical_iv_summary", session, out),
                          source=upstream_source(wh, session, "iv_history",
                                                 ["option_greeks", "option_chains", "underlying_bars"]))[0]
    no_iv = out.filter(pl.col("atm_iv_30d").is_null()).get_column("symbol").to_list()
    context.log.info(f"iv_history {session}: {out.height} symbols, {len(no_iv)} without a 30-day ATM IV "
                     f"({time.perf_counter() - t0:.2f}s)")
    top = out.sort("atm_iv_30d", descending=True, nulls_last=True).select(
        "symbol", (pl.col("atm_iv_30d") * 100).round(2).alias("iv30_%"), (pl.col("rv_20") * 100).round(2).alias("rv20_%"),
        (pl.col("skew_25d") * 100).round(2).alias("skew25_pts"), pl.col("pcr_oi").round(2))
    return dg.MaterializeResult(metadata={
        "dagster/row_count": out.height,
        "without_atm_iv_30d": dg.MetadataValue.json(no_iv[:50]),
        "india_vix": round(vix_value, 2) if vix_value is not None else fmt.NA,
        "nifty_atm_iv_30d": fmt.pct(_atm_iv(out, "NIFTY"), 2),
        "highest_iv": dg.MetadataValue.md(frame_markdown(top, 12)),
        "write_seconds": round(res.seconds, 3),
    })


def _missing(context, wh, session, asset: str, table: str, upstream: str) -> dg.MaterializeResult:
    """No upstream rows for the session. Where the universe recorded the session as missing (the
    source holds no data that day) this is a recorded gap, not an error; otherwise it fails."""
    gap = failures.missing_session_reason(wh, session)
    if gap is None:
        raise dg.Failure(f"{asset} {session}: {upstream} has no rows for the session; materialize it first")
    wh.replace_partition(table, session, pl.DataFrame(schema={"trade_date": pl.Date}))
    context.log.warning(f"{asset} {session}: nothing to compute: {gap}")
    return dg.MaterializeResult(metadata={"dagster/row_count": 0, "missing_session": True, "reason": gap})


def _atm_iv(frame: pl.DataFrame, symbol: str) -> float | None:
    row = frame.filter(pl.col("symbol") == symbol)
    return float(row.get_column("atm_iv_30d")[0]) if row.height and row.get_column("atm_iv_30d")[0] is not None \
        else None


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    # The previous 252 sessions' IV history is read from the warehouse, not mapped: a dependency on 252
    # iv_history partitions made a backfill of N sessions target every session up to 252 after them. The
    # dependency on its own previous session orders a backfill: a session runs once the one before it
    # (hence that session's IV history and all earlier ones of the backfill) is done.
    deps=[iv_history, dg.AssetDep("iv_percentiles", partition_mapping=dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True))],
    **asset_attrs("iv_percentiles", VOLATILITY, grain="underlying"),
    backfill_policy=ordered_sessions,
    description="IV percentile (share of the previous 252 sessions' 30-day ATM IV below today's) and IV rank "
    "per underlying, with history_days and the IV environment LOW/NORMAL/HIGH. Null with a reason when "
    "fewer than 20 earlier sessions exist. Table iv_percentiles. Reads the earlier sessions' IV history from "
    "historical_iv_summary; depends on its own previous session, so a backfill computes sessions in order.",
)
@per_session(keep_last=("iv_charts",))
def iv_percentiles(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   config: IVSettings) -> dg.MaterializeResult:
    session = session_of(context)
    wh = warehouse.get()
    start = calendar.sessions_back(session, HISTORY_WINDOW + 1)[0]
    source = upstream_source(wh, session, "iv_percentiles", ["iv_history"])
    # earlier sessions whose IV history came from another market-data source are not history of this one
    # (rows written before provenance was recorded have none and are kept)
    hist = volatility_queries.atm_iv_history(wh, start, session, source)
    today = hist.filter(pl.col("trade_date") == session)
    if today.height == 0:
        return _missing(context, wh, session, "iv_percentiles", "iv_percentiles", "historical_iv_summary")
    th = iv_stats.Thresholds(config.low_percentile, config.high_percentile)
    rows = []
    for (sym,), g in hist.group_by(["symbol"], maintain_order=True):
        cur = g.filter(pl.col("trade_date") == session)
        if cur.height == 0:
            continue
        prev = g.filter(pl.col("trade_date") < session).get_column("atm_iv_30d").to_numpy().astype(float)
        st = iv_stats.iv_standing(cur.get_column("atm_iv_30d")[0], prev, window=HISTORY_WINDOW,
                                  min_history=config.min_history)
        rows.append({"trade_date": session, "symbol": sym, "atm_iv_30d": st.iv, "iv_percentile": st.percentile,
                     "iv_rank": st.rank, "history_days": st.history_days, "window_min": st.window_min,
                     "window_max": st.window_max, "iv_environment": th.environment(st.percentile),
                     "reason": st.reason})
    out = pl.DataFrame(rows, schema={"trade_date": pl.Date, "symbol": pl.Utf8, "atm_iv_30d": pl.Float64,
                                     "iv_percentile": pl.Float64, "iv_rank": pl.Float64, "history_days": pl.Int64,
                                     "window_min": pl.Float64, "window_max": pl.Float64,
                                     "iv_environment": pl.Utf8, "reason": pl.Utf8})
    record_failures(wh, session, "iv_percentiles", [], Replace.partition("iv_percentiles", session, out),
                    source=source)
    # a range run keeps the charts of its last session only
    charts = iv_chart.iv_charts_markdown(wh, session, out, config.iv_charts) if is_last_session(context) else ""
    env = out.group_by("iv_environment").len()
    with_pct = int(out.get_column("iv_percentile").is_not_null().sum())
    context.log.info(f"iv_percentiles {session}: {with_pct}/{out.height} symbols with a percentile; "
                     f"history up to {out.get_column('history_days').max()} sessions")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": out.height,
        "with_percentile": fmt.count(with_pct),
        "max_history_days": fmt.count(out.get_column("history_days").max()),
        "environments": dg.MetadataValue.json({str(r["iv_environment"]): int(r["len"]) for r in env.iter_rows(named=True)}),
        "table": dg.MetadataValue.md(frame_markdown(out.select(
            "symbol", (pl.col("atm_iv_30d") * 100).round(2).alias("iv30_%"), pl.col("iv_percentile").round(1),
            pl.col("iv_rank").round(1), "history_days", "iv_environment").sort("symbol"), 15)),
        "iv_charts": dg.MetadataValue.md(charts),
    })


