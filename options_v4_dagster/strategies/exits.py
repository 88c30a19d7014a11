"""Exit levels per strategy candidate (the ``strategy_exit_levels`` table).

All money is INR P&L of the whole position (quantities in shares), measured against the entry
at the candidate's executable prices. Each candidate is classified by how its premium relates to
its payoff (:attr:`ExitLevels.basis`):

A bounded max profit or max loss counts as **remote** when it is reached only beyond
``remote_sigmas`` (3) standard deviations of the forward at the front expiry (the POP law of
:mod:`.analytics`) -- a long put's profit at S = 0, a naked short put's loss there, a synthetic's
either side; a remote max profit is treated as unbounded.

* ``credit`` -- option legs only, a net credit, and a max profit (not remote) no larger than the
  credit (premium sellers: short options, credit spreads, straddles, strangles, condors, iron
  flies, jade lizards). Profit target: ``credit_profit_pct`` (50%) of max profit. Stop: a loss of
  ``credit_stop_multiple`` (2x) the credit received (buying the position back at 3x the credit).
* ``debit`` -- option legs only, a net debit and a bounded max loss at most 1.5x the debit (long
  options, debit spreads, butterflies, calendars, diagonals, long straddles / strangles).
  Profit target: ``debit_profit_pct`` (50%) of max profit when bounded (not remote), else
  ``debit_unbounded_target_pct`` (100%) of the debit. Stop: ``debit_stop_pct`` (50%) of the debit.
* ``other`` -- positions with a stock / futures leg, credits whose max profit exceeds the credit,
  debits with a loss far larger than the debit (broken-wing butterflies, ratio spreads,
  backspreads, risk reversals, synthetics, covered calls, collars). Their premium says little
  about their size, so they use the **risk capital** ``R`` = min(max loss, margin) (the margin
  when the loss is unbounded): profit target ``debit_profit_pct`` of a bounded (not remote) max
  profit, else ``other_unbounded_target_pct`` (25%) of R; stop ``other_stop_pct`` (25%) of R.

Every stop is then capped by ``max_loss_share`` (50%) of a bounded max loss and by the absolute
``max_stop_loss_inr`` (50,000); every target by the max profit. So ``stop_loss <= max_loss`` and
``profit_target <= max_profit`` whenever those are bounded. A position that cannot lose (max
loss <= 0) has no stop (``None``); one that cannot gain has no target, scale-out or trailing stop.

``profit_target_pct`` is the target as a share of its basis: max profit when bounded and not
remote, else the debit (``debit``) or R. ``stop_loss_pct`` is the stop as a share of the max loss
when bounded and not remote, else of the credit, the debit or R (by class).

Scale-out: at ``at_pct`` = 25/50/75% of the profit basis (max profit when bounded and not remote,
the primary target otherwise) close ``close_fraction`` of the position; ``pnl`` is the INR
P&L of each step (strictly increasing).

Time exit: ``time_exit_dte`` (7) calendar days before the front expiry, moved back to an NSE session
(:func:`calendar.previous_session`, inclusive). When that falls on or before the entry session (a
weekly bought with 7 days or fewer to go), the exit moves to the last session before the front
expiry (the entry session itself when the entry is that session); ``time_exit_dte`` is stored as
the days actually left at ``time_exit_date``.

Trailing stop: arms at ``trailing_activation_pct`` (50%) of the profit target and then allows a
give-back of ``trailing_distance_pct`` (25%) of the target.

Adjustments (``adjustments``, a list of dicts):

* ``breakeven_breached`` -- one per breakeven: ``side`` ``below`` / ``above`` (the side where the
  position loses, from the P&L at the front expiry just beyond the breakeven), ``breakeven``, the
  trigger ``price`` (the breakeven moved ``breakeven_buffer_pct`` towards the market, 0 by
  default) and the underlying's ``entry_spot`` (the monitor alerts only when spot crosses the
  trigger into the losing side after the entry: a debit position that starts there is not alerted);
* ``short_delta`` -- one per short option leg: ``instrument``, ``strike``, ``expiry``, the entry
  ``delta`` (per share) and the ``threshold`` on its absolute delta: ``short_delta_threshold``
  (0.35), raised to the entry |delta| + ``short_delta_buffer`` (0.15) for legs sold near the money,
  with the underlying ``price`` at which the leg's delta reaches it (Black-76 at the leg's IV and
  today's time to expiry).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator
from scipy.special import ndtri

from .. import calendar
from ..yaml_config import StrictModel, read_yaml_mapping, validate_model
from .analytics import analyze, pnl_at_front_expiry
from .build import Candidate
from .catalogue import Side

__all__ = [
    "DEFAULT_CONFIG", "ExitConfig", "ExitLevels", "ScaleOutStep", "exit_levels", "exit_levels_all", "near_extremes",
    "payoff_profile",
]

#: The packaged configuration (scoring weights, filters and exit rules): ``options_v4_dagster/config/scoring.yaml``.
DEFAULT_CONFIG = "config/scoring.yaml"
_CREDIT_TOL = 0.01  # max profit within 1% (+1 INR) of the credit counts as "the credit"
_DEBIT_LOSS_TOL = 1.5  # a debit position whose max loss is at most 1.5x the debit is sized by its debit


# --------------------------------------------------------------------------------------------
# YAML loading shared with :mod:`.scoring`

def default_config_path() -> Path:
    return Path(str(resources.files("options_v4_dagster").joinpath(DEFAULT_CONFIG)))


def read_yaml(path: str | Path | None) -> tuple[dict, Path]:
    """The YAML mapping at ``path`` (default: the packaged scoring.yaml); ConfigError when unreadable."""
    p = Path(path) if path is not None else default_config_path()
    return read_yaml_mapping(p), p


# --------------------------------------------------------------------------------------------
# configuration

class ScaleOutStep(StrictModel):
    at_pct: float = Field(gt=0, le=1, description="share of the profit basis")
    close_fraction: float = Field(gt=0, le=1, description="share of the position closed")


_SCALE_OUT = (ScaleOutStep(at_pct=0.25, close_fraction=0.33), ScaleOutStep(at_pct=0.50, close_fraction=0.33),
              ScaleOutStep(at_pct=0.75, close_fraction=0.34))


class ExitConfig(StrictModel):
    """Exit rules (the ``exits:`` section of scoring.yaml); see the module docstring."""

    credit_profit_pct: float = Field(0.5, gt=0, le=1)
    credit_stop_multiple: float = Field(2.0, gt=0)
    debit_profit_pct: float = Field(0.5, gt=0, le=1)
    debit_unbounded_target_pct: float = Field(1.0, gt=0)
    debit_stop_pct: float = Field(0.5, gt=0, le=1)
    other_unbounded_target_pct: float = Field(0.25, gt=0)
    other_stop_pct: float = Field(0.25, gt=0, le=1)
    max_loss_share: float = Field(0.5, gt=0, le=1)
    max_stop_loss_inr: float | None = Field(50_000.0, gt=0)
    scale_out: tuple[ScaleOutStep, ...] = _SCALE_OUT
    time_exit_dte: int = Field(7, ge=0, le=90)
    trailing_activation_pct: float = Field(0.5, gt=0, le=1)
    trailing_distance_pct: float = Field(0.25, gt=0, le=1)
    breakeven_buffer_pct: float = Field(0.0, ge=0, lt=0.2)
    short_delta_threshold: float = Field(0.35, gt=0, lt=1)
    short_delta_buffer: float = Field(0.15, ge=0, lt=1)
    remote_sigmas: float = Field(3.0, gt=0, le=10)

    @field_validator("scale_out")
    @classmethod
    def _check_scale_out(cls, v: tuple[ScaleOutStep, ...]) -> tuple[ScaleOutStep, ...]:
        at = [s.at_pct for s in v]
        if any(b <= a for a, b in zip(at, at[1:], strict=False)):
            raise ValueError("at_pct must strictly increase")
        if sum(s.close_fraction for s in v) > 1 + 1e-9:
            raise ValueError("the close fractions add up to more than 1")
        return v

    @classmethod
    def load(cls, path: str | Path | None = None) -> ExitConfig:
        """The ``exits:`` section of a scoring YAML (default: the packaged one)."""
        if path is None:
            return _default_exit_config()
        data, p = read_yaml(path)
        return validate_model(cls, data.get("exits") or {}, p, "exits")


@lru_cache(maxsize=1)
def _default_exit_config() -> ExitConfig:
    data, p = read_yaml(None)
    return validate_model(ExitConfig, data.get("exits") or {}, p, "exits")


# --------------------------------------------------------------------------------------------
# the P&L distribution at the front expiry (shared with :mod:`.scoring`)

_CHUNK = 1024  # candidates per grid evaluation (bounds memory)


def payoff_profile(cands: list[Candidate], band_sigmas: float = 3.0, grid_points: int = 400) -> dict[str, np.ndarray]:
    """Per candidate, under the POP law at the front expiry: the best P&L and the worst loss within
    +-band_sigmas (grid + the strikes inside the band), P(win), E[P&L+], E[P&L-]."""
    n = len(cands)
    G = grid_points
    z_q = ndtri((np.arange(G) + 0.5) / G)  # equal-probability quantiles
    z_b = np.linspace(-band_sigmas, band_sigmas, 121)
    L = max(len(c.legs) for c in cands)
    out = {k: np.empty(n) for k in ("best", "worst", "p_win", "e_win", "e_loss")}
    for lo in range(0, n, _CHUNK):
        chunk = cands[lo:lo + _CHUNK]
        m = len(chunk)
        F = np.array([c.analytics.pop_inputs.forward for c in chunk])
        s = np.array([c.analytics.pop_inputs.sigma * math.sqrt(c.analytics.pop_inputs.t_years) for c in chunk])
        Sq = F[:, None] * np.exp(s[:, None] * z_q[None, :] - 0.5 * s[:, None] ** 2)
        band_lo, band_hi = F * np.exp(-band_sigmas * s), F * np.exp(band_sigmas * s)
        Sb = F[:, None] * np.exp(s[:, None] * z_b[None, :])
        K = np.full((m, L), np.nan)
        for i, c in enumerate(chunk):
            for j, leg in enumerate(c.legs):
                if leg.instrument.is_option and leg.expiry == c.expiry:  # front strikes: the P&L's kinks
                    K[i, j] = leg.strike
        inside = (K >= band_lo[:, None]) & (K <= band_hi[:, None])
        K = np.where(inside, K, F[:, None])
        pnl = pnl_at_front_expiry(chunk, np.concatenate([Sq, Sb, K], axis=1))
        q, b = pnl[:, :G], pnl[:, G:]
        sl = slice(lo, lo + m)
        out["best"][sl] = b.max(axis=1)
        out["worst"][sl] = -b.min(axis=1)
        out["p_win"][sl] = (q > 0).mean(axis=1)
        out["e_win"][sl] = np.where(q > 0, q, 0.0).mean(axis=1)
        out["e_loss"][sl] = np.where(q < 0, -q, 0.0).mean(axis=1)
    return out



# --------------------------------------------------------------------------------------------

@dataclass
class ExitLevels:
    profit_target: float | None  # INR P&L (primary); None when the position cannot gain
    profit_target_pct: float | None
    scale_out: list[dict]  # [{at_pct, pnl, close_fraction}]
    stop_loss: float | None  # INR loss, positive; None when the position cannot lose
    stop_loss_pct: float | None
    time_exit_dte: int
    time_exit_date: dt.date
    trailing_activation: float | None  # INR profit
    trailing_distance: float | None  # INR
    adjustments: list[dict] = field(default_factory=list)
    basis: str = ""  # credit / debit / other (see the module docstring)
    notes: list[str] = field(default_factory=list)

    def to_row(self, strategy_id: str | None = None, trade_date: dt.date | None = None) -> dict:
        """A ``strategy_exit_levels`` row (list fields JSON-encoded); the keys are table columns."""
        row = {
            "profit_target": self.profit_target, "profit_target_pct": self.profit_target_pct,
            "scale_out": json.dumps(self.scale_out), "stop_loss": self.stop_loss,
            "stop_loss_pct": self.stop_loss_pct, "time_exit_dte": self.time_exit_dte,
            "time_exit_date": self.time_exit_date, "trailing_activation": self.trailing_activation,
            "trailing_distance": self.trailing_distance, "adjustments": json.dumps(self.adjustments),
        }
        if strategy_id is not None:
            row["strategy_id"] = strategy_id
        if trade_date is not None:
            row["trade_date"] = trade_date
        return row

    def to_dict(self) -> dict:
        return {
            "profit_target": self.profit_target, "profit_target_pct": self.profit_target_pct,
            "scale_out": list(self.scale_out), "stop_loss": self.stop_loss, "stop_loss_pct": self.stop_loss_pct,
            "time_exit_dte": self.time_exit_dte, "time_exit_date": self.time_exit_date.isoformat(),
            "trailing_activation": self.trailing_activation, "trailing_distance": self.trailing_distance,
            "adjustments": list(self.adjustments), "basis": self.basis, "notes": list(self.notes),
        }


def _f(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _r(x: float | None, nd: int = 2) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), nd)


def near_extremes(max_profit: np.ndarray, max_loss: np.ndarray, best: np.ndarray,
                  worst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether a bounded max profit / max loss (NaN = unbounded) is reached within the band, i.e.
    the band's best P&L / worst loss comes within 1% (+1 INR) of it; False when unbounded or remote."""
    with np.errstate(invalid="ignore"):
        p = np.isfinite(max_profit) & (best >= max_profit - (0.01 * np.abs(max_profit) + 1.0))
        q = np.isfinite(max_loss) & (worst >= max_loss - (0.01 * np.abs(max_loss) + 1.0))
    return p, q


