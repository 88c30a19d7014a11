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
  side ``below`` / ``above``: spot at or beyond the stored trigger price -- suggests a defensive roll.
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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from .decisions import (
    DECISION_SCHEMA,
    EXIT_ALL_RULES,
    PRECEDENCE,
    Action,
    Rule,
    Urgency,
    parse_intent_key,
)
from .exit_config import ExitRulesConfig, load_exit_rules
from .exit_signals import adjustment_decisions, decision_frame, leg_index, leg_quantities, scale_out_decisions
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
                  "instrument": pl.Utf8, "strike": pl.Float64, "expiry": pl.Utf8, "threshold": pl.Float64})
_SCALAR = ("profit_target", "stop_loss", "time_exit_dte", "time_exit_date", "trailing_activation",
           "trailing_distance")


@dataclass(frozen=True)
class PreparedLevels:
    """The stored exit levels decoded once (the monitor keeps it between cycles)."""

    strategies: pl.DataFrame  # strategy_id + the scalar levels
    scale_steps: pl.DataFrame  # strategy_id, at_pct, pnl, close_fraction, level, last, intent_key
    breakevens: pl.DataFrame  # strategy_id, side, breakeven, price
    short_delta: pl.DataFrame  # strategy_id, option_type, strike, expiry, threshold


def prepare_levels(levels: pl.DataFrame | None) -> PreparedLevels:
    """Decode ``strategy_exit_levels`` rows (JSON ``scale_out`` / ``adjustments``) into frames."""
    lv = conform(levels if levels is not None else pl.DataFrame(schema=LEVELS_SCHEMA), LEVELS_SCHEMA,
                 set(LEVELS_SCHEMA) - {"strategy_id"}, "exit levels").unique("strategy_id", keep="last")
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
    be = adj.filter(pl.col("trigger") == "breakeven_breached").select("strategy_id", "side", "breakeven", "price")
    sd = adj.filter(pl.col("trigger") == "short_delta").select(
        "strategy_id", pl.col("instrument").str.to_uppercase().alias("option_type"), "strike",
        pl.col("expiry").str.to_date(strict=False).alias("expiry"), "threshold").drop_nulls("threshold")
    return PreparedLevels(lv.select("strategy_id", *_SCALAR), steps, be, sd)


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


def _mapping_frame(m: Mapping[str, float] | pl.DataFrame | None, col: str) -> pl.DataFrame:
    schema = {"strategy_id": pl.Utf8, col: pl.Float64}
    if m is None:
        return pl.DataFrame(schema=schema)
    if isinstance(m, pl.DataFrame):
        return conform(m, schema, what=col)
    return pl.DataFrame({"strategy_id": list(m), col: [float(v) for v in m.values()]}, schema=schema)


def _f(frame: pl.DataFrame, col: str) -> np.ndarray:
    return frame.get_column(col).to_numpy().astype(float)  # nulls become NaN


def _money(x: float) -> str:
    return f"INR {x:,.0f}"


def _part(idx: np.ndarray, rule: Rule, level, action: Action, urgency, value: np.ndarray, threshold: np.ndarray,
          sub: int = 0) -> pl.DataFrame | None:
    """Decision rows (without ``intent_key`` / ``reason``, added in one pass by :func:`_with_reasons`) for
    the strategies at positions ``idx``; ``level`` / ``urgency`` a value or a full-length array."""
    if idx.size == 0:
        return None
    cols = {"_i": idx, "value": value[idx], "threshold": threshold[idx]}
    consts = [pl.lit(action.value).alias("action"), pl.lit(rule.value).alias("rule"),
              pl.lit(PRECEDENCE[rule] * 10 + sub, pl.Int64).alias("precedence")]
    for name, x in (("level", level), ("urgency", urgency)):
        if isinstance(x, str):
            consts.append(pl.lit(x).alias(name))
        else:
            cols[name] = np.asarray(x)[idx].astype(str)
    return pl.DataFrame(cols).with_columns(consts)


def _inr(c: str) -> pl.Expr:
    return pl.col(c).round(0).cast(pl.Int64)


