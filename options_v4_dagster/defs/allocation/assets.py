"""Allocation asset: portfolio_allocation (an immutable snapshot of the session's proposed positions): one op,
an asset per table (portfolio_allocation, portfolio_allocation_summary, portfolio_allocation_runs)."""

import time

import dagster as dg

from options_v4_dagster.allocation import session as allocation_session
from options_v4_dagster.allocation.engine import InsufficientCapital, NoCandidates, limit_breaches
from options_v4_dagster.allocation.invariants import MAX_ABS_MONTHLY_RETURN, allocation_violations
from options_v4_dagster.defs import formatting as fmt
from options_v4_dagster.defs.common import RiskToleranceChoice, frame_markdown, upstream_source
from options_v4_dagster.defs.lineage import ALLOCATION, table_spec
from options_v4_dagster.defs.market_data.assets import market_conditions, universe
from options_v4_dagster.defs.partitions import nse_sessions, session_of, session_ranges
from options_v4_dagster.defs.ranges import per_session
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.defs.strategies.assets import strategy_candidates
from options_v4_dagster.store.allocations import run_append, snapshot_appends
from options_v4_dagster.store.provenance import provenance_replace

GROUP = "allocation"


class AllocationSettings(dg.Config):
    capital: float = 1_500_000.0  # INR
    risk_tolerance: RiskToleranceChoice | None = None  # None: the one strategy_candidates stored
    market_conditions_file: str = ""  # a market_conditions.yaml ("" = the packaged one)
    max_abs_monthly_return: float = MAX_ABS_MONTHLY_RETURN  # |expected monthly return| above this fails the step


_DEPS = [strategy_candidates, "strategy_parameters", market_conditions, universe]
_SNAPSHOT = ("Each result is an immutable snapshot named by allocation_id (content hash of session, capital, rules, "
             "industry views, risk tolerance and positions), written once and never changed.")


