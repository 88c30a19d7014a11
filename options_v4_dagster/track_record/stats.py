"""What the replay earned: statistics of the daily equity curve and of the closed trades.

Definitions are the reference ones:

* equity curve -- `empyrical <https://github.com/stefan-jansen/empyrical-reloaded>`_ (pyfolio's
  library) on the daily simple returns of the equity (the first against the initial capital):
  ``sharpe_ratio`` (mean / sample std x sqrt(252), risk-free 0), ``sortino_ratio`` (mean / downside
  deviation x sqrt(252), required return 0), ``max_drawdown`` (<= 0), ``cagr`` (252 sessions a
  year), ``calmar_ratio`` (CAGR / |max drawdown|), ``annual_volatility``. The drawdown's duration
  follows pyfolio's drawdown table: sessions from the peak to the recovery (or to the end when it has
  not recovered); ``longest_drawdown_sessions`` is the longest such spell under water;
* monthly returns: the month's last equity over the previous month's last (the first month over the
  initial capital), against the monthly target (4%);
* trades -- optopsy's: win rate = winners / closed trades (a winner has P&L > 0 after fees), profit
  factor = gross profit / |gross loss| (None without a loss), average win and loss, average days in
  trade (calendar days from the entry fill to the last exit fill); turnover = premium traded (sum
  of |price x quantity| over every fill) / the initial capital; fees = every fill's charges;
  spread paid = what the fills paid against the mid of their contract's quote that session.

Every figure that is not a finite number (no trade, no variance) is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import polars as pl

__all__ = ["BREAKDOWNS", "MONTHLY_TARGET", "breakdown", "drawdowns", "equity_stats", "monthly_returns",
           "trade_stats"]

MONTHLY_TARGET = 0.04
#: trade columns the statistics are broken down by
BREAKDOWNS = ("strategy_name", "category", "conviction", "dte_bucket", "delta_bucket")


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def daily_returns(equity: pl.DataFrame, initial: float) -> pd.Series:
    """Simple returns of the ``equity`` column per ``session`` (the first against ``initial``)."""
    values = np.concatenate([[float(initial)], equity.get_column("equity").to_numpy().astype(float)])
    idx = pd.DatetimeIndex(pd.to_datetime(equity.get_column("session").to_list()))
    return pd.Series(values[1:] / values[:-1] - 1.0, index=idx)


def drawdowns(equity: np.ndarray, initial: float) -> dict:
    """The maximum drawdown (a fraction, <= 0) with the indexes of its peak, valley and recovery (None:
    not recovered) into ``equity``, its duration in sessions (peak to recovery, else to the end), and
    the longest spell under water. Index -1 is the initial capital before the first session; without
    a drawdown the indexes are None."""
    curve = np.concatenate([[float(initial)], np.asarray(equity, dtype=float)])
    peaks = np.maximum.accumulate(curve)
    dd = curve / peaks - 1.0
    valley = int(np.argmin(dd))
    worst = float(dd[valley])
    peak = int(np.flatnonzero(curve[:valley + 1] == peaks[valley])[-1]) if worst < 0 else valley
    after = np.flatnonzero(curve[valley:] >= peaks[valley])
    recovery = valley + int(after[0]) if worst < 0 and after.size else None
    duration = ((recovery if recovery is not None else curve.size - 1) - peak) if worst < 0 else 0
    longest, run = 0, 0
    for under in dd < 0:
        run = run + 1 if under else 0
        longest = max(longest, run)
    if worst >= 0:  # never under water
        return {"max_drawdown": 0.0, "peak": None, "valley": None, "recovery": None, "duration_sessions": 0,
                "longest_drawdown_sessions": 0}
    return {"max_drawdown": worst, "peak": peak - 1, "valley": valley - 1,
            "recovery": None if recovery is None else recovery - 1, "duration_sessions": int(duration),
            "longest_drawdown_sessions": int(longest)}


def equity_stats(equity: pl.DataFrame, initial: float) -> dict:
    """Statistics of the daily equity curve (module docstring)."""
    import empyrical as ep

    if equity.height == 0:
        return {"sessions": 0, "start_equity": initial, "end_equity": initial, "total_return": 0.0}
    r = daily_returns(equity, initial)
    values = equity.get_column("equity").to_numpy().astype(float)
    dd = drawdowns(values, initial)
    days = equity.get_column("session").to_list()

    def day(i):
        return None if i is None else (days[i].isoformat() if i >= 0 else "start")

    one = len(r) > 1
    return {
        "sessions": equity.height, "start_equity": float(initial), "end_equity": float(values[-1]),
        "total_return": float(values[-1] / initial - 1.0),
        "cagr": _num(ep.cagr(r, period="daily")),
        "annual_volatility": _num(ep.annual_volatility(r, period="daily")) if one else None,
        "sharpe": _num(ep.sharpe_ratio(r, risk_free=0.0, period="daily")) if one else None,
        "sortino": _num(ep.sortino_ratio(r, required_return=0.0, period="daily")) if one else None,
        "max_drawdown": float(dd["max_drawdown"]),
        "calmar": _num(ep.calmar_ratio(r, period="daily")) if dd["max_drawdown"] < 0 else None,
        "max_drawdown_peak": day(dd["peak"]), "max_drawdown_valley": day(dd["valley"]),
        "max_drawdown_recovery": day(dd["recovery"]), "max_drawdown_duration_sessions": dd["duration_sessions"],
        "longest_drawdown_sessions": dd["longest_drawdown_sessions"],
    }


def monthly_returns(equity: pl.DataFrame, initial: float, target: float = MONTHLY_TARGET) -> list[dict]:
    """Per calendar month: the return, its sessions and whether it met ``target``."""
    if equity.height == 0:
        return []
    m = (equity.with_columns(pl.col("session").dt.strftime("%Y-%m").alias("month"))
         .group_by("month", maintain_order=True).agg(pl.col("equity").last().alias("end"), pl.len().alias("sessions")))
    out, prev = [], float(initial)
    for r in m.iter_rows(named=True):
        ret = r["end"] / prev - 1.0
        out.append({"month": r["month"], "return": ret, "sessions": r["sessions"], "target": target,
                    "meets_target": ret >= target})
        prev = r["end"]
    return out


def trade_stats(trades: pl.DataFrame, initial: float) -> dict:
    """Statistics of the trades (module docstring): closed ones for the outcome figures, every one for
    fees and turnover."""
    closed = trades.filter(pl.col("status") == "closed")
    pnl = closed.get_column("pnl").to_numpy().astype(float) if closed.height else np.array([])
    wins, losses = pnl[pnl > 0], pnl[pnl <= 0]
    gross_loss = float(-losses.sum())
    return {
        "trades": trades.height, "closed": closed.height,
        "open": trades.filter(pl.col("status") == "open").height,
        "unwound": trades.filter(pl.col("status") == "unwound").height,
        "win_rate": _num(wins.size / pnl.size) if pnl.size else None,
        "profit_factor": _num(wins.sum() / gross_loss) if gross_loss > 0 else None,
        "average_win": _num(wins.mean()) if wins.size else None,
        "average_loss": _num(losses.mean()) if losses.size else None,
        "average_pnl": _num(pnl.mean()) if pnl.size else None,
        "gross_profit": float(wins.sum()), "gross_loss": -gross_loss,
        "closed_pnl": float(pnl.sum()),
        "open_pnl": float(trades.filter(pl.col("status") == "open").get_column("pnl").sum()) if trades.height else 0.0,
        "average_days_in_trade": _num(closed.get_column("days_in_trade").mean()) if closed.height else None,
        "fees_paid": float(trades.get_column("fees").sum()) if trades.height else 0.0,
        "premium_traded": float(trades.get_column("traded_value").sum()) if trades.height else 0.0,
        "turnover": float(trades.get_column("traded_value").sum()) / initial if trades.height else 0.0,
        "spread_paid": float(trades.get_column("spread_paid").sum()) if trades.height else 0.0,
    }


def breakdown(trades: pl.DataFrame, by: str) -> list[dict]:
    """Per value of ``by``: trades (closed, open), win rate, P&L (total, average, of open ones), profit
    factor, average days in trade and fees; sorted by total P&L, best first."""
    out = []
    if trades.height == 0:
        return out
    for (key,), g in trades.group_by([by], maintain_order=True):
        closed = g.filter(pl.col("status") == "closed")
        pnl = closed.get_column("pnl").to_numpy().astype(float) if closed.height else np.array([])
        loss = float(-pnl[pnl <= 0].sum())
        out.append({
            by: key if key is not None else "n/a", "trades": closed.height,
            "open": g.filter(pl.col("status") == "open").height,
            "win_rate": _num((pnl > 0).mean()) if pnl.size else None,
            "pnl": float(pnl.sum()), "average_pnl": _num(pnl.mean()) if pnl.size else None,
            "open_pnl": float(g.filter(pl.col("status") == "open").get_column("pnl").sum()),
            "profit_factor": _num(pnl[pnl > 0].sum() / loss) if loss > 0 else None,
            "average_days": _num(closed.get_column("days_in_trade").mean()) if closed.height else None,
            "fees": float(g.get_column("fees").sum()),
        })
    return sorted(out, key=lambda r: (-r["pnl"], str(r[by])))


def breakdowns(trades: pl.DataFrame, keys: Sequence[str] = BREAKDOWNS) -> dict[str, list[dict]]:
    return {k: breakdown(trades, k) for k in keys}
