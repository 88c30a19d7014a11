"""Market-data assets: universe, option_chains (+ sanity check), underlying_bars (with the NIFTY and India VIX
bars: one op, three tables), market_conditions."""


import datetime as dt
import time

import dagster as dg
import polars as pl

from options_v4_dagster import universe as fno
from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs.common import (
    failures_metadata,
    failures_replace,
    frame_markdown,
    record_failures,
    upstream_source,
)
from options_v4_dagster.defs.lineage import MARKET_DATA, asset_attrs, table_spec
from options_v4_dagster.defs.partitions import nse_sessions, session_of, session_ranges, sessions_of
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import MarketDataResource, WarehouseResource
from options_v4_dagster.errors import CircuitOpen, DataError, ProviderError
from options_v4_dagster.market.bar_windows import bar_windows
from options_v4_dagster.market.dhan_limits import DAGSTER_POOL
from options_v4_dagster.market.sanity import SanityConfig, screen_chain
from options_v4_dagster.quant import regime
from options_v4_dagster.store import Replace, market_queries
from options_v4_dagster.store.provenance import provenance_replace, sources_of
from options_v4_dagster.strategies.inputs import BARS_FETCH_DAYS
from options_v4_dagster.types import Failure

GROUP = "market_data"


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    **asset_attrs("fno_universe", MARKET_DATA, grain="underlying"),
    backfill_policy=session_ranges,
    description="F&O underlyings (indices and ~208 stocks) the market-data source serves on the session, "
    "with lot size, strike step, industry and Dhan security id. Table fno_universe.",
)
@per_session
def universe(context: dg.AssetExecutionContext, market_data: MarketDataResource,
             warehouse: WarehouseResource) -> dg.MaterializeResult:
    session = session_of(context)
    provider, wh = market_data.get(), warehouse.get()
    available = getattr(provider, "available_symbols", None)
    lots_fn = getattr(provider, "lot_sizes", None)
    try:
        symbols = list(available(session)) if available else provider.symbols_for(session, fno.symbols())
        lots = dict(lots_fn(session)) if lots_fn else {}
    except DataError as exc:
        # the session's files exist but cannot be read: fail the step and keep the session's stored rows
        record_failures(wh, session, "universe", [Failure.from_exception("*", "universe", exc)])
        context.log.error(f"universe {session}: {exc}; the session's stored rows are kept")
        raise dg.Failure(description=f"universe {session}: the source's files for the session cannot be read: {exc}",
                         metadata={"file": str(exc.source), "field": str(exc.field), "cause": exc.reason,
                                   "kept_rows": wh.count("fno_universe", session)}) from exc
    frame = fno.session_universe(symbols, session, provider.name, lots)
    missing = [] if frame.height else [Failure("*", "universe", f"{provider.name} holds no data for {session}",
                                               kind="missing")]
    res = record_failures(wh, session, "universe", missing, Replace.partition("fno_universe", session, frame),
                          source=provider.name)[0]
    if missing:
        context.log.warning(f"universe {session}: {missing[0].reason}; the session is recorded as missing")
    n_idx = frame.filter(pl.col("instrument") == "INDEX").height
    context.log.info(f"universe {session}: {frame.height} underlyings ({n_idx} indices) from {provider.name}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "indices": n_idx,
        "stocks": frame.height - n_idx,
        "source": provider.name,
        "industries": frame.get_column("industry").n_unique(),
        "write_seconds": round(res.seconds, 3),
        "missing_session": bool(missing),
    })


