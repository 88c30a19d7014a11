"""Payoff chart of a strategy candidate: P&L at expiry and today, breakevens, ±1σ and ±2σ.

Draws :class:`~options_v4_dagster.strategies.payoff_curves.PayoffCurves` (computed in strategies/,
e.g. by :func:`options_v4_dagster.strategies.pipeline.chart_curves`); computes no P&L itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..strategies.payoff_curves import PayoffCurves

#: grid points per curve the interactive (HTML) and the static (PNG) charts are drawn from
HTML_POINTS = 600
PNG_POINTS = 300


def payoff_figure(pc: PayoffCurves):
    """Interactive plotly figure of the curves (:data:`HTML_POINTS` per curve is what it is meant for)."""
    import plotly.graph_objects as go

    sigma, F, lo, hi = pc.sd, pc.forward, pc.lo, pc.hi
    S, expiry, today = pc.S, pc.expiry, pc.today
    fig = go.Figure()
    for k, alpha in ((2, 0.06), (1, 0.10)):
        fig.add_vrect(x0=F * np.exp(-k * sigma), x1=F * np.exp(k * sigma), fillcolor="royalblue", opacity=alpha,
                      line_width=0, annotation_text=f"±{k}σ", annotation_position="bottom left")
    fig.add_trace(go.Scatter(x=S, y=np.where(expiry >= -1e-9, expiry, np.nan), line={"color": "#2ca02c", "width": 2.5},
                             name="at expiry (profit)"))
    fig.add_trace(go.Scatter(x=S, y=np.where(expiry <= 1e-9, expiry, np.nan), line={"color": "#d62728", "width": 2.5},
                             name="at expiry (loss)"))
    fig.add_trace(go.Scatter(x=S, y=today, line={"color": "#1f77b4", "dash": "dash"}, name="today (T+0)"))
    for b in pc.breakevens:
        if lo <= b <= hi:
            fig.add_vline(x=b, line_dash="dot", line_color="gray", annotation_text=f"BE {b:,.0f}")
    fig.add_vline(x=pc.spot, line_color="black", line_width=1, annotation_text=f"spot {pc.spot:,.1f}",
                  annotation_position="bottom right")
    fig.add_hline(y=0, line_color="black", line_width=0.5)
    mp, ml = _money(pc.max_profit), _money(pc.max_loss)
    fig.update_layout(
        title=(f"{pc.symbol} {pc.display_name} — max profit {mp}, max loss {ml}, POP {pc.pop:.1%} "
               f"(lognormal, F={F:,.1f}, σ={pc.sigma:.1%}, T={pc.t_years * 365:.1f}d/365)"
               f"<br><sup>{pc.legs}</sup>"),
        xaxis_title="underlying at expiry", yaxis_title="P&L (₹)", template="plotly_white", height=560,
        hovermode="x unified", legend={"orientation": "h", "y": -0.18},
    )
    return fig


def _money(x: float | None) -> str:
    return "unlimited" if x is None else f"₹{x:,.0f}"


def payoff_png(pc: PayoffCurves) -> bytes:
    """Static payoff chart (PNG, matplotlib Agg): P&L at expiry (green profit / red loss) and today
    (T+0, dashed) against the underlying, with the breakevens, the spot and the strikes marked,
    ±1σ / ±2σ shaded, and max profit / max loss / POP / EV annotated (:data:`PNG_POINTS` per curve
    is what it is meant for)."""
    from . import png

    sigma, F, lo, hi = pc.sd, pc.forward, pc.lo, pc.hi
    strikes = pc.strikes
    bes = [b for b in pc.breakevens if lo <= b <= hi]
    S, expiry, today = pc.S, pc.expiry, pc.today
    fig = png.figure()
    ax = fig.add_subplot()
    for k, alpha in ((2, 0.06), (1, 0.10)):
        ax.axvspan(F * np.exp(-k * sigma), F * np.exp(k * sigma), color="royalblue", alpha=alpha, lw=0)
    ax.plot(S, np.where(expiry >= -1e-9, expiry, np.nan), color="#2ca02c", lw=2.0, label="at expiry (profit)")
    ax.plot(S, np.where(expiry <= 1e-9, expiry, np.nan), color="#d62728", lw=2.0, label="at expiry (loss)")
    ax.plot(S, today, color="#1f77b4", lw=1.2, ls="--", label="today (T+0)")
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(pc.spot, color="black", lw=1.0, ls="-")
    ymin, ymax = float(np.nanmin([expiry.min(), today.min()])), float(np.nanmax([expiry.max(), today.max()]))
    ax.annotate(f"spot {pc.spot:,.1f}", (pc.spot, ymin + 0.12 * (ymax - ymin)), fontsize=7, ha="left",
                xytext=(3, 0), textcoords="offset points")
    for b in bes:
        ax.axvline(b, color="gray", lw=0.8, ls=":")
        ax.annotate(f"BE {b:,.0f}", (b, 0), fontsize=7, rotation=90, ha="right", va="bottom", color="dimgray")
    for k in strikes:
        if lo <= k <= hi:
            ax.plot([k], [ymin], marker="^", color="purple", ms=5, clip_on=False)
            ax.annotate(f"{k:g}", (k, ymin), fontsize=6, ha="center", va="top", color="purple",
                        xytext=(0, -3), textcoords="offset points")
    i_best = int(np.flatnonzero(expiry >= expiry.max() - 1e-9 * max(1.0, abs(expiry.max())))[0])
    i_worst = int(np.argmin(expiry))
    ax.annotate(f"max profit {_money(pc.max_profit)}", (S[i_best], expiry[i_best]), fontsize=7, color="#2ca02c",
                xytext=(2, 4), textcoords="offset points", ha="left")
    ax.annotate(f"max loss {_money(None if pc.max_loss is None else -abs(pc.max_loss))}", (S[i_worst], expiry[i_worst]),
                fontsize=7, color="#d62728", xytext=(0, -10), textcoords="offset points", ha="center")
    ax.set_title(f"{pc.symbol} {pc.display_name}: max profit {_money(pc.max_profit)}, max loss "
                 f"{_money(pc.max_loss)}, POP {pc.pop:.0%}, EV ₹{pc.expected_value:,.0f}", fontsize=9)
    ax.set_xlabel(f"underlying at expiry (strikes ▲; shaded ±1σ/±2σ, σ={pc.sigma:.1%})", fontsize=8)
    ax.set_ylabel("P&L (₹)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    ax.margins(x=0)
    return png.to_png(fig)


def _score_line(pc: PayoffCurves) -> str:
    if pc.score is None:
        return ""
    return f" (score {pc.score:.1f}, {pc.conviction})"


def charts_markdown(curves: Sequence[PayoffCurves]) -> str:
    """Markdown with one embedded PNG payoff chart per curve set (asset metadata)."""
    from .png import markdown_image

    return "\n\n".join(f"**{pc.symbol} {pc.display_name}**{_score_line(pc)}\n\n"
                        + markdown_image(f"{pc.symbol} {pc.name} payoff", payoff_png(pc)) for pc in curves)


def write_payoff_chart(pc: PayoffCurves, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one plotly.min.js per folder (offline, ~4.7 MB once instead of in every chart)
    payoff_figure(pc).write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path


def write_payoff_charts(curves: Sequence[PayoffCurves], session: dt.date, folder: Path | str | None = None) -> list[Path]:
    """HTML payoff charts, one file per curve set, in ``folder`` (default
    ``<home>/charts/payoff_YYYYMMDD``)."""
    from .. import config

    base = Path(folder) if folder else config.home_dir() / "charts" / f"payoff_{session:%Y%m%d}"
    return [write_payoff_chart(pc, base / f"{pc.symbol}_{pc.name}.html") for pc in curves]
