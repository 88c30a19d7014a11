"""Types shared by every layer: the per-symbol :class:`Failure` record and the closed vocabularies
(market-data sources, risk tolerances) that the CLI, run config and domain all accept.

No Dagster import: the domain, the store and ``defs/`` all read these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .errors import DataUnavailable

#: Where market data comes from. ``simulated`` is the offline default.
MarketSource = Literal["simulated", "nse_files", "dhan", "yfinance"]
MARKET_SOURCES: tuple[str, ...] = get_args(MarketSource)

#: Risk filters of scoring.yaml.
RiskTolerance = Literal["conservative", "moderate", "aggressive"]
RISK_TOLERANCES: tuple[str, ...] = get_args(RiskTolerance)


@dataclass(frozen=True)
class Failure:
    """One symbol that could not be served: recorded, shown in metadata, never fatal to a partition."""

    symbol: str
    stage: str
    reason: str
    kind: str = "error"  # "error" (bad data / provider failure) or "missing" (source has nothing)

    @classmethod
    def from_exception(cls, symbol: str, stage: str, exc: BaseException) -> Failure:
        kind = "missing" if isinstance(exc, DataUnavailable) else "error"
        reason = str(exc) or type(exc).__name__  # a DataError's text names file, symbol, session and field
        return cls(symbol=symbol, stage=stage, reason=f"{type(exc).__name__}: {reason}", kind=kind)