#: reasons of the rules evaluated on numpy arrays, by (rule, level), built in one vectorized pass
_REASONS: list[tuple[str, str | None, pl.Expr]] = [
    ("profit_target", None, pl.format("P&L INR {} reached the profit target INR {}", _inr("value"), _inr("threshold"))),
    ("stop_loss", None, pl.format("P&L INR {} is at or below the stop INR {}", _inr("value"), _inr("threshold"))),
    ("time_exit", "dte", pl.format("{} days to the front expiry: time exit at {} days (or on the stored date)",
                                   _inr("value"), _inr("threshold"))),
    ("time_exit", "max_holding", pl.format("held {} days (maximum {})", _inr("value"), _inr("threshold"))),
    ("time_exit", "theta_decay", pl.format("theta costs {}% of the position's value a day (limit {}%)",
                                           (pl.col("value") * 100).round(1), (pl.col("threshold") * 100).round(1))),
    ("trailing_stop", None, pl.format("P&L INR {} gave back to the trailing stop INR {} (high-water mark less the "
                                      "distance)", _inr("value"), _inr("threshold"))),
]


def _with_reasons(df: pl.DataFrame) -> pl.DataFrame:
    expr = pl.lit(None, pl.Utf8)
    for rule, level, text in reversed(_REASONS):
        cond = pl.col("rule") == rule if level is None else (pl.col("rule") == rule) & (pl.col("level") == level)
        expr = pl.when(cond).then(text).otherwise(expr)
    return df.with_columns(expr.alias("reason"))


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
    executed = set(executed_intents)
    S = valuation.strategies.join(lv.strategies, on="strategy_id", how="left", maintain_order="left").join(
        _mapping_frame(high_water, "hwm_prev"), on="strategy_id", how="left", maintain_order="left").with_row_index("_i")
    n = S.height
    pnl = {"close": _f(S, "pnl_close"), "mid": _f(S, "pnl_mid")}
    mp, ml = _f(S, "max_profit"), _f(S, "max_loss")
    live = S.get_column("front_dte").is_not_null().to_numpy()
    core: list[pl.DataFrame | None] = []
    w = np.flatnonzero
    with np.errstate(invalid="ignore"):
        stored_target = _f(S, "profit_target")
        target = np.where(np.isfinite(stored_target), stored_target, cfg.profit_target.default_pct_of_max_profit * mp)
        p = pnl[cfg.profit_target.basis]
        if cfg.profit_target.enabled:
            core.append(_part(w(live & (p >= target)), Rule.PROFIT_TARGET, "primary", Action.EXIT_ALL,
                              Urgency.MEDIUM.value, p, target))
        caps = [_f(S, "stop_loss")]
        if cfg.stop_loss.max_loss_share is not None:
            caps.append(np.where(ml > 0, cfg.stop_loss.max_loss_share * ml, np.nan))
        if cfg.stop_loss.max_inr is not None:
            caps.append(np.full(n, cfg.stop_loss.max_inr))
        stop = np.fmin.reduce(caps)
        p = pnl[cfg.stop_loss.basis]
        if cfg.stop_loss.enabled:
            core.append(_part(w(live & (p <= -stop)), Rule.STOP_LOSS, "stop", Action.EXIT_ALL, Urgency.HIGH.value,
                              p, -stop))
        te = cfg.time_exit
        dte = _f(S, "front_dte")
        thr = _f(S, "time_exit_dte")
        thr = np.where(np.isfinite(thr), thr, te.default_dte)
        on_date = (S.get_column("time_exit_date") <= valuation.session).fill_null(False).to_numpy()
        if te.enabled:
            urg = np.where(dte <= te.high_urgency_dte, Urgency.HIGH.value, Urgency.MEDIUM.value)
            core.append(_part(w(live & ((dte <= thr) | on_date)), Rule.TIME_EXIT, "dte", Action.EXIT_ALL, urg, dte, thr))
            if te.max_holding_days is not None:
                days = _f(S, "days_in_trade")
                core.append(_part(w(live & (days >= te.max_holding_days)), Rule.TIME_EXIT, "max_holding",
                                  Action.EXIT_ALL, Urgency.NORMAL.value, days, np.full(n, te.max_holding_days), 1))
            if te.theta_decay.max_daily_share is not None:
                theta, value = _f(S, "theta"), _f(S, "value_mid")
                share = np.where(value > 0, -theta / value, np.nan)
                fire = live & (value > 0) & (dte <= te.theta_decay.within_dte) & (share > te.theta_decay.max_daily_share)
                core.append(_part(w(fire), Rule.TIME_EXIT, "theta_decay", Action.EXIT_ALL, Urgency.NORMAL.value, share,
                                  np.full(n, te.theta_decay.max_daily_share), 2))
        tr = cfg.trailing
        p = pnl[tr.basis]
        act, dist = _f(S, "trailing_activation"), _f(S, "trailing_distance")
        act = np.where(np.isfinite(act), act, tr.activation_pct * target)
        dist = np.where(np.isfinite(dist), dist, tr.distance_pct * target)
        hwm = np.fmax(_f(S, "hwm_prev"), p)
        armed = np.isfinite(act) & (hwm >= act)
        if tr.enabled:
            core.append(_part(w(live & armed & (p <= hwm - dist)), Rule.TRAILING_STOP, "trail", Action.EXIT_ALL,
                              Urgency.MEDIUM.value, p, hwm - dist))
    got = [f for f in core if f is not None]
    sids = S.get_column("strategy_id")
    frames: list[pl.DataFrame | None] = []
    if got:
        c = pl.concat(got, how="diagonal_relaxed")
        c = _with_reasons(c.with_columns(sids.gather(c.get_column("_i")).alias("strategy_id"))).with_columns(
            pl.concat_str([pl.col("strategy_id"), pl.col("rule"), pl.col("level")], separator=":").alias("intent_key"),
            pl.lit(0, pl.Int64).alias("lots"))
        frames.append(c.drop("_i"))
    legs = leg_index(valuation, S, lv.short_delta, cfg.adjustments.short_delta_threshold)
    with np.errstate(invalid="ignore"):
        base = np.where(mp > 0, mp, np.where(np.isfinite(stored_target), stored_target,
                                             mp * cfg.profit_target.default_pct_of_max_profit))
    scale, scale_legs = scale_out_decisions(S, lv.scale_steps, legs, cfg, executed, pnl[cfg.scale_out.basis], base,
                                            live)
    frames.append(scale)
    frames += adjustment_decisions(S, lv.breakevens, legs, cfg, target, pnl["close"], live)
    portfolio, daily = _daily_limit(valuation, S, cfg, day_start_pnl, closed_today_pnl, portfolio_capital)
    frames.append(daily)
    cut = cutoff_decisions(valuation, cfg.settlement)
    frames.append(cut if cut.height else None)
    dec = _finish(S, frames, executed)
    lq = leg_quantities(dec, S.select("strategy_id", pl.col("_i").cast(pl.Int64)), scale_legs, legs)
    lots = lq.group_by("intent_key").agg(pl.col("lots").max().alias("_l"))
    dec = dec.join(lots, on="intent_key", how="left").with_columns(
        pl.coalesce("_l", "lots").alias("lots")).select(list(DECISION_SCHEMA))
    hw = pl.DataFrame({"strategy_id": sids, "high_water_mark": hwm, "trailing_armed": armed},
                      schema={"strategy_id": pl.Utf8, "high_water_mark": pl.Float64, "trailing_armed": pl.Boolean}
                      ).with_columns(pl.col("high_water_mark").fill_nan(None))
    return ExitEvaluation(dec, lq, hw, portfolio)


