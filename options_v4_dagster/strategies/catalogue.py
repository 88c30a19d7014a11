"""The strategy catalogue: every strategy is one small declarative definition.

A :class:`StrategyDef` lists its legs (:class:`LegDef`: side, instrument, strike rule, expiry
rule, ratio), its market outlook and strength, IV preference, category, complexity, whether its
loss is unbounded, and the strike relationships the built position must satisfy
(:class:`Constraint`). Adding a strategy is adding one entry to :data:`CATALOGUE`.

Strike rules (:class:`StrikeRule`), resolved on the leg's expiry by :mod:`.strikes`:

* ``atm()`` -- the strike nearest the expiry's forward;
* ``delta(0.25)`` -- the strike whose forward delta is closest to 0.25 (calls) / -0.25 (puts);
* ``em(1.0)`` -- forward + m x expected move, where expected move = ATM IV x sqrt(T) x spot;
* ``moneyness(1.05)`` -- strike / forward = 1.05;
* ``rel(leg, steps=2)`` / ``rel(leg, em=0.5)`` -- relative to an earlier leg's strike: a whole
  number of the expiry's strike steps (an expected-move fraction is rounded to steps, at least
  one); ``exact=True`` demands exactly that strike (equal-width wings), otherwise the best-scored
  strike on the same side of the reference;
* ``same(leg)`` -- the reference leg's strike exactly (straddles, calendars, synthetics).

Expiry rules (:class:`ExpiryRule`): ``NEAR``, ``NEXT``, ``FAR`` are the first, second and third
expiry at least ``min_dte_days`` away; calendars and diagonals use ``FRONT`` (= NEAR) and ``BACK``
(= NEXT). EQ legs have no strike and no expiry; an index has no cash leg, so on an index the EQ leg
is replaced by the future of the strategy's first option expiry (see :mod:`.build`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "CATALOGUE", "Category", "Constraint", "ExpiryRule", "IVPreference", "Instrument", "LegDef", "Outlook", "Side",
    "StrategyDef", "StrikeKind", "StrikeRule", "atm", "by_name", "delta", "em", "moneyness", "rel", "same",
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class Instrument(StrEnum):
    CE = "CE"
    PE = "PE"
    FUT = "FUT"
    EQ = "EQ"

    @property
    def is_option(self) -> bool:
        return self in (Instrument.CE, Instrument.PE)


class Outlook(StrEnum):
    BULLISH = "BULLISH"
    BEARISH = "BEARISH"
    NEUTRAL = "NEUTRAL"
    VOLATILE = "VOLATILE"


class IVPreference(StrEnum):
    HIGH = "HIGH"  # sells premium: best when implied vol is rich
    LOW = "LOW"  # buys premium: best when implied vol is cheap
    ANY = "ANY"


class Category(StrEnum):
    DIRECTIONAL = "directional"
    INCOME = "income"
    VOLATILITY = "volatility"
    CALENDAR = "calendar"
    HEDGE = "hedge"
    SYNTHETIC = "synthetic"


class ExpiryRule(StrEnum):
    NEAR = "NEAR"
    NEXT = "NEXT"
    FAR = "FAR"
    FRONT = "FRONT"  # calendars: the near expiry
    BACK = "BACK"  # calendars: the next expiry

    @property
    def index(self) -> int:
        """Position among the eligible expiries (0 = nearest)."""
        return {"NEAR": 0, "FRONT": 0, "NEXT": 1, "BACK": 1, "FAR": 2}[self.value]


class StrikeKind(StrEnum):
    ATM = "atm"
    DELTA = "delta"
    EXPECTED_MOVE = "expected_move"
    MONEYNESS = "moneyness"
    RELATIVE = "relative"


@dataclass(frozen=True)
class StrikeRule:
    """How to choose a leg's strike (see the module docstring); build with the helpers below."""

    kind: StrikeKind
    value: float = 0.0  # |delta|, expected-move multiple, K/F, or relative steps / em fraction
    leg: int | None = None  # RELATIVE: index of the reference leg (an earlier option leg)
    unit: str = "steps"  # RELATIVE: "steps" or "em"
    exact: bool = False  # RELATIVE: only exactly the target strike is acceptable
    min_steps: int = 1  # RELATIVE in "em": at least this many strike steps from the reference leg

    def describe(self) -> str:
        if self.kind is StrikeKind.ATM:
            return "ATM"
        if self.kind is StrikeKind.DELTA:
            return f"delta {self.value:g}"
        if self.kind is StrikeKind.EXPECTED_MOVE:
            return f"forward {self.value:+g} x expected move"
        if self.kind is StrikeKind.MONEYNESS:
            return f"K/F = {self.value:g}"
        if self.value == 0:
            return f"same strike as leg {self.leg}"
        unit = "steps" if self.unit == "steps" else "x expected move"
        return f"leg {self.leg} {self.value:+g} {unit}{' (exact)' if self.exact else ''}"


