"""One session's allocation from the warehouse: what the ``portfolio_allocation`` asset and
``options-v4 allocate`` both run.

Reads the session's stored strategy candidates (strategies + strategy_parameters) and the session's
market conditions (India VIX band, NIFTY trend, PCR sentiment -> the market_conditions.yaml rules),
takes the industry weights and views from the caller (read with :func:`industry_allocations`, which
writes nothing unless asked to seed), then calls :func:`.engine.allocate`. The result is an
immutable snapshot named by a content hash (:mod:`.snapshot`). No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..store import Replace, WarehouseLike
from ..store.industries import current_industry_weights, symbol_industries
from .candidates import candidates_from_tables
from .config import MarketRules, load_market_conditions
from .engine import AllocationResult, allocate
from .errors import AllocationError, NoCandidates
from .industries import IndustryAllocations, allocation_tables, default_industry_allocations
from .snapshot import allocation_id, canonical_json, industry_views, snapshot_inputs

INDUSTRY_TABLES = ("industry_allocations_current", "sector_allocations_current", "stock_industry_mapping")


@dataclass
class SessionAllocation:
    session: dt.date
    capital: float
    rules: MarketRules
    industries: IndustryAllocations
    result: AllocationResult
    risk_tolerance: str | None = None

    @property
    def allocation_id(self) -> str:
        """The snapshot's content hash (same inputs and positions -> same id)."""
        return allocation_id(snapshot_inputs(self.session, self.capital, self.rules, self.industries,
                                             self.risk_tolerance, self.result.positions))

    def to_dict(self) -> dict:
        out = self.result.to_dict()
        return {"allocation_id": self.allocation_id, "trade_date": self.session.isoformat(), **out,
                "rules": self.rules.to_dict(), "industry_source": self.industries.source,
                "risk_tolerance": self.risk_tolerance}


def write_industry_tables(wh: WarehouseLike, allocations: IndustryAllocations,
                          universe: pl.DataFrame | None = None) -> dict[str, int]:
    """Replace the three industry tables with ``allocations`` (in one transaction)."""
    now = dt.datetime.now(dt.UTC)
    frames = allocation_tables(allocations, universe)
    writes = []
    for name in INDUSTRY_TABLES:
        f = frames[name].with_columns(pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("updated_at"))
        if name == "industry_allocations_current":
            f = f.with_columns(pl.lit(allocations.source).alias("source"))
        writes.append(Replace.whole_table(name, f))
    wh.replace_together(writes)
    return {r.table: r.frame.height for r in writes}


def industry_allocations(wh: WarehouseLike, *, seed: bool = False) -> IndustryAllocations:
    """The current industry weights and views from the warehouse; when the tables are empty, the
    packaged defaults (written to the tables only when ``seed``: the portfolio_allocation asset
    seeds, readers such as ``options-v4 allocate`` do not)."""
    ind = current_industry_weights(wh)
    if ind.height == 0:
        allocations = default_industry_allocations()
        if seed:
            write_industry_tables(wh, allocations)
        return allocations
    mapping = symbol_industries(wh)
    return IndustryAllocations.from_weights(
        dict(zip(ind.get_column("industry"), ind.get_column("weight"), strict=True)),
        dict(zip(ind.get_column("industry"), ind.get_column("position_type"), strict=True)),
        symbol_industry=dict(zip(mapping.get_column("symbol"), mapping.get_column("industry"), strict=True)),
        source=str(ind.get_column("source")[0] or "warehouse"))


def session_rules(wh: WarehouseLike, session: dt.date, rules_path: str | Path | None = None) -> MarketRules:
    """The market_conditions.yaml rules for the session's stored market conditions (DEFAULT when
    the session has none)."""
    mc = wh.read_partition("market_conditions", session, ["vix_band", "nifty_trend", "pcr_sentiment"])
    cfg = load_market_conditions(rules_path)
    if mc.height == 0:
        return cfg.resolve(None, None, None)
    r = mc.row(0, named=True)
    return cfg.resolve(r["vix_band"], r["nifty_trend"], r["pcr_sentiment"])


