"""Invariants every stored strategy candidate keeps (checked before the tables are written).

Sign convention (strategies/analytics.py): ``max_loss`` is the INR loss as a positive number, None
only when the strategy is flagged ``unlimited_risk``; ``max_profit`` None = unbounded.
"""

from __future__ import annotations

import polars as pl

LOSS_TOL = 0.01  # INR: a max loss below -LOSS_TOL is a riskless profit, i.e. bad prices


def candidate_violations(strategies: pl.DataFrame, params: pl.DataFrame) -> pl.DataFrame:
    """One row per broken invariant: strategy_id, symbol, strategy_name, problem."""
    out_schema = {"strategy_id": pl.Utf8, "symbol": pl.Utf8, "strategy_name": pl.Utf8, "problem": pl.Utf8}
    if strategies.height == 0:
        return pl.DataFrame(schema=out_schema)
    j = strategies.select("strategy_id", "symbol", "strategy_name", "unlimited_risk").join(
        params.select("strategy_id", "max_loss", "max_profit", "pop", "expected_value", "margin"),
        on="strategy_id", how="left")
    ml, mp, pop, ev, m = (pl.col(c) for c in ("max_loss", "max_profit", "pop", "expected_value", "margin"))
    rules = [
        (ml.is_null() & ~pl.col("unlimited_risk").fill_null(False), pl.lit("max_loss null but not flagged unlimited")),
        (ml.is_nan() | (ml < -LOSS_TOL), pl.format("max_loss {} is not a loss (riskless profit)", ml)),
        (mp.is_nan() | (mp < 0), pl.format("max_profit {} < 0", mp)),
        (pop.is_null() | pop.is_nan() | (pop < 0) | (pop > 1), pl.format("pop {} outside [0, 1]", pop)),
        (ev.is_null() | ~ev.is_finite(), pl.format("expected_value {} not finite", ev)),
        (m.is_null() | m.is_nan() | (m <= 0), pl.format("margin {} not positive", m)),
    ]
    parts = [j.filter(cond.fill_null(False)).select("strategy_id", "symbol", "strategy_name",
                                                    msg.fill_null("null").alias("problem")) for cond, msg in rules]
    return pl.concat(parts).cast(out_schema)
