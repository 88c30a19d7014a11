"""``market_conditions.yaml``: market states -> strategy preferences, tiers, position and risk limits.

A *market state* is matched on three labels of the session (see :mod:`options_v4_dagster.quant.regime`):
India VIX band (VERY_LOW / LOW / NORMAL / HIGH / VERY_HIGH), NIFTY trend (BULLISH / NEUTRAL /
BEARISH) and put-call-ratio sentiment (BULLISH / NEUTRAL / BEARISH). Layout::

    defaults:                      # every key optional; the built-in values are shown in the file
      preferred_strategies: [...]  # catalogue names, best first (fallback level 0)
      preferred_categories: [...]  # catalogue categories (fallback level 1)
      fallback_to_any: true        # level 3 allowed (any strategy not opposing the industry view)
      tier_split: {tier1: 0.60, tier2: 0.30, tier3: 0.10}
      tier_convictions: {tier1: [VERY_HIGH, HIGH], tier2: [MEDIUM], tier3: [LOW]}
      tier_demotion: true
      position_limits: {min_positions, target_positions, max_positions, max_position_pct,
                        max_symbol_pct, max_industry_pct}
      risk_limits: {max_portfolio_margin_pct, max_unlimited_risk_pct, kelly_fraction, kelly_cap,
                    kelly_floor, min_expected_value}
      deployment_target: 0.95
      monthly_return_target: 0.04
      returns: {month_days: 30, min_expiry_days: 7}
    states:
      HIGH_VIX:                    # a name of your choice
        when: {vix_band: [HIGH, VERY_HIGH], nifty_trend: "*", pcr_sentiment: "*"}
        ...any key of `defaults`, overriding it (sections merge key by key)

:meth:`MarketConditionsConfig.resolve` picks the matching state with the most constrained labels
("*" or a left-out label matches anything, including an unknown label); ties go to the state
listed first. No match gives the ``DEFAULT`` state (the ``defaults`` section alone).

Every state is resolved once on load, so a bad file fails at load with a
:class:`~options_v4_dagster.errors.ConfigError` naming the key, e.g.
``market_conditions.yaml: states.HIGH_VIX.tier_split: must sum to 1 (got 0.9)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..quant.regime import VIX_BANDS
from ..strategies.catalogue import Category
from ..strategies.catalogue import names as strategy_names
from ..yaml_config import format_errors, read_yaml_mapping

__all__ = [
    "CONVICTIONS", "DIRECTIONS", "TIERS", "MarketConditionsConfig", "MarketRules", "PositionLimits", "ReturnSettings",
    "RiskLimits", "default_market_conditions_path", "load_market_conditions",
]

TIERS = ("tier1", "tier2", "tier3")
CONVICTIONS = ("VERY_HIGH", "HIGH", "MEDIUM", "LOW", "VERY_LOW")
DIRECTIONS = ("BULLISH", "NEUTRAL", "BEARISH")
DEFAULT_FILE = "config/market_conditions.yaml"
_ANY = "*"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierSplit(_Strict):
    """Share of the deployed capital per tier (fractions summing to 1)."""

    tier1: float = Field(0.60, ge=0, le=1)
    tier2: float = Field(0.30, ge=0, le=1)
    tier3: float = Field(0.10, ge=0, le=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> TierSplit:
        total = self.tier1 + self.tier2 + self.tier3
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"must sum to 1 (got {total:g})")
        return self

    def as_dict(self) -> dict[str, float]:
        return {t: float(getattr(self, t)) for t in TIERS}


class TierConvictions(_Strict):
    """Which conviction levels (from strategy scoring) fill each tier; unlisted levels are not allocated."""

    tier1: tuple[str, ...] = ("VERY_HIGH", "HIGH")
    tier2: tuple[str, ...] = ("MEDIUM",)
    tier3: tuple[str, ...] = ("LOW",)

    @field_validator("tier1", "tier2", "tier3", mode="before")
    @classmethod
    def _levels(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if isinstance(v, list | tuple):
            bad = [x for x in v if not isinstance(x, str) or x.upper() not in CONVICTIONS]
            if bad:
                raise ValueError(f"unknown conviction level(s) {bad}; known: {', '.join(CONVICTIONS)}")
            return tuple(x.upper() for x in v)
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> TierConvictions:
        seen: dict[str, str] = {}
        for t in TIERS:
            for c in getattr(self, t):
                if c in seen:
                    raise ValueError(f"conviction {c} is in both {seen[c]} and {t}")
                seen[c] = t
        return self

    def as_dict(self) -> dict[str, tuple[str, ...]]:
        return {t: tuple(getattr(self, t)) for t in TIERS}


class PositionLimits(_Strict):
    """Counts and caps; percentages are fractions of the capital."""

    min_positions: int = Field(20, ge=1)
    target_positions: int = Field(25, ge=1)
    max_positions: int = Field(30, ge=1)
    max_position_pct: float = Field(0.08, gt=0, le=1)
    max_symbol_pct: float = Field(0.10, gt=0, le=1)
    max_industry_pct: float = Field(0.25, gt=0, le=1)


class RiskLimits(_Strict):
    max_portfolio_margin_pct: float = Field(1.0, gt=0, le=1, description="capital used / capital, at most")
    max_unlimited_risk_pct: float = Field(0.30, ge=0, le=1, description="capital in unbounded-loss positions")
    kelly_fraction: float = Field(0.25, gt=0, le=1, description="multiplier on the full Kelly fraction")
    kelly_cap: float = Field(0.10, gt=0, le=1, description="largest fractional Kelly used")
    kelly_floor: float = Field(0.02, ge=0, le=1, description="sizing weight of a candidate with no Kelly edge")
    min_expected_value: float | None = Field(None, description="INR per lot; null = no filter")


class ReturnSettings(_Strict):
    month_days: float = Field(30.0, gt=0, description="calendar days in the return month")
    min_expiry_days: float = Field(7.0, gt=0, description="expiries nearer than this scale as if this far")


class When(_Strict):
    vix_band: tuple[str, ...] | None = None
    nifty_trend: tuple[str, ...] | None = None
    pcr_sentiment: tuple[str, ...] | None = None

    @field_validator("vix_band", "nifty_trend", "pcr_sentiment", mode="before")
    @classmethod
    def _labels(cls, v: Any, info) -> Any:
        if v is None:
            return None
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            return v  # pydantic reports the type error
        vals = [str(x).strip().upper() for x in v]
        if _ANY in vals:
            return None
        known = VIX_BANDS if info.field_name == "vix_band" else DIRECTIONS
        bad = [x for x in vals if x not in known]
        if bad:
            raise ValueError(f"unknown label(s) {bad}; known: {', '.join(known)} or '*'")
        return tuple(vals)

    def specificity(self) -> int:
        return sum(getattr(self, k) is not None for k in ("vix_band", "nifty_trend", "pcr_sentiment"))

    def matches(self, vix_band: str | None, nifty_trend: str | None, pcr_sentiment: str | None) -> bool:
        for allowed, got in ((self.vix_band, vix_band), (self.nifty_trend, nifty_trend),
                             (self.pcr_sentiment, pcr_sentiment)):
            if allowed is not None and got not in allowed:
                return False
        return True


_KNOWN_CATEGORIES = tuple(c.value for c in Category)


class RulesSection(_Strict):
    """The keys shared by ``defaults`` and every state (a state overrides what it sets)."""

    preferred_strategies: tuple[str, ...] = ()
    preferred_categories: tuple[str, ...] = ()
    fallback_to_any: bool = True
    tier_split: TierSplit = TierSplit()
    tier_convictions: TierConvictions = TierConvictions()
    tier_demotion: bool = True
    position_limits: PositionLimits = PositionLimits()
    risk_limits: RiskLimits = RiskLimits()
    deployment_target: float = Field(0.95, gt=0, le=1)
    monthly_return_target: float = Field(0.04, ge=0)
    returns: ReturnSettings = ReturnSettings()

    @field_validator("preferred_strategies")
    @classmethod
    def _strategy_names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        known = set(strategy_names())
        bad = [x for x in v if x not in known]
        if bad:
            raise ValueError(f"unknown strategy name(s) {bad}; see `options-v4 strategies`")
        if len(set(v)) != len(v):
            raise ValueError("a strategy is listed twice")
        return v

    @field_validator("preferred_categories")
    @classmethod
    def _categories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [x for x in v if x not in _KNOWN_CATEGORIES]
        if bad:
            raise ValueError(f"unknown categor(y/ies) {bad}; known: {', '.join(_KNOWN_CATEGORIES)}")
        return v


class StateSection(RulesSection):
    when: When = When()
    description: str = ""


class MarketConditionsFile(_Strict):
    defaults: RulesSection = RulesSection()
    states: dict[str, StateSection] = {}


@dataclass(frozen=True)
class MarketRules:
    """The allocation rules in force for one market state (a resolved ``defaults`` + state)."""

    state: str
    vix_band: str | None
    nifty_trend: str | None
    pcr_sentiment: str | None
    preferred_strategies: tuple[str, ...]
    preferred_categories: tuple[str, ...]
    fallback_to_any: bool
    tier_split: dict[str, float]
    tier_convictions: dict[str, tuple[str, ...]]
    tier_demotion: bool
    position_limits: PositionLimits
    risk_limits: RiskLimits
    deployment_target: float
    monthly_return_target: float
    returns: ReturnSettings = field(default_factory=ReturnSettings)
    description: str = ""

    def tier_of(self, conviction: str | None) -> str | None:
        c = (conviction or "").upper()
        for t, levels in self.tier_convictions.items():
            if c in levels:
                return t
        return None

    def with_limits(self, **changes: Any) -> MarketRules:
        """A copy with some position/risk limits or top-level values changed (validated), e.g.
        ``rules.with_limits(max_industry_pct=0.12, deployment_target=0.9)``."""
        import dataclasses

        pos = {k: v for k, v in changes.items() if k in PositionLimits.model_fields}
        risk = {k: v for k, v in changes.items() if k in RiskLimits.model_fields}
        top = {k: v for k, v in changes.items() if k not in pos and k not in risk}
        try:
            p = PositionLimits.model_validate({**self.position_limits.model_dump(), **pos})
            r = RiskLimits.model_validate({**self.risk_limits.model_dump(), **risk})
        except ValidationError as exc:
            raise ConfigError(format_errors(exc, "with_limits")) from None
        out = dataclasses.replace(self, position_limits=p, risk_limits=r, **top)
        _check_rules(out, f"with_limits({', '.join(changes)})")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state, "vix_band": self.vix_band, "nifty_trend": self.nifty_trend,
            "pcr_sentiment": self.pcr_sentiment, "preferred_strategies": list(self.preferred_strategies),
            "preferred_categories": list(self.preferred_categories), "fallback_to_any": self.fallback_to_any,
            "tier_split": dict(self.tier_split),
            "tier_convictions": {k: list(v) for k, v in self.tier_convictions.items()},
            "tier_demotion": self.tier_demotion, "position_limits": self.position_limits.model_dump(),
            "risk_limits": self.risk_limits.model_dump(), "deployment_target": self.deployment_target,
            "monthly_return_target": self.monthly_return_target, "returns": self.returns.model_dump(),
        }


def _check_rules(r: MarketRules, where: str) -> None:
    p, k = r.position_limits, r.risk_limits
    problems = []
    if not p.min_positions <= p.max_positions:
        problems.append(f"position_limits: min_positions ({p.min_positions}) > max_positions ({p.max_positions})")
    if not p.min_positions <= p.target_positions <= p.max_positions:
        problems.append(f"position_limits: target_positions ({p.target_positions}) must lie within "
                        f"min_positions..max_positions ({p.min_positions}..{p.max_positions})")
    if r.deployment_target > k.max_portfolio_margin_pct + 1e-12:
        problems.append(f"deployment_target ({r.deployment_target:g}) > risk_limits.max_portfolio_margin_pct "
                        f"({k.max_portfolio_margin_pct:g})")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict) and key != "tier_split":
            out[key] = _merge(out[key], val)
        else:
            out[key] = val  # tier_split is replaced whole (it must sum to 1 on its own)
    return out


def _set_only(model: BaseModel) -> dict:
    """The keys a model was given explicitly (recursively), so a state only overrides what it sets."""
    out = {}
    for name in model.model_fields_set:
        val = getattr(model, name)
        out[name] = _set_only(val) if isinstance(val, BaseModel) and not isinstance(val, TierSplit) else \
            (val.model_dump() if isinstance(val, BaseModel) else val)
    return out


class MarketConditionsConfig:
    """The validated ``market_conditions.yaml`` (see the module docstring)."""

    def __init__(self, parsed: MarketConditionsFile, path: Path | str = "market_conditions.yaml") -> None:
        self.file = parsed
        self.path = Path(path)
        self._defaults = parsed.defaults.model_dump()
        self._rules: dict[str, MarketRules] = {}
        label = self.path.name
        self._rules["DEFAULT"] = self._build("DEFAULT", self._defaults, "", f"{label}: defaults")
        for name, st in parsed.states.items():
            merged = _merge(self._defaults, {k: v for k, v in _set_only(st).items() if k not in ("when", "description")})
            self._rules[name] = self._build(name, merged, st.description, f"{label}: states.{name}")

    @staticmethod
    def _build(name: str, d: dict, description: str, where: str) -> MarketRules:
        try:
            sec = RulesSection.model_validate(d)
        except ValidationError as exc:  # pragma: no cover - parts were validated already
            raise ConfigError(format_errors(exc, where)) from None
        rules = MarketRules(
            state=name, vix_band=None, nifty_trend=None, pcr_sentiment=None,
            preferred_strategies=sec.preferred_strategies, preferred_categories=sec.preferred_categories,
            fallback_to_any=sec.fallback_to_any, tier_split=sec.tier_split.as_dict(),
            tier_convictions=sec.tier_convictions.as_dict(), tier_demotion=sec.tier_demotion,
            position_limits=sec.position_limits, risk_limits=sec.risk_limits,
            deployment_target=sec.deployment_target, monthly_return_target=sec.monthly_return_target,
            returns=sec.returns, description=description,
        )
        _check_rules(rules, where)
        return rules

    @property
    def state_names(self) -> list[str]:
        return list(self._rules)

    def rules(self, state: str) -> MarketRules:
        try:
            return self._rules[state]
        except KeyError:
            raise ConfigError(f"{self.path.name}: no state {state!r}; known: {', '.join(self._rules)}") from None

    def match(self, vix_band: str | None, nifty_trend: str | None, pcr_sentiment: str | None) -> str:
        """The name of the state that applies (most specific match, first listed on ties; else DEFAULT)."""
        best, best_spec = "DEFAULT", -1
        for name, st in self.file.states.items():
            if st.when.matches(vix_band, nifty_trend, pcr_sentiment) and st.when.specificity() > best_spec:
                best, best_spec = name, st.when.specificity()
        return best

    def resolve(self, vix_band: str | None, nifty_trend: str | None, pcr_sentiment: str | None) -> MarketRules:
        """The rules for a session's labels (None = unknown; matches only "*" / left-out labels)."""
        import dataclasses

        v, t, p = (_label(vix_band, VIX_BANDS, "vix_band"), _label(nifty_trend, DIRECTIONS, "nifty_trend"),
                   _label(pcr_sentiment, DIRECTIONS, "pcr_sentiment"))
        name = self.match(v, t, p)
        return dataclasses.replace(self._rules[name], vix_band=v, nifty_trend=t, pcr_sentiment=p)


def _label(value: str | None, known: tuple[str, ...], what: str) -> str | None:
    if value is None:
        return None
    s = str(value).strip().upper()
    if not s:
        return None
    if s not in known:
        raise ConfigError(f"{what} {value!r} is not one of {', '.join(known)}")
    return s


def default_market_conditions_path() -> Path:
    return Path(str(resources.files("options_v4_dagster").joinpath(DEFAULT_FILE)))


def load_market_conditions(path: str | Path | None = None) -> MarketConditionsConfig:
    """Read and validate a market-conditions YAML (default: the packaged one).

    Raises :class:`ConfigError` naming the file and the dotted key at fault."""
    if path is None:
        return _default()
    return _load(Path(path))


@lru_cache(maxsize=1)
def _default() -> MarketConditionsConfig:
    return _load(default_market_conditions_path())


def _load(p: Path) -> MarketConditionsConfig:
    data = read_yaml_mapping(p, "the market conditions", "(defaults, states)")
    if isinstance(data.get("states"), dict):
        for name, st in data["states"].items():
            if st is None:
                data["states"][name] = {}
    try:
        parsed = MarketConditionsFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, p.name)) from None
    return MarketConditionsConfig(parsed, p)
