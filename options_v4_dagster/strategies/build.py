"""Build catalogue strategies on one session's chains: legs with executable prices.

:func:`build_candidates` takes the output of :func:`quant.surface.chain_iv` (one session, any
number of symbols) and builds every catalogue strategy it can for every symbol; a strategy that
cannot be built is returned as a :class:`BuildFailure` with the reason, never raised.
:func:`build_strategy` builds one (raising :class:`~.strikes.StrategyUnavailable`).

Leg conventions (:class:`Leg`):

* ``quantity``: shares, positive = ratio x lots x lot size; the direction is ``side``;
* ``price``: executable price per share -- a buy at the ask, a sell at the bid when the contract
  has a two-sided quote (``price_kind`` ``ask`` / ``bid``); otherwise the mid / last price the IV
  engine used (``mid`` / ``ltp``). EQ legs trade at the spot (``spot``), FUT legs at the futures
  price (``futures``) or, where the chain has none, the expiry's forward (``forward``);
* greeks per share, spot convention: ``delta`` = dV/dS (Black-76 delta to the forward x F/S),
  ``gamma`` = d2V/dS2, ``vega`` INR per 1 vol point, ``theta`` INR per calendar day with the spot held
  (Black-76 on ``F = S exp(b T)``: includes the drift of the forward); EQ delta 1,
  FUT delta F/S;
* ``level`` / ``level_name``: the liquidity level at which the strike was found (0 = strict).

An index has no cash leg: its EQ legs become the future of the strategy's first option expiry
(noted in ``Candidate.notes``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .. import calendar
from ..errors import DataError
from ..quant.black import greeks_black76
from .catalogue import CATALOGUE, Instrument, Side, StrategyDef, StrikeKind
from .strikes import (
    LEVELS,
    ChainView,
    ExpiryInfo,
    LiquidityLevel,
    ScoreWeights,
    StrategyUnavailable,
    chain_views,
    leg_iv,
    relative_steps,
    select_strike,
    validate,
)

__all__ = ["BuildConfig", "BuildFailure", "Candidate", "Leg", "build_candidates", "build_strategy", "build_symbol",
           "time_exit_session"]


@dataclass(frozen=True)
class BuildConfig:
    lots: int = 1
    min_dte_days: float = 1.0  # skip expiries closer than this (an expiry-day contract has T ~ 0)
    # skip expiries whose time exit (this many calendar days before expiry, moved back to a session:
    # :func:`time_exit_session`) is not after the session: the position would be closed at once,
    # paying the spread twice. None: no such rule (the pipeline passes the exit rules' time_exit_dte)
    time_exit_dte: int | None = None
    levels: tuple[LiquidityLevel, ...] = LEVELS
    weights: ScoreWeights = ScoreWeights()


@dataclass
class Leg:
    side: Side
    instrument: Instrument
    strike: float | None
    expiry: dt.date | None
    ratio: int
    quantity: int  # shares, positive
    price: float  # executable, per share
    price_kind: str
    iv: float | None = None
    delta: float = 0.0  # per share, dV/dS
    gamma: float = 0.0
    vega: float = 0.0  # per 1 vol point
    theta: float = 0.0  # per calendar day
    t_years: float | None = None
    forward: float | None = None
    df: float | None = None
    bid: float | None = None
    ask: float | None = None
    oi: float | None = None
    volume: float | None = None
    security_id: str | None = None
    target_strike: float | None = None
    level: int | None = None
    level_name: str | None = None

    @property
    def signed_quantity(self) -> int:
        return self.side.sign * self.quantity

    def to_dict(self) -> dict:
        return {
            "side": self.side.value, "instrument": self.instrument.value, "strike": self.strike,
            "expiry": self.expiry.isoformat() if self.expiry else None, "quantity": self.quantity,
            "ratio": self.ratio, "price": self.price, "price_kind": self.price_kind, "iv": self.iv,
            "delta": self.delta, "gamma": self.gamma, "vega": self.vega, "theta": self.theta,
            "bid": self.bid, "ask": self.ask, "oi": self.oi, "volume": self.volume, "security_id": self.security_id,
            "target_strike": self.target_strike, "liquidity_level": self.level_name,
        }


@dataclass
class Candidate:
    symbol: str
    session: dt.date | None
    strategy: StrategyDef
    legs: list[Leg]
    spot: float
    lot_size: int
    lots: int
    is_index: bool
    expiry: dt.date  # the front (first) expiry of the position
    back_expiry: dt.date | None  # the later expiry of a calendar / diagonal
    forward: float  # the front expiry's forward, ATM IV and T: the POP model's inputs
    atm_iv: float
    t_years: float
    fallback_level: int  # the loosest liquidity level any leg needed
    fallback: str
    notes: list[str] = field(default_factory=list)
    analytics: object | None = None  # analytics.Analytics, filled by analytics.analyze

    @property
    def name(self) -> str:
        return self.strategy.name

    @property
    def is_single_expiry(self) -> bool:
        return self.back_expiry is None

    def to_dict(self) -> dict:
        out = {
            "symbol": self.symbol, "session": self.session.isoformat() if self.session else None,
            "strategy_name": self.strategy.name, "category": self.strategy.category.value,
            "outlook": self.strategy.outlook.value, "iv_preference": self.strategy.iv_preference.value,
            "unlimited_risk": self.strategy.unlimited_risk, "spot": self.spot, "lot_size": self.lot_size,
            "lots": self.lots, "expiry": self.expiry.isoformat(),
            "back_expiry": self.back_expiry.isoformat() if self.back_expiry else None,
            "fallback": self.fallback, "notes": list(self.notes), "legs": [leg.to_dict() for leg in self.legs],
        }
        if self.analytics is not None:
            out.update(self.analytics.to_dict())
        return out


@dataclass(frozen=True)
class BuildFailure:
    symbol: str
    strategy: str
    reason: str
    field: str | None = None


def time_exit_session(expiry: dt.date, dte: int) -> dt.date:
    """The session of the time exit of a position whose front expiry is ``expiry``: ``dte`` calendar
    days before it, moved back to an NSE session (inclusive)."""
    return calendar.previous_session(expiry - dt.timedelta(days=dte), inclusive=True)


def _lot_size(view: ChainView, i: int, err: dict) -> int:
    lot = float(view.arrays["lot_size"][i])
    if not (np.isfinite(lot) and lot > 0):
        raise StrategyUnavailable(f"contract has no lot size ({lot})", field="lot_size", **err)
    return int(lot)


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _option_leg(view: ChainView, e: ExpiryInfo, ldef, sel, lots: int, err: dict) -> Leg:
    a = view.arrays
    i = sel.index
    lot = _lot_size(view, i, err)
    bid, ask = a["bid"][i], a["ask"][i]
    two_sided = np.isfinite(bid) and np.isfinite(ask) and bid > 0 and ask >= bid
    if two_sided:
        price, kind = (float(ask), "ask") if ldef.side is Side.BUY else (float(bid), "bid")
    else:
        price = float(a["iv_price"][i])
        kind = "mid" if np.isfinite(a["mid"][i]) else "ltp"
    iv = leg_iv(view, e, i)
    F, K, T, df = e.forward, float(a["strike"][i]), e.t_years, e.df
    is_call = ldef.instrument is Instrument.CE
    if np.isfinite(a["iv"][i]) and np.isfinite(a["delta"][i]):
        d_f, g_f, vg, th = a["delta"][i], a["gamma"][i], a["vega"][i], a["theta"][i]
    else:  # contract without its own IV: greeks at the smile's IV
        g = greeks_black76(F, K, T, iv, is_call, df, S=view.spot)  # theta with the spot held
        d_f, g_f, vg, th = g["delta"], g["gamma"], g["vega"], g["theta"]
    carry = F / view.spot
    return Leg(
        side=ldef.side, instrument=ldef.instrument, strike=K, expiry=e.expiry, ratio=ldef.ratio,
        quantity=ldef.ratio * lots * lot, price=price, price_kind=kind, iv=_f(iv),
        delta=float(d_f) * carry, gamma=float(g_f) * carry * carry, vega=float(vg) / 100.0, theta=float(th),
        t_years=T, forward=F, df=df, bid=_f(bid), ask=_f(ask), oi=_f(a["oi"][i]), volume=_f(a["volume"][i]),
        security_id=None if a["security_id"][i] is None else str(a["security_id"][i]),
        target_strike=sel.target, level=sel.level, level_name=sel.level_name,
    )


def _linear_leg(view: ChainView, e: ExpiryInfo | None, ldef, instrument: Instrument, quantity: int) -> Leg:
    if instrument is Instrument.EQ:
        return Leg(side=ldef.side, instrument=instrument, strike=None, expiry=None, ratio=ldef.ratio,
                   quantity=quantity, price=view.spot, price_kind="spot", delta=1.0)
    assert e is not None
    price, kind = (e.futures_price, "futures") if e.futures_price else (e.forward, "forward")
    return Leg(side=ldef.side, instrument=instrument, strike=None, expiry=e.expiry, ratio=ldef.ratio,
               quantity=quantity, price=float(price), price_kind=kind, delta=e.forward / view.spot,
               t_years=e.t_years, forward=e.forward, df=e.df)


def _exact_dependencies(view: ChainView, sdef: StrategyDef, eligible: list[ExpiryInfo]) -> dict[int, np.ndarray]:
    """Strikes a leg may take so that the legs placed exactly relative to it exist in the chain:
    for leg i and each exact dependant j (n_j steps of expiry j's step away), the strikes k of leg
    i's expiry/type with k + n_j x step_j listed for leg j."""
    out: dict[int, np.ndarray] = {}
    for ldef in sdef.legs:
        r = ldef.strike
        if r is None or r.kind is not StrikeKind.RELATIVE or not r.exact:
            continue
        i = r.leg
        ei, ej = eligible[sdef.legs[i].expiry.index], eligible[ldef.expiry.index]
        ki = view.arrays["strike"][view.side(ei, sdef.legs[i].instrument.value)]
        kj = view.arrays["strike"][view.side(ej, ldef.instrument.value)]
        shift = relative_steps(ej, r) * ej.step
        ok = ki[np.isin(np.round(ki + shift, 6), np.round(kj, 6))]
        out[i] = ok if i not in out else np.intersect1d(out[i], ok)
    return out


def build_strategy(view: ChainView, sdef: StrategyDef, cfg: BuildConfig = BuildConfig()) -> Candidate:
    """Build one strategy on one symbol's chain; :class:`StrategyUnavailable` says why it cannot be."""
    err = {"strategy": sdef.name, "symbol": view.symbol, "session": view.session}
    if not (np.isfinite(view.spot) and view.spot > 0):
        raise StrategyUnavailable(f"no underlying price ({view.spot})", field="underlying_price", **err)
    eligible = view.eligible(cfg.min_dte_days / 365.0)
    inside = 0
    if cfg.time_exit_dte is not None and view.session is not None:
        kept = [e for e in eligible if time_exit_session(e.expiry, cfg.time_exit_dte) > view.session]
        inside, eligible = len(eligible) - len(kept), kept
    need = 1 + max(leg.expiry.index for leg in sdef.legs if leg.instrument is not Instrument.EQ)
    if len(eligible) < need:
        why = (f"; {inside} expiries skipped: their time exit ({cfg.time_exit_dte} days before expiry) is not "
               "after the session") if inside else ""
        raise StrategyUnavailable(f"needs {need} expiries at least {cfg.min_dte_days:g} days away with an ATM IV, "
                                  f"the chain has {len(eligible)}{why}", field="expiry", **err)
    legs: list[Leg | None] = [None] * len(sdef.legs)
    infos: list[ExpiryInfo | None] = [None] * len(sdef.legs)
    notes: list[str] = []
    allowed = _exact_dependencies(view, sdef, eligible)
    for i, ldef in enumerate(sdef.legs):  # options first: EQ/FUT legs take their size from them
        if not ldef.instrument.is_option:
            continue
        e = eligible[ldef.expiry.index]
        rule = ldef.strike
        ref = None
        if rule.kind is StrikeKind.RELATIVE:
            ref = legs[rule.leg].strike
        sel = select_strike(view, e, ldef.instrument.value, rule, ref_strike=ref, levels=cfg.levels,
                            weights=cfg.weights, strategy=sdef.name, allowed=allowed.get(i))
        legs[i] = _option_leg(view, e, ldef, sel, cfg.lots, err)
        infos[i] = e
    first = min((j for j in sdef.option_legs), key=lambda j: infos[j].t_years)
    front = infos[first]
    lot = _lot_size(view, front.ce.start if front.ce.stop > front.ce.start else front.pe.start, err)
    for i, ldef in enumerate(sdef.legs):
        if ldef.instrument.is_option:
            continue
        qty = ldef.ratio * cfg.lots * lot
        if ldef.instrument is Instrument.EQ and view.is_index:
            legs[i] = _linear_leg(view, front, ldef, Instrument.FUT, qty)
            notes.append(f"leg {i}: an index has no cash leg; the {front.expiry} future stands in for EQ")
        elif ldef.instrument is Instrument.EQ:
            legs[i] = _linear_leg(view, None, ldef, Instrument.EQ, qty)
        else:
            legs[i] = _linear_leg(view, eligible[ldef.expiry.index], ldef, Instrument.FUT, qty)
    strikes = [leg.strike for leg in legs]
    validate(strikes, sdef.constraints, step=front.step, **err)
    for leg in legs:
        if leg.instrument.is_option and not (np.isfinite(leg.price) and leg.price > 0):
            raise StrategyUnavailable(f"{leg.instrument.value} {leg.strike:g} {leg.expiry} has no usable price",
                                      field="price", **err)
        if leg.instrument.is_option and leg.iv is None:
            raise StrategyUnavailable(f"{leg.instrument.value} {leg.strike:g} {leg.expiry} has no implied vol",
                                      field="iv", **err)
    expiries = sorted({leg.expiry for leg in legs if leg.expiry is not None})
    if len(expiries) > 2:
        raise StrategyUnavailable("positions over more than two expiries are not supported", field="expiry", **err)
    back = expiries[1] if len(expiries) == 2 else None
    opt_levels = [leg.level for leg in legs if leg.level is not None]
    worst = max(opt_levels) if opt_levels else 0
    return Candidate(
        symbol=view.symbol, session=view.session, strategy=sdef, legs=legs, spot=view.spot, lot_size=lot,
        lots=cfg.lots, is_index=view.is_index, expiry=expiries[0], back_expiry=back, forward=front.forward,
        atm_iv=front.atm_iv, t_years=front.t_years, fallback_level=worst, fallback=cfg.levels[worst].name,
        notes=notes,
    )


def build_symbol(view: ChainView, strategies: tuple[StrategyDef, ...] = CATALOGUE,
                 cfg: BuildConfig = BuildConfig()) -> tuple[list[Candidate], list[BuildFailure]]:
    out, failures = [], []
    for sdef in strategies:
        try:
            out.append(build_strategy(view, sdef, cfg))
        except DataError as exc:
            failures.append(BuildFailure(view.symbol, sdef.name, getattr(exc, "reason", str(exc)),
                                         getattr(exc, "field", None)))
    return out, failures


def build_candidates(iv: pl.DataFrame, strategies: tuple[StrategyDef, ...] = CATALOGUE,
                     cfg: BuildConfig = BuildConfig(), symbols: list[str] | None = None
                     ) -> tuple[list[Candidate], list[BuildFailure]]:
    """Every buildable strategy for every symbol of a :func:`chain_iv` frame (one session)."""
    views = chain_views(iv)
    out, failures = [], []
    for sym in symbols if symbols is not None else list(views):
        view = views.get(sym)
        if view is None:
            failures.extend(BuildFailure(sym, s.name, "no chain with a forward for this symbol", "symbol")
                            for s in strategies)
            continue
        c, f = build_symbol(view, strategies, cfg)
        out.extend(c)
        failures.extend(f)
    return out, failures
