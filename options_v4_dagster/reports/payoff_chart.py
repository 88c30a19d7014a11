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


def write_payoff_chart(c: Candidate, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # one plotly.min.js per folder (offline, ~4.7 MB once instead of in every chart)
    payoff_figure(c).write_html(str(path), include_plotlyjs="directory", full_html=True)
    return path
