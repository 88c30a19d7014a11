"""Which symbols get a position: the best strategy per symbol, the number of positions, the tier
slots (with demotion) and the Sainte-Lague choice of industries within each tier.

:func:`best_per_symbol` -> :func:`position_count` -> :func:`plan_tiers` (a frozen :class:`TierPlan`)
-> :func:`fill_slots`, which opens positions in the :class:`~.book.Book` through a :class:`Picker`
(the picker also serves the deployment top-up, which may open more).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import polars as pl

from .book import Book, Holding, Limit
from .config import TIERS, MarketRules

__all__ = ["Picker", "TierPlan", "best_per_symbol", "fill_slots", "industry_count_cap", "largest_remainder",
           "plan_tiers", "position_count"]


def best_per_symbol(eligible: pl.DataFrame) -> list[dict]:
    """Each symbol's pick among its eligible candidates -- lowest fallback level, then highest score,
    then the earlier preferred name, then ``strategy_id`` -- best score first."""
    picks = (eligible.sort(["symbol", "fallback_level", "total_score", "_pref_rank", "strategy_id"],
                           descending=[False, False, True, False, False])
             .unique("symbol", keep="first", maintain_order=True))
    return picks.sort(["total_score", "strategy_id"], descending=[True, False]).to_dicts()


def position_count(rules: MarketRules, available: int) -> int:
    """``target_positions``, raised so that ``n x max_position_pct`` reaches the deployment target
    (at most ``max_positions``), at most the symbols available."""
    lim = rules.position_limits
    n = lim.target_positions  # min_positions <= target_positions <= max_positions (checked on load)
    if n * lim.max_position_pct < rules.deployment_target:
        n = min(lim.max_positions, math.ceil(rules.deployment_target / lim.max_position_pct - 1e-9))
    return min(n, available)


def industry_count_cap(rules: MarketRules, n: int) -> int:
    """The most positions one industry may hold: ``max_industry_pct x n / deployment_target``."""
    return max(1, math.floor(rules.position_limits.max_industry_pct * max(n, 1) / rules.deployment_target + 1e-9))


def largest_remainder(n: int, shares: dict[str, float]) -> dict[str, int]:
    """``n`` split by ``shares`` in whole numbers (largest remainder; ties in tier order)."""
    raw = {t: n * s for t, s in shares.items()}
    out = {t: int(math.floor(v)) for t, v in raw.items()}
    rest = n - sum(out.values())
    for t in sorted(raw, key=lambda t: (-(raw[t] - out[t]), TIERS.index(t)))[:rest]:
        out[t] += 1
    return out


@dataclass(frozen=True)
class TierPlan:
    """The picks with their final tier, the slots per tier, who was demoted from where, and notes."""

    rows: list[dict]
    slots: dict[str, int]
    demoted: dict[str, str]
    notes: tuple[str, ...] = ()


def plan_tiers(picks: list[dict], n: int, rules: MarketRules) -> TierPlan:
    """Split ``n`` positions across tiers by the tier split; with ``tier_demotion`` a tier short of
    symbols receives the lowest-scoring symbols of the tier above (never the reverse)."""
    rows = [dict(r) for r in picks]  # the tier of a demoted pick changes: the caller's rows stay as they are
    tier_rows: dict[str, list[dict]] = {t: [r for r in rows if r["tier"] == t] for t in TIERS}
    slots = largest_remainder(n, rules.tier_split)
    demoted: dict[str, str] = {}
    notes: list[str] = []
    if rules.tier_demotion:
        for _ in range(len(TIERS)):
            moved = False
            for upper, lower in (("tier2", "tier3"), ("tier1", "tier2")):
                need = slots[lower] - len(tier_rows[lower])
                spare = len(tier_rows[upper]) - slots[upper]
                k = min(need, spare)
                if k > 0 and rules.tier_split[lower] > 0:
                    moving = tier_rows[upper][-k:]  # lowest scores (rows are sorted best first)
                    tier_rows[upper] = tier_rows[upper][:-k]
                    for r in moving:
                        demoted.setdefault(r["strategy_id"], upper)
                        r["tier"] = lower
                    tier_rows[lower] = sorted(tier_rows[lower] + moving,
                                              key=lambda r: (-r["total_score"], r["strategy_id"]))
                    notes.append(f"{lower}: {k} symbol(s) moved down from {upper} (too few "
                                 f"{'/'.join(rules.tier_convictions[lower]) or 'eligible'} candidates)")
                    moved = True
            if not moved:
                break
    return TierPlan(rows=rows, slots=slots, demoted=demoted, notes=tuple(notes))


def _order(r: dict) -> tuple:
    return (r["fallback_level"], -r["total_score"], r["strategy_id"])


class Picker:
    """Chooses the next symbol to open and opens it; remembers what is used and what was skipped
    (one lot broke a limit) for the top-up and the exclusion report."""

    def __init__(self, book: Book, plan: TierPlan, industry_cap: int) -> None:
        self.book = book
        self.rows = plan.rows
        self.demoted = plan.demoted
        self.industry_cap = industry_cap
        self.used: set[str] = set()
        self.skipped: dict[str, Limit] = {}
        self.industry_count: Counter[str] = Counter()

    def choose(self, tier: str | None, count_guard: bool, allowance: float | None,
               room: float | None = None) -> dict | None:
        """The next symbol: Sainte-Lague over industry weights among the picks whose lot fits the
        per-slot allowance (an industry offers its lowest-fallback, best-scoring pick); when no lot
        fits, the cheapest pick -- if it overshoots the budget ``room`` by at most half its lot. A pick
        one lot of which breaks a limit is skipped for good."""
        book, count = self.book, self.industry_count
        while True:
            pool = [r for r in self.rows if r["strategy_id"] not in self.used and r["strategy_id"] not in self.skipped
                    and (tier is None or r["tier"] == tier)
                    and not (count_guard and count[r["industry"]] >= self.industry_cap)]
            if not pool:
                return None
            afford = [r for r in pool if allowance is None or r["capital_per_lot"] <= allowance + book.eps]
            if afford:
                best_by_ind: dict[str, dict] = {}
                for r in sorted(afford, key=_order):
                    best_by_ind.setdefault(r["industry"], r)
                ind = min(best_by_ind, key=lambda i: (-best_by_ind[i]["industry_weight"] / (2 * count[i] + 1),
                                                       _order(best_by_ind[i]), i))
                r = best_by_ind[ind]
            else:
                r = min(pool, key=lambda r: (r["capital_per_lot"], *_order(r)))
                if room is not None and r["capital_per_lot"] > 2 * room + book.eps:
                    return None
            why = book.blocker(r, r["capital_per_lot"])
            if why is None:
                return r
            self.skipped[r["strategy_id"]] = why

    def open(self, r: dict) -> None:
        """Open one lot of ``r`` in the book."""
        self.used.add(r["strategy_id"])
        self.industry_count[r["industry"]] += 1
        self.book.positions.append(Holding(row=r, tier=r["tier"], demoted_from=self.demoted.get(r["strategy_id"])))


def _reserved(book: Book, budget: dict[str, float], but: str) -> float:
    """Unspent budget of the tiers other than ``but`` that their open positions can still absorb."""
    out = 0.0
    for t in TIERS:
        held = [p for p in book.positions if p.tier == t]
        if t != but and held:
            spent = sum(p.capital for p in held)
            out += max(0.0, min(budget[t] - spent, sum(book.room_cap - p.capital for p in held)))
    return out


def fill_slots(picker: Picker, rules: MarketRules, slots: dict[str, int], n: int, deploy: float) -> None:
    """Open the tiers' slots within their budgets (``tier_split x deploy``); slots a tier cannot fill
    go to the other tiers, within the budget the other tiers' positions do not need; then positions
    are opened up to ``min_positions`` whatever the budget, when symbols allow."""
    book = picker.book
    budget = {t: rules.tier_split[t] * deploy for t in TIERS}
    for t in TIERS:
        for k in range(slots[t]):
            left = max(0.0, budget[t] - book.tier_capital(t))
            r = picker.choose(t, True, left / (slots[t] - k), left)
            if r is None:
                break
            picker.open(r)
    upto_min = min(n, rules.position_limits.min_positions)
    for guard, upto, budgeted in ((True, n, True), (False, n, True), (False, upto_min, False)):
        for t in TIERS:
            while len(book.positions) < upto:
                free = max(0.0, deploy - book.total() - _reserved(book, budget, t))
                r = picker.choose(t, guard, free / (upto - len(book.positions)), free if budgeted else None)
                if r is None:
                    break
                picker.open(r)
