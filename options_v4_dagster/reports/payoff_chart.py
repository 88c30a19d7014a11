"""Payoff chart of a strategy candidate: P&L at expiry and today, breakevens, ±1σ and ±2σ."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..quant.black import black76_price
from ..strategies.analytics import pnl_at_front_expiry
from ..strategies.build import Candidate


def value_today(c: Candidate, S: np.ndarray) -> np.ndarray:
    """P&L (INR) if the underlying moved to ``S`` now: options revalued by Black-76 at their IVs on
    forwards scaled with the underlying, futures and stock at the new level."""
    S = np.asarray(S, dtype=float)
    total = np.zeros_like(S)
    for leg in c.legs:
        q = leg.signed_quantity
        if leg.instrument.is_option and leg.iv is not None and leg.forward and leg.t_years:
            F = S * (leg.forward / c.spot)
            now = black76_price(F, leg.strike, leg.t_years, leg.iv, leg.instrument.value == "CE", leg.df or 1.0)
            total += q * (now - leg.price)
        elif leg.instrument.is_option:  # no IV: value at intrinsic
            intr = np.maximum(S - leg.strike, 0) if leg.instrument.value == "CE" else np.maximum(leg.strike - S, 0)
            total += q * (intr - leg.price)
        else:
            scale = (leg.forward / c.spot) if (leg.instrument.value == "FUT" and leg.forward) else 1.0
            total += q * (S * scale - leg.price)
    return total


def payoff_figure(c: Candidate):
    import plotly.graph_objects as go

    a = c.analytics
    sigma = a.pop_inputs.sigma * np.sqrt(max(a.pop_inputs.t_years, 1e-6))
    F = a.pop_inputs.forward
    lo, hi = F * np.exp(-3.2 * sigma), F * np.exp(3.2 * sigma)
    # the grid holds every strike and breakeven, so kinks are exact and the profit and loss lines meet at zero
    marks = [leg.strike for leg in c.legs if leg.strike is not None] + [float(b) for b in a.breakevens]
    S = np.unique(np.concatenate([np.linspace(lo, hi, 600), [m for m in marks if lo < m < hi]]))
    expiry = pnl_at_front_expiry([c], S)[0]
    expiry = np.where(np.isin(S, a.breakevens), 0.0, expiry)
    today = value_today(c, S)
    fig = go.Figure()
    for k, alpha in ((2, 0.06), (1, 0.10)):
        fig.add_vrect(x0=F * np.exp(-k * sigma), x1=F * np.exp(k * sigma), fillcolor="royalblue", opacity=alpha,
                      line_width=0, annotation_text=f"±{k}σ", annotation_position="bottom left")
    fig.add_trace(go.Scatter(x=S, y=np.where(expiry >= -1e-9, expiry, np.nan), line={"color": "#2ca02c", "width": 2.5},
                             name="at expiry (profit)"))
    fig.add_trace(go.Scatter(x=S, y=np.where(expiry <= 1e-9, expiry, np.nan), line={"color": "#d62728", "width": 2.5},
                             name="at expiry (loss)"))
    fig.add_trace(go.Scatter(x=S, y=today, line={"color": "#1f77b4", "dash": "dash"}, name="today (T+0)"))
    for b in a.breakevens:
        if lo <= b <= hi:
            fig.add_vline(x=b, line_dash="dot", line_color="gray", annotation_text=f"BE {b:,.0f}")
    fig.add_vline(x=c.spot, line_color="black", line_width=1, annotation_text=f"spot {c.spot:,.1f}",
                  annotation_position="bottom right")
    fig.add_hline(y=0, line_color="black", line_width=0.5)
    mp = "unlimited" if a.max_profit is None else f"₹{a.max_profit:,.0f}"
    ml = "unlimited" if a.max_loss is None else f"₹{a.max_loss:,.0f}"
    legs = ", ".join(f"{leg.side.value} {leg.quantity} {leg.instrument.value}"
                     + (f" {leg.strike:g}" if leg.strike else "") + (f" {leg.expiry:%d%b}" if leg.expiry else "")
                     + f" @{leg.price:.2f}" for leg in c.legs)
    fig.update_layout(
        title=(f"{c.symbol} {c.strategy.display_name} — max profit {mp}, max loss {ml}, POP {a.pop:.1%} "
               f"(lognormal, F={F:,.1f}, σ={a.pop_inputs.sigma:.1%}, T={a.pop_inputs.t_years * 365:.1f}d/365)"
               f"<br><sup>{legs}</sup>"),
        xaxis_title="underlying at expiry", yaxis_title="P&L (₹)", template="plotly_white", height=560,
        hovermode="x unified", legend={"orientation": "h", "y": -0.18},
    )
    return fig


def _money(x: float | None) -> str:
    return "unlimited" if x is None else f"₹{x:,.0f}"


def payoff_png(c: Candidate) -> bytes:
    """Static payoff chart (PNG, matplotlib Agg): P&L at expiry (green profit / red loss) and today
    (T+0, dashed) against the underlying, with the breakevens, the spot and the strikes marked,
    ±1σ / ±2σ shaded, and max profit / max loss / POP / EV annotated."""
    from . import png

    a = c.analytics
    sigma = a.pop_inputs.sigma * np.sqrt(max(a.pop_inputs.t_years, 1e-6))
    F = a.pop_inputs.forward
    lo, hi = F * np.exp(-3.2 * sigma), F * np.exp(3.2 * sigma)
    strikes = sorted({leg.strike for leg in c.legs if leg.strike is not None})
    bes = [float(b) for b in a.breakevens if lo <= b <= hi]
    S = np.unique(np.concatenate([np.linspace(lo, hi, 300), [m for m in strikes + bes if lo < m < hi]]))
    expiry = pnl_at_front_expiry([c], S)[0]
    expiry = np.where(np.isin(S, bes), 0.0, expiry)
    today = value_today(c, S)
    fig = png.figure()
    ax = fig.add_subplot()
    for k, alpha in ((2, 0.06), (1, 0.10)):
        ax.axvspan(F * np.exp(-k * sigma), F * np.exp(k * sigma), color="royalblue", alpha=alpha, lw=0)
    ax.plot(S, np.where(expiry >= -1e-9, expiry, np.nan), color="#2ca02c", lw=2.0, label="at expiry (profit)")
    ax.plot(S, np.where(expiry <= 1e-9, expiry, np.nan), color="#d62728", lw=2.0, label="at expiry (loss)")
    ax.plot(S, today, color="#1f77b4", lw=1.2, ls="--", label="today (T+0)")
    ax.axhline(0, color="black", lw=0.6)
    ax.axvline(c.spot, color="black", lw=1.0, ls="-")
    ymin, ymax = float(np.nanmin([expiry.min(), today.min()])), float(np.nanmax([expiry.max(), today.max()]))
    ax.annotate(f"spot {c.spot:,.1f}", (c.spot, ymin + 0.12 * (ymax - ymin)), fontsize=7, ha="left",
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
    ax.annotate(f"max profit {_money(a.max_profit)}", (S[i_best], expiry[i_best]), fontsize=7, color="#2ca02c",
                xytext=(2, 4), textcoords="offset points", ha="left")
    ax.annotate(f"max loss {_money(None if a.max_loss is None else -abs(a.max_loss))}", (S[i_worst], expiry[i_worst]),
                fontsize=7, color="#d62728", xytext=(0, -10), textcoords="offset points", ha="center")
    ax.set_title(f"{c.symbol} {c.strategy.display_name}: max profit {_money(a.max_profit)}, max loss "
                 f"{_money(a.max_loss)}, POP {a.pop:.0%}, EV ₹{a.expected_value:,.0f}", fontsize=9)
    ax.set_xlabel(f"underlying at expiry (strikes ▲; shaded ±1σ/±2σ, σ={a.pop_inputs.sigma:.1%})", fontsize=8)
    ax.set_ylabel("P&L (₹)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="best")
    ax.margins(x=0)
    return png.to_png(fig)


def best_for_charts(ranked, count: int) -> list:
    """The ``count`` best-scoring first-ranked candidates (the ones the session charts)."""
    if count <= 0:
        return []
    return sorted((rc for rc in ranked if rc.rank == 1), key=lambda rc: -rc.scored.total_score)[:count]


def charts_markdown(ranked, count: int) -> str:
    """Markdown with one embedded PNG payoff chart per charted candidate (asset metadata)."""
    from .png import markdown_image

    parts = []
    for rc in best_for_charts(ranked, count):
        c = rc.candidate
        parts.append(f"**{c.symbol} {c.strategy.display_name}** (score {rc.scored.total_score:.1f}, "
                     f"{rc.scored.conviction})\n\n" + markdown_image(f"{c.symbol} {c.name} payoff", payoff_png(c)))
    return "\n\n".join(parts)


def write_payoff_chart(c: Candidate, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one plotly.min.js per folder (offline, ~4.7 MB once instead of in every chart)
    payoff_figure(c).write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path
