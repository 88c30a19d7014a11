"""Strategy-creation assets: technical_signals and strategy_candidates (+ checks, payoff charts): one op writing
four tables, an asset per table (strategy_candidates is the strategies table, with strategy_details,
strategy_parameters and strategy_exit_levels)."""

import time

import dagster as dg
import polars as pl

from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs.common import frame_markdown, record_failures, upstream_source
from options_v4_dagster.defs.lineage import STRATEGIES, asset_attrs, table_spec
from options_v4_dagster.defs.market_data.assets import option_chains, universe
from options_v4_dagster.defs.partitions import is_last_session, nse_sessions, session_of, session_ranges
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.defs.volatility.assets import iv_history, iv_percentiles, option_greeks
from options_v4_dagster.reports import payoff_chart
from options_v4_dagster.store import Replace, strategies_queries
from options_v4_dagster.strategies import pipeline as strategy_pipeline
from options_v4_dagster.strategies.invariants import candidate_violations
from options_v4_dagster.types import Failure, RiskTolerance

GROUP = "strategies"


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[universe, "underlying_bars", option_chains, iv_percentiles, iv_history],
    **asset_attrs("technical_signals", STRATEGIES, grain="underlying"),
    backfill_policy=session_ranges,
    description="Per underlying: EMA 20/50/200, RSI 14, MACD, Bollinger width, ATR, volume ratio, consolidation and "
    "breakout flags -> direction and strength; with the IV environment one of nine market states; volatility and "
    "liquidity buckets. Table technical_signals.",
)
@per_session
def technical_signals(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    session = session_of(context)
    wh = warehouse.get()
    t0 = time.perf_counter()
    inputs = strategies_queries.signal_inputs(wh, session)
    if inputs.universe.height == 0:
        context.log.warning(f"technical_signals {session}: no universe for the session (missing source data)")
        wh.replace_partition("technical_signals", session, pl.DataFrame(schema={"trade_date": pl.Date}))
        return dg.MaterializeResult(metadata={"dagster/row_count": 0, "missing_session": True})
    out = strategy_pipeline.signals_for_session(inputs)
    failures = [Failure(r["symbol"], "technical_signals", r["notes"] or "no bars", kind="missing")
                for r in out.filter(pl.col("direction").is_null()).iter_rows(named=True)]
    record_failures(wh, session, "technical_signals", failures, Replace.partition("technical_signals", session, out),
                    source=upstream_source(wh, session, "technical_signals",
                                           ["underlying_bars", "option_chains", "iv_history", "iv_percentiles"]))
    states = out.group_by("market_state").len().sort("len", descending=True)
    context.log.info(f"technical_signals {session}: {out.height} symbols in {time.perf_counter() - t0:.2f}s; "
                     f"{len(failures)} without a direction")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": out.height,
        "without_direction": fmt.count(len(failures)),
        "directions": dg.MetadataValue.json({str(r["direction"]): int(r["len"]) for r in
                                             out.group_by("direction").len().iter_rows(named=True)}),
        "market_states": dg.MetadataValue.md(frame_markdown(states, 12)),
        "seconds": fmt.seconds(time.perf_counter() - t0),
    })


class CandidateSettings(dg.Config):
    risk_tolerance: RiskTolerance = "moderate"
    top_per_symbol: int = 5  # candidates stored per symbol (all that pass the filters when 0)
    lots: int = 1
    charts: int = 5  # payoff charts for the best candidates of the session


#: the tables strategy_candidates writes in one transaction, by asset key (strategies is "strategy_candidates")
CANDIDATE_TABLES = {"strategy_candidates": "strategies", "strategy_details": "strategy_details",
                    "strategy_parameters": "strategy_parameters", "strategy_exit_levels": "strategy_exit_levels"}
_CANDIDATE_DEPS = [technical_signals, option_greeks, option_chains]


