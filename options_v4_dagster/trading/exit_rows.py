"""Exit decisions assembled from numpy arrays, the fast path of :func:`.exit_rules.evaluate_exits`.

Every rule adds a :class:`Part`: the strategy rows it fired for (positions in
``Valuation.strategies``), integer codes for its level, action and urgency, the measured value and
its threshold, and its :class:`Reason` text. :func:`assemble` works on the
concatenated arrays only: it drops executed intents (matched on integer codes, :class:`Executed`),
adds HOLD for the strategies left without a row, orders by strategy row and precedence, marks the
primary and actionable rows, expands actionable exits to their legs (:class:`LegIndex`), and builds
the decisions and per-leg quantities frames once at the end. The rules, precedence and intent keys
are described in :mod:`.exit_rules` and :mod:`.decisions`.

Every polars step runs on the calling thread (:func:`take`, :func:`computed`): on a loaded machine
work handed to polars' thread pool waits for a core, and a monitor shares its cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import polars as pl

from .decisions import (
    DECISION_SCHEMA,
    EXIT_ALL_RULES,
    LEG_QUANTITY_SCHEMA,
    PRECEDENCE,
    Action,
    Rule,
    Urgency,
)

__all__ = ["ACTION_CODE", "RULE_CODE", "URGENCY_CODE", "Executed", "IntentKeys", "LegIndex", "Part", "Reason", "ScaleLegs",
           "Strings", "assemble", "computed", "expand", "take"]

RULE_CODE = {r: k for k, r in enumerate(Rule)}  # StrEnum keys: a plain str finds its rule too
ACTION_CODE = {a: k for k, a in enumerate(Action)}
URGENCY_CODE = {u: k for k, u in enumerate(Urgency)}
_NAMES = {kind: pl.Series([m.value for m in kind], dtype=pl.Utf8) for kind in (Rule, Action, Urgency)}
_SIDES = pl.Series(["BUY", "SELL"], dtype=pl.Utf8)  # closing a short buys, closing a long sells
_EXITS = np.array([ACTION_CODE[Action.EXIT_ALL], ACTION_CODE[Action.EXIT_PARTIAL]])
_SCALE = RULE_CODE[Rule.SCALE_OUT]
_PREC_SPAN = 1 << 16  # precedence * 10 + sub stays below this
_DEC_DTYPES, _LQ_DTYPES = list(DECISION_SCHEMA.values()), list(LEG_QUANTITY_SCHEMA.values())  # cheaper than .schema
_DENSE_MAX = 1 << 23  # bytes of the executed-intent lookup table before np.isin is used instead


class Strings:
    """Interned strings (levels): code <-> string."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._code: dict[str, int] = {}

    def code(self, s: str) -> int:
        c = self._code.get(s)
        if c is None:
            c = self._code[s] = len(self.names)
            self.names.append(s)
        return c

    def codes(self, values: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.code(v) for v in values), np.int64)

    def find(self, values: list[str]) -> np.ndarray:
        """Codes of ``values`` already interned, -1 for the others."""
        return np.fromiter(map(self._code.get, values, repeat(-1)), np.int64, len(values))

    def series(self) -> pl.Series:
        return pl.Series(self.names, dtype=pl.Utf8)


_FORMATS: dict[str, Callable[[pl.Expr], pl.Expr]] = {
    "inr": lambda e: e.round(0).cast(pl.Int64),  # whole rupees (or days)
    "r2": lambda e: e.round(2),
    "pct0": lambda e: (e * 100).round(0).cast(pl.Int64),
    "pct1": lambda e: (e * 100).round(1),
    "raw": lambda e: e,
}


@dataclass(frozen=True)
class Reason:
    """A reason text: ``template`` with ``{}`` filled by columns (value, threshold, level, aux or a
    part's extra column), each formatted as one of :data:`_FORMATS`."""

    template: str
    args: tuple[tuple[str, str], ...] = ()

    def expr(self, column: Callable[[str], pl.Expr]) -> pl.Expr:
        return pl.format(self.template, *[_FORMATS[f](column(c)) for c, f in self.args])