class ChainSettings(dg.Config):
    max_failed_share: float = SanityConfig.max_failed_share  # of requested symbols failing with kind "error"


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[universe],
    **asset_attrs("option_chain_data", MARKET_DATA, grain="contract"),
    pool=DAGSTER_POOL,  # Dhan's data APIs (with the cross-process ledger of market/dhan_limits.py)
    backfill_policy=session_ranges,
    check_specs=[dg.AssetCheckSpec("chain_sanity", asset="option_chains", blocking=True,
                                   description="The share of requested symbols whose chain failed (provider error or "
                                   "the per-symbol sanity screen of market/sanity.py) is within max_failed_share; "
                                   "above it the step fails before writing and the stored session stays.")],
    description="Every listed option contract within ~90 days for each underlying of the session "
    "(bid/ask/LTP, volume and OI in contracts, underlying and futures price, lot size). "
    "Table option_chain_data. Each symbol's chain is screened (no-arbitrage bounds, crossed quotes, strike shape, "
    "jumps, IV outliers, spot) before writing: a failing symbol is excluded, recorded in pipeline_failures and keeps "
    "its previously stored rows; a broken feed (too many failing symbols) fails the step and writes nothing.",
)
@per_session
def option_chains(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                  warehouse: WarehouseResource, config: ChainSettings):
    session = session_of(context)
    provider, wh = market_data.get(), warehouse.get()
    symbols = wh.read_partition("fno_universe", session, ["symbol"]).get_column("symbol").to_list() \
        if wh.count("fno_universe", session) else []
    t0 = time.perf_counter()
    fetched, fetch_failures = provider.option_chains(symbols, session, horizon_days=market_data.horizon_days)
    fetch_s = time.perf_counter() - t0
    screen = screen_chain(fetched, SanityConfig(max_failed_share=config.max_failed_share), session=session)
    failures = list(fetch_failures) + screen.failures
    errors = {f.symbol: f for f in failures if f.kind == "error"}
    share = len(errors) / len(symbols) if symbols else 0.0
    failed_md = dg.MetadataValue.md("\n".join(f"- {s}: {f.reason[:300]}" for s, f in errors.items()) or "_none_")
    if share > config.max_failed_share:
        record_failures(wh, session, "option_chains", failures)
        raise dg.Failure(
            description=f"option_chains {session}: {len(errors)} of {len(symbols)} requested symbols failed "
            f"({share:.0%} > max_failed_share {config.max_failed_share:.0%}): a broken feed; nothing written, "
            f"the session's stored chains stay. First: " + "; ".join(f"{s}: {f.reason[:160]}"
                                                                    for s, f in list(errors.items())[:3]),
            metadata={"failed_symbols": dg.MetadataValue.json(sorted(errors)), "failed_share": fmt.pct(share),
                      "symbols_requested": len(symbols), "reasons": failed_md},
        )
    # a symbol that failed with an error keeps what was stored for it (nothing lost); the rest is replaced
    # (only rows of the same source: a session's rows are never a mix of two sources)
    same_source = sources_of(wh, session, ["option_chains"]).get("option_chains") == provider.name
    kept = wh.read_partition("option_chain_data", session, symbols=list(errors)) \
        if errors and same_source else fetched.clear()
    if kept.height:
        kept = kept.select(fetched.columns).cast(fetched.schema)
        n_kept = dict(kept.group_by("symbol").len().iter_rows())
        failures = [Failure(f.symbol, f.stage, f"{f.reason}; kept the {n_kept[f.symbol]} rows stored earlier "
                            f"for {session}", f.kind) if f.symbol in n_kept and f.kind == "error" else f
                    for f in failures]
    chain = pl.concat([screen.clean.filter(~pl.col("symbol").is_in(list(errors))), kept])
    res = record_failures(wh, session, "option_chains", failures,
                          Replace.partition("option_chain_data", session, chain), source=provider.name)[0]
    served = chain.get_column("symbol").n_unique() if chain.height else 0
    context.log.info(
        f"option_chains {session}: {served}/{len(symbols)} symbols, {chain.height} contracts from {provider.name} "
        f"(fetch {fetch_s:.2f}s, write {res.seconds:.2f}s); {len(failures)} failures, {len(screen.failures)} "
        f"excluded by the sanity screen, {screen.dropped_quotes} immaterial quotes dropped"
    )
    for f in failures:
        context.log.warning(f"option_chains {session} {f.symbol}: {f.kind}: {f.reason}")
    per_symbol = (chain.group_by("symbol").agg(pl.len().alias("contracts"), pl.col("expiry").n_unique().alias("expiries"),
                                               pl.col("underlying_price").first().alias("spot"),
                                               pl.col("oi").sum().cast(pl.Int64).alias("oi_contracts"))
                  .sort("oi_contracts", descending=True)) if chain.height else pl.DataFrame()
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": chain.height,
        "symbols_requested": len(symbols),
        "symbols_served": served,
        "expiries": chain.get_column("expiry").n_unique() if chain.height else 0,
        "source": provider.name,
        "fetch_seconds": round(fetch_s, 3),
        "write_seconds": round(res.seconds, 3),
        "sanity_excluded": dg.MetadataValue.json(screen.failed_symbols),
        "sanity_violations": dg.MetadataValue.json(screen.counts),
        "sanity_dropped_quotes": screen.dropped_quotes,
        "kept_stored_rows": kept.height,
        "top_symbols_by_oi": dg.MetadataValue.md(frame_markdown(per_symbol, 15)),
        **failures_metadata(failures),
    })
    yield dg.AssetCheckResult(
        check_name="chain_sanity",
        passed=True,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(errors)} of {len(symbols)} symbols failed ({share:.0%} <= {config.max_failed_share:.0%})",
        metadata={"failed_share": fmt.pct(share), "failed_symbols": dg.MetadataValue.json(sorted(errors)),
                  "sanity_violations": dg.MetadataValue.json(screen.counts),
                  "dropped_quotes": screen.dropped_quotes, "reasons": failed_md},
    )


