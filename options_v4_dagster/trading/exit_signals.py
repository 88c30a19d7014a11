"""The per-leg parts of the exit rules -- scale-out quantities, short-strike delta, breakeven and
offensive signals -- on numpy arrays of the live legs grouped by strategy, and the stored levels
decoded into arrays once (:class:`LevelArrays`). Every function returns :class:`~.exit_rows.Part`
rows; :func:`~.exit_rows.assemble` builds the frames. The rules are described in :mod:`.exit_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .decisions import Action, Rule, Urgency
from .exit_config import ExitRulesConfig
from .exit_rows import (
    ACTION_CODE,
    RULE_CODE,
    Executed,
    LegIndex,
    Part,
    Reason,
    ScaleLegs,
    Strings,
    expand,
    take,
)
from .valuation import Valuation

__all__ = ["AlignedLevels", "LevelArrays", "adjustment_parts", "align_levels", "leg_index", "level_arrays",
           "scale_out_part"]

_NO_DATE = np.iinfo(np.int64).min + 1  # a trigger without expiry: matches no leg (NaT is the minimum)


_SCALE_REASON = Reason("P&L INR {} reached the scale-out step {}% (INR {}): close {}% of the entry",
                       (("value", "inr"), ("level", "raw"), ("threshold", "inr"), ("aux", "pct0")))
_BREAKEVEN_REASON = Reason("spot {} is {} the breakeven {}: consider a defensive roll or exit",
                           (("value", "r2"), ("level", "raw"), ("aux", "r2")))
_DELTA_REASON = Reason("short {} {} |delta| {} is above {}: consider a defensive roll",
                       (("aux", "raw"), ("option_type", "raw"), ("value", "r2"), ("threshold", "r2")))
_ADD_REASON = Reason("P&L INR {} with every short |delta| <= {}: consider rolling the untested side closer or adding",
                     (("value", "inr"), ("aux", "r2")))


def _type_code(s: pl.Series) -> np.ndarray:
    """CE -> 1, PE -> 0, anything else (null included) -> -1."""
    ce, pe = s == "CE", s == "PE"
    if s.null_count():
        ce, pe = ce.fill_null(False), pe.fill_null(False)
    return np.where(ce.to_numpy(), 1, np.where(pe.to_numpy(), 0, -1))


def _days(s: pl.Series) -> np.ndarray:
    return s.cast(pl.Int64).fill_null(_NO_DATE).to_numpy()


@dataclass(frozen=True)
class LevelArrays:
    """Prepared exit levels as arrays. ``*_row`` is a row of ``ids``; the scalar arrays have one more
    element (NaN / NaT) at the end, so index -1 reads "no stored level"."""

    ids: pl.Series
    row_of: dict[str, int]  # strategy id -> row
    scalar: dict[str, np.ndarray]  # profit_target, stop_loss, time_exit_dte, trailing_activation, ...
    time_exit_date: np.ndarray  # datetime64[D]
    step_row: np.ndarray
    step_at: np.ndarray
    step_pnl: np.ndarray
    step_frac: np.ndarray
    step_last: np.ndarray
    step_level: np.ndarray  # into step_levels
    step_levels: list[str]
    be_row: np.ndarray
    be_side: np.ndarray  # 0 below, 1 above, -1 neither
    be_breakeven: np.ndarray
    be_price: np.ndarray
    be_entry: np.ndarray  # the underlying at entry; NaN: not stored (the side alone decides)
    sd_row: np.ndarray
    sd_type: np.ndarray  # 1 CE, 0 PE, -1 neither
    sd_strike: np.ndarray
    sd_expiry: np.ndarray  # days since the epoch
    sd_threshold: np.ndarray


def level_arrays(strategies: pl.DataFrame, steps: pl.DataFrame, breakevens: pl.DataFrame,
                 short_delta: pl.DataFrame) -> LevelArrays:
    """Arrays of the prepared frames (:class:`~.exit_rules.PreparedLevels`; one row per strategy id)."""
    ids = strategies.get_column("strategy_id")
    index = pl.DataFrame({"strategy_id": ids, "_row": np.arange(ids.len(), dtype=np.int64)})

    def rows(f: pl.DataFrame) -> np.ndarray:
        return f.join(index, on="strategy_id", how="left", maintain_order="left").get_column("_row").to_numpy()

    def pad(c: str) -> np.ndarray:
        return np.append(strategies.get_column(c).cast(pl.Float64).to_numpy(), np.nan)

    lvl = steps.get_column("level")
    names = lvl.unique(maintain_order=True)
    return LevelArrays(
        ids, {s: k for k, s in enumerate(ids.to_list())}, {c: pad(c) for c in ("profit_target", "stop_loss", "time_exit_dte", "trailing_activation",
                                 "trailing_distance")},
        np.append(strategies.get_column("time_exit_date").to_numpy(), np.datetime64("NaT")).astype("datetime64[D]"),
        rows(steps), *(steps.get_column(c).to_numpy().astype(float) for c in ("at_pct", "pnl", "close_fraction")),
        steps.get_column("last").to_numpy().astype(bool),
        pl.DataFrame({"level": lvl}).join(pl.DataFrame({"level": names, "_c": np.arange(names.len())}), on="level",
                                          how="left", maintain_order="left").get_column("_c").to_numpy(),
        names.to_list(),
        rows(breakevens), np.where((breakevens.get_column("side") == "below").fill_null(False).to_numpy(), 0,
                                   np.where((breakevens.get_column("side") == "above").fill_null(False).to_numpy(), 1, -1)),
        *(breakevens.get_column(c).to_numpy().astype(float) for c in ("breakeven", "price", "entry_spot")),
        rows(short_delta), _type_code(short_delta.get_column("option_type")),
        short_delta.get_column("strike").to_numpy().astype(float), _days(short_delta.get_column("expiry")),
        short_delta.get_column("threshold").to_numpy().astype(float))


@dataclass(frozen=True)
class AlignedLevels:
    """The stored scale-out steps and short_delta triggers of :class:`LevelArrays` aligned to the rows
    of the open strategies (:func:`align_levels`, kept while that set does not change)."""

    step_si: np.ndarray  # strategy row of each stored step, the steps ordered by strategy row then at_pct
    step_at: np.ndarray
    step_pnl: np.ndarray
    step_frac: np.ndarray
    step_last: np.ndarray
    step_level: np.ndarray  # into LevelArrays.step_levels
    has_steps: np.ndarray  # per strategy row: it has stored steps
    sd_key: np.ndarray  # sorted keys (strategy row, type, expiry, strike) of the short_delta triggers
    sd_threshold: np.ndarray  # of sd_key (the last trigger of a repeated key; NaN: the default)
    sd_min: float  # the smallest finite sd_threshold (inf without)
    sd_strikes: np.ndarray  # the triggers' distinct strikes (sorted)
    sd_expiries: np.ndarray  # and expiries (days)


def align_levels(la: LevelArrays, s_of_lv: np.ndarray, n: int) -> AlignedLevels:
    """:class:`AlignedLevels` of ``la`` for ``n`` open strategies (``s_of_lv``: level row -> strategy row, -1)."""
    si = s_of_lv[la.step_row] if la.step_row.size else np.zeros(0, dtype=np.int64)
    on = np.flatnonzero(si >= 0)
    o = on[np.lexsort((la.step_at[on], si[on]))]  # stable: ties keep the stored order
    has = np.zeros(n, dtype=bool)
    has[si[o]] = True
    sd = s_of_lv[la.sd_row] if la.sd_row.size else np.zeros(0, dtype=np.int64)
    j = np.flatnonzero((sd >= 0) & ~np.isnan(la.sd_strike))  # a NaN strike equals no leg's
    strikes, expiries = np.unique(la.sd_strike[j]), np.unique(la.sd_expiry[j])
    key = _leg_key(sd[j], la.sd_type[j], np.searchsorted(expiries, la.sd_expiry[j]),
                   np.searchsorted(strikes, la.sd_strike[j]), expiries.size, strikes.size)
    order = np.argsort(key, kind="stable")
    last = np.r_[key[order][1:] != key[order][:-1], True] if order.size else np.zeros(0, dtype=bool)
    thr = la.sd_threshold[j][order][last]
    thr[~np.isfinite(thr)] = np.nan
    return AlignedLevels(si[o], la.step_at[o], la.step_pnl[o], la.step_frac[o], la.step_last[o], la.step_level[o],
                         has, key[order][last], thr, float(np.min(thr[np.isfinite(thr)], initial=np.inf)), strikes,
                         expiries)


def _leg_key(row: np.ndarray, typ: np.ndarray, expiry: np.ndarray, strike: np.ndarray, n_expiries: int,
             n_strikes: int) -> np.ndarray:
    return ((row.astype(np.int64) * 3 + (typ + 1)) * n_expiries + expiry) * n_strikes + strike


def _find(sorted_: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position of each ``x`` in ``sorted_``, whether it is there)."""
    pos = np.searchsorted(sorted_, x)
    found = pos < sorted_.size
    found[found] = sorted_[pos[found]] == x[found]
    return pos, found


