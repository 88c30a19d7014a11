"""IV history chart: 30-day ATM IV with its trailing 252-session range and percentile bands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from .. import config

WINDOW = 252


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

    iv = _col(hist, "atm_iv_30d", 100.0)
    x, bands = break_gaps(hist.get_column("trade_date").cast(pl.Date).to_numpy().astype("datetime64[D]"),
                          {**rolling_bands(iv), "iv": iv, "rv": _col(hist, "rv_20", 100.0)})
    dates, iv = x.astype(object).tolist(), bands["iv"]  # NaN rows at gaps: plotly breaks the lines there
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=dates, y=bands["max"], line={"width": 0}, name="252-session max", showlegend=False))
    fig.add_trace(go.Scatter(x=dates, y=bands["min"], fill="tonexty", fillcolor="rgba(99,110,250,0.10)",
                             line={"width": 0}, name="252-session range"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p75"], line={"width": 0}, showlegend=False, name="75th pct"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p25"], fill="tonexty", fillcolor="rgba(99,110,250,0.22)",
                             line={"width": 0}, name="25th-75th percentile"))
    fig.add_trace(go.Scatter(x=dates, y=bands["p50"], line={"dash": "dot", "color": "gray"}, name="median"))
    fig.add_trace(go.Scatter(x=dates, y=iv, line={"color": "#d62728", "width": 2}, name="30-day ATM IV"))
    if "rv_20" in hist.columns:
        fig.add_trace(go.Scatter(x=dates, y=bands["rv"],
                                 line={"color": "#2ca02c", "width": 1}, name="realized vol 20d"))
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


# --- static PNG (asset metadata in the Dagster UI, and beside the HTML of `iv show`) ----------------

MAX_GAP_SESSIONS = 5  # consecutive points further apart than this many sessions are not joined by a line
CHART_SESSIONS = WINDOW  # sessions shown in the metadata charts (the bands look back another WINDOW)


def session_gaps(dates: np.ndarray) -> np.ndarray:
    """NSE sessions from each date to the next (1 = consecutive sessions), len(dates) - 1 values."""
    from .. import calendar

    d = np.asarray(dates, dtype="datetime64[D]")
    if d.size < 2:
        return np.zeros(0, dtype=np.int64)
    first, last = d[0].astype(object), d[-1].astype(object)
    sessions = np.asarray(calendar.sessions_between(first, last), dtype="datetime64[D]")
    return np.diff(np.searchsorted(sessions, d)).astype(np.int64)


def gap_starts(dates, max_gap: int = MAX_GAP_SESSIONS) -> np.ndarray:
    """Indices ``i`` where ``dates[i]`` is more than ``max_gap`` sessions after ``dates[i-1]`` (a data gap)."""
    return np.flatnonzero(session_gaps(np.asarray(dates, dtype="datetime64[D]")) > max_gap) + 1


def break_gaps(dates: np.ndarray, columns: dict[str, np.ndarray],
               max_gap: int = MAX_GAP_SESSIONS) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Line data with gaps: where two consecutive dates are more than ``max_gap`` sessions apart, a
    point at the calendar midpoint with NaN in every column is inserted, so matplotlib (and plotly)
    break the line and the bands there instead of drawing straight across the missing weeks."""
    d = np.asarray(dates, dtype="datetime64[D]")
    cols = {k: np.asarray(v, dtype=float) for k, v in columns.items()}
    at = gap_starts(d, max_gap)  # insert before these indices
    if at.size == 0:
        return d, cols
    mid = d[at - 1] + (d[at] - d[at - 1]) // 2
    return np.insert(d, at, mid), {k: np.insert(v, at, np.nan) for k, v in cols.items()}


def _col(hist: pl.DataFrame, name: str, scale: float = 1.0) -> np.ndarray:
    if name not in hist.columns:
        return np.full(hist.height, np.nan)
    return hist.get_column(name).cast(pl.Float64).fill_null(np.nan).to_numpy() * scale