def _daily_limit(valuation: Valuation, S: pl.DataFrame, cfg: ExitRulesConfig,
                 day_start: Mapping[str, float] | pl.DataFrame | None, closed_today: float,
                 capital: float | None) -> tuple[PortfolioDecision, pl.DataFrame | None]:
    dl = cfg.daily_loss_limit
    key = f"portfolio:{Rule.DAILY_LOSS_LIMIT.value}:{valuation.session.isoformat()}"
    caps = [x for x in (dl.max_loss_inr, (dl.max_loss_pct_of_capital * capital
                                          if dl.max_loss_pct_of_capital is not None and capital else None))
            if x is not None]
    limit = min(caps) if caps else None
    if not dl.enabled or day_start is None or limit is None:
        why = ("disabled" if not dl.enabled else "no day-start P&L given" if day_start is None else "no limit set")
        return PortfolioDecision(None, limit, False, False, False, key, f"daily loss limit not checked: {why}"), None
    start = S.select("strategy_id", "pnl_mid").join(_mapping_frame(day_start, "start"), on="strategy_id", how="left")
    daily = float(np.nansum(_f(start, "pnl_mid") - np.nan_to_num(_f(start, "start")))) + float(closed_today)
    breached = daily <= -limit
    reason = (f"the day's P&L {_money(daily)} is at or below the daily loss limit -{_money(limit)}: no new orders"
              + ("; exiting every position" if dl.exit_all else "") if breached
              else f"the day's P&L {_money(daily)} is within the daily loss limit -{_money(limit)}")
    pd_ = PortfolioDecision(daily, limit, breached, breached, breached and dl.exit_all, key, reason)
    if not (breached and dl.exit_all):
        return pd_, None
    live = S.filter(pl.col("front_dte").is_not_null())
    return pd_, decision_frame(live.select(
        "strategy_id", pl.lit(valuation.session.isoformat()).alias("level"), pl.lit(Urgency.HIGH.value).alias("urgency"),
        pl.lit(daily).alias("value"), pl.lit(-limit).alias("threshold"), pl.lit(reason).alias("reason")),
        Rule.DAILY_LOSS_LIMIT, Action.EXIT_ALL)