def leg_index(valuation: Valuation, n: int, al: AlignedLevels, default_threshold: float) -> LegIndex:
    """The live legs of ``valuation`` with their |delta| thresholds: a stored ``short_delta`` trigger
    matched by strategy, type, strike and expiry (the last one when several match), else
    ``default_threshold``. Only the short legs above the smallest threshold are matched (the rule
    cannot fire on the others): the rest get the default."""
    lg = valuation.legs

    def a(c: str) -> np.ndarray:
        return lg.get_column(c).to_numpy()

    q = lg.get_column("quantity")
    qty = (q.fill_null(0) if q.null_count() else q).to_numpy()
    rows = np.flatnonzero(~a("expired") & (qty != 0))
    li = a("strategy_row")[rows].astype(np.int64)
    start = np.searchsorted(li, np.arange(n + 1))
    qty, abs_delta = qty[rows], np.abs(a("delta")[rows].astype(float))
    thr = np.full(rows.size, default_threshold)
    if al.sd_key.size:
        with np.errstate(invalid="ignore"):
            h = np.flatnonzero((qty < 0) & (abs_delta > min(default_threshold, al.sd_min)))
        k, k_ok = _find(al.sd_strikes, a("strike")[rows[h]].astype(float))
        e, e_ok = _find(al.sd_expiries, a("expiry").astype("datetime64[D]").view(np.int64)[rows[h]])  # NaT: none
        ok = np.flatnonzero(k_ok & e_ok)
        typ = _type_code(lg.get_column("option_type"))[rows[h[ok]]]
        t, found = _find(al.sd_key, _leg_key(li[h[ok]], typ, e[ok], k[ok], al.sd_expiries.size, al.sd_strikes.size))
        v = al.sd_threshold[t[found]]
        thr[h[ok[found]]] = np.where(np.isnan(v), default_threshold, v)
    return LegIndex(rows, li, qty, a("lot_size")[rows], a("entry_lots")[rows], a("open_lots")[rows], abs_delta,
                    thr, start)