def iv_png(symbol: str, hist: pl.DataFrame, session: dt.date | None = None, since: dt.date | None = None) -> bytes:
    """Static chart (PNG, matplotlib Agg, ~20-40 kB) of a symbol's 30-day ATM IV in percent.

    ``hist``: one row per session, oldest first, with ``trade_date`` and ``atm_iv_30d`` (fraction);
    optional ``rv_20``, and from iv_percentiles ``window_min``/``window_max``/``iv_percentile``/
    ``iv_rank``. The trailing 252-session min-max range is iv_percentiles' where present (else from
    the rows themselves), the 25th-75th percentile band from the rows; ``session`` (default the last
    row) is marked; rows before ``since`` serve the bands but are not drawn. Gaps of more than
    MAX_GAP_SESSIONS sessions break every line and band.
    """
    from . import png

    hist = hist.drop_nulls("atm_iv_30d").sort("trade_date")
    if hist.height < 2:
        raise ValueError(f"{symbol}: {hist.height} session(s) of 30-day ATM IV; a chart needs 2")
    iv = _col(hist, "atm_iv_30d", 100.0)
    bands = rolling_bands(iv)
    lo = np.where(np.isfinite(_col(hist, "window_min")), _col(hist, "window_min", 100.0), bands["min"])
    hi = np.where(np.isfinite(_col(hist, "window_max")), _col(hist, "window_max", 100.0), bands["max"])
    dates = hist.get_column("trade_date").cast(pl.Date).to_numpy().astype("datetime64[D]")
    keep = dates >= np.datetime64(since, "D") if since else np.ones(dates.size, dtype=bool)
    if keep.sum() < 2:
        keep[-2:] = True
    cols = {"iv": iv, "rv": _col(hist, "rv_20", 100.0), "lo": lo, "hi": hi,
            "p25": bands["p25"], "p50": bands["p50"], "p75": bands["p75"]}
    x, y = break_gaps(dates[keep], {k: v[keep] for k, v in cols.items()})
    fig = png.figure(7.5, 3.8)
    ax = fig.add_subplot()
    ax.fill_between(x, y["lo"], y["hi"], color="#636efa", alpha=0.10, lw=0, label="252-session min-max")
    ax.fill_between(x, y["p25"], y["p75"], color="#636efa", alpha=0.25, lw=0, label="25th-75th percentile")
    ax.plot(x, y["p50"], color="gray", lw=0.8, ls=":", label="median")
    if np.isfinite(y["rv"]).any():
        ax.plot(x, y["rv"], color="#2ca02c", lw=1.0, label="realized vol 20d")
    ax.plot(x, y["iv"], color="#d62728", lw=1.6, label="30-day ATM IV")
    last = hist.filter(pl.col("trade_date") == session) if session else hist.tail(1)
    if last.height == 0:
        last = hist.tail(1)
    row = last.row(0, named=True)
    mark = np.datetime64(row["trade_date"], "D")
    ax.axvline(mark, color="black", lw=0.8, ls="--", label=f"session {row['trade_date']}")
    ax.plot([mark], [row["atm_iv_30d"] * 100], marker="o", color="#d62728", ms=5)
    standing = ""
    if row.get("iv_percentile") is not None:
        standing = f", IV percentile {row['iv_percentile']:.0f}"
        if row.get("iv_rank") is not None:
            standing += f", rank {row['iv_rank']:.0f}"
    ax.set_title(f"{symbol} 30-day ATM IV {row['atm_iv_30d'] * 100:.1f}% on {row['trade_date']}{standing}",
                 fontsize=9)
    ax.set_ylabel("vol (%)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=6, frameon=False)
    ax.margins(x=0.01)
    return png.to_png(fig)


def iv_charts_markdown(wh, session: dt.date, standings: pl.DataFrame, top: int = 3,
                       fixed: tuple[str, ...] = ("NIFTY", "BANKNIFTY"), sessions: int = CHART_SESSIONS) -> str:
    """Markdown for iv_percentiles' metadata: one embedded PNG per symbol, for ``fixed`` and the ``top``
    symbols with the highest IV percentile in ``standings`` (the session's iv_percentiles rows).
    History is read from ``wh`` (the warehouse); a symbol with fewer than 2 sessions of 30-day ATM IV
    gets a note instead of a chart."""
    from .. import calendar
    from ..store.volatility_queries import symbol_iv_history
    from .png import markdown_image

    ranked = (standings.filter(pl.col("iv_percentile").is_not_null() & ~pl.col("symbol").is_in(list(fixed)))
              .sort(["iv_percentile", "symbol"], descending=[True, False]).get_column("symbol").to_list())
    symbols = list(fixed) + ranked[:max(top, 0)]
    back = calendar.sessions_back(session, 2 * sessions)
    parts = []
    for sym in symbols:
        hist = symbol_iv_history(wh, sym, back[0], session)
        n = int(hist.get_column("atm_iv_30d").is_not_null().sum())
        if n < 2:
            parts.append(f"**{sym}**: {n} session(s) of 30-day ATM IV up to {session}; no chart (needs 2)")
            continue
        label = "" if sym in fixed else " (top IV percentile)"
        parts.append(f"**{sym}**{label}\n\n" + markdown_image(
            f"{sym} 30-day ATM IV", iv_png(sym, hist, session, since=back[-sessions])))
    return "\n\n".join(parts)