def _basis(c: Candidate, profit_near: bool) -> str:
    a = c.analytics
    options_only = all(leg.instrument.is_option for leg in c.legs)
    credit, debit = a.net_premium, -a.net_premium
    if options_only and credit > 0 and profit_near and a.max_profit <= credit * (1 + _CREDIT_TOL) + 1.0:
        return "credit"
    if options_only and debit > 0 and a.max_loss is not None and a.max_loss <= debit * _DEBIT_LOSS_TOL + 1.0:
        return "debit"
    return "other"


def _time_exit(c: Candidate, dte: int) -> tuple[dt.date, list[str]]:
    notes = []
    front = c.expiry
    target = calendar.previous_session(front - dt.timedelta(days=dte), inclusive=True)
    if c.session is not None and target <= c.session:
        last = calendar.previous_session(front, inclusive=False)
        target = max(last, c.session)
        notes.append(f"the front expiry {front} is within {dte} days of the entry: time exit on the last "
                     f"session before expiry ({target})")
    return target, notes


def _delta_price(c: Candidate, leg, threshold: float) -> float | None:
    """Underlying (spot) price at which the leg's |delta| reaches ``threshold`` (Black-76, leg IV, today's T)."""
    if not leg.iv or not leg.t_years or not leg.forward or leg.t_years <= 0:
        return None
    s = leg.iv * math.sqrt(leg.t_years)
    d1 = float(ndtri(threshold)) if leg.instrument.value == "CE" else -float(ndtri(threshold))
    f_star = leg.strike * math.exp(d1 * s - 0.5 * s * s)
    return f_star * c.spot / leg.forward