def atm() -> StrikeRule:
    return StrikeRule(StrikeKind.ATM)


def delta(d: float) -> StrikeRule:
    if not 0.0 < d < 1.0:
        raise ValueError(f"delta target must be in (0, 1), got {d}")
    return StrikeRule(StrikeKind.DELTA, float(d))


def em(multiple: float) -> StrikeRule:
    return StrikeRule(StrikeKind.EXPECTED_MOVE, float(multiple))


def moneyness(k_over_f: float) -> StrikeRule:
    if k_over_f <= 0:
        raise ValueError("moneyness must be positive")
    return StrikeRule(StrikeKind.MONEYNESS, float(k_over_f))


def rel(leg: int, *, steps: float | None = None, em: float | None = None, exact: bool = False,  # noqa: F811
        min_steps: int = 1) -> StrikeRule:
    if (steps is None) == (em is None):
        raise ValueError("rel() takes exactly one of steps= or em=")
    if min_steps < 1:
        raise ValueError("min_steps must be at least 1")
    if steps is not None:
        return StrikeRule(StrikeKind.RELATIVE, float(steps), leg=leg, unit="steps", exact=exact)
    return StrikeRule(StrikeKind.RELATIVE, float(em), leg=leg, unit="em", exact=exact, min_steps=int(min_steps))


def same(leg: int) -> StrikeRule:
    return StrikeRule(StrikeKind.RELATIVE, 0.0, leg=leg, unit="steps", exact=True)


@dataclass(frozen=True)
class LegDef:
    side: Side
    instrument: Instrument
    strike: StrikeRule | None = None  # None for EQ / FUT
    expiry: ExpiryRule = ExpiryRule.NEAR
    ratio: int = 1

    def describe(self) -> str:
        what = f"{self.side.value} {self.ratio}x {self.instrument.value}"
        if self.strike is not None:
            what += f" [{self.strike.describe()}]"
        if self.instrument is not Instrument.EQ:
            what += f" {self.expiry.value}"
        return what


@dataclass(frozen=True)
class Constraint:
    """A strike relationship checked on the built position.

    * ``increasing``: the legs' strikes strictly increase in the order given;
    * ``equal_width``: legs (lo, mid, hi) with mid - lo == hi - mid;
    * ``wider_upper``: legs (lo, mid, hi) with hi - mid > mid - lo (broken wing);
    * ``same_strike``: all the legs share one strike.
    """

    kind: str
    legs: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.kind}{self.legs}"


def increasing(*legs: int) -> Constraint:
    return Constraint("increasing", tuple(legs))


def equal_width(lo: int, mid: int, hi: int) -> Constraint:
    return Constraint("equal_width", (lo, mid, hi))


def wider_upper(lo: int, mid: int, hi: int) -> Constraint:
    return Constraint("wider_upper", (lo, mid, hi))


def same_strike(*legs: int) -> Constraint:
    return Constraint("same_strike", tuple(legs))


