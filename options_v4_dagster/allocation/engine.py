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
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ..errors import OptionsV4Error
from .config import TIERS, MarketRules
from .industries import UNCLASSIFIED, IndustryAllocations, sector_of, view_match_exprs

__all__ = [
    "AllocationError", "AllocationResult", "InsufficientCapital", "NoCandidates", "POSITION_COLUMNS", "allocate",
    "candidates_from_tables", "limit_breaches",
]

TIER_TOLERANCE = 0.05
REQUIRED = ("strategy_id", "symbol", "strategy_name", "total_score", "conviction", "margin")
_OPTIONAL: dict[str, pl.DataType] = {
    "category": pl.Utf8, "outlook": pl.Utf8, "pop": pl.Float64, "max_profit": pl.Float64, "max_loss": pl.Float64,
    "expected_value": pl.Float64, "net_premium": pl.Float64, "lot_size": pl.Int64, "lots": pl.Float64,
    "industry": pl.Utf8, "unlimited_risk": pl.Boolean, "t_years": pl.Float64, "delta": pl.Float64,
    "gamma": pl.Float64, "theta": pl.Float64, "vega": pl.Float64,
}
_MONEY = ("max_profit", "max_loss", "expected_value", "net_premium", "margin", "delta", "gamma", "theta", "vega")
GREEKS = ("delta", "gamma", "theta", "vega")

POSITION_COLUMNS: dict[str, pl.DataType] = {
    "position_id": pl.Utf8, "strategy_id": pl.Utf8, "symbol": pl.Utf8, "strategy_name": pl.Utf8,
    "tier": pl.Utf8, "industry": pl.Utf8, "lots": pl.Int64, "capital_used": pl.Float64,
    "expected_return": pl.Float64, "weight": pl.Float64, "kelly_fraction": pl.Float64,
    "fallback_level": pl.Int64, "selection_reason": pl.Utf8,
    # context
    "sector": pl.Utf8, "position_type": pl.Utf8, "category": pl.Utf8, "outlook": pl.Utf8,
    "conviction": pl.Utf8, "total_score": pl.Float64, "demoted_from": pl.Utf8, "lot_size": pl.Int64,
    "quantity": pl.Int64, "margin_per_lot": pl.Float64, "pop": pl.Float64, "payoff_ratio": pl.Float64,
    "expected_value": pl.Float64, "max_loss": pl.Float64, "unlimited_risk": pl.Boolean, "t_years": pl.Float64,
    "delta": pl.Float64, "gamma": pl.Float64, "theta": pl.Float64, "vega": pl.Float64,
}
#: ``selection_reason`` of a position starts with the label of its fallback level (see :func:`selection_reason`)
FALLBACK_LEVELS = {0: "preferred strategy", 1: "preferred category", 2: "matches the industry view",
                   3: "any strategy not opposing the view"}


class AllocationError(OptionsV4Error):
    """The allocation cannot be made from these inputs."""


class InsufficientCapital(AllocationError):
    """The capital cannot pay for one whole lot of any eligible candidate within the limits."""


class NoCandidates(AllocationError):
    """There are no strategy candidates (or none is eligible) to allocate."""


