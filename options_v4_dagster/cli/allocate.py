"""``options-v4 allocate`` (capital over a session's stored strategy candidates, optionally materialized as
portfolio_allocation) and ``options-v4 industries`` (the industry weights and views)."""

from __future__ import annotations

import datetime as dt

from options_v4_dagster.errors import ConfigError

from .args import parse_session
from .instance import cli_instance, cli_run_tags
from .output import console, new_table, print_json, session_source


def _save_allocation(session: dt.date, capital: float, risk: str | None, rules: str | None) -> bool:
    """Materialize portfolio_allocation for the session through Dagster with this capital."""
    from options_v4_dagster.definitions import build_defs
    from options_v4_dagster.defs.allocation.assets import portfolio_allocation

    instance = cli_instance()
    job = build_defs().resolve_job_def("daily_pipeline")
    op_cfg = {"capital": float(capital), "risk_tolerance": risk, "market_conditions_file": rules or ""}
    result = job.execute_in_process(
        partition_key=session.isoformat(), instance=instance,
        asset_selection=sorted(portfolio_allocation.keys),  # the step's three tables
        run_config={"ops": {"portfolio_allocation": {"config": op_cfg}}},
        tags=cli_run_tags("allocate"), raise_on_error=False)
    return result.success


def cmd_allocate(args) -> int:
    from options_v4_dagster.allocation.engine import NoCandidates
    from options_v4_dagster.allocation.session import allocate_session, industry_allocations
    from options_v4_dagster.store import Warehouse
    from options_v4_dagster.store.allocations import latest_allocation_id
    from options_v4_dagster.store.strategies_queries import latest_candidates_session

    wh = Warehouse.from_env()
    if args.date:
        session = parse_session(args.date)
    else:
        session = latest_candidates_session(wh)
        if session is None:
            raise NoCandidates(f"no strategy candidates in the warehouse ({wh.describe()}): run `options-v4 run` first")
    sa = allocate_session(wh, session, args.capital, industry_allocations(wh), risk_tolerance=args.risk,
                          rules_path=args.rules)
    out = sa.to_dict()
    if args.save:
        if not _save_allocation(session, args.capital, args.risk, args.rules):
            console.print("[red]error:[/] materializing portfolio_allocation failed (see the run in the Dagster UI)")
            return 1
        out["allocation_id"] = latest_allocation_id(wh, session)  # the snapshot stored (the same id unless the
        # industry tables were empty and the asset seeded them)
    if args.json:
        out["market_data_source"] = session_source(wh, session)
        keep = ("allocation_id", "trade_date", "market_data_source", "capital", "capital_used", "cash_left", "deployment", "deployment_target",
                "position_count", "positions", "tier_shares", "tier_targets", "industry_shares", "limits",
                "expected_monthly_return", "expected_monthly_return_inr", "target_monthly_return",
                "meets_return_target", "meets_deployment_target", "greeks", "market_state", "notes", "excluded")
        print_json({k: out[k] for k in keep if k in out}, default=str)
        return 0
    s, pos = sa.result.summary, sa.result.positions
    source = session_source(wh, session)
    table = new_table(f"allocation {session}: INR {args.capital:,.0f}, rules {sa.rules.state}, market data {source}",
                      ("symbol", "strategy", "tier", "industry", "view", "lots", "capital ₹", "weight", "Kelly",
                       "POP", "exp. return ₹/mo", "conviction"),
                      right=("lots", "capital ₹", "weight", "Kelly", "POP", "exp. return ₹/mo"))
    for r in pos.iter_rows(named=True):
        table.add_row(r["symbol"], r["strategy_name"], r["tier"], (r["industry"] or "")[:28], r["position_type"],
                      str(r["lots"]), f"{r['capital_used']:,.0f}", f"{r['weight']:.1%}", f"{r['kelly_fraction']:.3f}",
                      "" if r["pop"] is None else f"{r['pop']:.0%}", f"{r['expected_return']:,.0f}", r["conviction"])
    console.print(table)
    tiers = ", ".join(f"{t} {s.tier_shares[t]:.1%} (target {s.tier_targets[t]:.0%})" for t in s.tier_shares)
    console.print(f"{s.positions} positions, {s.lots} lots; deployed INR {s.capital_used:,.0f} = "
                  f"{s.deployment:.1%} (target {s.deployment_target:.0%}); tiers: {tiers}")
    console.print(f"expected monthly return {s.expected_monthly_return:.2%} (INR "
                  f"{s.expected_monthly_return_inr:,.0f}) vs target {s.target_monthly_return:.0%}; "
                  f"net delta {s.greeks['delta']:,.0f}, theta {s.greeks['theta']:,.0f}/day, "
                  f"vega {s.greeks['vega']:,.0f}")
    console.print(f"market data: {source} (the candidates of {session} were built from it; another source or "
                  "session gives other positions)")
    console.print(f"allocation {out['allocation_id']}" + (" (stored)" if args.save else
                                                          " (not stored: --save materializes it)"))
    for note in s.notes:
        console.print(f"  note: {note}")
    return 0


def cmd_industries(args) -> int:
    from options_v4_dagster.allocation.industries import load_industry_allocations
    from options_v4_dagster.allocation.session import industry_allocations, write_industry_tables
    from options_v4_dagster.store import Warehouse

    wh = Warehouse.from_env()
    if args.action == "import":
        if not args.file:
            raise ConfigError("industries import needs a CSV or YAML file")
        allocations = load_industry_allocations(args.file)
        counts = write_industry_tables(wh, allocations)
        console.print(f"imported {args.file}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    elif args.action == "reset":
        from options_v4_dagster.allocation.industries import default_industry_allocations

        counts = write_industry_tables(wh, default_industry_allocations())
        console.print("reset to the packaged defaults: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    allocations = industry_allocations(wh)
    frame = allocations.frame()
    if args.json:
        print_json({"source": allocations.source, "industries": frame.to_dicts()})
        return 0
    table = new_table(f"industry allocations ({allocations.source})", ("industry", "weight", "view"), right=("weight",))
    for r in frame.iter_rows(named=True):
        table.add_row(r["industry"], f"{r['weight']:.1%}", r["position_type"])
    console.print(table)
    return 0