@dataclass(frozen=True)
class StrategyDef:
    name: str
    legs: tuple[LegDef, ...]
    outlook: Outlook
    strength: float  # how strong a view the strategy expresses, 0..1
    iv_preference: IVPreference
    category: Category
    complexity: int  # 1 (one leg) .. 5
    unlimited_risk: bool = False  # the loss is unbounded (a naked short call side)
    constraints: tuple[Constraint, ...] = ()
    margin_basis: str = "span"  # "span" or "cash_secured" (strike x quantity held in cash)
    description: str = ""
    display_name: str = field(default="")

    def __post_init__(self) -> None:
        if not self.display_name:
            object.__setattr__(self, "display_name", self.name.replace("_", " ").title())
        _validate(self)

    @property
    def option_legs(self) -> tuple[int, ...]:
        return tuple(i for i, leg in enumerate(self.legs) if leg.instrument.is_option)

    @property
    def is_multi_expiry(self) -> bool:
        return len({leg.expiry.index for leg in self.legs if leg.instrument is not Instrument.EQ}) > 1

    def to_dict(self) -> dict:
        return {
            "name": self.name, "display_name": self.display_name, "category": self.category.value,
            "outlook": self.outlook.value, "strength": self.strength, "iv_preference": self.iv_preference.value,
            "complexity": self.complexity, "unlimited_risk": self.unlimited_risk,
            "multi_expiry": self.is_multi_expiry, "margin_basis": self.margin_basis,
            "legs": [{"side": leg.side.value, "instrument": leg.instrument.value, "ratio": leg.ratio,
                      "strike_rule": leg.strike.describe() if leg.strike else None,
                      "expiry_rule": None if leg.instrument is Instrument.EQ else leg.expiry.value}
                     for leg in self.legs],
            "constraints": [c.describe() for c in self.constraints],
            "description": self.description,
        }


def _validate(d: StrategyDef) -> None:
    if not d.legs:
        raise ValueError(f"{d.name}: no legs")
    if not 0.0 <= d.strength <= 1.0:
        raise ValueError(f"{d.name}: strength must be in [0, 1]")
    if not d.option_legs:
        raise ValueError(f"{d.name}: needs at least one option leg")
    for i, leg in enumerate(d.legs):
        if leg.ratio < 1:
            raise ValueError(f"{d.name}: leg {i} ratio must be >= 1")
        if leg.instrument.is_option and leg.strike is None:
            raise ValueError(f"{d.name}: option leg {i} has no strike rule")
        if not leg.instrument.is_option and leg.strike is not None:
            raise ValueError(f"{d.name}: {leg.instrument.value} leg {i} cannot have a strike rule")
        r = leg.strike
        if r is not None and r.kind is StrikeKind.RELATIVE:
            if r.leg is None or not 0 <= r.leg < i or not d.legs[r.leg].instrument.is_option:
                raise ValueError(f"{d.name}: leg {i} must be relative to an earlier option leg")
            if r.unit not in ("steps", "em"):
                raise ValueError(f"{d.name}: leg {i} relative unit must be steps or em")
    for c in d.constraints:
        if c.kind not in ("increasing", "equal_width", "wider_upper", "same_strike"):
            raise ValueError(f"{d.name}: unknown constraint {c.kind}")
        if any(j not in d.option_legs for j in c.legs):
            raise ValueError(f"{d.name}: constraint {c.describe()} names a non-option leg")
    if d.margin_basis not in ("span", "cash_secured"):
        raise ValueError(f"{d.name}: margin_basis must be span or cash_secured")


B, S = Side.BUY, Side.SELL
CE, PE, FUT, EQ = Instrument.CE, Instrument.PE, Instrument.FUT, Instrument.EQ
FRONT, BACK = ExpiryRule.FRONT, ExpiryRule.BACK
BULL, BEAR, NEUT, VOL = Outlook.BULLISH, Outlook.BEARISH, Outlook.NEUTRAL, Outlook.VOLATILE
HIGH, LOW, ANY = IVPreference.HIGH, IVPreference.LOW, IVPreference.ANY
C = Category

