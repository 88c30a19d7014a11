"""How many lots each position holds: fractional Kelly, tier budgets, targets and whole lots, then
the deployment top-up.

* :func:`kelly_fractions` -- fractional capped Kelly and the payoff ratio per candidate;
* :func:`tier_budgets` -- the tier split over the tiers that hold positions (a frozen :class:`TierBudgets`);
* :func:`size_positions` -- targets (the deployed capital shared within a tier in proportion to
  ``kelly_floor + kelly``, water-filled under the per-position cap), limits enforced, whole lots
  rounded towards the targets;
* :func:`top_up` -- lots (or new positions) added while deployment is below the target;
  :func:`shortfall_reason` says why when it stays below.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import polars as pl

from .book import Book, Holding, pct
from .config import TIERS, MarketRules
from .selection import Picker

__all__ = ["TierBudgets", "kelly_fractions", "shortfall_reason", "size_positions", "tier_budgets", "top_up",
           "waterfill", "with_kelly"]


def kelly_fractions(c: pl.DataFrame, rules: MarketRules) -> tuple[np.ndarray, np.ndarray]:
    """(fractional capped Kelly, payoff ratio b) per candidate; see :mod:`.engine`'s docstring."""
    p = np.clip(c.get_column("pop").fill_null(np.nan).to_numpy().astype(float), 0.0, 1.0)
    q = 1.0 - p
    w = c.get_column("max_profit").fill_null(np.nan).to_numpy().astype(float)
    loss = c.get_column("max_loss").fill_null(np.nan).to_numpy().astype(float)
    ev = c.get_column("expected_value").fill_null(np.nan).to_numpy().astype(float)
    margin = c.get_column("capital_per_lot").fill_null(np.nan).to_numpy().astype(float)
    w = np.where(np.isfinite(w) & (w > 0), w, np.nan)
    loss = np.where(np.isfinite(loss) & (loss > 0), loss, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        has_ev = np.isfinite(ev)
        # loss implied by the EV when the win is known, at most the max loss
        l_imp = np.where(q > 0, (p * w - ev) / q, np.nan)
        l_eff = np.where(np.isfinite(loss), np.minimum(l_imp, loss), l_imp)
        l_src = np.where(np.isfinite(loss), loss, margin)
        w_imp = np.where(p > 0, (ev + q * l_src) / p, np.nan)
        w_eff = np.where(np.isfinite(w), w, w_imp)
        l_eff = np.where(np.isfinite(w), l_eff, l_src)
        b = np.where(has_ev, w_eff / l_eff, w / loss)
        full = np.where(np.isfinite(b) & (b > 0), p - q / b, np.nan)
        full = np.where(has_ev & np.isfinite(w) & np.isfinite(l_imp) & (l_imp <= 0), p, full)  # no implied loss
    full = np.where(np.isfinite(full), full, 0.0)
    full = np.where(has_ev & (ev <= 0), 0.0, full)
    k = np.minimum(rules.risk_limits.kelly_cap, rules.risk_limits.kelly_fraction * np.maximum(full, 0.0))
    return k, np.where(np.isfinite(b), b, np.nan)


def with_kelly(c: pl.DataFrame, rules: MarketRules) -> pl.DataFrame:
    """The candidates with ``kelly_fraction`` and ``payoff_ratio``."""
    kelly, b = kelly_fractions(c, rules)
    return c.with_columns(kelly_fraction=pl.Series(kelly), payoff_ratio=pl.Series(b))


def waterfill(budget: float, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Share ``budget`` in proportion to ``weights`` with per-item ``caps`` (excess re-shared)."""
    out = np.zeros_like(weights, dtype=float)
    free = np.ones_like(weights, dtype=bool)
    left = budget
    for _ in range(len(weights) + 1):
        wsum = weights[free].sum()
        if left <= 1e-9 or not free.any() or wsum <= 0:
            break
        share = np.where(free, left * weights / wsum, 0.0)
        over = free & (out + share > caps)
        if not over.any():
            out += share
            break
        left -= (caps[over] - out[over]).sum()
        out[over] = caps[over]
        free &= ~over
    return out


@dataclass(frozen=True)
class TierBudgets:
    """The tier split over the tiers holding positions (renormalized), and the tiers left empty."""

    split: dict[str, float]
    lost: tuple[str, ...] = ()

    @property
    def note(self) -> str | None:
        if not self.lost:
            return None
        return f"no position in {', '.join(self.lost)}: its share of the split went to the other tiers"


def tier_budgets(book: Book, rules: MarketRules) -> TierBudgets:
    """The 60/30/10 (configured) split, a tier without positions giving its share to the others."""
    present = {t for t in TIERS if any(p.tier == t for p in book.positions)}
    split = {t: (rules.tier_split[t] if t in present else 0.0) for t in TIERS}
    lost = tuple(t for t in TIERS if rules.tier_split[t] > 0 and t not in present)
    ssum = sum(split.values()) or 1.0
    return TierBudgets(split={t: v / ssum for t, v in split.items()}, lost=lost)


def position_targets(book: Book, rules: MarketRules, split: dict[str, float], deploy: float) -> np.ndarray:
    """Capital target per position: ``deploy`` by the split, within a tier in proportion to
    ``kelly_floor + kelly`` (equal shares when the tier has no weight), under the per-position cap."""
    kw = np.array([rules.risk_limits.kelly_floor + p.row["kelly_fraction"] for p in book.positions], dtype=float)
    tiers_arr = np.array([p.tier for p in book.positions])
    wts = np.zeros(len(kw))
    for t in TIERS:
        in_t = tiers_arr == t
        if not in_t.any():
            continue
        k_t = kw[in_t] if kw[in_t].sum() > 0 else np.ones(int(in_t.sum()))  # no edge anywhere: equal shares
        wts[in_t] = split[t] * k_t / k_t.sum()
    caps = np.array([book.room_cap for _ in book.positions])
    return waterfill(deploy, wts, caps)


def size_positions(book: Book, rules: MarketRules, split: dict[str, float], deploy: float) -> None:
    """Set every position's target, start it at one lot, enforce the group limits, then add lots
    towards the targets (see :func:`_trim` and :func:`_fill_to_targets`)."""
    for p, tgt in zip(book.positions, position_targets(book, rules, split, deploy), strict=True):
        p.target, p.lots = float(tgt), 1
    _trim(book)
    _fill_to_targets(book)


def _trim(book: Book) -> None:
    """Remove lots (from the positions most above target) until industry, unlimited-risk and
    portfolio limits hold; a position at one lot that still breaks a limit is dropped."""
    def over(group: list[Holding], cap: float) -> bool:
        return sum(p.capital for p in group) > cap + book.eps

    for _ in range(100_000):
        groups: list[tuple[list[Holding], float]] = []
        for ind in sorted({p.row["industry"] for p in book.positions}):
            groups.append(([p for p in book.positions if p.row["industry"] == ind], book.cap_industry))
        groups.append(([p for p in book.positions if p.row["unlimited_risk"]], book.cap_unlimited))
        groups.append((list(book.positions), book.cap_portfolio))
        bad = next((g for g, cap in groups if over(g, cap)), None)
        if bad is None:
            return
        reducible = [p for p in bad if p.lots > 1]
        if reducible:
            p = max(reducible, key=lambda p: (p.capital - p.target - p.m / 2, -p.row["total_score"],
                                              p.row["strategy_id"]))
            p.lots -= 1
        else:
            p = min(bad, key=lambda p: (p.row["total_score"], p.row["strategy_id"]))
            book.positions.remove(p)


def _fill_to_targets(book: Book) -> None:
    """Add lots one at a time to the position furthest below its target (in lots) while that is at
    least half a lot, the lot fits every limit and its tier stays within half a lot of the tier's
    total target: rounding to the nearest whole lot, within limits and tier budgets."""
    tier_target = {t: sum(p.target for p in book.positions if p.tier == t) for t in TIERS}
    for _ in range(1_000_000):
        tier_cap = {t: book.tier_capital(t) for t in TIERS}
        best, best_gap = None, 0.5
        for p in book.positions:
            gap = (p.target - p.capital) / p.m
            if gap >= best_gap - 1e-12 and tier_cap[p.tier] + p.m / 2 <= tier_target[p.tier] + book.eps \
                    and book.blocker(p.row, p.m, own=p) is None:
                if best is None or (gap, p.row["total_score"]) > (best_gap, best.row["total_score"]):
                    best, best_gap = p, gap
        if best is None:
            return
        best.lots += 1


def _add_lot(book: Book, split: dict[str, float]) -> bool:
    """One lot more for the best-scoring position (of the tier furthest below its share) that can
    take it within every limit; False when none can."""
    total = book.total()
    tier_cap = {t: book.tier_capital(t) for t in TIERS}
    addable = [p for p in book.positions if book.blocker(p.row, p.m, own=p) is None]
    if not addable:
        return False
    present = sorted({p.tier for p in addable},
                     key=lambda t: (-(split[t] - (tier_cap[t] / total if total > 0 else 0.0)), TIERS.index(t)))
    tier = present[0]
    p = min((p for p in addable if p.tier == tier), key=lambda p: (-p.row["total_score"], p.row["strategy_id"]))
    p.lots += 1
    return True


def top_up(book: Book, picker: Picker, rules: MarketRules, split: dict[str, float], deploy: float) -> None:
    """While deployment is below ``deploy``: one lot more (:func:`_add_lot`), else the next eligible
    symbol opened (up to ``max_positions``), else stop."""
    for _ in range(100_000):
        if book.total() >= deploy - book.eps:
            break
        if _add_lot(book, split):
            continue
        if len(book.positions) < rules.position_limits.max_positions:
            r = picker.choose(None, False, max(0.0, deploy - book.total()))
            if r is not None:
                picker.open(r)
                continue
        break


def shortfall_reason(book: Book, rules: MarketRules, picker: Picker) -> str:
    """Why deployment stays below the target: the limits that bind and what is left to open."""
    lim = rules.position_limits
    n = len(book.positions)
    total = book.total()
    parts = [f"deployment {pct(total / book.capital)} is below the {pct(rules.deployment_target)} target"]
    if n * lim.max_position_pct < rules.deployment_target:
        parts.append(f"limits bind: max per position {pct(lim.max_position_pct)} x {n} positions = "
                     f"{pct(n * lim.max_position_pct)} of capital")
    blockers = Counter(book.blocker(p.row, p.m, own=p) or "none" for p in book.positions)
    names = book.limit_names(rules)
    held = ", ".join(f"{names[k]} ({v})" for k, v in blockers.most_common() if k in names)
    if held:
        parts.append(f"no position can take another whole lot: {held}")
    rows = picker.rows
    unused = [r for r in rows if r["strategy_id"] not in picker.used]
    if n >= lim.max_positions:
        parts.append(f"max_positions {lim.max_positions} reached")
    elif not unused:
        parts.append(f"every eligible symbol is used ({len(rows)} symbols have an eligible candidate)")
    else:
        parts.append(f"none of the {len(unused)} unused eligible symbols fits one more whole lot within the limits")
    return "; ".join(parts)
