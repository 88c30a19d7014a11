"""Invariants of a session's allocation (checked before portfolio_allocation is written)."""

from __future__ import annotations

import math

import polars as pl

MAX_ABS_MONTHLY_RETURN = 0.50  # |expected monthly return| above this is bad input, not an opportunity


def allocation_violations(positions: pl.DataFrame, capital: float, capital_used: float,
                          expected_monthly_return: float,
                          max_abs_monthly_return: float = MAX_ABS_MONTHLY_RETURN) -> list[str]:
    """Every broken invariant, each naming the position or the figure."""
    out = []
    if not math.isfinite(expected_monthly_return) or abs(expected_monthly_return) > max_abs_monthly_return:
        out.append(f"expected monthly return {expected_monthly_return:.2%} outside +/-{max_abs_monthly_return:.0%}")
    if not math.isfinite(capital_used) or capital_used > capital * (1 + 1e-9):
        out.append(f"capital used {capital_used:,.0f} > capital {capital:,.0f}")
    if positions.height:
        bad = positions.filter(pl.col("lots").is_null() | (pl.col("lots") < 1)
                               | (pl.col("lots").cast(pl.Float64) != pl.col("lots").cast(pl.Float64).round()))
        out += [f"{r['symbol']}: {r['lots']} lots (whole and > 0)" for r in bad.iter_rows(named=True)]
        used = float(positions.get_column("capital_used").sum())
        if abs(used - capital_used) > 1e-6 * max(capital, 1.0):
            out.append(f"positions use {used:,.0f} but the summary says {capital_used:,.0f}")
    return out
