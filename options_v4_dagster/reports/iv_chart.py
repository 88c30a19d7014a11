"""IV history chart: 30-day ATM IV with its trailing 252-session range and percentile bands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from .. import config

WINDOW = 252
#: Consecutive points more than this many weekdays apart are a gap in the data: the lines break there.
MAX_GAP_SESSIONS = 5


def gap_starts(dates, max_gap: int = MAX_GAP_SESSIONS) -> np.ndarray:
    """Indices ``i`` where ``dates[i]`` is more than ``max_gap`` weekdays after ``dates[i-1]`` (a data gap)."""
    d = np.asarray(dates, dtype="datetime64[D]")
    if d.size < 2:
        return np.array([], dtype=int)
    steps = np.busday_count(d[:-1], d[1:])
    return np.nonzero(steps > max_gap)[0] + 1


def break_at_gaps(dates, series: dict[str, np.ndarray], max_gap: int = MAX_GAP_SESSIONS):
    """Dates and series with a None point inserted inside every gap, so plotly breaks each line there
    instead of drawing a straight line across months without data."""
    cuts = gap_starts(dates, max_gap)
    if cuts.size == 0:
        return list(dates), {k: list(v) for k, v in series.items()}
    d = np.asarray(dates, dtype="datetime64[D]")
    mids = d[cuts - 1] + (d[cuts] - d[cuts - 1]) // 2
    x = np.insert(d, cuts, mids).astype(object).tolist()
    out = {}
    for k, v in series.items():
        arr = np.asarray(v, dtype=float)
        out[k] = [None if not np.isfinite(y) else float(y) for y in np.insert(arr, cuts, np.nan)]
    return x, out


def rolling_bands(iv: np.ndarray, window: int = WINDOW, min_history: int = 20) -> dict[str, np.ndarray]:
    """Trailing min, max, 25th/50th/75th percentiles of the *previous* ``window`` values per point
    (NaN until ``min_history`` earlier values exist)."""
    n = iv.size
    out = {k: np.full(n, np.nan) for k in ("min", "p25", "p50", "p75", "max")}
    for i in range(n):
        prev = iv[max(0, i - window):i]
        prev = prev[np.isfinite(prev)]
        if prev.size >= min_history:
            out["min"][i], out["max"][i] = prev.min(), prev.max()
            out["p25"][i], out["p50"][i], out["p75"][i] = np.percentile(prev, [25, 50, 75])
    return out


def write_iv_chart(symbol: str, hist: pl.DataFrame, out: str | None = None) -> Path:
    import plotly.graph_objects as go

    raw_dates = hist.get_column("trade_date").to_list()
    iv = hist.get_column("atm_iv_30d").cast(pl.Float64).to_numpy() * 100
    series = {**rolling_bands(iv), "iv": iv}
    if "rv_20" in hist.columns:
        series["rv"] = hist.get_column("rv_20").cast(pl.Float64).to_numpy() * 100
    dates, bands = break_at_gaps(raw_dates, series)
    iv = bands["iv"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=bands["max"], line={"width": 0}, name="252-session max", showlegend=False))
    fig.add_trace(go.Scatter(x=dates, y=bands["min"], fill="tonexty", fillcolor="rgba(99,110,250,0.10)",
                             line={"width": 0}, name="252-session range"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p75"], line={"width": 0}, showlegend=False, name="75th pct"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p25"], fill="tonexty", fillcolor="rgba(99,110,250,0.22)",
                             line={"width": 0}, name="25th-75th percentile"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p50"], line={"dash": "dot", "color": "gray"}, name="median"))
    fig.add_trace(go.Scatter(x=dates, y=iv, line={"color": "#d62728", "width": 2}, name="30-day ATM IV"))
    if "rv" in bands:
        fig.add_trace(go.Scatter(x=dates, y=bands["rv"], line={"color": "#2ca02c", "width": 1},
                                 name="realized vol 20d"))
    last = hist.tail(1).row(0, named=True)
    subtitle = ""
    if last.get("iv_percentile") is not None:
        subtitle = f" — IV percentile {last['iv_percentile']:.0f}, IV rank {last['iv_rank']:.0f} on {last['trade_date']}"
    fig.update_layout(title=f"{symbol}: 30-day ATM implied volatility{subtitle}", yaxis_title="vol (%)",
                      template="plotly_white", hovermode="x unified", height=520)
    fig.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}])  # sessions only: no weekend gaps
    path = Path(out) if out else config.home_dir() / "charts" / f"iv_{symbol}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(path), include_plotlyjs="directory", full_html=True)  # plotly.min.js beside it, once
    return path