@dataclass
class Part:
    """Decision rows of one rule (and level kind); scalars broadcast over the rows."""

    i: np.ndarray  # strategy rows
    rule: Rule
    level: np.ndarray | int  # Strings codes
    action: np.ndarray | Action  # ACTION_CODE codes when an array
    urgency: np.ndarray | Urgency  # URGENCY_CODE codes when an array
    value: np.ndarray | float
    threshold: np.ndarray | float
    reason: Reason | str
    lots: np.ndarray | int = 0
    sub: int = 0  # precedence = PRECEDENCE[rule] * 10 + sub
    aux: np.ndarray | float = np.nan  # one more number for the reason
    extra: dict[str, pl.Series] = field(default_factory=dict)  # per-row columns for the reason


@dataclass(frozen=True)
class LegIndex:
    """The live (unexpired, non-zero) legs in the valuation's order; the legs of strategy row ``i``
    are ``start[i]:start[i + 1]``."""

    rows: np.ndarray  # row in Valuation.legs
    li: np.ndarray  # strategy row
    qty: np.ndarray
    lot: np.ndarray
    entry_lots: np.ndarray
    open_lots: np.ndarray
    abs_delta: np.ndarray
    threshold: np.ndarray  # |delta| threshold of short legs (stored, else the default)
    start: np.ndarray


@dataclass(frozen=True)
class ScaleLegs:
    """Per-leg lots of the scale-out part: ``row`` a row of ``part``, ``leg`` a LegIndex position."""

    part: Part
    row: np.ndarray
    leg: np.ndarray
    lots: np.ndarray


