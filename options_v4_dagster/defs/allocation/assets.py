"""Allocation asset: portfolio_allocation (an immutable snapshot of the session's proposed positions)."""

import time

import dagster as dg

from options_v4_dagster.allocation import session as allocation_session
from options_v4_dagster.allocation.engine import InsufficientCapital, NoCandidates, limit_breaches
from options_v4_dagster.allocation.invariants import MAX_ABS_MONTHLY_RETURN, allocation_violations
from options_v4_dagster.defs.common import RiskToleranceChoice, frame_markdown, upstream_source
from options_v4_dagster.defs.market_data.assets import market_conditions
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


def _pct(x: float) -> str:
    return f"{x:.1%}"


@dg.asset(
    partitions_def=nse_sessions,
    group_name=GROUP,
    deps=[strategy_candidates, market_conditions],
    backfill_policy=session_ranges,
    kinds={"python", "sql"},
    check_specs=[dg.AssetCheckSpec("within_limits", asset="portfolio_allocation",
                                   description="Whole lots; every position, symbol and industry within its "
                                   "capital limit; capital used within the capital."),
                 dg.AssetCheckSpec("allocation_invariants", asset="portfolio_allocation", blocking=True,
                                   description="|expected monthly return| <= max_abs_monthly_return (50%), capital "
                                   "used <= capital, lots whole and > 0; checked before writing: a violation fails "
                                   "the step and the stored allocation stays.")],
    description="Capital (config, default INR 15 lakh) across 20-30 of the session's best strategy candidates: "
    "tiers by conviction (60/30/10) x industry weights and LONG/SHORT views, market_conditions.yaml rules, "
    "fractional Kelly, whole lots, margin for short premium and debit for long; expected monthly return from "
    "the candidates' expected values against the 4% target. Each result is an immutable snapshot named by "
    "allocation_id (content hash of session, capital, rules, industry views, risk tolerance and positions): "
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
        yield dg.MaterializeResult(metadata={"dagster/row_count": 0, "no_candidates": str(exc)})
        yield dg.AssetCheckResult(check_name="within_limits", passed=True, description="no positions")
        yield dg.AssetCheckResult(check_name="allocation_invariants", passed=True, description="no positions")
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
                     f"{_pct(s.deployment)} of INR {config.capital:,.0f}, expected monthly return "
                     f"{s.expected_monthly_return:.2%} (target {s.target_monthly_return:.0%}), "
                     f"rules {sa.rules.state}, in {elapsed:.2f}s")
    for note in s.notes:
        context.log.info(f"portfolio_allocation {session}: {note}")
    table = pos.select("symbol", "strategy_name", "tier", "industry", "lots", "capital_used", "expected_return",
                       "conviction")
    yield dg.MaterializeResult(metadata={
        "dagster/row_count": pos.height,
        "allocation_id": aid,
        "snapshot": "new" if new else "existing",
        "industry_views": industries.source,
        "capital": dg.MetadataValue.float(sa.capital),
        "capital_used": dg.MetadataValue.float(s.capital_used),
        "deployment": dg.MetadataValue.float(round(s.deployment, 4)),
        "positions": pos.height,
        "market_rules": sa.rules.state,
        "source": source,
        "tier_shares": dg.MetadataValue.json({k: round(v, 4) for k, v in s.tier_shares.items()}),
        "industry_shares": dg.MetadataValue.json({k: round(v, 4) for k, v in s.industry_shares.items()}),
        "expected_monthly_return": dg.MetadataValue.float(round(s.expected_monthly_return, 5)),
        "target_monthly_return": dg.MetadataValue.float(float(s.target_monthly_return)),
        "greeks": dg.MetadataValue.json({k: round(v, 2) for k, v in s.greeks.items()}),
        "limits": dg.MetadataValue.json(s.limits),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in s.notes) or "_none_"),
        "positions_table": dg.MetadataValue.md(frame_markdown(table, 30)),
        "excluded_reasons": dg.MetadataValue.json(s.excluded_reasons),
        "excluded_codes": dg.MetadataValue.json(s.excluded_codes),
        "seconds": round(elapsed, 3),
    })
    yield dg.AssetCheckResult(check_name="allocation_invariants", passed=True, description="ok",
                              metadata={"expected_monthly_return": s.expected_monthly_return})
    problems = limit_breaches(pos, s.limits, sa.capital)
    yield dg.AssetCheckResult(check_name="within_limits", passed=not problems,
                              metadata={"breaches": len(problems)},
                              description="ok" if not problems else "; ".join(problems[:5]))
