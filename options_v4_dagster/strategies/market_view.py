"""The market view of one underlying that scoring compares strategies with (a ``technical_signals``
row): direction and strength, IV environment, market state and momentum."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DIRECTIONS", "IV_ENVS", "MarketView", "views_from_signals"]

DIRECTIONS = ("BULLISH", "NEUTRAL", "BEARISH")
IV_ENVS = ("LOW", "NORMAL", "HIGH")


@dataclass(frozen=True)
class MarketView:
    """What the market analysis says about one underlying (a ``technical_signals`` row).

    ``direction`` BULLISH / NEUTRAL / BEARISH (None = unknown), ``strength`` 0..1,
    ``iv_environment`` LOW / NORMAL / HIGH (None = unknown), ``market_state`` e.g. BULLISH_HIGH_IV
    (fills a missing direction / IV environment), ``momentum`` -1..1 (None = unknown).
    """

    direction: str | None
    strength: float
    iv_environment: str | None
    market_state: str | None
    momentum: float | None = None

    def __post_init__(self) -> None:
        d = _upper(self.direction)
        env = _upper(self.iv_environment)
        state = _upper(self.market_state)
        if state:
            parts = state.split("_")
            if d is None and parts[0] in DIRECTIONS:
                d = parts[0]
            if env is None and len(parts) >= 2 and parts[1] in IV_ENVS:
                env = parts[1]
        if d is not None and d not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS} or None, got {self.direction!r}")
        if env is not None and env not in IV_ENVS:
            raise ValueError(f"iv_environment must be one of {IV_ENVS} or None, got {self.iv_environment!r}")
        s = _num(self.strength)
        m = _num(self.momentum)
        object.__setattr__(self, "direction", d)
        object.__setattr__(self, "iv_environment", env)
        object.__setattr__(self, "market_state", state)
        object.__setattr__(self, "strength", 0.0 if s is None else min(max(s, 0.0), 1.0))
        object.__setattr__(self, "momentum", None if m is None else min(max(m, -1.0), 1.0))

    @classmethod
    def neutral(cls) -> MarketView:
        """No view: every view-dependent component scores its neutral value."""
        return cls(None, 0.0, None, None, None)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MarketView:
        """From a ``technical_signals``-like mapping; momentum from ``momentum`` or the MACD/RSI columns."""
        mom = row.get("momentum")
        if _num(mom) is None:
            mom = _momentum(row)
        return cls(row.get("direction"), row.get("strength") or 0.0, row.get("iv_environment"),
                   row.get("market_state"), mom)


def _upper(x: Any) -> str | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    s = str(x).strip().upper()
    return s or None


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _clip1(x: float) -> float:
    return min(max(x, -1.0), 1.0)


def _momentum(row: Mapping[str, Any]) -> float | None:
    """MACD and RSI votes as in :mod:`quant.indicators` (weights 0.20 / 0.15): the ``vote_macd`` /
    ``vote_rsi`` columns when present, else from ``macd``, ``macd_hist``, ``atr14`` and ``rsi14``."""
    votes: list[tuple[float, float]] = []
    vm, vr = _num(row.get("vote_macd")), _num(row.get("vote_rsi"))
    if vm is None:
        macd, hist, atr = _num(row.get("macd")), _num(row.get("macd_hist")), _num(row.get("atr14"))
        if macd is not None and atr:
            vm = _clip1(macd / atr) if hist is None else 0.5 * _clip1(macd / atr) + 0.5 * _clip1(4 * hist / atr)
    if vr is None:
        rsi = _num(row.get("rsi14"))
        if rsi is not None:
            vr = _clip1((rsi - 50.0) / 20.0)
    if vm is not None:
        votes.append((0.20, vm))
    if vr is not None:
        votes.append((0.15, vr))
    if not votes:
        return None
    return sum(w * v for w, v in votes) / sum(w for w, _ in votes)


def views_from_signals(signals) -> dict[str, MarketView]:
    """``{symbol: MarketView}`` from a ``technical_signals`` frame (polars / pandas) or rows (dicts)."""
    if hasattr(signals, "to_dicts"):
        rows = signals.to_dicts()
    elif hasattr(signals, "to_dict") and hasattr(signals, "columns"):
        rows = signals.to_dict("records")
    else:
        rows = list(signals)
    return {str(r["symbol"]): MarketView.from_row(r) for r in rows}