def exit_levels_all(cands: list[Candidate], config: ExitConfig | None = None) -> list[ExitLevels]:
    """:func:`exit_levels` for many candidates (the breakeven sides in one vectorized P&L call)."""
    cfg = config if config is not None else ExitConfig.load()
    if not cands:
        return []
    missing = [c for c in cands if c.analytics is None]
    if missing:
        analyze(missing)
    # the losing side of each breakeven: P&L at the front expiry just below / above it
    nbe = max(max(len(c.analytics.breakevens) for c in cands), 1)
    grid = np.empty((len(cands), 2 * nbe))
    for i, c in enumerate(cands):
        be = list(c.analytics.breakevens) or [c.forward]
        be = be + [be[-1]] * (nbe - len(be))
        b = np.asarray(be, dtype=float)
        grid[i, 0::2], grid[i, 1::2] = b * (1 - 1e-5), b * (1 + 1e-5)
    pnl = pnl_at_front_expiry(cands, grid)
    prof = payoff_profile(cands, cfg.remote_sigmas, 64)
    mp = np.array([np.nan if c.analytics.max_profit is None else c.analytics.max_profit for c in cands])
    ml = np.array([np.nan if c.analytics.max_loss is None else c.analytics.max_loss for c in cands])
    p_near, l_near = near_extremes(mp, ml, prof["best"], prof["worst"])
    return [_levels(c, cfg, pnl[i], bool(p_near[i]), bool(l_near[i])) for i, c in enumerate(cands)]


