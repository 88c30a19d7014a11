"""Defaults of the exit rules (``config/exit_rules.yaml``), validated with pydantic like every
other YAML of the project (:mod:`..yaml_config`: unknown keys are errors naming the key).

Per-strategy levels come from ``strategy_exit_levels`` (:mod:`..strategies.exits`); this file
holds what applies when a level is missing, the caps applied on top of the levels, the portfolio
limits and the settlement cut-off. Money in INR of the whole position, shares as fractions (0.5 =
50%). A ``null`` threshold disables that check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..quant.surface import DEFAULT_RATE
from ..yaml_config import PackagedYaml, StrictModel, read_yaml_mapping, validate_model

__all__ = ["ExitRulesConfig", "default_exit_rules_path", "load_exit_rules"]

DEFAULT_FILE = "config/exit_rules.yaml"
Basis = Literal["close", "mid"]


class ProfitTargetRule(StrictModel):
    enabled: bool = True
    default_pct_of_max_profit: float = Field(0.5, gt=0, le=1)  # without a stored target
    basis: Basis = "close"  # P&L measured at the close-out prices (what closing would realize)


class ScaleOutStep(StrictModel):
    at_pct: float = Field(gt=0, le=1)
    close_fraction: float = Field(gt=0, le=1)


class ScaleOutRule(StrictModel):
    enabled: bool = True
    default_steps: tuple[ScaleOutStep, ...] = (
        ScaleOutStep(at_pct=0.25, close_fraction=0.33), ScaleOutStep(at_pct=0.50, close_fraction=0.33),
        ScaleOutStep(at_pct=0.75, close_fraction=0.34))
    min_lots: int = Field(1, ge=1)  # each step closes at least this many lots of every leg
    basis: Basis = "close"

    @field_validator("default_steps")
    @classmethod
    def _increasing(cls, v: tuple[ScaleOutStep, ...]) -> tuple[ScaleOutStep, ...]:
        at = [s.at_pct for s in v]
        if any(b <= a for a, b in zip(at, at[1:], strict=False)):
            raise ValueError("at_pct must strictly increase")
        if sum(s.close_fraction for s in v) > 1 + 1e-9:
            raise ValueError("the close fractions add up to more than 1")
        return v


class StopLossRule(StrictModel):
    enabled: bool = True
    max_loss_share: float | None = Field(0.5, gt=0, le=1)  # cap: this share of a bounded max loss
    max_inr: float | None = Field(50_000.0, gt=0)  # cap: absolute INR
    basis: Basis = "mid"  # measured at the mark: a wide spread alone does not stop a position out


class ThetaDecayRule(StrictModel):
    max_daily_share: float | None = Field(0.05, gt=0, lt=1)  # |theta| per day over the position's mark value
    within_dte: int = Field(21, ge=0)  # only this close to the front expiry


class TimeExitRule(StrictModel):
    enabled: bool = True
    default_dte: int = Field(7, ge=0, le=90)  # without a stored time_exit_dte
    max_holding_days: int | None = Field(45, ge=1)  # calendar days since entry
    theta_decay: ThetaDecayRule = ThetaDecayRule()
    high_urgency_dte: int = Field(1, ge=0)  # at or below: HIGH instead of MEDIUM


class TrailingRule(StrictModel):
    enabled: bool = True
    activation_pct: float = Field(0.5, gt=0, le=1)  # of the profit target, without stored levels
    distance_pct: float = Field(0.25, gt=0, le=1)
    basis: Basis = "close"


class AdjustmentRule(StrictModel):
    enabled: bool = True
    alert_only: bool = True  # False: ADJUST (a human or an adjustment path acts), never an order here
    breakeven: bool = True
    short_delta_threshold: float = Field(0.35, gt=0, lt=1)  # for short legs without a stored threshold
    offensive_min_profit_share: float | None = Field(0.5, gt=0, le=1)  # of the profit target
    offensive_max_short_delta: float = Field(0.10, gt=0, lt=1)


class DailyLossLimit(StrictModel):
    enabled: bool = True
    max_loss_inr: float | None = Field(100_000.0, gt=0)
    max_loss_pct_of_capital: float | None = Field(0.03, gt=0, le=1)
    exit_all: bool = False  # True: every open strategy gets EXIT_ALL; always: no new orders


class SettlementRule(StrictModel):
    stock_cutoff_sessions: int = Field(1, ge=0, le=10)  # exit from the Nth session before expiry (0 = expiry day)
    close_near_atm: bool = True
    near_atm_pct: float = Field(0.02, ge=0, lt=0.5)  # |spot - strike| / spot within this counts as near the money
    close_all_stock_options: bool = False  # True: every stock option leg, in the money or not
    stt_exercise_rate: float = Field(0.00125, ge=0, lt=0.01)  # STT on the intrinsic value of exercised long legs


class ExitRulesConfig(StrictModel):
    profit_target: ProfitTargetRule = ProfitTargetRule()
    scale_out: ScaleOutRule = ScaleOutRule()
    stop_loss: StopLossRule = StopLossRule()
    time_exit: TimeExitRule = TimeExitRule()
    trailing: TrailingRule = TrailingRule()
    adjustments: AdjustmentRule = AdjustmentRule()
    daily_loss_limit: DailyLossLimit = DailyLossLimit()
    settlement: SettlementRule = SettlementRule()
    rate: float = Field(DEFAULT_RATE, ge=0, lt=0.5)  # for forwards and greeks in the valuation


def _parse(p: Path) -> ExitRulesConfig:
    return validate_model(ExitRulesConfig, read_yaml_mapping(p, "the exit rules"), p.name)


_FILE = PackagedYaml(DEFAULT_FILE, _parse)


def default_exit_rules_path() -> Path:
    return _FILE.default_path


def load_exit_rules(path: str | Path | None = None) -> ExitRulesConfig:
    """Read and validate an exit-rules YAML (default: the packaged one); ConfigError naming the key."""
    return _FILE.load(path)