CATALOGUE: tuple[StrategyDef, ...] = (
    # --- single options -----------------------------------------------------------------------
    StrategyDef("long_call", (LegDef(B, CE, atm()),), BULL, 0.8, LOW, C.DIRECTIONAL, 1,
                description="Buy an ATM call: unlimited upside, loss limited to the premium."),
    StrategyDef("long_put", (LegDef(B, PE, atm()),), BEAR, 0.8, LOW, C.DIRECTIONAL, 1,
                description="Buy an ATM put: profits from a fall, loss limited to the premium."),
    StrategyDef("short_call", (LegDef(S, CE, delta(0.25)),), BEAR, 0.3, HIGH, C.INCOME, 2, unlimited_risk=True,
                description="Sell an OTM call: keeps the premium below the strike; unbounded loss above."),
    StrategyDef("short_put", (LegDef(S, PE, delta(0.25)),), BULL, 0.3, HIGH, C.INCOME, 2,
                description="Sell an OTM put: keeps the premium above the strike; large loss in a crash."),
    StrategyDef("cash_secured_put", (LegDef(S, PE, delta(0.30)),), BULL, 0.3, HIGH, C.INCOME, 1,
                margin_basis="cash_secured",
                description="Sell a put holding the strike's cash: income, or buying the underlying lower."),
    # --- vertical spreads -----------------------------------------------------------------------
    StrategyDef("bull_call_spread", (LegDef(B, CE, atm()), LegDef(S, CE, rel(0, em=0.75))), BULL, 0.6, LOW,
                C.DIRECTIONAL, 2, constraints=(increasing(0, 1),),
                description="Buy the ATM call, sell a higher call: a capped, cheaper bullish bet."),
    StrategyDef("bear_put_spread", (LegDef(B, PE, atm()), LegDef(S, PE, rel(0, em=-0.75))), BEAR, 0.6, LOW,
                C.DIRECTIONAL, 2, constraints=(increasing(1, 0),),
                description="Buy the ATM put, sell a lower put: a capped, cheaper bearish bet."),
    StrategyDef("bull_put_spread", (LegDef(S, PE, delta(0.30)), LegDef(B, PE, rel(0, em=-0.5))), BULL, 0.4, HIGH,
                C.INCOME, 2, constraints=(increasing(1, 0),),
                description="Sell an OTM put, buy a lower put: a defined-risk credit below the market."),
    StrategyDef("bear_call_spread", (LegDef(S, CE, delta(0.30)), LegDef(B, CE, rel(0, em=0.5))), BEAR, 0.4, HIGH,
                C.INCOME, 2, constraints=(increasing(0, 1),),
                description="Sell an OTM call, buy a higher call: a defined-risk credit above the market."),
    # --- straddles and strangles ------------------------------------------------------------------
    StrategyDef("short_straddle", (LegDef(S, CE, atm()), LegDef(S, PE, same(0))), NEUT, 0.7, HIGH, C.INCOME, 2,
                unlimited_risk=True, constraints=(same_strike(0, 1),),
                description="Sell the ATM call and put: the most premium, unbounded risk on both sides."),
    StrategyDef("short_strangle", (LegDef(S, CE, delta(0.20)), LegDef(S, PE, delta(0.20))), NEUT, 0.5, HIGH,
                C.INCOME, 2, unlimited_risk=True, constraints=(increasing(1, 0),),
                description="Sell an OTM call and an OTM put: wider profit zone, unbounded risk."),
    StrategyDef("long_straddle", (LegDef(B, CE, atm()), LegDef(B, PE, same(0))), VOL, 0.7, LOW, C.VOLATILITY, 2,
                constraints=(same_strike(0, 1),),
                description="Buy the ATM call and put: profits from a large move either way."),
    StrategyDef("long_strangle", (LegDef(B, CE, delta(0.25)), LegDef(B, PE, delta(0.25))), VOL, 0.6, LOW,
                C.VOLATILITY, 2, constraints=(increasing(1, 0),),
                description="Buy an OTM call and an OTM put: a cheaper bet on a large move."),
    StrategyDef("strip", (LegDef(B, CE, atm()), LegDef(B, PE, same(0), ratio=2)), VOL, 0.6, LOW, C.VOLATILITY, 3,
                constraints=(same_strike(0, 1),),
                description="Long straddle with two puts: a large move, more likely down."),
    StrategyDef("strap", (LegDef(B, CE, atm(), ratio=2), LegDef(B, PE, same(0))), VOL, 0.6, LOW, C.VOLATILITY, 3,
                constraints=(same_strike(0, 1),),
                description="Long straddle with two calls: a large move, more likely up."),
    # --- condors and butterflies -------------------------------------------------------------------
    StrategyDef("iron_condor",
                (LegDef(S, PE, delta(0.20)), LegDef(B, PE, rel(0, em=-0.5)),
                 LegDef(S, CE, delta(0.20)), LegDef(B, CE, rel(2, em=0.5))),
                NEUT, 0.6, HIGH, C.INCOME, 4, constraints=(increasing(1, 0, 2, 3),),
                description="Short strangle with bought wings: a defined-risk range trade."),
    StrategyDef("iron_butterfly",
                (LegDef(S, CE, atm()), LegDef(S, PE, same(0)),
                 LegDef(B, CE, rel(0, em=1.0, exact=True)), LegDef(B, PE, rel(0, em=-1.0, exact=True))),
                NEUT, 0.8, HIGH, C.INCOME, 4,
                constraints=(same_strike(0, 1), increasing(3, 0, 2), equal_width(3, 0, 2)),
                description="Short straddle with equal bought wings: pinned-market income, defined risk."),
    StrategyDef("reverse_iron_condor",
                (LegDef(B, PE, delta(0.30)), LegDef(S, PE, rel(0, em=-0.5)),
                 LegDef(B, CE, delta(0.30)), LegDef(S, CE, rel(2, em=0.5))),
                VOL, 0.5, LOW, C.VOLATILITY, 4, constraints=(increasing(1, 0, 2, 3),),
                description="Long strangle financed by farther short wings: a capped breakout bet."),
    StrategyDef("long_call_butterfly",
                (LegDef(S, CE, atm(), ratio=2), LegDef(B, CE, rel(0, em=-0.5, exact=True)),
                 LegDef(B, CE, rel(0, em=0.5, exact=True))),
                NEUT, 0.8, ANY, C.VOLATILITY, 3, constraints=(increasing(1, 0, 2), equal_width(1, 0, 2)),
                description="Buy 1-sell 2-buy 1 calls with equal wings: cheap bet on a pinned price."),
    StrategyDef("long_put_butterfly",
                (LegDef(S, PE, atm(), ratio=2), LegDef(B, PE, rel(0, em=-0.5, exact=True)),
                 LegDef(B, PE, rel(0, em=0.5, exact=True))),
                NEUT, 0.8, ANY, C.VOLATILITY, 3, constraints=(increasing(1, 0, 2), equal_width(1, 0, 2)),
                description="Buy 1-sell 2-buy 1 puts with equal wings: cheap bet on a pinned price."),
    StrategyDef("broken_wing_butterfly",
                (LegDef(S, CE, em(0.25), ratio=2), LegDef(B, CE, rel(0, em=-0.5, exact=True)),
                 LegDef(B, CE, rel(0, em=1.0, exact=True, min_steps=2))),  # wider than the lower wing's >= 1
                BULL, 0.4, HIGH, C.INCOME, 4, constraints=(increasing(1, 0, 2), wider_upper(1, 0, 2)),
                description="Call butterfly with a wider upper wing, centred above the market: "
                            "little or no risk below, profit near the body."),
    # --- calendars and diagonals ----------------------------------------------------------------------
    StrategyDef("call_calendar", (LegDef(S, CE, atm(), FRONT), LegDef(B, CE, same(0), BACK)), NEUT, 0.6, LOW,
                C.CALENDAR, 3, constraints=(same_strike(0, 1),),
                description="Sell the front ATM call, buy the back call at the same strike: time decay."),
    StrategyDef("put_calendar", (LegDef(S, PE, atm(), FRONT), LegDef(B, PE, same(0), BACK)), NEUT, 0.6, LOW,
                C.CALENDAR, 3, constraints=(same_strike(0, 1),),
                description="Sell the front ATM put, buy the back put at the same strike: time decay."),
    StrategyDef("call_diagonal", (LegDef(B, CE, delta(0.70), BACK), LegDef(S, CE, delta(0.30), FRONT)), BULL, 0.4,
                LOW, C.CALENDAR, 3, constraints=(increasing(0, 1),),
                description="Buy an in-the-money back call, sell an OTM front call (poor man's covered call)."),
    StrategyDef("put_diagonal", (LegDef(B, PE, delta(0.70), BACK), LegDef(S, PE, delta(0.30), FRONT)), BEAR, 0.4,
                LOW, C.CALENDAR, 3, constraints=(increasing(1, 0),),
                description="Buy an in-the-money back put, sell an OTM front put."),
    # --- ratios and backspreads ------------------------------------------------------------------------
    StrategyDef("call_ratio_spread", (LegDef(B, CE, atm()), LegDef(S, CE, rel(0, em=0.75), ratio=2)), NEUT, 0.4,
                HIGH, C.INCOME, 3, unlimited_risk=True, constraints=(increasing(0, 1),),
                description="Buy 1 ATM call, sell 2 higher calls: a modest rise pays; a rally loses without limit."),
    StrategyDef("put_ratio_spread", (LegDef(B, PE, atm()), LegDef(S, PE, rel(0, em=-0.75), ratio=2)), NEUT, 0.4,
                HIGH, C.INCOME, 3, constraints=(increasing(1, 0),),
                description="Buy 1 ATM put, sell 2 lower puts: a modest fall pays; a crash loses."),
    StrategyDef("call_backspread", (LegDef(S, CE, atm()), LegDef(B, CE, rel(0, em=0.75), ratio=2)), VOL, 0.6,
                LOW, C.VOLATILITY, 3, constraints=(increasing(0, 1),),
                description="Sell 1 ATM call, buy 2 higher calls: profits from a strong rally."),
    StrategyDef("put_backspread", (LegDef(S, PE, atm()), LegDef(B, PE, rel(0, em=-0.75), ratio=2)), VOL, 0.6,
                LOW, C.VOLATILITY, 3, constraints=(increasing(1, 0),),
                description="Sell 1 ATM put, buy 2 lower puts: profits from a sharp fall."),
    # --- premium-selling combinations ---------------------------------------------------------------------
    StrategyDef("jade_lizard",
                (LegDef(S, PE, delta(0.30)), LegDef(S, CE, delta(0.25)), LegDef(B, CE, rel(1, em=0.5))),
                BULL, 0.3, HIGH, C.INCOME, 3, constraints=(increasing(0, 1, 2),),
                description="Short put plus a short call spread: no upside risk when the credit exceeds "
                            "the call spread's width."),
    StrategyDef("risk_reversal", (LegDef(S, PE, delta(0.25)), LegDef(B, CE, delta(0.25))), BULL, 0.7, ANY,
                C.DIRECTIONAL, 2, constraints=(increasing(0, 1),),
                description="Sell an OTM put to buy an OTM call: a cheap, leveraged bullish position."),
    # --- synthetics -----------------------------------------------------------------------------------------
    StrategyDef("synthetic_long", (LegDef(B, CE, atm()), LegDef(S, PE, same(0))), BULL, 0.9, ANY, C.SYNTHETIC, 2,
                constraints=(same_strike(0, 1),),
                description="Buy the ATM call, sell the ATM put: behaves like the long future."),
    StrategyDef("synthetic_short", (LegDef(S, CE, atm()), LegDef(B, PE, same(0))), BEAR, 0.9, ANY, C.SYNTHETIC, 2,
                unlimited_risk=True, constraints=(same_strike(0, 1),),
                description="Sell the ATM call, buy the ATM put: behaves like the short future."),
    # --- stock (or futures, on an index) with options ---------------------------------------------------------
    StrategyDef("covered_call", (LegDef(B, EQ), LegDef(S, CE, delta(0.30))), BULL, 0.3, HIGH, C.INCOME, 2,
                description="Own the underlying, sell an OTM call against it."),
    StrategyDef("protective_put", (LegDef(B, EQ), LegDef(B, PE, delta(0.30))), BULL, 0.5, LOW, C.HEDGE, 2,
                description="Own the underlying and insure it with an OTM put."),
    StrategyDef("collar", (LegDef(B, EQ), LegDef(B, PE, delta(0.25)), LegDef(S, CE, delta(0.25))), BULL, 0.3, ANY,
                C.HEDGE, 3, constraints=(increasing(1, 2),),
                description="Own the underlying, buy a put and sell a call: a cheap hedge with capped upside."),
)

_BY_NAME = {d.name: d for d in CATALOGUE}
if len(_BY_NAME) != len(CATALOGUE):  # pragma: no cover - guarded by a test
    raise ValueError("duplicate strategy names in the catalogue")


def by_name(name: str) -> StrategyDef:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; known: {', '.join(_BY_NAME)}") from None


def names() -> list[str]:
    return list(_BY_NAME)
