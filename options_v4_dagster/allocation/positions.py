"""The allocation's positions as a frame (one row per position, :data:`POSITION_COLUMNS`), why each
strategy was chosen (:func:`selection_reason`) and the limit check of stored positions
(:func:`limit_breaches`)."""

from __future__ import annotations

import math

import polars as pl

from .book import Book
from .candidates import GREEKS
from .config import TIERS, MarketRules
from .industries import sector_of

__all__ = ["FALLBACK_LEVELS", "POSITION_COLUMNS", "limit_breaches", "positions_frame", "selection_reason"]

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


def positions_frame(book: Book, rules: MarketRules) -> pl.DataFrame:
    """One row per position (tier, then best score first). ``expected_return`` is the EV per lot x
    lots scaled from the trade's life (``t_years``, floored at ``min_expiry_days``) to one month."""
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