def scale_out_part(la: LevelArrays, al: AlignedLevels, legs: LegIndex, cfg: ExitRulesConfig,
                   executed: Executed | None, strings: Strings, pnl: np.ndarray, base: np.ndarray, live: np.ndarray
                   ) -> tuple[Part | None, ScaleLegs | None]:
    """Fired scale-out steps and their per-leg lots (see :mod:`.exit_rules`). Strategies without
    stored steps get the YAML's, on ``base``."""
    so = cfg.scale_out
    if not so.enabled:
        return None, None
    si, at, spnl, frac, last = al.step_si, al.step_at, al.step_pnl, al.step_frac, al.step_last
    lvl = np.array([strings.code(x) for x in la.step_levels], dtype=np.int64)[al.step_level] if si.size \
        else np.zeros(0, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        miss = np.flatnonzero(live & ~al.has_steps & (base > 0))
    steps_sorted = True  # the stored steps come by strategy, then ascending step
    if miss.size and so.default_steps:
        d_at = np.array([s.at_pct for s in so.default_steps])
        d_fr = np.array([s.close_fraction for s in so.default_steps])
        full = np.zeros(d_at.size, dtype=bool)
        full[-1] = d_fr.sum() >= 0.999
        mi = np.repeat(miss, d_at.size)
        si = np.concatenate([si, mi])
        at = np.concatenate([at, np.tile(d_at, miss.size)])
        spnl = np.concatenate([spnl, np.tile(d_at, miss.size) * base[mi]])
        frac = np.concatenate([frac, np.tile(d_fr, miss.size)])
        last = np.concatenate([last, np.tile(full, miss.size)])
        lvl = np.concatenate([lvl, np.tile(strings.codes(f"{x * 100:g}" for x in d_at), miss.size)])
        steps_sorted = False
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero(live[si] & (pnl[si] >= spnl))
    if executed and cand.size:
        cand = cand[~executed.hit(si[cand], RULE_CODE[Rule.SCALE_OUT], lvl[cand], strings)]
    if cand.size == 0:
        return None, None
    if not steps_sorted:
        cand = cand[np.lexsort((at[cand], si[cand]))]  # by strategy, then ascending step
    row, lr = expand(si[cand], legs.start)
    want = np.maximum(so.min_lots, np.floor(frac[cand][row] * legs.entry_lots[lr] + 0.5)).astype(np.int64)
    want = np.where(last[cand][row], 1 << 40, want)
    order = np.lexsort((row, lr))  # per leg, steps in order
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
    closes_all = np.ones(cand.size, dtype=bool)
    n_legs = legs.start[si[cand] + 1] - legs.start[si[cand]]
    some = n_legs > 0
    if some.any():  # rows are grouped by step: reduce each step's legs
        first = (np.cumsum(n_legs) - n_legs)[some]
        step_lots[some] = np.maximum.reduceat(lots, first)
        closes_all[some] = np.logical_and.reduceat(left == 0, first)
    keep = step_lots > 0
    if not keep.any():
        return None, None
    c = cand[keep]
    part = Part(si[c], Rule.SCALE_OUT, lvl[c], np.where(closes_all[keep], ACTION_CODE[Action.EXIT_ALL],
                                                          ACTION_CODE[Action.EXIT_PARTIAL]),
                Urgency.NORMAL, pnl[si[c]], spnl[c], _SCALE_REASON, lots=step_lots[keep], aux=frac[c])
    sel = keep[row] & (lots > 0)
    return part, ScaleLegs(part, (np.cumsum(keep) - 1)[row[sel]], lr[sel], lots[sel])


def adjustment_parts(valuation: Valuation, la: LevelArrays, s_of_lv: np.ndarray, legs: LegIndex,
                     cfg: ExitRulesConfig, strings: Strings, spot: np.ndarray, target: np.ndarray,
                     pnl_close: np.ndarray, live: np.ndarray) -> list[Part]:
    """Breakeven breaches, short legs above their |delta| threshold and offensive-add signals."""
    ad = cfg.adjustments
    if not ad.enabled:
        return []
    action = Action.ALERT if ad.alert_only else Action.ADJUST
    out: list[Part] = []
    if ad.breakeven and la.be_row.size:
        si = s_of_lv[la.be_row]
        j = np.flatnonzero(si >= 0)
        si, side, price, entry = si[j], la.be_side[j], la.be_price[j], la.be_entry[j]
        s = spot[si]
        with np.errstate(invalid="ignore"):  # beyond the trigger now, and it was not at the entry (a crossing)
            armed = np.isnan(entry) | ((side == 0) & (entry > price)) | ((side == 1) & (entry < price))
            fire = live[si] & armed & (((side == 0) & (s <= price)) | ((side == 1) & (s >= price)))
        sides = np.array([strings.code("below"), strings.code("above")])
        out.append(Part(si[fire], Rule.BREAKEVEN_BREACHED, sides[side[fire]], action, Urgency.MEDIUM, s[fire],
                        price[fire], _BREAKEVEN_REASON, aux=la.be_breakeven[j][fire]))
    short = legs.qty < 0
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero(short & (legs.abs_delta > legs.threshold))
    if hit.size:
        vr = legs.rows[hit]
        leg_no = valuation.legs.get_column("leg").to_numpy()[vr]
        uniq, inv = np.unique(leg_no, return_inverse=True)
        out.append(Part(legs.li[hit], Rule.SHORT_DELTA, strings.codes(str(int(x)) for x in uniq)[inv], action,
                        Urgency.MEDIUM, legs.abs_delta[hit], legs.threshold[hit], _DELTA_REASON,
                        aux=valuation.legs.get_column("strike").to_numpy()[vr].astype(float),
                        extra={"option_type": take(valuation.legs.get_column("option_type"), vr)}))
    if ad.offensive_min_profit_share is not None and short.any():
        dmax = np.full(live.size, -1.0)  # the largest short |delta| (NaN counts as 1), -1 without short legs
        with_legs = np.flatnonzero(np.diff(legs.start) > 0)
        if with_legs.size:
            dmax[with_legs] = np.maximum.reduceat(
                np.where(short, np.nan_to_num(legs.abs_delta, nan=1.0), -1.0), legs.start[with_legs])
        with np.errstate(invalid="ignore"):
            fire = np.flatnonzero(live & (dmax >= 0) & (dmax <= ad.offensive_max_short_delta)
                                  & (pnl_close >= ad.offensive_min_profit_share * target))
        out.append(Part(fire, Rule.OFFENSIVE_ADD, strings.code("add"), action, Urgency.NORMAL, pnl_close[fire],
                        ad.offensive_min_profit_share * target[fire], _ADD_REASON, aux=dmax[fire]))
    return out
