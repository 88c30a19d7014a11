"""How well the system's probabilities and expectations held: calibration of the closed trades.

* **POP reliability**: closed trades in deciles of the predicted probability of profit (the POP the
  allocation held for the position: profit at expiry under the lognormal model of
  ``strategies/analytics``), each with its count, the mean predicted POP, the realized win rate (P&L
  > 0 after fees, at whatever exit the rules took) and its Wilson score interval (95%). A calibrated
  system has the realized rate inside the interval around the prediction.
* **Brier score**: mean of (POP - win)^2 over the closed trades; the reference is the score of
  always predicting the realized base rate (``base_rate * (1 - base_rate)``), and the skill score
  ``1 - brier / reference`` (> 0: the POPs discriminate better than the base rate).
* **EV**: predicted expected value (INR over the position's life) against the realized P&L per trade:
  totals, means, their correlation, and the same in quintiles of the predicted EV.
* **Exit rules**: per rule, how often it fired (exit intents written: executed, partial or failed),
  how many trades it closed (the rule of a trade's last exit), their win rate and P&L.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

__all__ = ["brier", "ev_calibration", "exit_rule_stats", "reliability", "wilson_interval"]

Z95 = 1.959963984540054


def wilson_interval(wins: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of a binomial proportion ``wins / n`` (None, None when ``n`` is 0)."""
    if n <= 0:
        return None, None
    p = wins / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))  # contains p despite rounding


def _closed_with(trades: pl.DataFrame, col: str) -> pl.DataFrame:
    if trades.height == 0:
        return trades
    return trades.filter((pl.col("status") == "closed") & pl.col(col).is_not_null() & pl.col(col).is_finite())


def reliability(trades: pl.DataFrame, bins: int = 10) -> list[dict]:
    """The POP reliability table (module docstring): one row per non-empty decile bucket."""
    t = _closed_with(trades, "pop")
    out = []
    if t.height == 0:
        return out
    pop = np.clip(t.get_column("pop").to_numpy().astype(float), 0.0, 1.0)
    win = (t.get_column("pnl").to_numpy().astype(float) > 0)
    idx = np.minimum((pop * bins + 1e-9).astype(int), bins - 1)
    for b in range(bins):
        m = idx == b
        n = int(m.sum())
        if n == 0:
            continue
        k = int(win[m].sum())
        lo, hi = wilson_interval(k, n)
        out.append({"pop_bucket": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "predicted": float(pop[m].mean()),
                    "realized": k / n, "n": n, "wins": k, "ci_low": lo, "ci_high": hi})
    return out


def brier(trades: pl.DataFrame) -> dict:
    """Brier score of the POPs against the outcomes, its base-rate reference and skill score."""
    t = _closed_with(trades, "pop")
    if t.height == 0:
        return {"brier": None, "reference": None, "skill": None, "n": 0, "base_rate": None,
                "mean_predicted": None}
    pop = np.clip(t.get_column("pop").to_numpy().astype(float), 0.0, 1.0)
    win = (t.get_column("pnl").to_numpy().astype(float) > 0).astype(float)
    score = float(np.mean((pop - win) ** 2))
    base = float(win.mean())
    ref = base * (1 - base)
    return {"brier": score, "reference": ref, "skill": (1 - score / ref) if ref > 0 else None, "n": int(t.height),
            "base_rate": base, "mean_predicted": float(pop.mean())}


def ev_calibration(trades: pl.DataFrame, bins: int = 5) -> dict:
    """Predicted EV against realized P&L per closed trade (module docstring)."""
    t = _closed_with(trades, "expected_value")
    if t.height == 0:
        return {"n": 0, "predicted_total": 0.0, "realized_total": 0.0, "predicted_mean": None,
                "realized_mean": None, "correlation": None, "buckets": []}
    ev = t.get_column("expected_value").to_numpy().astype(float)
    pnl = t.get_column("pnl").to_numpy().astype(float)
    corr = float(np.corrcoef(ev, pnl)[0, 1]) if t.height > 2 and ev.std() > 0 and pnl.std() > 0 else None
    order = np.argsort(ev, kind="stable")
    buckets = []
    for i, part in enumerate(np.array_split(order, min(bins, t.height))):
        if part.size == 0:
            continue
        buckets.append({"ev_bucket": f"Q{i + 1}", "ev_low": float(ev[part].min()), "ev_high": float(ev[part].max()),
                        "predicted": float(ev[part].mean()), "realized": float(pnl[part].mean()),
                        "n": int(part.size)})
    return {"n": int(t.height), "predicted_total": float(ev.sum()), "realized_total": float(pnl.sum()),
            "predicted_mean": float(ev.mean()), "realized_mean": float(pnl.mean()),
            "correlation": corr if corr is None or math.isfinite(corr) else None, "buckets": buckets}


def exit_rule_stats(trades: pl.DataFrame, intents: pl.DataFrame) -> list[dict]:
    """Per exit rule: intents fired (by state) and the closed trades it ended, with their outcome."""
    fired: dict[str, dict[str, int]] = {}
    for r in intents.iter_rows(named=True):
        fired.setdefault(r["rule"], {}).setdefault(r["state"], 0)
        fired[r["rule"]][r["state"]] += 1
    closed = trades.filter(pl.col("status").is_in(["closed", "unwound"])) if trades.height else trades
    rules = sorted(set(fired) | set(closed.get_column("exit_rule").drop_nulls().to_list() if closed.height else []))
    out = []
    for rule in rules:
        ended = closed.filter(pl.col("exit_rule") == rule) if closed.height else closed
        pnl = ended.get_column("pnl").to_numpy().astype(float) if ended.height else np.array([])
        states = fired.get(rule, {})
        out.append({"rule": rule, "fired": int(sum(states.values())), "states": dict(sorted(states.items())),
                    "trades_closed": int(pnl.size), "win_rate": float((pnl > 0).mean()) if pnl.size else None,
                    "average_pnl": float(pnl.mean()) if pnl.size else None, "pnl": float(pnl.sum()),
                    "average_days": float(ended.get_column("days_in_trade").mean()) if ended.height else None})
    return sorted(out, key=lambda r: (-r["trades_closed"], -r["fired"], r["rule"]))
