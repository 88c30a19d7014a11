"""Exit rules over every open strategy at once (pure domain: a :class:`~.valuation.Valuation`, the
stored exit levels and ``config/exit_rules.yaml`` in; decisions out). Actions, precedence and
intent keys: :mod:`.decisions`.

P&L measure: every money rule compares the strategy's **total** P&L (unrealized + realized - fees,
so levels set for the whole entry stay comparable after scale-outs) with its level, at the
close-out prices (profit target, scale-out, trailing) or at the mark (stop) -- ``basis`` in the
YAML.

Rules (levels from ``strategy_exit_levels``; the YAML fills what a strategy lacks and caps it):

* ``profit_target`` (EXIT_ALL, MEDIUM): P&L >= ``profit_target`` (default: 50% of max profit).
* ``scale_out`` (EXIT_PARTIAL, NORMAL), level ``25`` / ``50`` / ``75`` (the step's ``at_pct``): P&L
  >= the step's ``pnl``. Every crossed step not yet executed fires (its own intent). Per leg the
  step closes ``close_fraction`` of the entry lots, rounded half up, at least ``min_lots`` (1),
  never more than what is open after the earlier steps fired in the same cycle; the last step of a
  plan whose fractions add up to 1 closes all that is left. A step that leaves nothing open is an
  EXIT_ALL. Freeze limits are applied when the orders are sliced (:mod:`.exit_orders`).
* ``stop_loss`` (EXIT_ALL, HIGH), level ``stop``: P&L <= -stop, the stop being the smallest of the
  stored ``stop_loss``, ``max_loss_share`` of a bounded max loss and ``max_inr``.
* ``time_exit`` (EXIT_ALL; HIGH at or below ``high_urgency_dte`` else MEDIUM; NORMAL for the
  holding period and theta): level ``dte`` -- front DTE <= ``time_exit_dte`` or the session is on or
  after ``time_exit_date``; ``max_holding`` -- days in trade >= ``max_holding_days``;
  ``theta_decay`` -- a net long-premium position (mark value > 0) within ``within_dte`` days whose
  theta costs more than ``max_daily_share`` of its mark value a day.
* ``trailing_stop`` (EXIT_ALL, MEDIUM), level ``trail``: the high-water mark (passed in, returned
  updated for the store to persist) = max(previous, P&L); armed once it reaches
  ``trailing_activation``; fires when P&L <= high-water mark - ``trailing_distance``.
* ``breakeven_breached`` (ALERT, or ADJUST with ``alert_only: false``; MEDIUM), level = the losing
  side ``below`` / ``above``: spot at or beyond the stored trigger price while the stored
  ``entry_spot`` was on the profitable side of it (a crossing since the entry; a trigger stored
  without it fires on the side alone) -- suggests a defensive roll.
* ``short_delta`` (ALERT/ADJUST, MEDIUM), level = the leg: a short leg's |delta| above its stored
  threshold (matched by type, strike and expiry; default ``short_delta_threshold``) -- defensive roll.
* ``offensive_add`` (ALERT/ADJUST, NORMAL), level ``add``: P&L >= ``offensive_min_profit_share`` of
  the target while every short leg's |delta| <= ``offensive_max_short_delta`` -- roll the untested
  side closer or add.
* ``daily_loss_limit``: the day's portfolio P&L at the mark (sum over open strategies of P&L minus
  their P&L at the day's start, plus the day's P&L of strategies closed today) <= -limit (the
  smaller of ``max_loss_inr`` and ``max_loss_pct_of_capital`` x capital): :class:`PortfolioDecision`
  says to block new orders; with ``exit_all: true`` every strategy gets EXIT_ALL (HIGH), level = the
  session date.
* ``physical_settlement_cutoff``: :func:`.settlement.cutoff_decisions`.

Legs already expired are not traded (they settle, :mod:`.settlement`).

Implementation: every rule is computed on numpy arrays with one element per strategy (the rows of
``Valuation.strategies``) or per live leg (grouped by strategy row, :mod:`.exit_signals`); the
decision rows are codes and numbers until :func:`.exit_rows.assemble` builds the frames once, so an
evaluation over 10,000 legs costs a handful of polars operations, all on the calling thread
(``benchmarks/bench_exit_rules.py``). What depends only on the stored levels and the set of open
strategies -- the levels aligned to the strategy rows, the scale-out steps in order, the
short_delta triggers as sorted keys (:class:`.exit_signals.AlignedLevels`), the intent keys already
built (:class:`.exit_rows.IntentKeys`) -- is kept on the :class:`PreparedLevels` between
evaluations of the same strategies.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import polars as pl

from .decisions import Action, Rule, Urgency
from .exit_config import ExitRulesConfig, load_exit_rules
from .exit_rows import URGENCY_CODE, Executed, IntentKeys, Part, Reason, Strings, assemble
from .exit_signals import (
    AlignedLevels,
    LevelArrays,
    adjustment_parts,
    align_levels,
    leg_index,
    level_arrays,
    scale_out_part,
)
from .settlement import cutoff_decisions
from .valuation import Valuation, conform

__all__ = ["LEVELS_SCHEMA", "ExitEvaluation", "PortfolioDecision", "PreparedLevels", "evaluate_exits",
           "prepare_levels"]

LEVELS_SCHEMA: dict[str, pl.DataType] = {  # the strategy_exit_levels columns
    "strategy_id": pl.Utf8, "profit_target": pl.Float64, "profit_target_pct": pl.Float64, "scale_out": pl.Utf8,
    "stop_loss": pl.Float64, "stop_loss_pct": pl.Float64, "time_exit_dte": pl.Int64, "time_exit_date": pl.Date,
    "trailing_activation": pl.Float64, "trailing_distance": pl.Float64, "adjustments": pl.Utf8,
}
_STEP = pl.Struct({"at_pct": pl.Float64, "pnl": pl.Float64, "close_fraction": pl.Float64})
_ADJ = pl.Struct({"trigger": pl.Utf8, "side": pl.Utf8, "breakeven": pl.Float64, "price": pl.Float64,
                  "entry_spot": pl.Float64, "instrument": pl.Utf8, "strike": pl.Float64, "expiry": pl.Utf8,
                  "threshold": pl.Float64})
_SCALAR = ("profit_target", "stop_loss", "time_exit_dte", "time_exit_date", "trailing_activation",
           "trailing_distance")


@dataclass(frozen=True)
class PreparedLevels:
    """The stored exit levels decoded once (the monitor keeps it between cycles)."""

    strategies: pl.DataFrame  # strategy_id + the scalar levels
    scale_steps: pl.DataFrame  # strategy_id, at_pct, pnl, close_fraction, level, last, intent_key
    breakevens: pl.DataFrame  # strategy_id, side, breakeven, price, entry_spot
    short_delta: pl.DataFrame  # strategy_id, option_type, strike, expiry, threshold (one per leg key)
    arrays: LevelArrays  # the same as numpy arrays, for evaluate_exits
    #: evaluate_exits keeps here what holds while the set of open strategies (and executed intents)
    #: does not change: the id -> row maps and the levels aligned to the strategies
    cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)


def prepare_levels(levels: pl.DataFrame | None) -> PreparedLevels:
    """Decode ``strategy_exit_levels`` rows (JSON ``scale_out`` / ``adjustments``) into frames and arrays."""
    lv = conform(levels if levels is not None else pl.DataFrame(schema=LEVELS_SCHEMA), LEVELS_SCHEMA,
                 set(LEVELS_SCHEMA) - {"strategy_id"}, "exit levels").unique("strategy_id", keep="last",
                                                                             maintain_order=True)
    steps = (lv.select("strategy_id", pl.col("scale_out").str.json_decode(pl.List(_STEP)).alias("s"))
             .explode("s").unnest("s").drop_nulls(["at_pct", "pnl"]).with_columns(
                 pl.col("close_fraction").fill_null(0.0)).sort("strategy_id", "at_pct"))
    steps = steps.with_columns(
        (pl.col("at_pct") * 100).round(4).cast(pl.Utf8).str.strip_suffix(".0").alias("level"),
        ((pl.col("at_pct") == pl.col("at_pct").max().over("strategy_id"))
         & (pl.col("close_fraction").sum().over("strategy_id") >= 0.999)).alias("last"),
    ).with_columns(pl.concat_str([pl.col("strategy_id"), pl.lit(Rule.SCALE_OUT.value), pl.col("level")],
                                 separator=":").alias("intent_key"))
    adj = (lv.select("strategy_id", pl.col("adjustments").str.json_decode(pl.List(_ADJ)).alias("a"))
           .explode("a").unnest("a"))
    be = adj.filter(pl.col("trigger") == "breakeven_breached").select("strategy_id", "side", "breakeven", "price",
                                                                       "entry_spot")
    sd = adj.filter(pl.col("trigger") == "short_delta").select(
        "strategy_id", pl.col("instrument").str.to_uppercase().alias("option_type"), "strike",
        pl.col("expiry").str.to_date(strict=False).alias("expiry"), "threshold").drop_nulls("threshold").unique(
        ["strategy_id", "option_type", "strike", "expiry"], keep="last", maintain_order=True)
    scalars = lv.select("strategy_id", *_SCALAR)
    return PreparedLevels(scalars, steps, be, sd, level_arrays(scalars, steps, be, sd))


@dataclass(frozen=True)
class PortfolioDecision:
    daily_pnl: float | None  # None: no day-start P&L given, the limit was not checked
    limit: float | None
    breached: bool
    block_new_orders: bool
    exit_all: bool
    intent_key: str
    reason: str


@dataclass(frozen=True)
class ExitEvaluation:
    decisions: pl.DataFrame  # DECISION_SCHEMA: every rule that fired (HOLD when none), primary/actionable
    leg_quantities: pl.DataFrame  # LEG_QUANTITY_SCHEMA: per actionable exit and leg
    high_water: pl.DataFrame  # strategy_id, high_water_mark, trailing_armed: for the store to persist
    portfolio: PortfolioDecision

    @property
    def actionable(self) -> pl.DataFrame:
        return self.decisions.filter(pl.col("actionable"))


# -- helpers ------------------------------------------------------------------------------------------------


class _Strategies:
    """The open strategies (``Valuation.strategies`` ids): id -> row, the stored levels aligned to the
    rows (scalars, steps, triggers), the intent keys built so far, and the parsed executed intents. Built once per set of open strategies (cached on the
    :class:`PreparedLevels`: a monitor re-evaluates the same strategies at every quote update)."""

    def __init__(self, sids: pl.Series, la: LevelArrays) -> None:
        self.sids = sids
        self.ids: list[str] = sids.to_list()
        self._row = dict(zip(self.ids, range(len(self.ids)), strict=True))
        get = la.row_of.get
        self.lv_of_s = np.fromiter(map(get, self.ids, repeat(-1)), np.int64, len(self.ids))
        self.s_of_lv = np.full(la.ids.len(), -1, dtype=np.int64)
        self.s_of_lv[self.lv_of_s[self.lv_of_s >= 0]] = np.flatnonzero(self.lv_of_s >= 0)
        self.stored = {k: _frozen(v[self.lv_of_s]) for k, v in la.scalar.items()}  # scalar levels per row
        self.time_exit_date = _frozen(la.time_exit_date[self.lv_of_s])
        self.aligned: AlignedLevels = align_levels(la, self.s_of_lv, len(self.ids))
        self.intent_keys = IntentKeys(sids)
        self._executed: tuple[frozenset[str], Executed] | None = None

    @classmethod
    def of(cls, sids: pl.Series, lv: PreparedLevels) -> _Strategies:
        st = lv.cache.get("strategies")
        if not isinstance(st, cls) or not st.sids.equals(sids, check_dtypes=True):
            st = cls(sids, lv.arrays)
            lv.cache["strategies"] = st
        return st

    def rows_of(self, keys: Iterable[str]) -> np.ndarray:
        return np.fromiter(map(self._row.get, keys, repeat(-1)), np.int64)

    def executed(self, keys: Iterable[str]) -> Executed | None:
        done = frozenset(keys)
        if not done:
            return None
        if self._executed is None or self._executed[0] != done:
            self._executed = (done, Executed(done, self.rows_of, len(self.ids)))
        return self._executed[1]

    def values(self, m: Mapping[str, float] | pl.DataFrame | None, what: str) -> np.ndarray:
        """A per-strategy array of ``m`` (strategy_id -> value, or a frame strategy_id, value); NaN where absent."""
        if m is None:
            return np.full(len(self.ids), np.nan)
        if isinstance(m, pl.DataFrame):
            f = conform(m, {"strategy_id": pl.Utf8, what: pl.Float64}, what=what)
            out = np.full(len(self.ids), np.nan)
            r = self.rows_of(f.get_column("strategy_id").to_list())
            out[r[r >= 0]] = f.get_column(what).to_numpy().astype(float)[r >= 0]
            return out
        return np.fromiter(map(m.get, self.ids, repeat(np.nan)), float, len(self.ids))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # kept between evaluations: read only
    return a


def _f(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame.get_column(col).to_numpy().astype(float)  # nulls become NaN


def _money(x: float) -> str:
    return f"INR {x:,.0f}"


_MONEY = (("value", "inr"), ("threshold", "inr"))
_TARGET = Reason("P&L INR {} reached the profit target INR {}", _MONEY)
_STOP = Reason("P&L INR {} is at or below the stop INR {}", _MONEY)
_DTE = Reason("{} days to the front expiry: time exit at {} days (or on the stored date)", _MONEY)
_HOLDING = Reason("held {} days (maximum {})", _MONEY)
_THETA = Reason("theta costs {}% of the position's value a day (limit {}%)", (("value", "pct1"), ("threshold", "pct1")))
_TRAIL = Reason("P&L INR {} gave back to the trailing stop INR {} (high-water mark less the distance)", _MONEY)
_CUTOFF = Reason("{}", (("text", "raw"),))


# -- the evaluation -----------------------------------------------------------------------------------------


def evaluate_exits(valuation: Valuation, levels: PreparedLevels | pl.DataFrame | None = None, *,
                   config: ExitRulesConfig | None = None, executed_intents: Iterable[str] = (),
                   high_water: Mapping[str, float] | pl.DataFrame | None = None,
                   day_start_pnl: Mapping[str, float] | pl.DataFrame | None = None, closed_today_pnl: float = 0.0,
                   portfolio_capital: float | None = None) -> ExitEvaluation:
    """Every rule of the module docstring over every strategy of ``valuation``.

    ``executed_intents``: intent keys already written (never fire again; an executed EXIT_ALL intent
    silences every exit of its strategy). ``high_water``: strategy_id -> trailing high-water mark
    (INR). ``day_start_pnl``: strategy_id -> P&L at the day's start (absent: entered today, 0);
    None skips the daily loss limit. ``portfolio_capital``: for ``max_loss_pct_of_capital``.
    """
    cfg = config or load_exit_rules()
    lv = levels if isinstance(levels, PreparedLevels) else prepare_levels(levels)
    la = lv.arrays
    S = valuation.strategies
    n = S.height
    st = _Strategies.of(S.get_column("strategy_id"), lv)
    s_of_lv = st.s_of_lv
    stored = st.stored
    executed = st.executed(executed_intents)
    strings = Strings()
    pnl = {"close": _f(S, "pnl_close"), "mid": _f(S, "pnl_mid")}
    mp, ml, dte = _f(S, "max_profit"), _f(S, "max_loss"), _f(S, "front_dte")
    live = np.isfinite(dte)
    w = np.flatnonzero
    parts: list[Part] = []
    with np.errstate(invalid="ignore"):
        target = np.where(np.isfinite(stored["profit_target"]), stored["profit_target"],
                          cfg.profit_target.default_pct_of_max_profit * mp)
        p = pnl[cfg.profit_target.basis]
        if cfg.profit_target.enabled:
            fire = w(live & (p >= target))
            parts.append(Part(fire, Rule.PROFIT_TARGET, strings.code("primary"), Action.EXIT_ALL, Urgency.MEDIUM,
                              p[fire], target[fire], _TARGET))
        caps = [stored["stop_loss"]]
        if cfg.stop_loss.max_loss_share is not None:
            caps.append(np.where(ml > 0, cfg.stop_loss.max_loss_share * ml, np.nan))
        if cfg.stop_loss.max_inr is not None:
            caps.append(np.full(n, cfg.stop_loss.max_inr))
        stop = np.fmin.reduce(caps)
        p = pnl[cfg.stop_loss.basis]
        if cfg.stop_loss.enabled:
            fire = w(live & (p <= -stop))
            parts.append(Part(fire, Rule.STOP_LOSS, strings.code("stop"), Action.EXIT_ALL, Urgency.HIGH, p[fire],
                              -stop[fire], _STOP))
        te = cfg.time_exit
        thr = np.where(np.isfinite(stored["time_exit_dte"]), stored["time_exit_dte"], te.default_dte)
        on_date = st.time_exit_date <= np.datetime64(valuation.session, "D")
        if te.enabled:
            urg = np.where(dte <= te.high_urgency_dte, URGENCY_CODE[Urgency.HIGH], URGENCY_CODE[Urgency.MEDIUM])
            fire = w(live & ((dte <= thr) | on_date))
            parts.append(Part(fire, Rule.TIME_EXIT, strings.code("dte"), Action.EXIT_ALL, urg[fire], dte[fire],
                              thr[fire], _DTE))
            if te.max_holding_days is not None:
                days = _f(S, "days_in_trade")
                fire = w(live & (days >= te.max_holding_days))
                parts.append(Part(fire, Rule.TIME_EXIT, strings.code("max_holding"), Action.EXIT_ALL, Urgency.NORMAL,
                                  days[fire], float(te.max_holding_days), _HOLDING, sub=1))
            if te.theta_decay.max_daily_share is not None:
                theta, value = _f(S, "theta"), _f(S, "value_mid")
                share = np.where(value > 0, -theta / value, np.nan)
                fire = w(live & (value > 0) & (dte <= te.theta_decay.within_dte)
                         & (share > te.theta_decay.max_daily_share))
                parts.append(Part(fire, Rule.TIME_EXIT, strings.code("theta_decay"), Action.EXIT_ALL, Urgency.NORMAL,
                                  share[fire], te.theta_decay.max_daily_share, _THETA, sub=2))
        tr = cfg.trailing
        p = pnl[tr.basis]
        act = np.where(np.isfinite(stored["trailing_activation"]), stored["trailing_activation"],
                       tr.activation_pct * target)
        dist = np.where(np.isfinite(stored["trailing_distance"]), stored["trailing_distance"], tr.distance_pct * target)
        hwm = np.fmax(st.values(high_water, "hwm_prev"), p)
        armed = np.isfinite(act) & (hwm >= act)
        if tr.enabled:
            fire = w(live & armed & (p <= hwm - dist))
            parts.append(Part(fire, Rule.TRAILING_STOP, strings.code("trail"), Action.EXIT_ALL, Urgency.MEDIUM, p[fire],
                              (hwm - dist)[fire], _TRAIL))
        base = np.where(mp > 0, mp, np.where(np.isfinite(stored["profit_target"]), stored["profit_target"],
                                             mp * cfg.profit_target.default_pct_of_max_profit))
    legs = leg_index(valuation, n, st.aligned, cfg.adjustments.short_delta_threshold)
    scale, scale_legs = scale_out_part(la, st.aligned, legs, cfg, executed, strings, pnl[cfg.scale_out.basis], base,
                                       live)
    if scale is not None:
        parts.append(scale)
    parts += adjustment_parts(valuation, la, s_of_lv, legs, cfg, strings, _f(S, "spot"), target, pnl["close"], live)
    portfolio, daily = _daily_limit(valuation, st, cfg, strings, pnl["mid"], live, day_start_pnl, closed_today_pnl,
                                    portfolio_capital)
    if daily is not None:
        parts.append(daily)
    cut = cutoff_decisions(valuation, cfg.settlement)
    if cut.height:
        parts.append(Part(st.rows_of(cut.get_column("strategy_id").to_list()), Rule.PHYSICAL_SETTLEMENT_CUTOFF,
                          strings.codes(cut.get_column("level").to_list()), Action.EXIT_ALL, Urgency.HIGH,
                          _f(cut, "value"), _f(cut, "threshold"), _CUTOFF, extra={"text": cut.get_column("reason")}))
    dec, lq = assemble(parts, n, st.sids, strings, executed, legs, valuation.legs, scale_legs, st.intent_keys)
    hw = pl.DataFrame({"strategy_id": st.sids, "high_water_mark": pl.Series(hwm, dtype=pl.Float64, nan_to_null=True),
                       "trailing_armed": armed},
                      schema={"strategy_id": pl.Utf8, "high_water_mark": pl.Float64, "trailing_armed": pl.Boolean})
    return ExitEvaluation(dec, lq, hw, portfolio)


def _daily_limit(valuation: Valuation, st: _Strategies, cfg: ExitRulesConfig, strings: Strings, pnl_mid: np.ndarray,
                 live: np.ndarray, day_start: Mapping[str, float] | pl.DataFrame | None, closed_today: float,
                 capital: float | None) -> tuple[PortfolioDecision, Part | None]:
    dl = cfg.daily_loss_limit
    session = valuation.session.isoformat()
    key = f"portfolio:{Rule.DAILY_LOSS_LIMIT.value}:{session}"
    caps = [x for x in (dl.max_loss_inr, (dl.max_loss_pct_of_capital * capital
                                          if dl.max_loss_pct_of_capital is not None and capital else None))
            if x is not None]
    limit = min(caps) if caps else None
    if not dl.enabled or day_start is None or limit is None:
        why = ("disabled" if not dl.enabled else "no day-start P&L given" if day_start is None else "no limit set")
        return PortfolioDecision(None, limit, False, False, False, key, f"daily loss limit not checked: {why}"), None
    start = st.values(day_start, "start")
    daily = float(np.nansum(pnl_mid - np.nan_to_num(start))) + float(closed_today)
    breached = daily <= -limit
    reason = (f"the day's P&L {_money(daily)} is at or below the daily loss limit -{_money(limit)}: no new orders"
              + ("; exiting every position" if dl.exit_all else "") if breached
              else f"the day's P&L {_money(daily)} is within the daily loss limit -{_money(limit)}")
    pd_ = PortfolioDecision(daily, limit, breached, breached, breached and dl.exit_all, key, reason)
    if not (breached and dl.exit_all):
        return pd_, None
    return pd_, Part(np.flatnonzero(live), Rule.DAILY_LOSS_LIMIT, strings.code(session), Action.EXIT_ALL,
                     Urgency.HIGH, daily, -limit, reason)