def allocate_session(wh: WarehouseLike, session: dt.date, capital: float, industries: IndustryAllocations, *,
                     risk_tolerance: str | None = None, rules_path: str | Path | None = None) -> SessionAllocation:
    """Allocate ``capital`` over the session's stored candidates with these industry weights and
    views (recorded with the snapshot). Writes nothing. Raises :class:`NoCandidates` when strategy
    creation has not stored any for the session."""
    strategies = wh.read_partition("strategies", session)
    if strategies.height == 0:
        raise NoCandidates(f"no strategy candidates stored for {session}: run `options-v4 run --date {session}` "
                           "(or materialize strategy_candidates for the session) first")
    if risk_tolerance is None:  # the most common stored tolerance (the asset stores one per run)
        risk_tolerance = strategies.group_by("risk_tolerance").len().sort(["len", "risk_tolerance"],
                                                                         descending=[True, False])[0, 0]
    params = wh.read_partition("strategy_parameters", session)
    _require_parameters(strategies, params, session)
    universe = wh.read_partition("fno_universe", session, ["symbol", "industry", "lot_size"])
    if industries.symbol_industry:  # the stored mapping wins over the session's universe
        universe = universe.with_columns(
            pl.col("symbol").replace_strict(industries.symbol_industry, default=pl.col("industry"),
                                            return_dtype=pl.Utf8).alias("industry"))
    candidates = candidates_from_tables(strategies, params, universe, risk_tolerance=risk_tolerance)
    if candidates.height == 0:
        raise NoCandidates(f"no {risk_tolerance} strategy candidates stored for {session}")
    rules = session_rules(wh, session, rules_path)
    lot_sizes = {r["symbol"]: int(r["lot_size"]) for r in universe.iter_rows(named=True) if r["lot_size"]}
    result = allocate(candidates, capital, rules, industries, lot_sizes=lot_sizes)
    return SessionAllocation(session, float(capital), rules, industries, result, risk_tolerance)


class IncompleteSession(AllocationError):
    """The session's strategy tables were written only in part (a warehouse written before the
    strategy tables were replaced in one transaction, or edited by hand)."""


def _require_parameters(strategies: pl.DataFrame, params: pl.DataFrame, session: dt.date) -> None:
    have = set(params.get_column("strategy_id").to_list()) if params.height else set()
    lacking = strategies.filter(~pl.col("strategy_id").is_in(list(have))).height
    if lacking:
        raise IncompleteSession(
            f"{lacking} of {strategies.height} stored strategies for {session} have no strategy_parameters rows "
            f"(the session's strategy tables were written only in part): run `options-v4 run --date {session}` "
            "to rebuild them")


def allocation_frames(sa: SessionAllocation, source: str | None = None) -> dict[str, pl.DataFrame]:
    """The snapshot's rows: ``portfolio_allocation`` (positions) and ``portfolio_allocation_summary``
    (one row: totals, the rules and industry views used), both keyed by its ``allocation_id``."""
    now = dt.datetime.now(dt.UTC)
    aid = sa.allocation_id
    pos = sa.result.positions.with_columns(
        pl.lit(aid).alias("allocation_id"), pl.lit(sa.session).alias("trade_date"),
        pl.lit(sa.capital).alias("capital"), pl.lit(now, dtype=pl.Datetime("us", "UTC")).alias("created_at"))
    s = sa.result.summary
    summary = pl.DataFrame([{
        "allocation_id": aid, "trade_date": sa.session, "capital": sa.capital,
        "capital_used": float(s.capital_used), "deployment": float(s.deployment),
        "positions": int(s.positions), "expected_monthly_return": float(s.expected_monthly_return),
        "target_monthly_return": float(s.target_monthly_return), "market_state": sa.rules.state,
        "risk_tolerance": sa.risk_tolerance, "source": source, "rules": canonical_json(sa.rules.to_dict()),
        "industry_views": canonical_json(industry_views(sa.industries)),
        "summary": json.dumps(s.to_dict(), default=str), "created_at": now,
    }], schema_overrides={"created_at": pl.Datetime("us", "UTC"), "risk_tolerance": pl.Utf8, "source": pl.Utf8})
    return {"portfolio_allocation": pos, "portfolio_allocation_summary": summary}