@dataclass
class AllocationResult:
    positions: pl.DataFrame
    summary: dict[str, Any]
    excluded: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"symbol": pl.Utf8,
                                                                                  "industry": pl.Utf8,
                                                                                  "reason": pl.Utf8}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary's keys, with ``positions`` the list of position rows (the count
        moves to ``position_count``) and ``excluded`` the symbols left out and why."""
        return {**self.summary, "position_count": self.summary.get("positions"),
                "positions": self.positions.to_dicts(), "excluded": self.excluded.to_dicts()}


# --------------------------------------------------------------------------------------------
# input

def candidates_from_tables(strategies: pl.DataFrame, parameters: pl.DataFrame, universe: pl.DataFrame | None = None,
                           *, risk_tolerance: str | None = None) -> pl.DataFrame:
    """The candidates frame :func:`allocate` takes, from the ``strategies`` and ``strategy_parameters``
    tables (``t_years`` = ``pop_t_years``) and a universe frame (symbol, industry) for the industry."""
    s = strategies
    if risk_tolerance is not None and "risk_tolerance" in s.columns:
        s = s.filter(pl.col("risk_tolerance") == risk_tolerance)
    keep_s = [c for c in ("strategy_id", "symbol", "strategy_name", "category", "outlook", "total_score",
                          "conviction", "unlimited_risk", "lots", "lot_size") if c in s.columns]
    p = parameters
    if "pop_t_years" in p.columns and "t_years" not in p.columns:
        p = p.rename({"pop_t_years": "t_years"})
    keep_p = [c for c in ("strategy_id", "pop", "max_profit", "max_loss", "expected_value", "margin", "net_premium",
                          "t_years", *GREEKS) if c in p.columns]
    out = s.select(keep_s).join(p.select(keep_p), on="strategy_id", how="inner")
    if universe is not None and "industry" in universe.columns:
        out = out.join(universe.select("symbol", "industry").unique("symbol", keep="first"), on="symbol", how="left")
    return out.sort("strategy_id")


def _prepare(candidates: pl.DataFrame, rules: MarketRules, industries: IndustryAllocations,
             lot_sizes: dict[str, int] | None) -> pl.DataFrame:
    missing = [c for c in REQUIRED if c not in candidates.columns]
    if missing:
        raise AllocationError(f"candidates frame lacks column(s) {', '.join(missing)}")
    c = candidates
    for col, dtype in _OPTIONAL.items():
        if col not in c.columns:
            c = c.with_columns(pl.lit(None, dtype=dtype).alias(col))
    c = c.with_columns(
        pl.col("strategy_id").cast(pl.Utf8), pl.col("symbol").cast(pl.Utf8).str.to_uppercase(),
        pl.col("strategy_name").cast(pl.Utf8), pl.col("conviction").cast(pl.Utf8).str.to_uppercase(),
        pl.col("total_score").cast(pl.Float64), pl.col("margin").cast(pl.Float64),
        *[pl.col(k).cast(v) for k, v in _OPTIONAL.items() if k not in ("lot_size", "unlimited_risk")],
        pl.col("lot_size").cast(pl.Int64, strict=False),
        pl.col("unlimited_risk").cast(pl.Boolean, strict=False),
    )
    if c.get_column("strategy_id").is_duplicated().any():
        dup = c.filter(pl.col("strategy_id").is_duplicated()).get_column("strategy_id").head(3).to_list()
        raise AllocationError(f"candidates repeat strategy_id(s) {dup}")
    # per-lot money and greeks; the session's lot size when given
    scale = 1.0 / pl.when(pl.col("lots").is_null() | (pl.col("lots") <= 0)).then(1.0).otherwise(pl.col("lots"))
    if lot_sizes:
        ls = pl.DataFrame({"symbol": [str(k).upper() for k in lot_sizes],
                           "_ls": [int(v) for v in lot_sizes.values()]}, schema={"symbol": pl.Utf8, "_ls": pl.Int64})
        c = c.join(ls, on="symbol", how="left")
        ratio = pl.when(pl.col("_ls").is_not_null() & (pl.col("lot_size") > 0)) \
            .then(pl.col("_ls") / pl.col("lot_size")).otherwise(1.0)
        c = c.with_columns(_scale=scale * ratio,
                           lot_size=pl.coalesce(pl.col("_ls"), pl.col("lot_size"))).drop("_ls")
    else:
        c = c.with_columns(_scale=scale)
    c = c.with_columns([(pl.col(k) * pl.col("_scale")).alias(k) for k in _MONEY]).drop("_scale")
    # industry, view, weight
    sym_ind = industries.symbol_industry
    if sym_ind:
        m = pl.DataFrame({"symbol": list(sym_ind), "_ind": list(sym_ind.values())},
                         schema={"symbol": pl.Utf8, "_ind": pl.Utf8})
        c = c.join(m, on="symbol", how="left").with_columns(
            industry=pl.coalesce(pl.col("industry"), pl.col("_ind"))).drop("_ind")
    c = c.with_columns(pl.col("industry").fill_null(UNCLASSIFIED))
    inds = sorted(set(c.get_column("industry").to_list()))
    c = c.join(pl.DataFrame({"industry": inds, "position_type": [industries.position_type(i) for i in inds],
                             "industry_weight": [industries.weight(i) for i in inds]},
                            schema={"industry": pl.Utf8, "position_type": pl.Utf8, "industry_weight": pl.Float64}),
               on="industry", how="left")
    debit = pl.when(pl.col("net_premium") < 0).then(-pl.col("net_premium")).otherwise(0.0)
    c = c.with_columns(
        capital_per_lot=pl.max_horizontal(pl.col("margin"), debit),
        unlimited_risk=pl.coalesce(pl.col("unlimited_risk"), pl.col("max_loss").is_null()),
    )
    tier_of = {lvl: t for t, lvls in rules.tier_convictions.items() for lvl in lvls}
    c = c.with_columns(tier=pl.col("conviction").replace_strict(tier_of, default=None, return_dtype=pl.Utf8))
    matches, opposes = view_match_exprs()
    pref_names = list(rules.preferred_strategies)
    level = (pl.when(matches & pl.col("strategy_name").is_in(pref_names)).then(0)
             .when(matches & pl.col("category").is_in(list(rules.preferred_categories))).then(1)
             .when(matches).then(2)
             .when(~opposes & pl.lit(rules.fallback_to_any)).then(3)
             .otherwise(None))
    rank = {n: i for i, n in enumerate(pref_names)}
    c = c.with_columns(fallback_level=level.cast(pl.Int64), _opposes=opposes,
                       _pref_rank=pl.col("strategy_name").replace_strict(rank, default=len(rank), return_dtype=pl.Int64))
    return c.sort("strategy_id")


def _kelly(c: pl.DataFrame, rules: MarketRules) -> tuple[np.ndarray, np.ndarray]:
    """(fractional capped Kelly, payoff ratio b) per candidate; see the module docstring."""
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


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def _pct(x: float) -> str:
    return f"{100 * x:.4g}%"


# --------------------------------------------------------------------------------------------
# engine

@dataclass
class _Pos:
    row: dict
    tier: str
    lots: int = 1
    target: float = 0.0
    demoted_from: str | None = None

    @property
    def m(self) -> float:
        return float(self.row["capital_per_lot"])

    @property
    def capital(self) -> float:
        return self.lots * self.m


class _Book:
    """The positions being built and the limit checks on them."""

    def __init__(self, capital: float, rules: MarketRules) -> None:
        pl_, rk = rules.position_limits, rules.risk_limits
        self.capital = capital
        self.cap_position = pl_.max_position_pct * capital
        self.cap_symbol = pl_.max_symbol_pct * capital
        self.cap_industry = pl_.max_industry_pct * capital
        self.cap_portfolio = rk.max_portfolio_margin_pct * capital
        self.cap_unlimited = rk.max_unlimited_risk_pct * capital
        self.positions: list[_Pos] = []
        self.eps = 1e-6 * max(capital, 1.0)

    def total(self) -> float:
        return sum(p.capital for p in self.positions)

    def by(self, key: str, value: Any) -> float:
        return sum(p.capital for p in self.positions if p.row[key] == value)

    def unlimited(self) -> float:
        return sum(p.capital for p in self.positions if p.row["unlimited_risk"])

    def blocker(self, row: dict, extra: float, own: _Pos | None = None) -> str | None:
        """Which limit adding ``extra`` capital to ``row``'s position would break (None = fits)."""
        e = self.eps
        pos_cap = (own.capital if own else 0.0) + extra
        if pos_cap > self.cap_position + e:
            return "position"
        if self.by("symbol", row["symbol"]) + extra > self.cap_symbol + e:
            return "symbol"
        if self.by("industry", row["industry"]) + extra > self.cap_industry + e:
            return "industry"
        if row["unlimited_risk"] and self.unlimited() + extra > self.cap_unlimited + e:
            return "unlimited_risk"
        if self.total() + extra > self.cap_portfolio + e:
            return "portfolio"
        return None