BARS_TABLES = ("underlying_bars", "nifty_historical_data", "india_vix_data")


@dg.multi_asset(
    name="underlying_bars",
    partitions_def=nse_sessions,
    pool=DAGSTER_POOL,
    specs=[
        table_spec("underlying_bars", "underlying_bars", MARKET_DATA, grain="bar", write="window_upsert",
                   deps=[universe], partitions_def=nse_sessions,
                   description="A year of daily OHLCV per underlying (stocks, indices, NIFTY) ending at the session. "
                   "Table underlying_bars; idempotent window upserts."),
        table_spec("nifty_historical_data", "nifty_historical_data", MARKET_DATA, grain="bar", write="window_upsert",
                   deps=[universe], partitions_def=nse_sessions,
                   description="A year of NIFTY 50 daily bars ending at the session (written by the underlying_bars "
                   "step). Table nifty_historical_data; idempotent window upserts."),
        table_spec("india_vix_data", "india_vix_data", MARKET_DATA, grain="bar", write="window_upsert",
                   deps=[universe], partitions_def=nse_sessions,
                   description="A year of India VIX daily values ending at the session (written by the "
                   "underlying_bars step). Table india_vix_data; idempotent window upserts."),
    ],
    backfill_policy=session_ranges,
    description="A year of daily OHLCV per underlying ending at the session (table underlying_bars); NIFTY also to "
    "nifty_historical_data and India VIX to india_vix_data, the three tables and the failures in one transaction. "
    "A range of sessions (a backfill) fetches and writes each symbol's merged windows once.",
)
def underlying_bars(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                    warehouse: WarehouseResource):
    sessions = sessions_of(context)
    provider, wh = market_data.get(), warehouse.get()
    requested = {s: list(dict.fromkeys([*wh.read_partition("fno_universe", s, ["symbol"]).get_column("symbol"),
                                        "NIFTY", fno.VIX_SYMBOL])) for s in sessions}
    by_symbol: dict[str, list[dt.date]] = {}
    for s, symbols in requested.items():
        for sym in symbols:
            by_symbol.setdefault(sym, []).append(s)
    t0 = time.perf_counter()
    frames, failures = {}, {s: [] for s in sessions}  # frames: span -> [(symbol, bars)]
    for sym, spans in bar_windows(by_symbol, BARS_FETCH_DAYS).items():
        for start, end in spans:
            try:
                frames.setdefault((start, end), []).append((sym, provider.daily_bars(sym, start, end)))
            except CircuitOpen as exc:  # the source is down: fail the step once, the stored bars stay
                raise dg.Failure(description=f"underlying_bars {sessions[0]}..{sessions[-1]}: {exc}; nothing written",
                                 metadata={"symbol": sym, "fetched_before": sum(map(len, frames.values()))}) from exc
            except (DataError, ProviderError) as exc:  # recorded per symbol; anything else is a bug and fails loudly
                for s in by_symbol[sym]:
                    if start <= s <= end:
                        failures[s].append(Failure.from_exception(sym, "daily_bars", exc))
    fetch_s = time.perf_counter() - t0
    writes = []  # the three tables, the failures and provenance of every session in one transaction
    for group in frames.values():
        stock_frames = [f for s, f in group if s != fno.VIX_SYMBOL and f.height]
        if stock_frames:
            writes.append(Replace.window("underlying_bars", pl.concat(stock_frames)))
        for sym, table in (("NIFTY", "nifty_historical_data"), (fno.VIX_SYMBOL, "india_vix_data")):
            f = next((f for s, f in group if s == sym), None)
            if f is not None and f.height:
                writes.append(Replace.window(table, f.drop("symbol"), key_column=None))
    records = [r for s in sessions for r in (failures_replace(s, "underlying_bars", failures[s]),
                                             provenance_replace(s, "underlying_bars", provider.name))]
    per_table = {name: 0 for name in BARS_TABLES}
    for r in wh.replace_together([*writes, *records])[:len(writes)]:
        per_table[r.table] += r.inserted
    written = sum(per_table.values())
    all_failures = [f for s in sessions for f in failures[s]]
    for f in all_failures:
        context.log.warning(f"underlying_bars {f.symbol}: {f.kind}: {f.reason}")
    series = sum(map(len, frames.values()))
    span = f"{min(a for a, _ in frames)} .. {max(b for _, b in frames)}" if frames else ""
    context.log.info(f"underlying_bars {sessions[0]}..{sessions[-1]} ({len(sessions)} sessions): {series} series, "
                     f"{written} bars in {time.perf_counter() - t0:.2f}s")
    rng = {} if len(sessions) == 1 else {"sessions": fmt.count(len(sessions)),
                                         "session_range": f"{sessions[0]} .. {sessions[-1]}"}
    fetched = {sym for group in frames.values() for sym, f in group if f.height}
    yield dg.MaterializeResult(asset_key="underlying_bars", metadata={
        "dagster/row_count": fmt.count(per_table["underlying_bars"]),
        **rng,
        "series": fmt.count(series),
        "window": span,
        "source": provider.name,
        "fetch_seconds": fmt.seconds(fetch_s),
        **failures_metadata(all_failures),
    })
    for key, sym in (("nifty_historical_data", "NIFTY"), ("india_vix_data", fno.VIX_SYMBOL)):
        yield dg.MaterializeResult(asset_key=key, metadata={
            "dagster/row_count": fmt.count(per_table[key]), **rng, "window": span, "source": provider.name,
            "fetched": sym in fetched})


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[option_chains, "nifty_historical_data", "india_vix_data"],
    **asset_attrs("market_conditions", MARKET_DATA, grain="session"),
    backfill_policy=session_ranges,
    description="NIFTY trend (EMA20/50, 20-session return), India VIX in five bands and the NIFTY "
    "put-call ratio (OI) in three sentiment states. Table market_conditions.",
)
@per_session
def market_conditions(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                      warehouse: WarehouseResource) -> dg.MaterializeResult:
    session = session_of(context)
    wh = warehouse.get()
    notes = []
    nifty = market_queries.nifty_closes_until(wh, session)
    trend = None
    if nifty.height >= 50:
        trend = regime.nifty_trend(nifty.get_column("close").to_numpy()[-260:])
        if nifty.get_column("date")[-1] != session:
            notes.append(f"NIFTY bars end {nifty.get_column('date')[-1]}, before the session")
    else:
        notes.append(f"only {nifty.height} NIFTY bars up to {session}: trend needs 50")
    vix_rows = market_queries.latest_vix(wh, session)
    vix = vix_rows.get_column("close")[0] if vix_rows.height else None
    if vix is None:
        notes.append("no India VIX value on or before the session")
    elif vix_rows.get_column("date")[0] != session:
        notes.append(f"India VIX from {vix_rows.get_column('date')[0]}")
    chain = wh.read_partition("option_chain_data", session, ["option_type", "oi", "volume"], symbols=["NIFTY"])
    pcr_oi, pcr_vol = regime.put_call_ratio(chain) if chain.height else (None, None)
    if chain.height == 0:
        notes.append("no NIFTY option chain on the session: PCR unknown")
    band = regime.vix_band(vix)
    row = {
        "trade_date": session,
        "nifty_close": trend.close if trend else None,
        "nifty_ema20": trend.ema20 if trend else None,
        "nifty_ema50": trend.ema50 if trend else None,
        "nifty_return_20d": trend.return_20d if trend else None,
        "nifty_trend": trend.direction if trend else None,
        "trend_strength": trend.strength if trend else None,
        "india_vix": vix,
        "vix_band": band,
        "pcr_oi": pcr_oi,
        "pcr_volume": pcr_vol,
        "pcr_sentiment": regime.pcr_sentiment(pcr_oi),
        "market_state": regime.market_state(trend.direction if trend else None, band),
        "notes": "; ".join(notes) or None,
        "source": upstream_source(wh, session, "market_conditions", ["option_chains", "underlying_bars"]),
    }
    record_failures(wh, session, "market_conditions", [], Replace.partition("market_conditions", session,
                                                                            pl.DataFrame([row])), source=row["source"])
    context.log.info(f"market_conditions {session}: {row['market_state']} VIX={vix} PCR={pcr_oi}")
    meta = {k: v for k, v in row.items() if k not in ("trade_date",) and v is not None}
    meta = {k: (fmt.pct(v, 2) if k == "nifty_return_20d" else round(v, 4) if isinstance(v, float) else v)
            for k, v in meta.items()}
    return dg.MaterializeResult(metadata=meta)
