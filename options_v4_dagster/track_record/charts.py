"""The track record's pictures as PNG bytes (matplotlib, Agg): the equity curve with its drawdown,
the monthly returns heatmap, the POP calibration diagram and the P&L by strategy. The asset puts
them in its metadata (markdown images) and the report in its HTML file."""

from __future__ import annotations

import numpy as np
import polars as pl

from ..reports.png import figure, markdown_image, to_png

__all__ = ["all_charts", "calibration_png", "equity_png", "markdown", "monthly_png", "strategy_png"]


def equity_png(equity: pl.DataFrame, initial: float, title: str = "Equity and drawdown") -> bytes:
    fig = figure(8.0, 5.0)
    ax, dd_ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    days = equity.get_column("session").to_list()
    values = equity.get_column("equity").to_numpy().astype(float)
    ax.plot(days, values / 1e5, color="#1f77b4", lw=1.6, label="equity")
    ax.axhline(initial / 1e5, color="gray", lw=0.8, ls="--", label="initial capital")
    ax.set_ylabel("INR lakh")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    curve = np.concatenate([[initial], values])
    dd = (curve / np.maximum.accumulate(curve) - 1.0)[1:] * 100
    dd_ax.fill_between(days, dd, 0, color="#d62728", alpha=0.4)
    dd_ax.set_ylabel("drawdown %")
    dd_ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return to_png(fig)


def monthly_png(monthly: list[dict], target: float) -> bytes:
    years = sorted({m["month"][:4] for m in monthly})
    grid = np.full((max(len(years), 1), 12), np.nan)
    for m in monthly:
        grid[years.index(m["month"][:4]), int(m["month"][5:7]) - 1] = m["return"] * 100
    fig = figure(8.0, 1.2 + 0.6 * max(len(years), 1))
    ax = fig.subplots()
    lim = max(np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0, target * 100)
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_yticks(range(len(years)), years)
    ax.set_title(f"Monthly returns % (target {target:.0%})")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return to_png(fig)


def calibration_png(table: list[dict]) -> bytes:
    fig = figure(6.0, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect calibration")
    if table:
        x = np.array([r["predicted"] for r in table])
        y = np.array([r["realized"] for r in table])
        lo = np.array([r["ci_low"] for r in table])
        hi = np.array([r["ci_high"] for r in table])
        ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], fmt="o", color="#1f77b4", capsize=3, label="realized win rate (95% CI)")
        for r in table:
            ax.annotate(f"n={r['n']}", (r["predicted"], r["realized"]), textcoords="offset points", xytext=(5, -10),
                        fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted POP")
    ax.set_ylabel("realized win rate")
    ax.set_title("POP calibration (closed trades)")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    return to_png(fig)


def strategy_png(by_strategy: list[dict]) -> bytes:
    rows = sorted(by_strategy, key=lambda r: r["pnl"] + r["open_pnl"])
    fig = figure(7.5, 1.0 + 0.28 * max(len(rows), 1))
    ax = fig.subplots()
    names = [r["strategy_name"] for r in rows]
    closed = np.array([r["pnl"] for r in rows]) / 1e3
    opened = np.array([r["open_pnl"] for r in rows]) / 1e3
    ax.barh(names, closed, color=["#2ca02c" if v >= 0 else "#d62728" for v in closed], label="closed trades")
    ax.barh(names, opened, left=closed, color="#aaaaaa", label="open at the end (marked)")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("P&L, INR thousand")
    ax.set_title("P&L by strategy")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return to_png(fig)


def all_charts(equity: pl.DataFrame, initial: float, summary: dict) -> dict[str, bytes]:
    """The four charts of a :func:`~.report.summary` (title -> PNG bytes)."""
    return {
        "Equity and drawdown": equity_png(equity, initial),
        "Monthly returns": monthly_png(summary["monthly_returns"], summary["monthly_target"]),
        "POP calibration": calibration_png(summary["calibration"]),
        "P&L by strategy": strategy_png(summary["by_strategy"]),
    }


def markdown(charts: dict[str, bytes]) -> str:
    return "\n\n".join(markdown_image(title, png) for title, png in charts.items())