@dg.multi_asset(
    name="strategy_candidates",
    partitions_def=nse_sessions,
    specs=[
        table_spec("strategy_candidates", "strategies", STRATEGIES, grain="candidate", deps=_CANDIDATE_DEPS,
                   partitions_def=nse_sessions,
                   description="Every catalogue strategy that can be built per underlying, at executable prices, with "
                   "payoff analytics, POP and its inputs, expected value, greeks, margin, score, conviction and exit "
                   "levels; the best per symbol stored. Table strategies (one row per candidate, ranked per symbol); "
                   "its legs, parameters and exit levels are the strategy_details, strategy_parameters and "
                   "strategy_exit_levels assets, written in the same transaction."),
        table_spec("strategy_details", "strategy_details", STRATEGIES, grain="leg", deps=_CANDIDATE_DEPS,
                   partitions_def=nse_sessions,
                   description="The legs of each stored strategy candidate (side, contract, quantity in shares, "
                   "executable price). Table strategy_details; written with strategy_candidates."),
        table_spec("strategy_parameters", "strategy_parameters", STRATEGIES, grain="candidate", deps=_CANDIDATE_DEPS,
                   partitions_def=nse_sessions,
                   description="Payoff analytics per stored candidate: max profit and loss (INR), breakevens, POP and "
                   "its inputs, expected value, greeks, margin. Table strategy_parameters; written with "
                   "strategy_candidates."),
        table_spec("strategy_exit_levels", "strategy_exit_levels", STRATEGIES, grain="candidate",
                   deps=_CANDIDATE_DEPS, partitions_def=nse_sessions,
                   description="Exit levels per stored candidate (profit target, stop loss, time exit, triggers). "
                   "Table strategy_exit_levels; written with strategy_candidates."),
    ],
    backfill_policy=session_ranges,
    check_specs=[
        dg.AssetCheckSpec("legs_in_chain", asset="strategy_candidates", blocking=True,
                          description="Every option leg exists in the session's option_chain_data."),
        dg.AssetCheckSpec("bounded_loss_unless_flagged", asset="strategy_candidates", blocking=True,
                          description="A candidate has a finite max loss unless its strategy is flagged unlimited."),
        dg.AssetCheckSpec("candidate_invariants", asset="strategy_candidates", blocking=True,
                          description="Max loss is a loss (>= 0, null only when flagged unlimited), max profit >= 0, "
                          "POP in [0, 1], expected value finite, margin > 0; checked before writing: a violation "
                          "fails the step and the session's stored candidates stay."),
    ],
    description="Every catalogue strategy that can be built per underlying, at executable prices, with payoff "
    "analytics, POP and its inputs, expected value, greeks, margin, score, conviction and exit levels; the best "
    "per symbol stored in strategies, strategy_details, strategy_parameters and strategy_exit_levels.",
)
@per_session(keep_last=("best_per_symbol", "payoff_charts", "payoff_charts_html"))
def strategy_candidates(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                        config: CandidateSettings):
    session = session_of(context)
    wh = warehouse.get()
    t0 = time.perf_counter()
    if wh.count("option_chain_data", session) == 0:
        record_failures(wh, session, "strategy_candidates", [],
                        *(Replace.partition(name, session, pl.DataFrame(schema={"trade_date": pl.Date}))
                          for name in CANDIDATE_TABLES.values()))
        context.log.warning(f"strategy_candidates {session}: no option chains for the session")
        for key in CANDIDATE_TABLES:
            yield dg.MaterializeResult(asset_key=key, metadata={"dagster/row_count": 0, "missing_session": True})
        for check in ("legs_in_chain", "bounded_loss_unless_flagged", "candidate_invariants"):
            yield dg.AssetCheckResult(asset_key="strategy_candidates", check_name=check, passed=True,
                                      description="no candidates: no chains")
        return
    # the IVs and greeks option_greeks stored (at its IVSettings) with the chain's quotes, and the stored signals
    inputs = strategies_queries.session_inputs(wh, session)
    result = strategy_pipeline.create_for_session(inputs, risk=config.risk_tolerance, lots=config.lots,
                                                  top_per_symbol=config.top_per_symbol)
    tables = strategy_pipeline.to_tables(result.ranked, session, config.risk_tolerance)
    broken = candidate_violations(tables["strategies"], tables["strategy_parameters"])
    if broken.height:
        lines = [f"{r['symbol']} {r['strategy_name']}: {r['problem']}" for r in broken.head(10).iter_rows(named=True)]
        raise dg.Failure(
            description=f"strategy_candidates {session}: {broken.height} candidate invariant violations "
            f"({broken.get_column('symbol').n_unique()} symbols); nothing written, the stored candidates stay. "
            + "; ".join(lines[:3]),
            metadata={"violations": broken.height, "symbols": dg.MetadataValue.json(
                sorted(broken.get_column("symbol").unique().to_list())),
                "first": dg.MetadataValue.md("\n".join(f"- {x}" for x in lines))})
    source = upstream_source(wh, session, "strategy_candidates", ["technical_signals", "option_greeks", "option_chains"])
    writes = [Replace.partition(name, session, tables[name])  # the four tables in one transaction
              for name in CANDIDATE_TABLES.values()]
    record_failures(wh, session, "strategy_candidates", result.failures, *writes, source=source)
    charts = payoff_chart.write_payoff_charts(  # a range run keeps the charts of its last session only
        strategy_pipeline.chart_curves(result.ranked, config.charts, payoff_chart.HTML_POINTS), session) \
        if is_last_session(context) else []
    elapsed = time.perf_counter() - t0
    top = tables["strategies"].filter(pl.col("rank") == 1).sort("total_score", descending=True)
    context.log.info(f"strategy_candidates {session}: {result.built} built for {result.symbols} symbols, "
                     f"{tables['strategies'].height} stored, {len(result.failures)} failures in {elapsed:.2f}s")
    yield dg.MaterializeResult(asset_key="strategy_candidates", metadata={
        "dagster/row_count": fmt.count(tables["strategies"].height),
        "symbols_with_candidates": fmt.count(tables["strategies"].get_column("symbol").n_unique() if top.height else 0),
        "symbols": fmt.count(result.symbols),
        "candidates_built": fmt.count(result.built),
        "candidates_passing_filters": fmt.count(result.passed),
        "risk_tolerance": config.risk_tolerance,
        "source": source,
        "build_failures": fmt.count(len(result.failures)),
        "seconds": fmt.seconds(elapsed),
        "timings": dg.MetadataValue.json({k: round(v, 3) for k, v in result.timings.items()}),
        "best_per_symbol": dg.MetadataValue.md(frame_markdown(
            top.select("symbol", "strategy_name", "total_score", "conviction"), 20)),
        **({"payoff_charts": dg.MetadataValue.md(payoff_chart.charts_markdown(
            strategy_pipeline.chart_curves(result.ranked, config.charts, payoff_chart.PNG_POINTS))),
            "payoff_charts_html": dg.MetadataValue.text("\n".join(str(p) for p in charts))} if charts else {}),
    })
    for key in ("strategy_details", "strategy_parameters", "strategy_exit_levels"):
        yield dg.MaterializeResult(asset_key=key, metadata={
            "dagster/row_count": fmt.count(tables[CANDIDATE_TABLES[key]].height), "source": source})
    legs_missing = strategy_pipeline.legs_not_in_chain(tables["strategy_details"],
                                                       wh.read_partition("option_chain_data", session,
                                                                         ["symbol", "expiry", "strike", "option_type"]),
                                                       tables["strategies"])
    yield dg.AssetCheckResult(asset_key="strategy_candidates", check_name="legs_in_chain", passed=not legs_missing,
                              metadata={"legs_not_in_chain": len(legs_missing)},
                              description="ok" if not legs_missing else f"{legs_missing[:5]}")
    unbounded = tables["strategies"].join(tables["strategy_parameters"], on="strategy_id").filter(
        pl.col("max_loss").is_null() & ~pl.col("unlimited_risk"))
    yield dg.AssetCheckResult(asset_key="strategy_candidates", check_name="candidate_invariants", passed=True, description="ok",
                              metadata={"candidates": tables["strategies"].height})
    yield dg.AssetCheckResult(asset_key="strategy_candidates", check_name="bounded_loss_unless_flagged", passed=unbounded.height == 0,
                              metadata={"unflagged_unbounded": unbounded.height},
                              description="ok" if unbounded.height == 0 else
                              ", ".join(unbounded.get_column("strategy_id").head(5).to_list()))


