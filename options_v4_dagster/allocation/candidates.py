"""The allocation's input: the candidates frame, read from the strategy tables and prepared per lot.

:func:`candidates_from_tables` builds the frame :func:`.engine.allocate` takes from the
``strategies`` and ``strategy_parameters`` tables; :func:`prepare_candidates` normalizes it: money
and greeks per lot (rescaled to the session's lot size), the industry, its view and weight, the
capital per lot, the tier of the conviction and the fallback level of the strategy.
"""

from __future__ import annotations

import polars as pl

from .config import MarketRules
from .errors import AllocationError
from .industries import UNCLASSIFIED, IndustryAllocations, view_match_exprs

__all__ = ["GREEKS", "REQUIRED", "candidates_from_tables", "prepare_candidates"]

REQUIRED = ("strategy_id", "symbol", "strategy_name", "total_score", "conviction", "margin")
_OPTIONAL: dict[str, pl.DataType] = {
    "category": pl.Utf8, "outlook": pl.Utf8, "pop": pl.Float64, "max_profit": pl.Float64, "max_loss": pl.Float64,
    "expected_value": pl.Float64, "net_premium": pl.Float64, "lot_size": pl.Int64, "lots": pl.Float64,
    "industry": pl.Utf8, "unlimited_risk": pl.Boolean, "t_years": pl.Float64, "delta": pl.Float64,
    "gamma": pl.Float64, "theta": pl.Float64, "vega": pl.Float64,
}
_MONEY = ("max_profit", "max_loss", "expected_value", "net_premium", "margin", "delta", "gamma", "theta", "vega")
GREEKS = ("delta", "gamma", "theta", "vega")


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


def prepare_candidates(candidates: pl.DataFrame, rules: MarketRules, industries: IndustryAllocations,
                       lot_sizes: dict[str, int] | None) -> pl.DataFrame:
    """The candidates with typed columns, per-lot money, ``industry`` / ``position_type`` /
    ``industry_weight``, ``capital_per_lot``, ``tier``, ``fallback_level`` (null: fits no level),
    ``_opposes`` and ``_pref_rank``; sorted by ``strategy_id``. Raises :class:`AllocationError` on a
    missing required column or a repeated ``strategy_id``."""
    c = _typed(candidates)
    c = _per_lot(c, lot_sizes)
    c = _with_industry(c, industries)
    debit = pl.when(pl.col("net_premium") < 0).then(-pl.col("net_premium")).otherwise(0.0)
    c = c.with_columns(
        capital_per_lot=pl.max_horizontal(pl.col("margin"), debit),
        unlimited_risk=pl.coalesce(pl.col("unlimited_risk"), pl.col("max_loss").is_null()),
    )
    return _with_tier_and_level(c, rules).sort("strategy_id")


def _typed(candidates: pl.DataFrame) -> pl.DataFrame:
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
    return c


def _per_lot(c: pl.DataFrame, lot_sizes: dict[str, int] | None) -> pl.DataFrame:
    """Money and greeks per lot (divided by ``lots``); the session's lot size when given."""
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
    return c.with_columns([(pl.col(k) * pl.col("_scale")).alias(k) for k in _MONEY]).drop("_scale")


def _with_industry(c: pl.DataFrame, industries: IndustryAllocations) -> pl.DataFrame:
    """The industry (the mapping's, else the frame's, else unclassified), its view and weight."""
    sym_ind = industries.symbol_industry
    if sym_ind:
        m = pl.DataFrame({"symbol": list(sym_ind), "_ind": list(sym_ind.values())},
                         schema={"symbol": pl.Utf8, "_ind": pl.Utf8})
        c = c.join(m, on="symbol", how="left").with_columns(
            industry=pl.coalesce(pl.col("industry"), pl.col("_ind"))).drop("_ind")
    c = c.with_columns(pl.col("industry").fill_null(UNCLASSIFIED))
    inds = sorted(set(c.get_column("industry").to_list()))
    return c.join(pl.DataFrame({"industry": inds, "position_type": [industries.position_type(i) for i in inds],
                                "industry_weight": [industries.weight(i) for i in inds]},
                               schema={"industry": pl.Utf8, "position_type": pl.Utf8,
                                       "industry_weight": pl.Float64}),
                  on="industry", how="left")


def _with_tier_and_level(c: pl.DataFrame, rules: MarketRules) -> pl.DataFrame:
    """The tier of the conviction and the fallback level (0 preferred strategy, 1 preferred category,
    2 matches the view, 3 does not oppose it when ``fallback_to_any``)."""
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
    return c.with_columns(fallback_level=level.cast(pl.Int64), _opposes=opposes,
                          _pref_rank=pl.col("strategy_name").replace_strict(rank, default=len(rank),
                                                                            return_dtype=pl.Int64))