def _exit_all_done(executed: set[str]) -> set[str]:
    done = set()
    for k in executed:
        try:
            sid, rule, _ = parse_intent_key(k)
        except ValueError:
            continue
        if rule in EXIT_ALL_RULES:
            done.add(sid)
    return done


def _finish(S: pl.DataFrame, frames: list[pl.DataFrame | None], executed: set[str]) -> pl.DataFrame:
    base = {k: t for k, t in DECISION_SCHEMA.items() if k not in ("primary", "actionable")}
    got = [f.select(list(base)) for f in frames if f is not None and f.height]
    dec = pl.concat(got, how="vertical_relaxed") if got else pl.DataFrame(schema=base)
    exits = pl.col("action").is_in([Action.EXIT_ALL.value, Action.EXIT_PARTIAL.value])
    if executed:
        dec = dec.filter(~pl.col("intent_key").is_in(list(executed))
                         & ~(pl.col("strategy_id").is_in(list(_exit_all_done(executed))) & exits))
    order = S.select("strategy_id", pl.col("_i").cast(pl.Int64))
    dec = dec.join(order, on="strategy_id", how="left")
    has = np.zeros(S.height, dtype=bool)
    has[dec.get_column("_i").drop_nulls().to_numpy()] = True
    idx = np.flatnonzero(~has)
    hold = pl.DataFrame({"_i": idx}, schema={"_i": pl.Int64}).with_columns(
        S.get_column("strategy_id").gather(idx).alias("strategy_id"), pl.lit(Action.HOLD.value).alias("action"),
        pl.lit(Urgency.NORMAL.value).alias("urgency"), pl.lit(Rule.HOLD.value).alias("rule"),
        pl.lit("-").alias("level"), pl.lit(None, pl.Float64).alias("value"), pl.lit(None, pl.Float64).alias("threshold"),
        pl.lit(0, pl.Int64).alias("lots"), pl.lit("no exit rule fired").alias("reason"),
        pl.lit(PRECEDENCE[Rule.HOLD] * 10, pl.Int64).alias("precedence")).with_columns(
        pl.concat_str([pl.col("strategy_id"), pl.lit("hold:-")], separator=":").alias("intent_key"))
    dec = pl.concat([dec.cast(base | {"_i": pl.Int64}), hold.select(dec.columns).cast(base | {"_i": pl.Int64})])
    dec = dec.sort("_i", "precedence", maintain_order=True)
    first = dec.get_column("_i").is_first_distinct()
    return dec.with_columns(first.alias("primary"), pl.col("rule").first().over("_i").alias("_pr")).with_columns(
        ((pl.col("primary") & (pl.col("action") == Action.EXIT_ALL.value))
         | ((pl.col("_pr") == Rule.SCALE_OUT.value) & (pl.col("rule") == Rule.SCALE_OUT.value) & exits))
        .alias("actionable")).drop("_pr", "_i")
