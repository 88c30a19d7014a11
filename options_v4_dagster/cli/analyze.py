"""``options-v4 strategies`` (the catalogue) and ``options-v4 analyze`` (the best strategy candidates per
symbol, from a session's stored inputs or computed from the market-data source)."""

from __future__ import annotations

import datetime as dt
import sys

from options_v4_dagster import config
from options_v4_dagster.errors import DataError

from .args import parse_session
from .output import console, new_table, print_json


def cmd_strategies(args) -> int:
    from options_v4_dagster.strategies import CATALOGUE

    rows = []
    for d in CATALOGUE:
        rows.append({
            "name": d.name, "display_name": d.display_name, "category": d.category.value,
            "outlook": d.outlook.value, "iv_preference": d.iv_preference.value, "complexity": d.complexity,
            "unlimited_risk": d.unlimited_risk,
            "legs": [{"side": leg.side.value, "instrument": leg.instrument.value, "ratio": leg.ratio,
                      "strike": leg.strike.describe() if hasattr(leg.strike, "describe") else str(leg.strike),
                      "expiry": leg.expiry.value if hasattr(leg.expiry, "value") else str(leg.expiry)}
                     for leg in d.legs],
        })
    if args.json:
        print_json(rows)
        return 0
    table = new_table(f"{len(rows)} strategies", ("name", "category", "outlook", "IV pref", "legs"))
    for r in rows:
        table.add_row(r["name"], r["category"], r["outlook"], r["iv_preference"],
                      ", ".join(f"{leg['side']} {leg['ratio']}x{leg['instrument']} {leg['strike']}" for leg in r["legs"]))
    console.print(table)
    return 0


def analysis_inputs(symbols: list[str] | None, session: dt.date, source: str | None, nse_dir: str | None = None):
    """The session's strategy inputs: the stored ones when the warehouse holds the session (universe,
    chains, option greeks and technical signals) from the requested source, else computed on the fly
    from the provider through the same functions the assets use. Returns (inputs, why)."""
    from options_v4_dagster.market import get_provider
    from options_v4_dagster.store import Warehouse, strategies_queries
    from options_v4_dagster.strategies.inputs import computed_inputs

    src = config.market_source(source)
    wh = Warehouse.from_env()
    stored = strategies_queries.stored_source(wh, session)
    why = f"the warehouse holds {session} from {stored}, not {src}" if stored else \
        f"the warehouse ({wh.describe()}) does not hold {session} completely"
    if stored == src:
        try:
            return strategies_queries.session_inputs(wh, session, src), f"stored session ({wh.describe()})"
        except DataError as exc:  # stored rows this release cannot use: computed instead, and said so
            why = f"the stored session cannot be used: {exc}"
    provider = get_provider(src, **({"data_dir": nse_dir} if nse_dir and src == "nse_files" else {}))
    inputs, _ = computed_inputs(provider, session, symbols)
    return inputs, why


def analysis_rows(symbols: list[str] | None, session: dt.date, source: str | None, risk: str, show_all: bool,
                  nse_dir: str | None = None, top: int = 3) -> tuple[list[dict], list, dict]:
    """Candidates for symbols on a session through :func:`strategies.pipeline.create_for_session`, from the
    stored inputs of the session or inputs computed from the provider (see :func:`analysis_inputs`), the
    failures, and which inputs (stored / computed, and why) and market-data source were used."""
    from options_v4_dagster.strategies import pipeline

    inputs, why = analysis_inputs(symbols, session, source, nse_dir)
    result = pipeline.create_for_session(inputs, risk=risk, top_per_symbol=top, keep_all=show_all, symbols=symbols)
    failures = list(inputs.failures)
    if symbols is not None:
        served = set(inputs.iv.get_column("symbol").unique().to_list()) if inputs.iv.height else set()
        failures += [pipeline.Failure(s, "analyze", f"no {inputs.origin} chain for {s} on {session}", kind="missing")
                     for s in symbols if s not in served]
    rows = []
    for rc in result.ranked:
        c, a = rc.candidate, rc.candidate.analytics
        rows.append({
            "symbol": c.symbol, "strategy_name": c.name, "category": c.strategy.category.value,
            "rank": rc.rank, "passed_filters": rc.scored.passed,
            "legs": [{"side": leg.side.value, "instrument": leg.instrument.value, "strike": leg.strike,
                      "expiry": leg.expiry.isoformat() if leg.expiry else None, "quantity": leg.quantity,
                      "price": leg.price} for leg in c.legs],
            "net_premium": a.net_premium, "max_profit": a.max_profit, "max_loss": a.max_loss,
            "breakevens": list(a.breakevens), "pop": a.pop,
            "pop_inputs": {"forward": a.pop_inputs.forward, "sigma": a.pop_inputs.sigma,
                           "t_years": a.pop_inputs.t_years},
            "expected_value": a.expected_value,
            "greeks": {"delta": a.greeks.delta, "gamma": a.greeks.gamma, "theta": a.greeks.theta,
                       "vega": a.greeks.vega},
            "margin": a.margin, "total_score": rc.scored.total_score, "conviction": rc.scored.conviction,
            "exit_levels": rc.exits.to_dict() if hasattr(rc.exits, "to_dict") else rc.exits.to_row(),
            "inputs": inputs.origin, "market_data_source": inputs.source,
        })
    return rows, failures + result.failures, {"inputs": inputs.origin, "source": inputs.source, "why": why}


def cmd_analyze(args) -> int:
    session = parse_session(args.date)
    symbols = args.symbol
    if symbols is None and not args.universe:
        symbols = ["NIFTY"]
    src = config.market_source(args.source)
    rows, failures, used = analysis_rows(symbols, session, src, args.risk, args.all, args.nse_dir, args.top)
    said = f"market data: {used['source']}, {used['inputs']} inputs ({used['why']})"
    if args.json:
        print(f"options-v4 analyze {session}: {said}", file=sys.stderr)
        print_json(rows, default=str)
        return 0 if rows else 1
    console.print(f"options-v4 analyze {session}: {said}")
    table = new_table(f"strategy candidates {session} ({args.risk}), market data: {used['source']}, "
                      f"{used['inputs']} inputs",
                      ("symbol", "#", "strategy", "net prem ₹", "max profit ₹", "max loss ₹", "breakevens", "POP",
                       "EV ₹", "margin ₹", "score", "conviction"),
                      left=("symbol", "strategy", "breakevens", "conviction"))

    def money(v):
        return "unlimited" if v is None else f"{v:,.0f}"

    for r in rows:
        table.add_row(r["symbol"], str(r["rank"]), r["strategy_name"], money(r["net_premium"]),
                      money(r["max_profit"]), money(r["max_loss"]), ", ".join(f"{b:,.1f}" for b in r["breakevens"]),
                      f"{r['pop']:.1%}", money(r["expected_value"]), money(r["margin"]), f"{r['total_score']:.1f}",
                      r["conviction"])
    console.print(table)
    errs = [f for f in failures if getattr(f, "kind", "error") == "error"]
    if errs:
        console.print(f"{len(errs)} strategies could not be built, e.g. "
                      + "; ".join(f"{f.symbol} {f.stage}: {f.reason[:60]}" for f in errs[:3]))
    return 0 if rows else 1
