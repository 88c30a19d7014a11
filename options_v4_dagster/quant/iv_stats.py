"""IV percentile and IV rank from a history of 30-day ATM IVs.

- IV percentile: the share (0-100) of the previous ``window`` sessions whose 30-day ATM IV is
  below today's.
- IV rank: (IV - min) / (max - min) x 100 over the same previous sessions *and today*, so it
  stays in [0, 100] (the usual 52-week high/low definition).
- With fewer than ``min_history`` previous sessions both are null and ``reason`` says why;
  never a default value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_WINDOW = 252
DEFAULT_MIN_HISTORY = 20


@dataclass(frozen=True)
class Thresholds:
    low: float = 30.0  # IV percentile below this: LOW
    high: float = 70.0  # above this: HIGH

    def environment(self, percentile: float | None) -> str | None:
        if percentile is None or not np.isfinite(percentile):
            return None
        return "LOW" if percentile < self.low else "HIGH" if percentile > self.high else "NORMAL"


@dataclass(frozen=True)
class IVStanding:
    iv: float | None
    percentile: float | None
    rank: float | None
    history_days: int
    window_min: float | None
    window_max: float | None
    reason: str | None


def iv_standing(today: float | None, previous: np.ndarray, *, window: int = DEFAULT_WINDOW,
                min_history: int = DEFAULT_MIN_HISTORY) -> IVStanding:
    """``previous``: earlier sessions' 30-day ATM IVs, oldest first (NaN for sessions without one)."""
    prev = np.asarray(previous, dtype=float)[-window:]
    prev = prev[np.isfinite(prev)]
    n = int(prev.size)
    if today is None or not np.isfinite(today):
        return IVStanding(None, None, None, n, None, None, "no 30-day ATM IV on this session")
    if n < min_history:
        return IVStanding(today, None, None, n, None, None,
                          f"only {n} earlier sessions of IV history; percentile needs {min_history}")
    pct = float(np.count_nonzero(prev < today)) / n * 100.0
    lo, hi = float(min(prev.min(), today)), float(max(prev.max(), today))
    if hi <= lo:
        return IVStanding(today, pct, None, n, lo, hi, "IV did not move over the window: rank undefined")
    return IVStanding(today, pct, (today - lo) / (hi - lo) * 100.0, n, lo, hi, None)
