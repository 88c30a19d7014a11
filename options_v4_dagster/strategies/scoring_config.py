"""scoring.yaml: the weights, conviction thresholds, component parameters, risk-tolerance filters
and exit rules of :mod:`.scoring` (pydantic models; the meaning of each is in that module's docstring).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ..errors import ConfigError
from ..types import RISK_TOLERANCES
from ..yaml_config import StrictModel, validate_model
from .catalogue import Category
from .exits import ExitConfig, read_yaml
from .strikes import LEVELS

__all__ = [
    "COMPONENTS", "CONVICTIONS", "ComponentParams", "ConvictionThresholds", "IVFit", "IVFitRow", "LiquidityParams",
    "RiskFilter", "RiskFilters", "ScoringConfig", "Weights", "check_risk",
]

COMPONENTS = ("probability", "reward_risk", "market_alignment", "iv_fit", "liquidity", "time_decay", "complexity",
              "momentum")
CONVICTIONS = ("VERY_HIGH", "HIGH", "MEDIUM", "LOW", "VERY_LOW")


class Weights(StrictModel):
    probability: float = Field(0.25, ge=0)
    reward_risk: float = Field(0.15, ge=0)
    market_alignment: float = Field(0.20, ge=0)
    iv_fit: float = Field(0.15, ge=0)
    liquidity: float = Field(0.10, ge=0)
    time_decay: float = Field(0.05, ge=0)
    complexity: float = Field(0.05, ge=0)
    momentum: float = Field(0.05, ge=0)

    @model_validator(mode="after")
    def _positive_total(self) -> Weights:
        if sum(self.as_dict().values()) <= 0:
            raise ValueError("the weights add up to 0")
        return self

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in COMPONENTS}


class ConvictionThresholds(StrictModel):
    VERY_HIGH: float = Field(80.0, ge=0, le=100)
    HIGH: float = Field(65.0, ge=0, le=100)
    MEDIUM: float = Field(45.0, ge=0, le=100)
    LOW: float = Field(30.0, ge=0, le=100)
    #: the highest conviction a candidate with a negative expected value can get
    negative_ev_cap: str = "MEDIUM"

    @model_validator(mode="after")
    def _descending(self) -> ConvictionThresholds:
        if not self.VERY_HIGH > self.HIGH > self.MEDIUM > self.LOW:
            raise ValueError("thresholds must decrease: VERY_HIGH > HIGH > MEDIUM > LOW")
        if self.negative_ev_cap not in CONVICTIONS:
            raise ValueError(f"negative_ev_cap {self.negative_ev_cap!r} is not one of {', '.join(CONVICTIONS)}")
        return self


class IVFitRow(StrictModel):
    LOW: float = Field(ge=0, le=1)
    NORMAL: float = Field(ge=0, le=1)
    HIGH: float = Field(ge=0, le=1)


class IVFit(StrictModel):
    HIGH: IVFitRow = IVFitRow(LOW=0.0, NORMAL=0.5, HIGH=1.0)
    LOW: IVFitRow = IVFitRow(LOW=1.0, NORMAL=0.5, HIGH=0.0)
    ANY: IVFitRow = IVFitRow(LOW=0.6, NORMAL=0.6, HIGH=0.6)
    unknown: float = Field(0.5, ge=0, le=1)


class LiquidityParams(StrictModel):
    level_weight: float = Field(0.4, ge=0)
    spread_weight: float = Field(0.4, ge=0)
    oi_weight: float = Field(0.2, ge=0)
    max_spread_pct: float = Field(0.10, gt=0)
    full_oi: float = Field(10_000.0, gt=0)

    @model_validator(mode="after")
    def _positive_total(self) -> LiquidityParams:
        if self.level_weight + self.spread_weight + self.oi_weight <= 0:
            raise ValueError("the liquidity weights add up to 0")
        return self


class ComponentParams(StrictModel):
    reward_risk_pivot: float = Field(1.0, gt=0)
    band_sigmas: float = Field(3.0, gt=0, le=10)
    unbounded_loss_penalty: float = Field(0.5, ge=0, le=1)
    grid_points: int = Field(400, ge=50, le=5000)
    theta_scale: float = Field(0.05, gt=0)
    complexity_scores: tuple[float, float, float, float, float] = (1.0, 0.85, 0.7, 0.5, 0.3)
    unknown_view: float = Field(0.5, ge=0, le=1)
    iv_fit: IVFit = IVFit()
    liquidity: LiquidityParams = LiquidityParams()

    @field_validator("complexity_scores")
    @classmethod
    def _unit(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0.0 <= x <= 1.0 for x in v):
            raise ValueError("complexity scores must be in [0, 1]")
        return v


class RiskFilter(StrictModel):
    min_pop: float = Field(0.3, ge=0, le=1)
    allow_unlimited_risk: bool = False
    max_loss_to_margin: float | None = Field(None, gt=0)
    max_loss_inr: float | None = Field(None, gt=0)
    min_reward_risk: float = Field(0.0, ge=0)
    max_fallback_level: int = Field(len(LEVELS) - 1, ge=0, le=len(LEVELS) - 1)
    max_complexity: int = Field(5, ge=1, le=5)
    excluded_categories: tuple[Category, ...] = ()


class RiskFilters(StrictModel):
    conservative: RiskFilter = RiskFilter(min_pop=0.5, allow_unlimited_risk=False, max_loss_to_margin=1.5,
                                          min_reward_risk=0.2, max_fallback_level=1, max_complexity=4)
    moderate: RiskFilter = RiskFilter(min_pop=0.25, allow_unlimited_risk=False, max_loss_to_margin=3.0,
                                      min_reward_risk=0.1, max_fallback_level=2, max_complexity=5)
    aggressive: RiskFilter = RiskFilter(min_pop=0.15, allow_unlimited_risk=True, max_loss_to_margin=None,
                                        min_reward_risk=0.0, max_fallback_level=3, max_complexity=5)


class ScoringConfig(StrictModel):
    """scoring.yaml: ``weights``, ``conviction``, ``components``, ``risk_tolerances``, ``exits``."""

    weights: Weights = Weights()
    conviction: ConvictionThresholds = ConvictionThresholds()
    components: ComponentParams = ComponentParams()
    risk_tolerances: RiskFilters = RiskFilters()
    exits: ExitConfig = ExitConfig()

    @classmethod
    def load(cls, path: str | Path | None = None) -> ScoringConfig:
        """Read and validate a scoring YAML (default: the packaged ``config/scoring.yaml``); a bad
        file raises :class:`~options_v4_dagster.errors.ConfigError` naming the key(s) at fault.
        Keys left out take the defaults documented in the packaged file."""
        if path is None:
            return _default_config()
        data, p = read_yaml(path)
        return validate_model(cls, data, p)

    def filters(self, risk: str) -> RiskFilter:
        return getattr(self.risk_tolerances, check_risk(risk))


@lru_cache(maxsize=1)
def _default_config() -> ScoringConfig:
    data, p = read_yaml(None)
    return validate_model(ScoringConfig, data, p)


def check_risk(risk: str) -> str:
    r = str(risk).strip().lower()
    if r not in RISK_TOLERANCES:
        raise ConfigError(f"risk tolerance {risk!r} is not one of {', '.join(RISK_TOLERANCES)}")
    return r