@dg.multi_asset(
    name="portfolio_allocation",
    partitions_def=nse_sessions,
    specs=[
        table_spec("portfolio_allocation", "portfolio_allocation", ALLOCATION, grain="position", write="append_only",
                   deps=_DEPS, partitions_def=nse_sessions,
                   description="Capital (config, default INR 15 lakh) across 20-30 of the session's best strategy "
                   "candidates: tiers by conviction (60/30/10) x industry weights and LONG/SHORT views, "
                   "market_conditions.yaml rules, fractional Kelly, whole lots, margin for short premium and debit "
                   "for long. Table portfolio_allocation: the positions of a snapshot. " + _SNAPSHOT),
        table_spec("portfolio_allocation_summary", "portfolio_allocation_summary", ALLOCATION, grain="snapshot",
                   write="append_only", deps=_DEPS, partitions_def=nse_sessions,
                   description="One row per allocation snapshot: capital, capital used, deployment, expected monthly "
                   "return against the 4% target, the rules and industry views used. Table "
                   "portfolio_allocation_summary; written with portfolio_allocation. " + _SNAPSHOT),
        table_spec("portfolio_allocation_runs", "portfolio_allocation_runs", ALLOCATION, grain="run",
                   write="append_only", deps=_DEPS, partitions_def=nse_sessions,
                   description="Which snapshot each materialization of portfolio_allocation gave (the session's "
                   "latest row names its latest snapshot; null when there were no candidates). Table "
                   "portfolio_allocation_runs."),
    ],
    backfill_policy=session_ranges,
    check_specs=[dg.AssetCheckSpec("within_limits", asset="portfolio_allocation",
                                   description="Whole lots; every position, symbol and industry within its "
                                   "capital limit; capital used within the capital."),
                 dg.AssetCheckSpec("allocation_invariants", asset="portfolio_allocation", blocking=True,
                                   description="|expected monthly return| <= max_abs_monthly_return (50%), capital "
                                   "used <= capital, lots whole and > 0; checked before writing: a violation fails "
                                   "the step and the stored allocation stays.")],
    description="Capital across the session's best strategy candidates, as an immutable snapshot: "
    "portfolio_allocation_summary (one row per snapshot, with the rules and industry views used) and "
    "portfolio_allocation (its positions), written once and never changed; portfolio_allocation_runs "
    "records which snapshot each materialization gave (the session's latest).",
)
@per_session
def portfolio_allocation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                         config: AllocationSettings):
    session = session_of(context)
    wh = warehouse.get()
    t0 = time.perf_counter()
    industries = allocation_session.industry_allocations(wh, seed=True)  # the packaged defaults on first use
    try:
        sa = allocation_session.allocate_session(wh, session, config.capital, industries,
                                                 risk_tolerance=str(config.risk_tolerance) if config.risk_tolerance else None,
                                                 rules_path=config.market_conditions_file or None)
    except NoCandidates as exc:  # no snapshot; the run row says the session's latest materialization had none
        wh.replace_together([run_append(context.run_id, session, None)])
        context.log.warning(f"portfolio_allocation {session}: {exc}")
        yield dg.MaterializeResult(asset_key="portfolio_allocation",
                                   metadata={"dagster/row_count": 0, "no_candidates": str(exc)})
        yield dg.MaterializeResult(asset_key="portfolio_allocation_summary",
                                   metadata={"dagster/row_count": 0, "no_candidates": str(exc)})
        yield dg.MaterializeResult(asset_key="portfolio_allocation_runs",
                                   metadata={"dagster/row_count": 1, "allocation_id": fmt.NA})
        yield dg.AssetCheckResult(asset_key="portfolio_allocation", check_name="within_limits", passed=True,
                                  description="no positions")
        yield dg.AssetCheckResult(asset_key="portfolio_allocation", check_name="allocation_invariants", passed=True,
                                  description="no positions")
        return
    except InsufficientCapital as exc:
        raise dg.Failure(description=f"portfolio_allocation {session}: {exc}",
                         metadata={"capital": config.capital}) from exc
    s, pos = sa.result.summary, sa.result.positions
    broken = allocation_violations(pos, sa.capital, s.capital_used, s.expected_monthly_return,
                                   config.max_abs_monthly_return)
    if broken:
        raise dg.Failure(description=f"portfolio_allocation {session}: " + "; ".join(broken[:5])
                         + "; nothing written, the stored allocation stays",
                         metadata={"violations": dg.MetadataValue.json(broken[:25])})
    source = upstream_source(wh, session, "portfolio_allocation", ["strategy_candidates", "market_conditions"])
    frames = allocation_session.allocation_frames(sa, source)
    aid = sa.allocation_id
    written = wh.replace_together([  # one transaction: the snapshot if absent, the run row, the provenance
        *snapshot_appends(context.run_id, session, aid, frames["portfolio_allocation_summary"],
                          frames["portfolio_allocation"]),
        provenance_replace(session, "portfolio_allocation", source)])
    new = written[0].inserted > 0
    elapsed = time.perf_counter() - t0
    context.log.info(f"portfolio_allocation {session}: snapshot {aid} ({'new' if new else 'existing'}), "
                     f"{s.positions} positions, deployment "
                     f"{fmt.pct_text(s.deployment)} of INR {config.capital:,.0f}, expected monthly return "
                     f"{s.expected_monthly_return:.2%} (target {s.target_monthly_return:.0%}), "
                     f"rules {sa.rules.state}, in {elapsed:.2f}s")
    for note in s.notes:
        context.log.info(f"portfolio_allocation {session}: {note}")
    table = pos.select("symbol", "strategy_name", "tier", "industry", "lots", "capital_used", "expected_return",
                       "conviction")
    inr = {"capital_used": fmt.inr_text, "expected_return": fmt.inr_text}
    yield dg.MaterializeResult(asset_key="portfolio_allocation", metadata={
        "dagster/row_count": fmt.count(pos.height),
        "allocation_id": aid,
        "snapshot": "new" if new else "existing",
        "industry_views": industries.source,
        "capital": fmt.inr(sa.capital),
        "capital_used": fmt.inr(s.capital_used),
        "deployment": fmt.pct(s.deployment),
        "positions": fmt.count(pos.height),
        "market_rules": sa.rules.state,
        "source": source,
        "tier_shares": fmt.pct_json(s.tier_shares),
        "industry_shares": fmt.pct_json(s.industry_shares),
        "expected_monthly_return": fmt.pct(s.expected_monthly_return, 2),
        "target_monthly_return": fmt.pct(s.target_monthly_return),
        "greeks": dg.MetadataValue.json({k: round(v, 2) for k, v in s.greeks.items()}),
        "limits": dg.MetadataValue.json(s.limits),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in s.notes) or "_none_"),
        "positions_table": dg.MetadataValue.md(frame_markdown(table, 30, formats=inr)),
        "excluded_reasons": dg.MetadataValue.json(s.excluded_reasons),
        "excluded_codes": dg.MetadataValue.json(s.excluded_codes),
        "seconds": fmt.seconds(elapsed),
    })
    yield dg.MaterializeResult(asset_key="portfolio_allocation_summary", metadata={
        "dagster/row_count": 1, "inserted": fmt.count(written[0].inserted), "allocation_id": aid,
        "snapshot": "new" if new else "existing", "capital_used": fmt.inr(s.capital_used),
        "deployment": fmt.pct(s.deployment), "expected_monthly_return": fmt.pct(s.expected_monthly_return, 2)})
    yield dg.MaterializeResult(asset_key="portfolio_allocation_runs", metadata={
        "dagster/row_count": 1, "allocation_id": aid, "run_id": context.run_id})
    yield dg.AssetCheckResult(asset_key="portfolio_allocation", check_name="allocation_invariants", passed=True,
                              description="ok", metadata={"expected_monthly_return": fmt.pct(s.expected_monthly_return, 2)})
    problems = limit_breaches(pos, s.limits, sa.capital)
    yield dg.AssetCheckResult(asset_key="portfolio_allocation", check_name="within_limits", passed=not problems,
                              metadata={"breaches": len(problems)},
                              description="ok" if not problems else "; ".join(problems[:5]))