def exit_levels(candidate: Candidate, config: ExitConfig | None = None) -> ExitLevels:
    """Profit target, scale-out, stop, time exit, trailing stop and adjustment triggers (module docstring)."""
    return exit_levels_all([candidate], config)[0]


def _levels(c: Candidate, cfg: ExitConfig, be_pnl: np.ndarray, profit_near: bool, loss_near: bool) -> ExitLevels:
    a = c.analytics
    basis = _basis(c, profit_near)
    notes: list[str] = []
    mp, ml = a.max_profit, a.max_loss
    credit, debit = max(a.net_premium, 0.0), max(-a.net_premium, 0.0)
    risk_capital = min(ml if ml is not None else math.inf, a.margin) if a.margin > 0 else (ml or 0.0)
    if mp is not None and not profit_near:
        notes.append(f"max profit INR {mp:,.0f} is reached only beyond {cfg.remote_sigmas:g} sd: "
                     "target set as for an unbounded profit")
    if ml is not None and not loss_near:
        notes.append(f"max loss INR {ml:,.0f} is reached only beyond {cfg.remote_sigmas:g} sd")

    # --- profit target ------------------------------------------------------------------------
    if mp is not None and profit_near:
        pct = cfg.credit_profit_pct if basis == "credit" else cfg.debit_profit_pct
        target_basis = mp
    elif basis == "debit":
        pct, target_basis = cfg.debit_unbounded_target_pct, debit
    else:
        pct, target_basis = cfg.other_unbounded_target_pct, risk_capital
    target = pct * target_basis
    if mp is not None:
        target = min(target, mp)
    if not (target > 0 and math.isfinite(target)):
        target, target_basis = None, None
        notes.append("the position cannot gain: no profit target")

    # --- stop loss -----------------------------------------------------------------------------
    if basis == "credit":
        stop, stop_basis = cfg.credit_stop_multiple * credit, credit
    elif basis == "debit":
        stop, stop_basis = cfg.debit_stop_pct * debit, debit
    else:
        stop, stop_basis = cfg.other_stop_pct * risk_capital, risk_capital
    if ml is not None:
        stop = min(stop, cfg.max_loss_share * ml)
        if loss_near:
            stop_basis = ml
    if cfg.max_stop_loss_inr is not None and stop > cfg.max_stop_loss_inr:
        stop = cfg.max_stop_loss_inr
        notes.append(f"stop capped at INR {cfg.max_stop_loss_inr:,.0f}")
    if not (stop > 0 and math.isfinite(stop)):
        stop = None
        notes.append("the position cannot lose: no stop")
    stop_pct = stop / stop_basis if stop is not None and stop_basis and stop_basis > 0 else None

    # --- scale-out and trailing ----------------------------------------------------------------
    scale = []
    trail_on = trail_dist = None
    if target is not None:
        base = mp if mp is not None and profit_near else target
        scale = [{"at_pct": s.at_pct, "pnl": _f(s.at_pct * base), "close_fraction": s.close_fraction}
                 for s in cfg.scale_out]
        trail_on = cfg.trailing_activation_pct * target
        trail_dist = cfg.trailing_distance_pct * target

    # --- time exit -------------------------------------------------------------------------------
    exit_date, tnotes = _time_exit(c, cfg.time_exit_dte)
    notes += tnotes

    # --- adjustments -------------------------------------------------------------------------------
    adj: list[dict] = []
    for j, b in enumerate(a.breakevens):
        lo, hi = be_pnl[2 * j], be_pnl[2 * j + 1]
        side = "below" if lo < hi else "above"
        buf = cfg.breakeven_buffer_pct
        price = b * (1 + buf) if side == "below" else b * (1 - buf)
        adj.append({"trigger": "breakeven_breached", "side": side, "breakeven": _r(b), "price": _r(price),
                    "entry_spot": _r(c.spot), "action": "adjust or exit"})
    for i, leg in enumerate(c.legs):
        if not (leg.instrument.is_option and leg.side is Side.SELL):
            continue
        thr = max(cfg.short_delta_threshold, min(abs(leg.delta) + cfg.short_delta_buffer, 0.95))
        adj.append({"trigger": "short_delta", "leg": i, "instrument": leg.instrument.value,
                    "strike": float(leg.strike), "expiry": leg.expiry.isoformat() if leg.expiry else None,
                    "delta": _r(leg.delta, 4), "threshold": round(thr, 4), "price": _r(_delta_price(c, leg, thr)),
                    "action": "roll or close the leg"})

    return ExitLevels(
        profit_target=_f(target), profit_target_pct=_f(target / target_basis) if target is not None else None,
        scale_out=scale, stop_loss=_f(stop), stop_loss_pct=_f(stop_pct),
        time_exit_dte=(c.expiry - exit_date).days, time_exit_date=exit_date,
        trailing_activation=_f(trail_on), trailing_distance=_f(trail_dist), adjustments=adj, basis=basis,
        notes=notes,
    )