def _largest_remainder(n: int, shares: dict[str, float]) -> dict[str, int]:
    raw = {t: n * s for t, s in shares.items()}
    out = {t: int(math.floor(v)) for t, v in raw.items()}
    rest = n - sum(out.values())
    for t in sorted(raw, key=lambda t: (-(raw[t] - out[t]), TIERS.index(t)))[:rest]:
        out[t] += 1
    return out


def _waterfill(budget: float, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
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
    notes: list[str] = []
    lim, risk = rules.position_limits, rules.risk_limits
    c = _prepare(candidates, rules, industries, lot_sizes)
    kelly, b = _kelly(c, rules)
    c = c.with_columns(kelly_fraction=pl.Series(kelly), payoff_ratio=pl.Series(b))
    book = _Book(capital, rules)
    per_lot_cap = min(book.cap_position, book.cap_symbol, book.cap_portfolio)

    # 1. eligibility -------------------------------------------------------------------------------
    mev = risk.min_expected_value
    reason = (
        pl.when(pl.col("capital_per_lot").is_null() | ~(pl.col("capital_per_lot") > 0))
        .then(pl.lit("no margin or debit figure"))
        .when(~(pl.col("industry_weight") > 0)).then(pl.format("industry {} has weight 0", "industry"))
        .when(pl.col("tier").is_null()).then(pl.format("conviction {} is in no tier", "conviction"))
        .when(pl.col("fallback_level").is_null() & pl.col("_opposes"))
        .then(pl.format("{} opposes the {} view of {}", "strategy_name", "position_type", "industry"))
        .when(pl.col("fallback_level").is_null()).then(pl.format("{} does not fit the {} view", "strategy_name",
                                                                  "position_type"))
        .when(pl.lit(mev is not None) & (pl.col("expected_value").fill_null(-np.inf) < (mev or 0.0)))
        .then(pl.lit(f"expected value below {mev}"))
        .when(pl.col("capital_per_lot") > per_lot_cap + book.eps)
        .then(pl.format("1 lot needs {} > max per position {}", pl.col("capital_per_lot").round(0),
                        pl.lit(round(per_lot_cap))))
        .when(pl.col("unlimited_risk") & (pl.col("capital_per_lot") > book.cap_unlimited + book.eps))
        .then(pl.lit(f"unbounded loss and 1 lot exceeds the unlimited-risk limit {_fmt(book.cap_unlimited)}"))
        .otherwise(None)
    )
    c = c.with_columns(_reason=reason)
    eligible = c.filter(pl.col("_reason").is_null())
    if eligible.height == 0:
        _raise_nothing_eligible(c, capital, book, per_lot_cap)

    # 2. best strategy per symbol ------------------------------------------------------------------
    picks = (eligible.sort(["symbol", "fallback_level", "total_score", "_pref_rank", "strategy_id"],
                           descending=[False, False, True, False, False])
             .unique("symbol", keep="first", maintain_order=True))
    picks = picks.sort(["total_score", "strategy_id"], descending=[True, False])
    rows = picks.to_dicts()

    # 3. tiers, slots, selection -------------------------------------------------------------------
    n_avail = len(rows)
    n = lim.target_positions  # min_positions <= target_positions <= max_positions (checked on load)
    if n * lim.max_position_pct < rules.deployment_target:
        n = min(lim.max_positions, math.ceil(rules.deployment_target / lim.max_position_pct - 1e-9))
    n = min(n, n_avail)
    tier_rows: dict[str, list[dict]] = {t: [r for r in rows if r["tier"] == t] for t in TIERS}
    slots = _largest_remainder(n, rules.tier_split)
    demoted: dict[str, str] = {}
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
    ind_count_cap = max(1, math.floor(lim.max_industry_pct * max(n, 1) / rules.deployment_target + 1e-9))
    deploy = rules.deployment_target * capital
    used: set[str] = set()
    skipped: dict[str, str] = {}
    ind_count: Counter[str] = Counter()

    def order(r: dict) -> tuple:
        return (r["fallback_level"], -r["total_score"], r["strategy_id"])

    def choose(tier: str | None, count_guard: bool, allowance: float | None,
               room: float | None = None) -> dict | None:
        """The next symbol: Sainte-Lague over industry weights among the picks whose lot fits the
        per-slot allowance (an industry offers its lowest-fallback, best-scoring pick); when no lot
        fits, the cheapest pick -- if it overshoots the budget ``room`` by at most half its lot. A pick
        one lot of which breaks a limit is skipped for good."""
        while True:
            pool = [r for r in rows if r["strategy_id"] not in used and r["strategy_id"] not in skipped
                    and (tier is None or r["tier"] == tier)
                    and not (count_guard and ind_count[r["industry"]] >= ind_count_cap)]
            if not pool:
                return None
            afford = [r for r in pool if allowance is None or r["capital_per_lot"] <= allowance + book.eps]
            if afford:
                best_by_ind: dict[str, dict] = {}
                for r in sorted(afford, key=order):
                    best_by_ind.setdefault(r["industry"], r)
                ind = min(best_by_ind, key=lambda i: (-best_by_ind[i]["industry_weight"] / (2 * ind_count[i] + 1),
                                                       order(best_by_ind[i]), i))
                r = best_by_ind[ind]
            else:
                r = min(pool, key=lambda r: (r["capital_per_lot"], *order(r)))
                if room is not None and r["capital_per_lot"] > 2 * room + book.eps:
                    return None
            why = book.blocker(r, r["capital_per_lot"])
            if why is None:
                return r
            skipped[r["strategy_id"]] = why

    def open_position(r: dict) -> None:
        used.add(r["strategy_id"])
        ind_count[r["industry"]] += 1
        book.positions.append(_Pos(row=r, tier=r["tier"], demoted_from=demoted.get(r["strategy_id"])))

    budget = {t: rules.tier_split[t] * deploy for t in TIERS}
    room_cap = min(book.cap_position, book.cap_symbol)

    def reserved(but: str) -> float:
        """Unspent budget of the other tiers that their open positions can still absorb."""
        out = 0.0
        for t in TIERS:
            held = [p for p in book.positions if p.tier == t]
            if t != but and held:
                spent = sum(p.capital for p in held)
                out += max(0.0, min(budget[t] - spent, sum(room_cap - p.capital for p in held)))
        return out

    for t in TIERS:
        for k in range(slots[t]):
            spent = sum(p.capital for p in book.positions if p.tier == t)
            left = max(0.0, budget[t] - spent)
            r = choose(t, True, left / (slots[t] - k), left)
            if r is None:
                break
            open_position(r)
    # slots a tier could not fill go to the other tiers, within the unreserved budget; then, up to
    # min_positions, regardless of budget
    for guard, upto, budgeted in ((True, n, True), (False, n, True), (False, min(n, lim.min_positions), False)):
        for t in TIERS:
            while len(book.positions) < upto:
                free = max(0.0, deploy - book.total() - reserved(t))
                r = choose(t, guard, free / (upto - len(book.positions)), free if budgeted else None)
                if r is None:
                    break
                open_position(r)

    if not book.positions:
        cheapest = min(rows, key=lambda r: (r["capital_per_lot"], r["strategy_id"]))
        raise InsufficientCapital(
            f"capital {_fmt(capital)} cannot hold one whole lot of any eligible candidate within the limits: "
            f"the cheapest, {cheapest['symbol']} {cheapest['strategy_name']}, needs margin "
            f"{_fmt(cheapest['capital_per_lot'])} per lot")

    # 4. sizing ------------------------------------------------------------------------------------
    present = {t for t in TIERS if any(p.tier == t for p in book.positions)}
    split = {t: (rules.tier_split[t] if t in present else 0.0) for t in TIERS}
    lost = [t for t in TIERS if rules.tier_split[t] > 0 and t not in present]
    if lost:
        notes.append(f"no position in {', '.join(lost)}: its share of the split went to the other tiers")
    ssum = sum(split.values()) or 1.0
    split = {t: v / ssum for t, v in split.items()}
    kw = np.array([risk.kelly_floor + p.row["kelly_fraction"] for p in book.positions], dtype=float)
    tiers_arr = np.array([p.tier for p in book.positions])
    wts = np.zeros(len(kw))
    for t in present:
        in_t = tiers_arr == t
        k_t = kw[in_t] if kw[in_t].sum() > 0 else np.ones(int(in_t.sum()))  # no edge anywhere: equal shares
        wts[in_t] = split[t] * k_t / k_t.sum()
    caps = np.array([min(book.cap_position, book.cap_symbol) for _ in book.positions])
    targets = _waterfill(deploy, wts, caps)
    for p, tgt in zip(book.positions, targets, strict=True):
        p.target, p.lots = float(tgt), 1
    _trim(book)
    _fill_to_targets(book)

    # 5. top-up ------------------------------------------------------------------------------------
    for _ in range(100_000):
        if book.total() >= deploy - book.eps:
            break
        if _add_lot(book, split):
            continue
        if len(book.positions) < lim.max_positions:
            r = choose(None, False, max(0.0, deploy - book.total()))
            if r is not None:
                open_position(r)
                continue
        break
    total = book.total()
    deployment = total / capital
    if deployment < rules.deployment_target - 1e-9:
        notes.append(_shortfall_reason(book, rules, rows, used, skipped))

    # 6. results -----------------------------------------------------------------------------------
    positions = _positions_frame(book, rules)
    summary = _summary(book, positions, rules, industries, capital, c, rows, split, notes, n_avail)
    excluded = _excluded(c, rows, used, skipped)
    return AllocationResult(positions=positions, summary=summary, excluded=excluded)


def _raise_nothing_eligible(c: pl.DataFrame, capital: float, book: _Book, per_lot_cap: float) -> None:
    money_ok = c.filter(pl.col("_reason").str.starts_with("1 lot needs")
                        | pl.col("_reason").str.starts_with("unbounded loss and 1 lot"))
    if money_ok.height:
        cheapest = money_ok.sort(["capital_per_lot", "strategy_id"]).row(0, named=True)
        raise InsufficientCapital(
            f"capital {_fmt(capital)} is too small for one whole lot: the cheapest eligible candidate, "
            f"{cheapest['symbol']} {cheapest['strategy_name']}, needs margin {_fmt(cheapest['capital_per_lot'])} "
            f"per lot, above the {_fmt(per_lot_cap)} allowed per position "
            f"({_pct(book.cap_position / capital)} of capital)")
    counts = Counter(r for r in c.get_column("_reason").to_list() if r)
    top = "; ".join(f"{k} ({v})" for k, v in counts.most_common(5))
    raise NoCandidates(f"none of the {c.height} strategy candidates is eligible for allocation: {top}")


def _trim(book: _Book) -> None:
    """Remove lots (from the positions most above target) until industry, unlimited-risk and
    portfolio limits hold; a position at one lot that still breaks a limit is dropped."""
    def over(group: list[_Pos], cap: float) -> bool:
        return sum(p.capital for p in group) > cap + book.eps

    for _ in range(100_000):
        groups: list[tuple[list[_Pos], float]] = []
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


def _fill_to_targets(book: _Book) -> None:
    """Add lots one at a time to the position furthest below its target (in lots) while that is at
    least half a lot, the lot fits every limit and its tier stays within half a lot of the tier's
    total target: rounding to the nearest whole lot, within limits and tier budgets."""
    tier_target = {t: sum(p.target for p in book.positions if p.tier == t) for t in TIERS}
    for _ in range(1_000_000):
        tier_cap = {t: sum(p.capital for p in book.positions if p.tier == t) for t in TIERS}
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


def _add_lot(book: _Book, split: dict[str, float]) -> bool:
    total = book.total()
    tier_cap = {t: sum(p.capital for p in book.positions if p.tier == t) for t in TIERS}
    addable = [p for p in book.positions if book.blocker(p.row, p.m, own=p) is None]
    if not addable:
        return False
    present = sorted({p.tier for p in addable},
                     key=lambda t: (-(split[t] - (tier_cap[t] / total if total > 0 else 0.0)), TIERS.index(t)))
    tier = present[0]
    p = min((p for p in addable if p.tier == tier), key=lambda p: (-p.row["total_score"], p.row["strategy_id"]))
    p.lots += 1
    return True


def _shortfall_reason(book: _Book, rules: MarketRules, rows: list[dict], used: set[str],
                      skipped: dict[str, str]) -> str:
    lim = rules.position_limits
    n = len(book.positions)
    total = book.total()
    parts = [f"deployment {_pct(total / book.capital)} is below the {_pct(rules.deployment_target)} target"]
    if n * lim.max_position_pct < rules.deployment_target:
        parts.append(f"limits bind: max per position {_pct(lim.max_position_pct)} x {n} positions = "
                     f"{_pct(n * lim.max_position_pct)} of capital")
    blockers = Counter(book.blocker(p.row, p.m, own=p) or "none" for p in book.positions)
    names = {"position": f"max per position {_pct(lim.max_position_pct)}",
             "symbol": f"max per symbol {_pct(lim.max_symbol_pct)}",
             "industry": f"max per industry {_pct(lim.max_industry_pct)}",
             "unlimited_risk": f"max unlimited-risk share {_pct(rules.risk_limits.max_unlimited_risk_pct)}",
             "portfolio": f"max portfolio margin {_pct(rules.risk_limits.max_portfolio_margin_pct)}"}
    held = ", ".join(f"{names[k]} ({v})" for k, v in blockers.most_common() if k in names)
    if held:
        parts.append(f"no position can take another whole lot: {held}")
    unused = [r for r in rows if r["strategy_id"] not in used]
    if n >= lim.max_positions:
        parts.append(f"max_positions {lim.max_positions} reached")
    elif not unused:
        parts.append(f"every eligible symbol is used ({len(rows)} symbols have an eligible candidate)")
    else:
        parts.append(f"none of the {len(unused)} unused eligible symbols fits one more whole lot within the limits")
    return "; ".join(parts)


def selection_reason(r: dict, rules: MarketRules) -> str:
    """Why the position's strategy was chosen for its symbol, by fallback level: the market state's
    preferred strategy (0), its preferred category (1), a match of the industry view (2), or the
    last resort of a strategy that does not oppose the view (3). One line for the allocation table."""
    level = int(r["fallback_level"])
    name, view = r["strategy_name"], f"{r.get('industry') or 'its industry'} view {r.get('position_type')}"
    state = rules.state or "unknown"
    if level == 0:
        prefs = list(rules.preferred_strategies)
        rank = prefs.index(name) + 1 if name in prefs else None
        where = f" (#{rank} of {len(prefs)})" if rank else ""
        return f"market-state preference: {name} is a preferred strategy of {state}{where}, matching the {view}"
    if level == 1:
        return (f"category fallback: no preferred strategy of {state} qualified; {name} is in its preferred "
                f"category {r.get('category')}, matching the {view}")
    if level == 2:
        return (f"view match: no preferred strategy or category of {state} qualified; {name} "
                f"({r.get('outlook')}) matches the {view}")
    return (f"any-strategy fallback: nothing matching the {view} qualified; {name} ({r.get('outlook')}) "
            f"does not oppose it")


def _positions_frame(book: _Book, rules: MarketRules) -> pl.DataFrame:
    cap = book.capital
    mdays = rules.returns.month_days
    floor_t = rules.returns.min_expiry_days / 365.0
    out = []
    for p in book.positions:
        r = p.row
        lots = int(p.lots)
        t = r.get("t_years")
        factor = (mdays / 365.0) / max(t, floor_t) if t is not None and math.isfinite(t) and t > 0 else 1.0
        ev = r.get("expected_value")
        ev_ok = ev is not None and math.isfinite(ev)
        lot_size = r.get("lot_size")
        ml = r.get("max_loss")
        out.append({
            "position_id": f"AL-{r['strategy_id']}", "strategy_id": r["strategy_id"], "symbol": r["symbol"],
            "strategy_name": r["strategy_name"], "tier": p.tier, "industry": r["industry"], "lots": lots,
            "capital_used": round(lots * p.m, 2),
            "expected_return": round(ev * lots * factor, 2) if ev_ok else 0.0,
            "weight": lots * p.m / cap, "kelly_fraction": float(r["kelly_fraction"]),
            "fallback_level": int(r["fallback_level"]), "selection_reason": selection_reason(r, rules),
            "sector": sector_of(r["industry"]), "position_type": r["position_type"], "category": r.get("category"),
            "outlook": r.get("outlook"), "conviction": r["conviction"], "total_score": float(r["total_score"]),
            "demoted_from": p.demoted_from, "lot_size": lot_size,
            "quantity": lots * int(lot_size) if lot_size is not None else None, "margin_per_lot": p.m,
            "pop": r.get("pop"), "payoff_ratio": None if r.get("payoff_ratio") is None
            or not math.isfinite(r["payoff_ratio"]) else float(r["payoff_ratio"]),
            "expected_value": ev * lots if ev_ok else None,
            "max_loss": ml * lots if ml is not None and math.isfinite(ml) else None,
            "unlimited_risk": bool(r["unlimited_risk"]), "t_years": t,
            **{g: (r.get(g) or 0.0) * lots for g in GREEKS},
        })
    df = pl.DataFrame(out, schema=POSITION_COLUMNS)
    return df.with_columns(pl.col("tier").replace_strict({t: i for i, t in enumerate(TIERS)}, return_dtype=pl.Int64)
                           .alias("_t")).sort(["_t", "total_score", "strategy_id"],
                                              descending=[False, True, False]).drop("_t")


def _summary(book: _Book, pos: pl.DataFrame, rules: MarketRules, industries: IndustryAllocations, capital: float,
             c: pl.DataFrame, rows: list[dict], split: dict[str, float], notes: list[str],
             n_avail: int) -> dict[str, Any]:
    lim, risk = rules.position_limits, rules.risk_limits
    total = float(pos.get_column("capital_used").sum()) if pos.height else 0.0
    tier_cap = {t: float(pos.filter(pl.col("tier") == t).get_column("capital_used").sum()) for t in TIERS}
    tier_shares = {t: (v / total if total > 0 else 0.0) for t, v in tier_cap.items()}
    off = {t: tier_shares[t] - rules.tier_split[t] for t in TIERS}
    if pos.height and any(abs(v) > TIER_TOLERANCE + 1e-12 for v in off.values()):
        notes.append("tier split off by more than 5 points: " + ", ".join(
            f"{t} {_pct(tier_shares[t])} vs {_pct(rules.tier_split[t])}" for t in TIERS if abs(off[t]) > TIER_TOLERANCE))
    ind = (pos.group_by("industry").agg(pl.col("capital_used").sum(), pl.len().alias("n"))
           .sort(["capital_used", "industry"], descending=[True, False]))
    exp_inr = float(pos.get_column("expected_return").sum()) if pos.height else 0.0
    emr = exp_inr / capital
    if emr < rules.monthly_return_target:
        notes.append(f"expected monthly return {emr:.2%} is below the {rules.monthly_return_target:.2%} target "
                     "(from the candidates' expected values)")
    if pos.height < lim.min_positions:
        notes.append(f"{pos.height} positions, fewer than min_positions {lim.min_positions}: "
                     f"{n_avail} symbols have an eligible candidate")
    if pos.height and pos.filter(pl.col("t_years").is_null()).height:
        notes.append("some positions have no t_years: their expected value is taken as monthly")
    levels = Counter(pos.get_column("fallback_level").to_list())
    unl = float(pos.filter(pl.col("unlimited_risk")).get_column("capital_used").sum()) if pos.height else 0.0
    excl = Counter(r for r in c.get_column("_reason").to_list() if r)
    return {
        "capital": capital,
        "capital_used": round(total, 2),
        "cash_left": round(capital - total, 2),
        "deployment": total / capital,
        "deployment_target": rules.deployment_target,
        "meets_deployment_target": total / capital >= rules.deployment_target - 1e-9,
        "positions": pos.height,
        "lots": int(pos.get_column("lots").sum()) if pos.height else 0,
        "tier_shares": tier_shares,
        "tier_targets": dict(rules.tier_split),
        "tier_positions": {t: pos.filter(pl.col("tier") == t).height for t in TIERS},
        "tier_capital": tier_cap,
        "industry_shares": {r["industry"]: r["capital_used"] / capital for r in ind.iter_rows(named=True)},
        "industry_positions": {r["industry"]: int(r["n"]) for r in ind.iter_rows(named=True)},
        "industry_targets": {k: industries.weight(k) for k in ind.get_column("industry").to_list()},
        "sector_shares": _sector_shares(pos, capital),
        "unlimited_risk_share": unl / capital,
        "expected_monthly_return": emr,
        "expected_monthly_return_inr": round(exp_inr, 2),
        "target_monthly_return": rules.monthly_return_target,
        "meets_return_target": emr >= rules.monthly_return_target,
        "greeks": {g: float(pos.get_column(g).sum()) if pos.height else 0.0 for g in GREEKS},
        "fallback_levels": {str(k): levels.get(k, 0) for k in FALLBACK_LEVELS},
        "limits": {
            "max_position_capital": book.cap_position, "max_symbol_capital": book.cap_symbol,
            "max_industry_capital": book.cap_industry, "max_portfolio_capital": book.cap_portfolio,
            "max_unlimited_risk_capital": book.cap_unlimited, "min_positions": lim.min_positions,
            "target_positions": lim.target_positions, "max_positions": lim.max_positions,
            "max_position_pct": lim.max_position_pct, "max_symbol_pct": lim.max_symbol_pct,
            "max_industry_pct": lim.max_industry_pct, "max_portfolio_margin_pct": risk.max_portfolio_margin_pct,
            "max_unlimited_risk_pct": risk.max_unlimited_risk_pct, "kelly_fraction": risk.kelly_fraction,
            "kelly_cap": risk.kelly_cap, "deployment_target": rules.deployment_target,
        },
        "market_state": {"state": rules.state, "vix_band": rules.vix_band, "nifty_trend": rules.nifty_trend,
                         "pcr_sentiment": rules.pcr_sentiment},
        "candidates": c.height,
        "symbols_with_candidates": c.get_column("symbol").n_unique(),
        "symbols_eligible": n_avail,
        "excluded_reasons": _reason_kinds(excl),
        "notes": notes,
    }


def _sector_shares(pos: pl.DataFrame, capital: float) -> dict[str, float]:
    if not pos.height:
        return {}
    g = pos.group_by("sector").agg(pl.col("capital_used").sum()).sort(["capital_used", "sector"],
                                                                       descending=[True, False])
    return {r["sector"]: r["capital_used"] / capital for r in g.iter_rows(named=True)}


def _reason_kind(reason: str) -> str:
    for prefix, kind in (("1 lot needs", "one lot above the per-position limit"),
                         ("unbounded loss", "one lot above the unlimited-risk limit"),
                         ("conviction", "conviction in no tier"), ("industry", "industry weight 0"),
                         ("no margin", "no margin or debit figure"), ("expected value", "expected value too low")):
        if reason.startswith(prefix):
            return kind
    if "opposes" in reason:
        return "opposes the industry view"
    return "does not fit the industry view"


def _reason_kinds(counts: Counter) -> dict[str, int]:
    out: Counter[str] = Counter()
    for k, v in counts.items():
        out[_reason_kind(k)] += v
    return dict(sorted(out.items()))


def _excluded(c: pl.DataFrame, rows: list[dict], used: set[str], skipped: dict[str, str]) -> pl.DataFrame:
    """One row per symbol with candidates but no position, and why."""
    picked = {r["symbol"]: r for r in rows}
    held = {r["symbol"] for r in rows if r["strategy_id"] in used}
    out = []
    for sym, grp in c.group_by("symbol", maintain_order=True):
        s = sym[0]
        if s in held:
            continue
        ind = grp.get_column("industry")[0]
        if s in picked:
            sid = picked[s]["strategy_id"]
            why = (f"{picked[s]['strategy_name']}: one lot breaks the {skipped[sid]} limit" if sid in skipped
                   else f"{picked[s]['strategy_name']} ({picked[s]['tier']}) not selected: slots filled by "
                        "higher-priority industries or better scores")
        else:
            reasons = Counter(r for r in grp.get_column("_reason").to_list() if r)
            why = reasons.most_common(1)[0][0] if reasons else "not eligible"
            if len(reasons) > 1:
                why += f" (+{sum(reasons.values()) - reasons.most_common(1)[0][1]} other candidate(s) excluded)"
        out.append({"symbol": s, "industry": ind, "reason": why})
    return pl.DataFrame(out, schema={"symbol": pl.Utf8, "industry": pl.Utf8, "reason": pl.Utf8}).sort("symbol")


# --------------------------------------------------------------------------------------------
# verification

def limit_breaches(pos: pl.DataFrame, limits: dict, capital: float) -> list[str]:
    """Every limit a stored allocation breaks (whole lots, position / symbol / industry caps, capital)."""
    out = []
    tol = 1e-6 * capital
    for r in pos.iter_rows(named=True):
        if r["lots"] < 1 or int(r["lots"]) != r["lots"]:
            out.append(f"{r['symbol']}: {r['lots']} lots")
        if r["capital_used"] > limits["max_position_capital"] + tol:
            out.append(f"{r['symbol']}: position {r['capital_used']:,.0f} > {limits['max_position_capital']:,.0f}")
    for (sym,), g in pos.group_by(["symbol"]):
        used = float(g.get_column("capital_used").sum())
        if used > limits["max_symbol_capital"] + tol:
            out.append(f"{sym}: symbol {used:,.0f} > {limits['max_symbol_capital']:,.0f}")
    for (ind,), g in pos.group_by(["industry"]):
        used = float(g.get_column("capital_used").sum())
        if used > limits["max_industry_capital"] + tol:
            out.append(f"{ind}: industry {used:,.0f} > {limits['max_industry_capital']:,.0f}")
    total = float(pos.get_column("capital_used").sum()) if pos.height else 0.0
    if total > capital + tol:
        out.append(f"capital used {total:,.0f} > capital {capital:,.0f}")
    return out
