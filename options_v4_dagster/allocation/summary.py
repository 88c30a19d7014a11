"""The allocation summary: deployment, tiers, industries, sectors, expected return, greeks, limits
and exclusions, as a typed :class:`AllocationSummary` (:meth:`AllocationSummary.to_dict` for JSON)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from typing import Any

import polars as pl

from .book import Book, pct
from .candidates import GREEKS
from .config import TIERS, MarketRules
from .exclusions import code_counts, reason_kinds
from .industries import IndustryAllocations
from .positions import FALLBACK_LEVELS

__all__ = ["TIER_TOLERANCE", "AllocationSummary", "summarize"]

TIER_TOLERANCE = 0.05


@dataclass(frozen=True)
class AllocationSummary:
    """Totals of one allocation. Shares are fractions of the capital (tier shares: of the capital
    used); money in INR. Mappings are keyed by tier, industry, sector, greek or fallback level."""

    capital: float
    capital_used: float
    cash_left: float
    deployment: float
    deployment_target: float
    meets_deployment_target: bool
    positions: int  #: number of positions (``position_count`` in :meth:`.engine.AllocationResult.to_dict`)
    lots: int
    tier_shares: dict[str, float]
    tier_targets: dict[str, float]
    tier_positions: dict[str, int]
    tier_capital: dict[str, float]
    industry_shares: dict[str, float]
    industry_positions: dict[str, int]
    industry_targets: dict[str, float]
    sector_shares: dict[str, float]
    unlimited_risk_share: float
    expected_monthly_return: float
    expected_monthly_return_inr: float
    target_monthly_return: float
    meets_return_target: bool
    greeks: dict[str, float]
    fallback_levels: dict[str, int]  #: positions per fallback level ("0".."3")
    limits: dict[str, float]  #: INR caps and the rules' limits (what :func:`.positions.limit_breaches` reads)
    market_state: dict[str, str | None]
    candidates: int
    symbols_with_candidates: int
    symbols_eligible: int
    excluded_reasons: dict[str, int]  #: excluded candidates per kind of reason (:data:`.exclusions.KIND`)
    excluded_codes: dict[str, int]  #: excluded candidates per :class:`.exclusions.ExclusionCode`
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the stored ``portfolio_allocation_summary.summary``): the fields by name."""
        out = dataclasses.asdict(self)
        out["notes"] = list(self.notes)
        return out




def _sector_shares(pos: pl.DataFrame, capital: float) -> dict[str, float]:
    if not pos.height:
        return {}
    g = pos.group_by("sector").agg(pl.col("capital_used").sum()).sort(["capital_used", "sector"],
                                                                       descending=[True, False])
    return {r["sector"]: r["capital_used"] / capital for r in g.iter_rows(named=True)}


def _notes(pos: pl.DataFrame, rules: MarketRules, tier_shares: dict[str, float], emr: float,
           n_avail: int) -> list[str]:
    """Tier split off target, return below target, too few positions, positions without t_years."""
    lim = rules.position_limits
    notes = []
    off = {t: tier_shares[t] - rules.tier_split[t] for t in TIERS}
    if pos.height and any(abs(v) > TIER_TOLERANCE + 1e-12 for v in off.values()):
        notes.append("tier split off by more than 5 points: " + ", ".join(
            f"{t} {pct(tier_shares[t])} vs {pct(rules.tier_split[t])}" for t in TIERS if abs(off[t]) > TIER_TOLERANCE))
    if emr < rules.monthly_return_target:
        notes.append(f"expected monthly return {emr:.2%} is below the {rules.monthly_return_target:.2%} target "
                     "(from the candidates' expected values)")
    if pos.height < lim.min_positions:
        notes.append(f"{pos.height} positions, fewer than min_positions {lim.min_positions}: "
                     f"{n_avail} symbols have an eligible candidate")
    if pos.height and pos.filter(pl.col("t_years").is_null()).height:
        notes.append("some positions have no t_years: their expected value is taken as monthly")
    return notes


def summarize(book: Book, pos: pl.DataFrame, rules: MarketRules, industries: IndustryAllocations,
              candidates: pl.DataFrame, n_avail: int, notes: list[str]) -> AllocationSummary:
    """The summary of the positions ``pos`` built in ``book`` from ``candidates`` (with ``_code``);
    ``notes`` are the steps' notes, the summary's own follow them."""
    capital = book.capital
    total = float(pos.get_column("capital_used").sum()) if pos.height else 0.0
    tier_cap = {t: float(pos.filter(pl.col("tier") == t).get_column("capital_used").sum()) for t in TIERS}
    tier_shares = {t: (v / total if total > 0 else 0.0) for t, v in tier_cap.items()}
    ind = (pos.group_by("industry").agg(pl.col("capital_used").sum(), pl.len().alias("n"))
           .sort(["capital_used", "industry"], descending=[True, False]))
    exp_inr = float(pos.get_column("expected_return").sum()) if pos.height else 0.0
    emr = exp_inr / capital
    levels = Counter(pos.get_column("fallback_level").to_list())
    unl = float(pos.filter(pl.col("unlimited_risk")).get_column("capital_used").sum()) if pos.height else 0.0
    return AllocationSummary(
        capital=capital,
        capital_used=round(total, 2),
        cash_left=round(capital - total, 2),
        deployment=total / capital,
        deployment_target=rules.deployment_target,
        meets_deployment_target=total / capital >= rules.deployment_target - 1e-9,
        positions=pos.height,
        lots=int(pos.get_column("lots").sum()) if pos.height else 0,
        tier_shares=tier_shares,
        tier_targets=dict(rules.tier_split),
        tier_positions={t: pos.filter(pl.col("tier") == t).height for t in TIERS},
        tier_capital=tier_cap,
        industry_shares={r["industry"]: r["capital_used"] / capital for r in ind.iter_rows(named=True)},
        industry_positions={r["industry"]: int(r["n"]) for r in ind.iter_rows(named=True)},
        industry_targets={k: industries.weight(k) for k in ind.get_column("industry").to_list()},
        sector_shares=_sector_shares(pos, capital),
        unlimited_risk_share=unl / capital,
        expected_monthly_return=emr,
        expected_monthly_return_inr=round(exp_inr, 2),
        target_monthly_return=rules.monthly_return_target,
        meets_return_target=emr >= rules.monthly_return_target,
        greeks={g: float(pos.get_column(g).sum()) if pos.height else 0.0 for g in GREEKS},
        fallback_levels={str(k): levels.get(k, 0) for k in FALLBACK_LEVELS},
        limits=book.limits(rules),
        market_state={"state": rules.state, "vix_band": rules.vix_band, "nifty_trend": rules.nifty_trend,
                      "pcr_sentiment": rules.pcr_sentiment},
        candidates=candidates.height,
        symbols_with_candidates=candidates.get_column("symbol").n_unique(),
        symbols_eligible=n_avail,
        excluded_reasons=reason_kinds(candidates),
        excluded_codes=code_counts(candidates),
        notes=(*notes, *_notes(pos, rules, tier_shares, emr, n_avail)),
    )
