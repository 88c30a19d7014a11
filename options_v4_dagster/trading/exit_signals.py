"""The per-leg parts of the exit rules (scale-out quantities, short-strike delta, breakeven and
offensive signals, the legs each exit closes), on numpy arrays of the live legs grouped by
strategy so one evaluation over 10,000 legs stays within a few milliseconds. Rules and their
meaning: :mod:`.exit_rules`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .decisions import LEG_QUANTITY_SCHEMA, PRECEDENCE, Action, Rule, Urgency
from .exit_config import ExitRulesConfig
from .valuation import Valuation

__all__ = ["LegIndex", "adjustment_decisions", "decision_frame", "leg_index", "leg_quantities", "scale_out_decisions"]


def decision_frame(df: pl.DataFrame, rule: Rule, action: Action, sub: int = 0) -> pl.DataFrame | None:
    """Decision rows from a frame with strategy_id, level, urgency, value, threshold, reason."""
    if df.height == 0:
        return None
    return df.select(
        "strategy_id", pl.lit(action.value).alias("action"), "urgency", pl.lit(rule.value).alias("rule"),
        pl.col("level").cast(pl.Utf8),
        pl.concat_str([pl.col("strategy_id"), pl.lit(rule.value), pl.col("level").cast(pl.Utf8)], separator=":")
        .alias("intent_key"),
        pl.col("value").cast(pl.Float64), pl.col("threshold").cast(pl.Float64), pl.lit(0, pl.Int64).alias("lots"),
        "reason", pl.lit(PRECEDENCE[rule] * 10 + sub, pl.Int64).alias("precedence"))


@dataclass(frozen=True)
class LegIndex:
    """The live (unexpired, non-zero) legs in the valuation's order (by strategy row ``_i``);
    the legs of strategy ``i`` are rows ``start[i]:start[i + 1]``."""

    frame: pl.DataFrame  # _i, strategy_id, allocation_id, position_id, leg, quote_key, quantity, lot_size, ...
    li: np.ndarray
    qty: np.ndarray
    lot: np.ndarray
    entry_lots: np.ndarray
    open_lots: np.ndarray
    abs_delta: np.ndarray
    threshold: np.ndarray  # |delta| threshold of short legs (stored, else the default)
    start: np.ndarray


def leg_index(valuation: Valuation, S: pl.DataFrame, short_delta: pl.DataFrame, default_threshold: float) -> LegIndex:
    f = valuation.legs.filter(~pl.col("expired") & (pl.col("quantity") != 0)).rename({"strategy_row": "_i"})
    if short_delta.height:
        f = f.join(short_delta, on=["strategy_id", "option_type", "strike", "expiry"], how="left", maintain_order="left")
    else:
        f = f.with_columns(pl.lit(None, pl.Float64).alias("threshold"))
    li = f.get_column("_i").to_numpy().astype(np.int64)
    thr = f.get_column("threshold").to_numpy().astype(float)
    return LegIndex(
        f.select("_i", "strategy_id", "allocation_id", "position_id", "leg", "quote_key", "strike", "option_type"), li, f.get_column("quantity").to_numpy(), f.get_column("lot_size").to_numpy(),
        f.get_column("entry_lots").to_numpy(), f.get_column("open_lots").to_numpy(),
        np.abs(f.get_column("delta").to_numpy().astype(float)), np.where(np.isfinite(thr), thr, default_threshold),
        np.searchsorted(li, np.arange(S.height + 1)))


def _expand(idx: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows each naming a strategy ``idx``: (the row number, the leg row) of every leg of it."""
    lo, hi = start[idx], start[idx + 1]
    counts = hi - lo
    row = np.repeat(np.arange(idx.size), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return row, np.repeat(lo, counts) + offset


def _leg_frame(keys: pl.Series, legs: LegIndex, rows: np.ndarray, lots: np.ndarray) -> pl.DataFrame:
    f = legs.frame[rows]
    return pl.DataFrame({
        "intent_key": keys, "strategy_id": f.get_column("strategy_id"), "allocation_id": f.get_column("allocation_id"),
        "position_id": f.get_column("position_id"), "leg": f.get_column("leg"), "security_id": f.get_column("quote_key"),
        "quantity": lots * legs.lot[rows], "lots": lots, "close_side": legs.qty[rows] > 0,
    }).with_columns(pl.when(pl.col("close_side")).then(pl.lit("SELL")).otherwise(pl.lit("BUY")).alias("close_side")
                    ).cast(LEG_QUANTITY_SCHEMA)


def scale_out_decisions(S: pl.DataFrame, steps: pl.DataFrame, legs: LegIndex, cfg: ExitRulesConfig,
                        executed: set[str], pnl: np.ndarray, base: np.ndarray, live: np.ndarray
                        ) -> tuple[pl.DataFrame | None, pl.DataFrame]:
    """Fired scale-out steps (decisions) and their per-leg quantities (see :mod:`.exit_rules`).
    ``steps``: the prepared stored steps; strategies without any get the YAML's, on ``base``."""
    so = cfg.scale_out
    empty = pl.DataFrame(schema=LEG_QUANTITY_SCHEMA)
    if not so.enabled:
        return None, empty
    st = steps.join(S.select("strategy_id", "_i"), on="strategy_id", how="inner")
    si = st.get_column("_i").to_numpy().astype(np.int64)
    at, spnl, frac = (st.get_column(c).to_numpy().astype(float) for c in ("at_pct", "pnl", "close_fraction"))
    last, key, lvl = st.get_column("last").to_numpy(), st.get_column("intent_key"), st.get_column("level")
    has = np.zeros(S.height, dtype=bool)
    has[si] = True
    with np.errstate(invalid="ignore"):
        miss = np.flatnonzero(live & ~has & (base > 0))
    if miss.size and so.default_steps:
        d_at = np.array([s.at_pct for s in so.default_steps])
        d_fr = np.array([s.close_fraction for s in so.default_steps])
        k = d_at.size
        mi = np.repeat(miss, k)
        sids = S.get_column("strategy_id").to_numpy()
        lv = [f"{x * 100:g}" for x in d_at]
        si = np.concatenate([si, mi])
        at = np.concatenate([at, np.tile(d_at, miss.size)])
        spnl = np.concatenate([spnl, np.tile(d_at, miss.size) * base[mi]])
        frac = np.concatenate([frac, np.tile(d_fr, miss.size)])
        full = np.zeros(k, dtype=bool)
        full[-1] = d_fr.sum() >= 0.999
        last = np.concatenate([last, np.tile(full, miss.size)])
        dl = [lv[j % k] for j in range(mi.size)]
        key = pl.concat([key, pl.Series([f"{s}:{Rule.SCALE_OUT.value}:{x}" for s, x in zip(sids[mi], dl, strict=True)],
                                        dtype=pl.Utf8)])
        lvl = pl.concat([lvl, pl.Series(dl, dtype=pl.Utf8)])
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(live[si] & (pnl[si] >= spnl))
    if executed:
        cand = cand[~key.gather(cand).is_in(list(executed)).to_numpy()] if cand.size else cand
    if cand.size == 0:
        return None, empty
    cand = cand[np.lexsort((at[cand], si[cand]))]  # by strategy, then ascending step
    row, lr = _expand(si[cand], legs.start)
    want = np.maximum(so.min_lots, np.floor(frac[cand][row] * legs.entry_lots[lr] + 0.5)).astype(np.int64)
    want = np.where(last[cand][row], 1 << 40, want)
    order = np.lexsort((row, lr))  # per leg row, steps in order
    w_sorted = want[order]
    cs = np.cumsum(w_sorted)
    grp_first = np.r_[True, lr[order][1:] != lr[order][:-1]]
    base_cs = np.maximum.accumulate(np.where(grp_first, cs - w_sorted, 0))
    cum = np.empty_like(cs)
    cum[order] = cs - base_cs
    open_ = legs.open_lots[lr]
    lots = np.minimum(cum, open_) - np.minimum(cum - want, open_)
    left = open_ - np.minimum(cum, open_)
    step_lots = np.zeros(cand.size, dtype=np.int64)
    np.maximum.at(step_lots, row, lots)
    closes_all = np.ones(cand.size, dtype=bool)
    np.logical_and.at(closes_all, row, left == 0)
    keep = step_lots > 0
    if not keep.any():
        return None, empty
    c = cand[keep]
    keys = key.gather(c)
    dec = pl.DataFrame({
        "strategy_id": S.get_column("strategy_id").gather(si[c]), "level": lvl.gather(c), "value": pnl[si[c]],
        "threshold": spnl[c], "fraction": frac[c], "lots": step_lots[keep],
        "action": np.where(closes_all[keep], Action.EXIT_ALL.value, Action.EXIT_PARTIAL.value),
    }).with_columns(
        pl.lit(Urgency.NORMAL.value).alias("urgency"), pl.lit(Rule.SCALE_OUT.value).alias("rule"),
        pl.Series("intent_key", keys),
        pl.format("P&L INR {} reached the scale-out step {}% (INR {}): close {}% of the entry",
                  pl.col("value").round(0).cast(pl.Int64), pl.col("level"), pl.col("threshold").round(0).cast(pl.Int64),
                  (pl.col("fraction") * 100).round(0).cast(pl.Int64)).alias("reason"),
        pl.lit(PRECEDENCE[Rule.SCALE_OUT] * 10, pl.Int64).alias("precedence")).drop("fraction")
    sel = keep[row] & (lots > 0)
    return dec, _leg_frame(key.gather(cand[row[sel]]), legs, lr[sel], lots[sel])


def adjustment_decisions(S: pl.DataFrame, breakevens: pl.DataFrame, legs: LegIndex, cfg: ExitRulesConfig,
                         target: np.ndarray, pnl_close: np.ndarray, live: np.ndarray) -> list[pl.DataFrame | None]:
    ad = cfg.adjustments
    if not ad.enabled:
        return []
    action = Action.ALERT if ad.alert_only else Action.ADJUST
    sid = S.get_column("strategy_id")
    out: list[pl.DataFrame | None] = []
    if ad.breakeven and breakevens.height:
        be = breakevens.join(S.select("strategy_id", "_i", "spot"), on="strategy_id", how="inner").filter(((pl.col("side") == "below") & (pl.col("spot") <= pl.col("price")))
                       | ((pl.col("side") == "above") & (pl.col("spot") >= pl.col("price"))))
        be = be.filter(pl.Series("live", live[be.get_column("_i").to_numpy().astype(np.int64)]))
        out.append(decision_frame(be.select(
            "strategy_id", pl.col("side").alias("level"), pl.lit(Urgency.MEDIUM.value).alias("urgency"),
            pl.col("spot").alias("value"), pl.col("price").alias("threshold"),
            pl.format("spot {} is {} the breakeven {}: consider a defensive roll or exit", pl.col("spot").round(2),
                      pl.col("side"), pl.col("breakeven").round(2)).alias("reason")), Rule.BREAKEVEN_BREACHED, action))
    short = legs.qty < 0
    hit = np.flatnonzero(short & (legs.abs_delta > legs.threshold))
    if hit.size:
        f = legs.frame[hit]
        out.append(decision_frame(pl.DataFrame({
            "strategy_id": f.get_column("strategy_id"), "level": f.get_column("leg").cast(pl.Utf8),
            "urgency": [Urgency.MEDIUM.value] * hit.size, "value": legs.abs_delta[hit], "threshold": legs.threshold[hit],
            "strike": f.get_column("strike"), "option_type": f.get_column("option_type")}).with_columns(
            pl.format("short {} {} |delta| {} is above {}: consider a defensive roll", pl.col("strike"),
                      pl.col("option_type"), pl.col("value").round(2), pl.col("threshold").round(2)).alias("reason")),
            Rule.SHORT_DELTA, action))
    if ad.offensive_min_profit_share is not None and short.any():
        n = S.height
        dmax = np.full(n, -1.0)
        np.maximum.at(dmax, legs.li[short], np.nan_to_num(legs.abs_delta[short], nan=1.0))
        with np.errstate(invalid="ignore"):
            fire = np.flatnonzero(live & (dmax >= 0) & (dmax <= ad.offensive_max_short_delta)
                                  & (pnl_close >= ad.offensive_min_profit_share * target))
        if fire.size:
            out.append(decision_frame(pl.DataFrame({
                "strategy_id": sid.gather(fire), "level": ["add"] * fire.size,
                "urgency": [Urgency.NORMAL.value] * fire.size, "value": pnl_close[fire],
                "threshold": ad.offensive_min_profit_share * target[fire], "d": dmax[fire]}).with_columns(
                pl.format("P&L INR {} with every short |delta| <= {}: consider rolling the untested side closer "
                          "or adding", pl.col("value").round(0).cast(pl.Int64), pl.col("d").round(2)).alias("reason")),
                Rule.OFFENSIVE_ADD, action))
    return out


def leg_quantities(dec: pl.DataFrame, order: pl.DataFrame, scale_legs: pl.DataFrame, legs: LegIndex) -> pl.DataFrame:
    """Per actionable exit: every live leg's open quantity (whole exits) or the step's (scale-outs)."""
    act = dec.filter(pl.col("actionable"))
    whole = act.filter(pl.col("rule") != Rule.SCALE_OUT.value).select("intent_key", "strategy_id").join(
        order, on="strategy_id", how="inner")
    idx = whole.get_column("_i").to_numpy().astype(np.int64)
    row, lr = _expand(idx, legs.start)
    keys = whole.get_column("intent_key").gather(row)
    part = scale_legs.join(act.select("intent_key"), on="intent_key", how="semi") if scale_legs.height else scale_legs
    return pl.concat([_leg_frame(keys, legs, lr, legs.open_lots[lr]), part])
