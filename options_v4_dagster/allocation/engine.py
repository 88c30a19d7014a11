"""The portfolio allocation engine: candidates x market rules x industry views -> whole-lot positions.

:func:`allocate` works in six steps; every number it reports is computed from the candidates.

1. **Eligibility.** Each candidate's money figures are taken per lot (divided by its ``lots``, and
   rescaled when ``lot_sizes`` gives the session's lot size). *Capital per lot* is the margin
   estimate, never less than the debit of a net-debit position (so short-premium positions count
   their margin, long ones their debit). A candidate is excluded -- with the reason recorded -- when it
   has no capital figure, its industry has weight 0, its conviction is in no tier, it does not fit
   the industry view at any fallback level, its expected value is below ``min_expected_value``, or one
   lot already exceeds the per-position / per-symbol / unlimited-risk capital limit.
2. **Best strategy per symbol** with the fallback hierarchy: level 0 the market state's preferred
   strategies, 1 its preferred categories, 2 any strategy matching the industry view, 3 (if
   ``fallback_to_any``) any strategy that does not oppose the view (see :mod:`.industries`). The lowest
   level wins, then the highest total score, then the earlier preferred name, then ``strategy_id``.
3. **Tiers and slots.** The pick's conviction gives its tier (default tier1 VERY_HIGH/HIGH, tier2
   MEDIUM, tier3 LOW). ``n`` positions (``target_positions``, raised so that ``n x max_position_pct``
   reaches the deployment target, at most ``max_positions`` and the symbols available) are split
   across tiers by the tier split (largest remainder). With ``tier_demotion`` a tier short of symbols
   receives the lowest-scoring symbols of the tier above (never the reverse). Within a tier, slots go
   to industries by the Sainte-Lague rule on the industry weights (priority ``w / (2 k + 1)`` after
   ``k`` positions), each taking its symbol with the lowest fallback level, then the best score,
   among those whose lot fits the tier's remaining budget per slot (else the cheapest, if it
   overshoots the tier's budget by at most half a lot); an industry holds at most
   ``max_industry_pct x n / deployment_target`` positions, and a position is only opened when one lot
   fits the industry, unlimited-risk and portfolio limits. Slots a tier cannot fill go to the other
   tiers (within the budget the other tiers' positions do not need); positions are opened up to
   ``min_positions`` whatever the budget, when symbols allow.
4. **Sizing.** Fractional Kelly per position: ``f* = p - (1 - p) / b`` with ``p`` = POP and ``b`` = avg
   win / avg loss. The average win is the max profit (when bounded) and the average loss the one
   implied by the expected value, ``(p W - EV) / (1 - p)``, at most the max loss -- so ``f* = EV / W``,
   consistent with the strategy's expected value; with an unbounded profit the average win is implied
   instead, with both unbounded the margin stands for the loss; with no EV, ``b`` = max profit / max
   loss. A non-positive EV has no edge (``f* = 0``). ``kelly = min(kelly_cap, kelly_fraction x f*)``.
   The deployment target x capital is shared: tier budgets by the split, and within a tier in
   proportion to ``kelly_floor + kelly`` (Kelly decides *how* a tier's budget is shared, not whether
   capital is deployed: on fairly priced options full Kelly is near 0 and would leave capital idle),
   water-filled under the per-position cap. Every position starts at one lot; lots are added one at
   a time to the position furthest below its target while it is at least half a lot below, the lot
   fits every limit and the tier stays within half a lot of its budget (rounding to whole lots).
5. **Top-up.** While deployment is below the target, one lot is added to the best-scoring position
   (of the tier furthest below its share) that can take it within every limit; when none can, the
   next eligible symbol is opened (up to ``max_positions``). If the target is still missed the
   reason is reported (e.g. ``limits bind: max per position 8% x 11 positions = 88% of capital``).
6. **Expected return.** Per position, ``EV per lot x lots x (month_days / 365) / t_years``: the
   strategy's expected value over its life (to the front expiry, ``t_years``) scaled to one month,
   assuming the same edge can be re-established each period; ``t_years`` is floored at
   ``min_expiry_days`` so a trade a day from expiry is not multiplied thirty-fold. The portfolio's
   expected monthly return is the sum over positions / capital, reported against the target.

Deterministic: the same candidates (in any row order), capital and rules give the same positions.

The steps live in their own modules and :func:`allocate` runs them in order: :mod:`.candidates`
(input, per-lot figures, tier and fallback level), :mod:`.exclusions` (eligibility, with an
:class:`~.exclusions.ExclusionCode` and a text per excluded candidate or symbol), :mod:`.selection`
(best strategy per symbol, tiers and slots), :mod:`.sizing` (Kelly, tier budgets, whole lots,
top-up), :mod:`.positions` and :mod:`.summary` (the results); :mod:`.book` holds the positions being
built and the limit checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .book import Book, inr
from .candidates import GREEKS, REQUIRED, candidates_from_tables, prepare_candidates
from .config import MarketRules
from .errors import AllocationError, InsufficientCapital, NoCandidates
from .exclusions import (
    EXCLUDED_COLUMNS,
    ExclusionCode,
    excluded_symbols,
    raise_nothing_eligible,
    with_exclusions,
)
from .industries import IndustryAllocations
from .positions import FALLBACK_LEVELS, POSITION_COLUMNS, limit_breaches, positions_frame, selection_reason
from .selection import Picker, best_per_symbol, fill_slots, industry_count_cap, plan_tiers, position_count
from .sizing import shortfall_reason, size_positions, tier_budgets, top_up, with_kelly
from .summary import TIER_TOLERANCE, AllocationSummary, summarize

__all__ = [
    "FALLBACK_LEVELS", "GREEKS", "POSITION_COLUMNS", "REQUIRED", "TIER_TOLERANCE", "AllocationError",
    "AllocationResult", "AllocationSummary", "ExclusionCode", "InsufficientCapital", "NoCandidates", "allocate",
    "candidates_from_tables", "limit_breaches", "selection_reason",
]


@dataclass
class AllocationResult:
    positions: pl.DataFrame
    summary: AllocationSummary
    excluded: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=EXCLUDED_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary's fields, with ``positions`` the list of position rows (the count
        moves to ``position_count``) and ``excluded`` the symbols left out, with code and reason."""
        return {**self.summary.to_dict(), "position_count": self.summary.positions,
                "positions": self.positions.to_dicts(), "excluded": self.excluded.to_dicts()}


