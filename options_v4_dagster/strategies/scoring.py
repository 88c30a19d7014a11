"""Scoring, conviction and risk-tolerance filters of strategy candidates.

:func:`score_candidates` gives every analysed :class:`~.build.Candidate` eight **components**, each
in [0, 1], and a **total score** ``100 x sum(w_i c_i) / sum(w_i)`` in [0, 100] with the weights of
``scoring.yaml`` (:class:`ScoringConfig`). The components (vectorized across candidates):

``probability``
    The probability of profit at expiry (``analytics.pop``).
``reward_risk``
    ``r / (r + pivot)`` (``pivot`` = 1: a 1:1 position scores 0.5) of an effective reward/risk
    ratio ``r``. When max profit and max loss are both bounded *and* both reached within
    ``band_sigmas`` (3) standard deviations of the forward at the front expiry (the POP law),
    ``r`` = max profit / max loss. Otherwise -- the profit or the loss is unbounded, or reached
    only in a remote tail (a long put's profit at S = 0, a short put's loss there) -- ``r`` is the
    **expected payoff ratio** under the POP law, E[P&L | P&L > 0] / E[-P&L | P&L < 0] (average win /
    average loss, a quadrature over ``grid_points`` quantiles). An unbounded loss multiplies ``r``
    by ``unbounded_loss_penalty`` (0.5). A position that cannot lose has r = inf (1.0).
``market_alignment``
    The strategy's outlook (and the strength of view it expresses, ``s``) against the market
    view's direction and strength ``v``:

    * BULLISH / BEARISH outlook: ``1 - 0.5 |v - s|`` for a view in the same direction (a strong-view
      strategy fits a strong trend), ``0.5 (1 - s)`` for a NEUTRAL view, 0 for the opposite view;
    * NEUTRAL outlook: ``1 - v`` for a NEUTRAL view, ``(1 - v)(1 - 0.5 s)`` for a BULLISH or
      BEARISH one (pinned-price strategies suffer most from a trend);
    * VOLATILE outlook: ``0.4 + 0.6 v`` for a BULLISH or BEARISH view (a strong move), for a
      NEUTRAL view 0.6 in a LOW IV environment (a squeeze before a breakout), 0.4 NORMAL or
      unknown, 0.25 HIGH.

    A view without a direction scores ``unknown_view`` (0.5).
``iv_fit``
    The ``iv_fit`` table of the YAML, strategy IV preference x the view's IV environment:
    HIGH preference 1 / 0.5 / 0 in a HIGH / NORMAL / LOW environment, LOW the mirror image, ANY
    0.6 everywhere; an unknown environment 0.5 (noted).
``liquidity``
    The worst option leg's ``0.4 level + 0.4 spread + 0.2 OI`` where level = 1 - fallback level /
    (number of levels - 1) (strict 1 .. any_price 0), spread = 1 - (ask - bid) / mid /
    ``max_spread_pct`` clipped to [0, 1] (0 without a two-sided quote), OI = log(1 + OI) /
    log(1 + ``full_oi``) clipped (contracts). Stock / futures legs count as fully liquid.
``time_decay``
    ``0.5 + 0.5 tanh(theta / risk / theta_scale)``: theta (INR per day) relative to the capital
    at risk -- the max loss when bounded and not remote, else the worst loss within the
    ``band_sigmas`` band, else the margin. Positive theta (income) scores above 0.5; long premium
    losing a large share of its debit per day scores near 0.
``complexity``
    ``complexity_scores[complexity - 1]`` (1 leg = 1.0 .. 5 = 0.3).
``momentum``
    The view's momentum ``m`` in [-1, 1] (e.g. from MACD and RSI, :func:`views_from_signals`):
    ``0.5 + 0.5 m`` for bullish strategies, ``0.5 - 0.5 m`` for bearish, ``1 - |m|`` for neutral,
    ``0.25 + 0.75 |m|`` for volatile; 0.5 when unknown.

**Conviction** (:func:`conviction`): VERY_HIGH >= 80, HIGH >= 65, MEDIUM >= 45, LOW >= 30, else
VERY_LOW (thresholds in the YAML); a candidate with a negative expected value is capped at
``negative_ev_cap`` (MEDIUM), so it never reaches the allocation's first tier.

**Risk tolerance** (conservative / moderate / aggressive) selects a :class:`RiskFilter`: minimum
POP, whether unlimited-risk strategies are allowed (a strategy flagged ``unlimited_risk`` or an
unbounded max loss), the largest max loss as a multiple of the margin (rejects positions whose
bounded loss is far larger than the capital posted, e.g. naked short puts) and in INR, the
minimum effective reward/risk ``r``, the loosest strike-selection fallback level, the largest
complexity and excluded categories. A candidate failing any is kept with ``passed = False`` and
the reasons in ``rejections``; the score does not depend on the tolerance.

:func:`rank` orders each symbol's candidates, passed first, then by conviction, then by score (ties by strategy name),
and sets ``Scored.rank`` (1 = best).

The YAML's models are in :mod:`.scoring_config`, the market view in :mod:`.market_view`; the names
other modules use are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..types import RISK_TOLERANCES
from .analytics import analyze
from .build import Candidate
from .catalogue import IVPreference, Outlook
from .exits import near_extremes, payoff_profile
from .market_view import IV_ENVS, MarketView, views_from_signals
from .scoring_config import (
    COMPONENTS,
    CONVICTIONS,
    ConvictionThresholds,
    LiquidityParams,
    RiskFilter,
    ScoringConfig,
    check_risk,
)
from .strikes import LEVELS

__all__ = [
    "COMPONENTS", "CONVICTIONS", "RISK_TOLERANCES", "MarketView", "RiskFilter", "Scored", "ScoringConfig",
    "conviction", "rank", "score_candidates", "views_from_signals",
]


# --------------------------------------------------------------------------------------------
# results

@dataclass
class Scored:
    candidate: Candidate
    total_score: float  # 0..100
    conviction: str
    components: dict[str, float]  # each 0..1, keys COMPONENTS
    passed: bool  # meets the risk tolerance's filters
    rejections: list[str]  # why it fails them (empty when passed)
    risk_tolerance: str = "moderate"
    notes: list[str] = field(default_factory=list)  # informative (missing view, remote extremes, ...)
    details: dict[str, Any] = field(default_factory=dict)  # effective reward/risk and its basis, theta/risk
    rank: int | None = None  # set by rank(): 1 = best for the symbol

    @property
    def symbol(self) -> str:
        return self.candidate.symbol

    @property
    def strategy_name(self) -> str:
        return self.candidate.strategy.name

    def to_dict(self) -> dict:
        return {
            "symbol": self.symbol, "strategy_name": self.strategy_name, "total_score": self.total_score,
            "conviction": self.conviction, "components": dict(self.components), "passed": self.passed,
            "rejections": list(self.rejections), "risk_tolerance": self.risk_tolerance, "notes": list(self.notes),
            "details": dict(self.details), "rank": self.rank,
        }


def conviction(score: float, config: ScoringConfig | ConvictionThresholds | None = None,
               expected_value: float | None = None) -> str:
    """VERY_HIGH / HIGH / MEDIUM / LOW / VERY_LOW for a 0-100 score (thresholds inclusive). A
    negative ``expected_value`` caps the level at ``negative_ev_cap`` (MEDIUM): a position that
    loses money on average is never a high-conviction trade, however well it scores otherwise."""
    if config is None:
        config = ScoringConfig.load()
    t = config.conviction if isinstance(config, ScoringConfig) else config
    s = float(score)
    if not math.isfinite(s):
        return "VERY_LOW"
    level = "VERY_LOW"
    for name in CONVICTIONS[:-1]:
        if s >= getattr(t, name):
            level = name
            break
    if expected_value is not None and float(expected_value) < 0:
        cap = CONVICTIONS.index(t.negative_ev_cap)
        level = CONVICTIONS[max(CONVICTIONS.index(level), cap)]
    return level


# --------------------------------------------------------------------------------------------
# components

def _alignment(outlook: np.ndarray, s_def: np.ndarray, direction: np.ndarray, v: np.ndarray,
               env: np.ndarray, unknown: float) -> np.ndarray:
    """Market alignment (module docstring). ``direction``: +1 / 0 / -1, NaN unknown; ``outlook``
    codes: +1 bullish, -1 bearish, 0 neutral, 2 volatile; ``env``: 0 LOW, 1 NORMAL, 2 HIGH, -1 unknown."""
    known = ~np.isnan(direction)
    d = np.nan_to_num(direction)
    directional = np.abs(outlook) == 1
    same = directional & (d == outlook)
    opposite = directional & (d == -outlook)
    view_neutral = d == 0
    vol_neutral = np.where(env == 0, 0.6, np.where(env == 2, 0.25, 0.4))
    res = np.select(
        [same, opposite, directional & view_neutral,
         (outlook == 0) & view_neutral, outlook == 0,
         (outlook == 2) & view_neutral, outlook == 2],
        [1.0 - 0.5 * np.abs(v - s_def), np.zeros_like(v), 0.5 * (1.0 - s_def),
         1.0 - v, (1.0 - v) * (1.0 - 0.5 * s_def),
         vol_neutral, 0.4 + 0.6 * v],
        default=unknown,
    )
    return np.where(known, res, unknown)


def _momentum_fit(outlook: np.ndarray, m: np.ndarray) -> np.ndarray:
    known = ~np.isnan(m)
    mm = np.nan_to_num(m)
    res = np.select([np.abs(outlook) == 1, outlook == 0], [0.5 + 0.5 * outlook * mm, 1.0 - np.abs(mm)],
                    default=0.25 + 0.75 * np.abs(mm))
    return np.where(known, res, 0.5)


_OUTLOOK_CODE = {Outlook.BULLISH: 1, Outlook.BEARISH: -1, Outlook.NEUTRAL: 0, Outlook.VOLATILE: 2}
_DIR_CODE = {"BULLISH": 1.0, "NEUTRAL": 0.0, "BEARISH": -1.0}
_ENV_CODE = {"LOW": 0, "NORMAL": 1, "HIGH": 2}


def _liquidity(cands: list[Candidate], lp: LiquidityParams) -> np.ndarray:
    n = len(cands)
    L = max(len(c.legs) for c in cands)
    level = np.full((n, L), np.nan)
    spread = np.full((n, L), np.nan)
    oi = np.full((n, L), np.nan)
    opt = np.zeros((n, L), dtype=bool)
    for i, c in enumerate(cands):
        for j, leg in enumerate(c.legs):
            if not leg.instrument.is_option:
                continue
            opt[i, j] = True
            level[i, j] = leg.level if leg.level is not None else c.fallback_level
            if leg.bid is not None and leg.ask is not None and leg.bid > 0 and leg.ask >= leg.bid:
                spread[i, j] = (leg.ask - leg.bid) / (0.5 * (leg.ask + leg.bid))
            oi[i, j] = leg.oi if leg.oi is not None else 0.0
    top = max(len(LEVELS) - 1, 1)
    s_level = np.clip(1.0 - level / top, 0.0, 1.0)
    s_spread = np.where(np.isnan(spread), 0.0, np.clip(1.0 - np.nan_to_num(spread) / lp.max_spread_pct, 0.0, 1.0))
    s_oi = np.clip(np.log1p(np.maximum(np.nan_to_num(oi), 0.0)) / math.log1p(lp.full_oi), 0.0, 1.0)
    w = lp.level_weight + lp.spread_weight + lp.oi_weight
    leg_score = (lp.level_weight * np.nan_to_num(s_level) + lp.spread_weight * s_spread + lp.oi_weight * s_oi) / w
    return np.where(opt, leg_score, np.inf).min(axis=1).clip(0.0, 1.0)


def score_candidates(candidates: list[Candidate], views: Mapping[str, MarketView | Mapping],
                     risk: str = "moderate", config: ScoringConfig | None = None) -> list[Scored]:
    """Score every candidate (module docstring) against its symbol's view and apply the risk
    tolerance's filters. Candidates without analytics are analysed first. A symbol without a view
    is scored against :meth:`MarketView.neutral` (a note, not a rejection). Order is preserved;
    see :func:`rank`."""
    cfg = config if config is not None else ScoringConfig.load()
    risk = check_risk(risk)
    flt = cfg.filters(risk)
    if not candidates:
        return []
    missing = [c for c in candidates if c.analytics is None]
    if missing:
        analyze(missing)
    p = cfg.components
    n = len(candidates)
    vw: list[MarketView] = []
    view_notes: list[list[str]] = []
    for c in candidates:
        v = views.get(c.symbol) if views is not None else None
        notes = []
        if v is None:
            v = MarketView.neutral()
            notes.append(f"no market view for {c.symbol}: alignment, IV fit and momentum scored neutral")
        elif not isinstance(v, MarketView):
            v = MarketView.from_row(v)
        else:
            if v.direction is None:
                notes.append("market direction unknown: alignment scored neutral")
            if v.iv_environment is None:
                notes.append("IV environment unknown: IV fit scored neutral")
            if v.momentum is None:
                notes.append("momentum unknown: scored neutral")
        vw.append(v)
        view_notes.append(notes)

    a = [c.analytics for c in candidates]
    pop = np.array([x.pop for x in a])
    mp = np.array([np.nan if x.max_profit is None else x.max_profit for x in a])
    ml = np.array([np.nan if x.max_loss is None else x.max_loss for x in a])
    margin = np.array([x.margin for x in a])
    theta = np.array([x.greeks.theta for x in a])
    unlimited = np.array([c.strategy.unlimited_risk for c in candidates]) | np.isnan(ml)
    outlook = np.array([_OUTLOOK_CODE[c.strategy.outlook] for c in candidates])
    s_def = np.array([c.strategy.strength for c in candidates])
    cx = np.array([c.strategy.complexity for c in candidates])
    direction = np.array([np.nan if v.direction is None else _DIR_CODE[v.direction] for v in vw])
    vstr = np.array([v.strength for v in vw])
    env = np.array([-1 if v.iv_environment is None else _ENV_CODE[v.iv_environment] for v in vw])
    mom = np.array([np.nan if v.momentum is None else v.momentum for v in vw])

    # reward / risk
    st = payoff_profile(candidates, p.band_sigmas, p.grid_points)
    p_near, l_near = near_extremes(mp, ml, st["best"], st["worst"])
    exact = p_near & l_near
    with np.errstate(divide="ignore", invalid="ignore"):
        avg_win = np.where(st["p_win"] > 0, st["e_win"] / st["p_win"], 0.0)
        p_loss = np.clip(1.0 - st["p_win"], 0.0, 1.0)
        avg_loss = np.where(st["e_loss"] > 0, st["e_loss"] / np.maximum(p_loss, 1e-12), 0.0)
        payoff_ratio = np.where(avg_loss > 0, avg_win / avg_loss, np.where(avg_win > 0, np.inf, 0.0))
        max_ratio = np.where(ml > 0, mp / ml, np.inf)
    ratio = np.where(exact, max_ratio, payoff_ratio)
    ratio = np.where(unlimited, ratio * p.unbounded_loss_penalty, ratio)
    ratio = np.where(np.isnan(ratio), 0.0, ratio)
    with np.errstate(invalid="ignore"):
        c_rr = np.where(np.isinf(ratio), 1.0, ratio / (ratio + p.reward_risk_pivot))

    # time decay: theta per INR at risk
    risk_inr = np.where(exact & (ml > 0), ml, np.where(st["worst"] > 0, st["worst"], margin))
    risk_inr = np.where(risk_inr > 0, risk_inr, 1.0)
    theta_ratio = theta / risk_inr
    c_td = 0.5 + 0.5 * np.tanh(theta_ratio / p.theta_scale)

    # IV fit
    ivf = p.iv_fit
    pref_rows = {IVPreference.HIGH: ivf.HIGH, IVPreference.LOW: ivf.LOW, IVPreference.ANY: ivf.ANY}
    table = np.array([[getattr(pref_rows[c.strategy.iv_preference], e) for e in IV_ENVS] for c in candidates])
    c_iv = np.where(env >= 0, table[np.arange(n), np.maximum(env, 0)], ivf.unknown)

    comps = {
        "probability": np.clip(pop, 0.0, 1.0),
        "reward_risk": c_rr,
        "market_alignment": _alignment(outlook, s_def, direction, vstr, env, p.unknown_view),
        "iv_fit": c_iv,
        "liquidity": _liquidity(candidates, p.liquidity),
        "time_decay": c_td,
        "complexity": np.array([p.complexity_scores[min(max(int(k), 1), 5) - 1] for k in cx]),
        "momentum": _momentum_fit(outlook, mom),
    }
    comps = {k: np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0) for k, v in comps.items()}
    w = cfg.weights.as_dict()
    total = 100.0 * sum(w[k] * comps[k] for k in COMPONENTS) / sum(w.values())
    total = np.clip(total, 0.0, 100.0)

    out = []
    for i, c in enumerate(candidates):
        x = a[i]
        rej = _rejections(c, float(ratio[i]), flt, risk)
        notes = list(view_notes[i])
        if not exact[i]:
            why = "unbounded" if (np.isnan(mp[i]) or np.isnan(ml[i])) else "reached only beyond the band"
            notes.append(f"reward/risk: max profit or loss {why}; expected payoff ratio used")
        sc = float(total[i])
        level = conviction(sc, cfg, x.expected_value)
        if level != conviction(sc, cfg):
            notes.append(f"expected value INR {x.expected_value:,.0f} < 0: conviction capped at {level}")
        out.append(Scored(
            candidate=c, total_score=sc, conviction=level,
            components={k: float(comps[k][i]) for k in COMPONENTS}, passed=not rej, rejections=rej,
            risk_tolerance=risk, notes=notes,
            details={
                "reward_risk_effective": _finite(ratio[i]),
                "reward_risk_basis": "max_profit/max_loss" if exact[i] else "expected_payoff_ratio",
                "payoff_ratio": _finite(payoff_ratio[i]),
                "band_best_pnl": _finite(st["best"][i]), "band_worst_loss": _finite(st["worst"][i]),
                "band_sigmas": p.band_sigmas, "risk_inr": _finite(risk_inr[i]),
                "theta_per_risk": _finite(theta_ratio[i]), "max_loss_to_margin":
                    _finite(x.max_loss / x.margin) if x.max_loss is not None and x.margin > 0 else None,
                "view": {"direction": vw[i].direction, "strength": vw[i].strength,
                         "iv_environment": vw[i].iv_environment, "market_state": vw[i].market_state,
                         "momentum": vw[i].momentum},
            },
        ))
    return out


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _rejections(c: Candidate, ratio: float, f: RiskFilter, risk: str) -> list[str]:
    a = c.analytics
    out = []
    if a.pop < f.min_pop:
        out.append(f"POP {a.pop:.1%} below the {risk} minimum {f.min_pop:.0%}")
    unlimited = c.strategy.unlimited_risk or a.max_loss is None
    if unlimited and not f.allow_unlimited_risk:
        out.append(f"unlimited risk not allowed for {risk}")
    if a.max_loss is not None:
        if f.max_loss_to_margin is not None and a.margin > 0 and a.max_loss > f.max_loss_to_margin * a.margin:
            out.append(f"max loss INR {a.max_loss:,.0f} is {a.max_loss / a.margin:.1f}x the margin "
                       f"(INR {a.margin:,.0f}), above the {risk} limit {f.max_loss_to_margin:g}x")
        if f.max_loss_inr is not None and a.max_loss > f.max_loss_inr:
            out.append(f"max loss INR {a.max_loss:,.0f} above the {risk} limit INR {f.max_loss_inr:,.0f}")
    if ratio < f.min_reward_risk:
        out.append(f"reward/risk {ratio:.2f} below the {risk} minimum {f.min_reward_risk:g}")
    if c.fallback_level > f.max_fallback_level:
        out.append(f"strikes needed the '{c.fallback}' liquidity level (level {c.fallback_level}), looser than "
                   f"the {risk} limit {f.max_fallback_level}")
    if c.strategy.complexity > f.max_complexity:
        out.append(f"complexity {c.strategy.complexity} above the {risk} limit {f.max_complexity}")
    if c.strategy.category in f.excluded_categories:
        out.append(f"category {c.strategy.category.value} excluded for {risk}")
    return out


def rank(scored: list[Scored]) -> list[Scored]:
    """Rank each symbol's candidates: passed first, then by conviction (so a candidate capped for a
    negative expected value ranks below the higher-conviction ones), then by total score
    (descending; ties by strategy name). Sets ``Scored.rank`` (1 = best for the symbol) on every item and returns them
    grouped by symbol (symbols in order of first appearance), best first."""
    groups: dict[str, list[Scored]] = {}
    for s in scored:
        groups.setdefault(s.symbol, []).append(s)
    out: list[Scored] = []
    for items in groups.values():
        items.sort(key=lambda s: (not s.passed, CONVICTIONS.index(s.conviction), -s.total_score, s.strategy_name))
        for i, s in enumerate(items, start=1):
            s.rank = i
        out.extend(items)
    return out