def expand(idx: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows each naming a strategy ``idx``: (the row number, the leg position) of every leg of it."""
    lo, hi = start[idx], start[idx + 1]
    counts = hi - lo
    row = np.repeat(np.arange(idx.size), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return row, np.repeat(lo, counts) + offset


class Executed:
    """Executed intent keys, parsed once: (strategy row, rule code, level) per key, and the strategies
    with an executed EXIT_ALL-rule intent. Keys that do not parse (:func:`~.decisions.parse_intent_key`)
    or name no open strategy match nothing."""

    def __init__(self, keys: Iterable[str], rows_of: Callable[[list[str]], np.ndarray], n: int) -> None:
        sids, rules, levels = [], [], []
        for k in keys:
            parts = k.rsplit(":", 2)  # parse_intent_key, inlined: this runs for every executed key
            if len(parts) != 3 or not all(parts):
                continue
            code = RULE_CODE.get(parts[1])  # type: ignore[call-overload]
            if code is not None:
                sids.append(parts[0])
                rules.append(code)
                levels.append(parts[2])
        rows = rows_of(sids) if sids else np.empty(0, np.int64)
        ok = rows >= 0
        self.row, self.rule = rows[ok], np.asarray(rules, np.int64)[ok]
        self.levels = [x for x, o in zip(levels, ok.tolist(), strict=True) if o]
        self.any = np.zeros(n, dtype=bool)  # strategies with an executed intent
        self.any[self.row] = True
        self.exit_all = np.zeros(n, dtype=bool)
        self.exit_all[self.row[np.isin(self.rule, [RULE_CODE[r] for r in EXIT_ALL_RULES])]] = True

    def __bool__(self) -> bool:
        return bool(self.row.size)

    def hit(self, i: np.ndarray, rule: np.ndarray | int, level: np.ndarray, strings: Strings) -> np.ndarray:
        """Which rows (strategy row, rule code, level code) are executed intents."""
        lc = strings.find(self.levels)
        ok = lc >= 0
        nr, nl = len(RULE_CODE), len(strings.names)
        done = (self.row[ok] * nr + self.rule[ok]) * nl + lc[ok]
        key = (i * nr + rule) * nl + level
        size = self.any.size * nr * nl
        if size <= _DENSE_MAX:  # a lookup table over every (strategy, rule, level)
            table = np.zeros(size, dtype=bool)
            table[done] = True
            return table[key]
        return np.isin(key, done)


class IntentKeys:
    """Intent keys ``strategy:rule:level`` of one set of open strategies, built when a decision first
    needs them and kept: a monitor re-evaluates the same strategies, whose decisions repeat their
    keys. The state is replaced whole, never changed in place, so concurrent callers stay consistent."""

    def __init__(self, sids: pl.Series) -> None:
        self.sids = sids
        # (rule code, level) -> combo; per combo and strategy row: the key's position in keys (-1: not built)
        self._state: tuple[dict[tuple[int, str], int], np.ndarray, pl.Series] = (
            {}, np.zeros((0, sids.len()), dtype=np.int32), pl.Series("intent_key", [], dtype=pl.Utf8))

    def of(self, i: np.ndarray, rule: np.ndarray, level: np.ndarray, strings: Strings) -> pl.Series:
        """The keys of the rows (strategy row, rule code, level code)."""
        combos, slot, keys = self._state
        nl = len(strings.names)
        pair = rule * nl + level
        lut = np.zeros(len(RULE_CODE) * nl, dtype=np.int64)
        grown = False
        for p in np.flatnonzero(np.bincount(pair, minlength=lut.size)).tolist():
            name = (p // nl, strings.names[p % nl])
            c = combos.get(name)
            if c is None:
                if not grown:
                    combos, grown = dict(combos), True
                c = combos[name] = len(combos)
            lut[p] = c
        if grown:
            slot = np.concatenate([slot, np.full((len(combos) - slot.shape[0], slot.shape[1]), -1, dtype=np.int32)])
        combo = lut[pair]
        pos = slot[combo, i]
        miss = np.flatnonzero(pos < 0)
        if miss.size:  # build the missing keys (every row of a new combo among them)
            new = computed(pl.DataFrame([take(self.sids, i[miss]).alias("s"), take(_NAMES[Rule], rule[miss]).alias("r"),
                                         take(strings.series(), level[miss]).alias("l")]),
                           pl.concat_str("s", "r", "l", separator=":")).alias("intent_key")
            if not grown:
                slot = slot.copy()
            pos[miss] = slot[combo[miss], i[miss]] = keys.len() + np.arange(miss.size, dtype=np.int32)
            keys = pl.concat([keys, new], rechunk=True)
            self._state = (combos, slot, keys)
        return take(keys, pos)


_COLUMNS: dict[str, tuple[Callable[[Part], object], type]] = {
    "i": (lambda p: p.i, np.int64),
    "rule": (lambda p: RULE_CODE[p.rule], np.int64),
    "level": (lambda p: p.level, np.int64),
    "action": (lambda p: p.action if isinstance(p.action, np.ndarray) else ACTION_CODE[p.action], np.int64),
    "urgency": (lambda p: p.urgency if isinstance(p.urgency, np.ndarray) else URGENCY_CODE[p.urgency], np.int64),
    "value": (lambda p: p.value, np.float64),
    "threshold": (lambda p: p.threshold, np.float64),
    "lots": (lambda p: p.lots, np.int64),
    "prec": (lambda p: PRECEDENCE[p.rule] * 10 + p.sub, np.int64),
    "aux": (lambda p: p.aux, np.float64),
}


def computed(frame: pl.DataFrame, expr: pl.Expr) -> pl.Series:
    """``expr`` over ``frame``, evaluated on the calling thread: ``select_seq`` runs several
    expressions one after the other there, while a lone expression may fan its inputs out to
    polars' thread pool -- which, under CPU contention, waits for a core. Hence the constant."""
    return frame.select_seq(expr.alias("_out"), pl.lit(None).alias("_")).get_column("_out")


def take(s: pl.Series, idx: np.ndarray) -> pl.Series:
    """``s`` at the positions ``idx`` (integers), on the calling thread: rechunked first (a gather over
    several chunks is slower), and not ``Series.gather`` (a query, whose gather may go to polars'
    thread pool)."""
    return (s if s.n_chunks() == 1 else s.rechunk())[idx]


def _arrays(parts: list[Part]) -> dict[str, np.ndarray]:
    sizes = [p.i.size for p in parts]
    out = {}
    for k, (get, dtype) in _COLUMNS.items():
        values = [get(p) for p in parts]
        if not any(isinstance(v, np.ndarray) for v in values):  # scalars only: one repeat
            out[k] = np.repeat(np.asarray(values, dtype), sizes)
        else:
            out[k] = np.concatenate([np.broadcast_to(np.asarray(v, dtype), (c,)) for v, c in zip(values, sizes, strict=True)])
    return out


def _is_exit(action: np.ndarray) -> np.ndarray:
    return (action == ACTION_CODE[Action.EXIT_ALL]) | (action == ACTION_CODE[Action.EXIT_PARTIAL])


def _reasons(parts: list[Part], counts: list[int], keep: list[np.ndarray | None]) -> pl.Expr:
    """The reason texts of the kept rows in part order, as one expression over the columns value,
    threshold, aux and level (in part order): every part formats only its own slice."""
    out, off = [], 0
    for p, c, k in zip(parts, counts, keep, strict=True):
        if c == 0:
            continue
        if isinstance(p.reason, str):
            out.append(pl.repeat(pl.lit(p.reason, pl.Utf8), c))
        else:
            extra = {name: s if k is None else take(s, k) for name, s in p.extra.items()}

            def column(name: str, off: int = off, c: int = c, extra: dict[str, pl.Series] = extra) -> pl.Expr:
                return pl.lit(extra[name]) if name in extra else pl.col(name).slice(off, c)

            out.append(p.reason.expr(column))
        off += c
    return pl.concat(out) if out else pl.lit(pl.Series([], dtype=pl.Utf8))


def assemble(parts: list[Part], n: int, sids: pl.Series, strings: Strings, executed: Executed | None,
             legs: LegIndex, leg_frame: pl.DataFrame, scale: ScaleLegs | None,
             intent_keys: IntentKeys | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(decisions, leg quantities) of ``parts`` over ``n`` strategies (ids ``sids``); ``leg_frame`` is
    ``Valuation.legs`` (its id columns are gathered for the legs of actionable exits). Everything is
    numpy until one select builds the reason texts; the intent keys come from ``intent_keys`` (kept
    between evaluations of the same strategies)."""
    parts = [p for p in parts if p.i.size]
    sizes = np.array([p.i.size for p in parts], dtype=np.int64)
    a = _arrays(parts)
    keep = np.ones(a["i"].size, dtype=bool)
    if executed:
        keep &= ~executed.hit(a["i"], a["rule"], a["level"], strings)
        keep &= ~(executed.exit_all[a["i"]] & _is_exit(a["action"]))
    has = np.zeros(n, dtype=bool)
    has[a["i"][keep]] = True
    hold = Part(np.flatnonzero(~has), Rule.HOLD, strings.code("-"), Action.HOLD, Urgency.NORMAL, np.nan, np.nan,
                "no exit rule fired")
    h = _arrays([hold])
    total = int(sizes.sum())
    a = {k: np.concatenate([v, h[k]]) for k, v in a.items()}
    kept = np.concatenate([np.flatnonzero(keep), np.arange(total, total + hold.i.size)])
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    counts = np.add.reduceat(keep, bounds[:-1]).tolist() if parts else []
    keep_by_part: list[np.ndarray | None] = [None if c == s else np.flatnonzero(keep[bounds[j]:bounds[j + 1]])
                                             for j, (c, s) in enumerate(zip(counts, sizes.tolist(), strict=True))]

    # order by strategy row, then precedence (stable: a rule's rows keep their order)
    perm = np.argsort(a["i"][kept] * _PREC_SPAN + a["prec"][kept], kind="stable")
    idx = kept[perm]  # the decisions' rows
    f = {k: v[idx] for k, v in a.items() if k != "aux"}
    first = np.ones(idx.size, dtype=bool)
    first[1:] = f["i"][1:] != f["i"][:-1]
    prim_rule = f["rule"][np.flatnonzero(first)][np.cumsum(first) - 1]
    actionable = (first & (f["action"] == ACTION_CODE[Action.EXIT_ALL])) | (
        (prim_rule == _SCALE) & (f["rule"] == _SCALE) & _is_exit(f["action"]))

    # legs of the actionable exits: whole exits close every live leg, scale-outs their step's lots
    whole = np.flatnonzero(actionable & (f["rule"] != _SCALE))
    row, lr = expand(f["i"][whole], legs.start)
    leg_lots = legs.open_lots[lr]
    lots = f["lots"].copy()
    n_legs = legs.start[f["i"][whole] + 1] - legs.start[f["i"][whole]]
    got = n_legs > 0
    if got.any():
        lots[whole[got]] = np.maximum.reduceat(leg_lots, (np.cumsum(n_legs) - n_legs)[got])
    dec_row = whole[row]
    if scale is not None and any(p is scale.part for p in parts):
        j = next(k for k, p in enumerate(parts) if p is scale.part)
        final = np.full(a["i"].size, -1, dtype=np.int64)  # row -> position in the decisions
        final[idx] = np.arange(idx.size)
        pos = final[bounds[j] + scale.row]
        ok = pos >= 0
        ok[ok] = actionable[pos[ok]]
        dec_row = np.concatenate([dec_row, pos[ok]])
        lr = np.concatenate([lr, scale.leg[ok]])
        leg_lots = np.concatenate([leg_lots, scale.lots[ok]])

    # the string columns, every polars step on the calling thread (select_seq, single-chunk gathers):
    # under CPU contention work handed to polars' thread pool waits for a core
    table = strings.series()
    sid, rule, level = take(sids, f["i"]), take(_NAMES[Rule], f["rule"]), take(table, f["level"])
    reason = computed(pl.DataFrame({"value": a["value"][kept], "threshold": a["threshold"][kept], "aux": a["aux"][kept],
                                     "level": take(table, a["level"][kept])}),
                      _reasons([*parts, hold], [*counts, hold.i.size], [*keep_by_part, None])).alias("reason")
    key = (intent_keys or IntentKeys(sids)).of(f["i"], f["rule"], f["level"], strings)
    rows = legs.rows[lr]

    dec = pl.DataFrame([
        sid.alias("strategy_id"), take(_NAMES[Action], f["action"]).alias("action"),
        take(_NAMES[Urgency], f["urgency"]).alias("urgency"), rule.alias("rule"), level.alias("level"), key,
        pl.Series("value", f["value"], nan_to_null=True), pl.Series("threshold", f["threshold"], nan_to_null=True),
        pl.Series("lots", lots), take(reason, perm), pl.Series("precedence", f["prec"]),
        pl.Series("primary", first), pl.Series("actionable", actionable)])
    lq = pl.DataFrame([
        take(key, dec_row), *(take(leg_frame.get_column(c), rows) for c in ("strategy_id", "allocation_id",
                                                                              "position_id", "leg")),
        take(leg_frame.get_column("quote_key"), rows).alias("security_id"),
        pl.Series("quantity", leg_lots * legs.lot[lr], dtype=pl.Int64), pl.Series("lots", leg_lots, dtype=pl.Int64),
        take(_SIDES, (legs.qty[lr] > 0).astype(np.int64)).alias("close_side")])
    return (dec if dec.dtypes == _DEC_DTYPES else dec.cast(DECISION_SCHEMA),  # type: ignore[arg-type]
            lq if lq.dtypes == _LQ_DTYPES else lq.cast(LEG_QUANTITY_SCHEMA))  # type: ignore[arg-type]