def allocate(candidates: pl.DataFrame, capital: float, rules: MarketRules, industries: IndustryAllocations, *,
             lot_sizes: dict[str, int] | None = None) -> AllocationResult:
    """Allocate ``capital`` (INR) across the candidates; see the module docstring.

    ``candidates``: one row per candidate (strategy_id, symbol, strategy_name, category, outlook,
    total_score, conviction, pop, max_profit, max_loss (null = unbounded), expected_value, margin,
    net_premium, lot_size, lots, industry, unlimited_risk, t_years, delta, gamma, theta, vega), money
    and greeks for ``lots`` lots (normally 1). ``lot_sizes``: the session's lot size per symbol.

    Raises :class:`NoCandidates` (empty or nothing eligible) and :class:`InsufficientCapital` (no
    whole lot fits the capital and limits)."""
    if candidates is None or candidates.height == 0:
        raise NoCandidates("no strategy candidates to allocate: run strategy creation for the session first")
    if not (isinstance(capital, int | float) and math.isfinite(capital) and capital > 0):
        raise AllocationError(f"capital must be a positive amount of INR, got {capital!r}")
    capital = float(capital)
    book = Book(capital, rules)
    deploy = rules.deployment_target * capital

    # 1. eligibility
    c = with_kelly(prepare_candidates(candidates, rules, industries, lot_sizes), rules)
    c = with_exclusions(c, rules, book)
    eligible = c.filter(pl.col("_reason").is_null())
    if eligible.height == 0:
        raise_nothing_eligible(c, capital, book)

    # 2. best strategy per symbol; 3. tiers, slots, selection
    picks = best_per_symbol(eligible)
    n = position_count(rules, len(picks))
    plan = plan_tiers(picks, n, rules)
    notes = list(plan.notes)
    picker = Picker(book, plan, industry_count_cap(rules, n))
    fill_slots(picker, rules, plan.slots, n, deploy)
    if not book.positions:
        cheapest = min(plan.rows, key=lambda r: (r["capital_per_lot"], r["strategy_id"]))
        raise InsufficientCapital(
            f"capital {inr(capital)} cannot hold one whole lot of any eligible candidate within the limits: "
            f"the cheapest, {cheapest['symbol']} {cheapest['strategy_name']}, needs margin "
            f"{inr(cheapest['capital_per_lot'])} per lot")

    # 4. sizing; 5. top-up
    budgets = tier_budgets(book, rules)
    if budgets.note:
        notes.append(budgets.note)
    size_positions(book, rules, budgets.split, deploy)
    top_up(book, picker, rules, budgets.split, deploy)
    if book.total() / capital < rules.deployment_target - 1e-9:
        notes.append(shortfall_reason(book, rules, picker))

    # 6. results
    positions = positions_frame(book, rules)
    summary = summarize(book, positions, rules, industries, c, len(picks), notes)
    excluded = excluded_symbols(c, plan.rows, picker.used, picker.skipped)
    return AllocationResult(positions=positions, summary=summary, excluded=excluded)
