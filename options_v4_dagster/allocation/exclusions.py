"""Why a candidate or a symbol is left out of the allocation: an :class:`ExclusionCode` and a text.

Every exclusion carries a code (for counting and matching) and a human text (for people): the
code is what the engine, the summary and the metadata match on; the text is never parsed.

* eligibility (per candidate, :func:`with_exclusions`, first match wins): no capital figure,
  industry weight 0, conviction in no tier, opposes / does not fit the industry view, expected
  value below the minimum, one lot above the per-position or unlimited-risk limit;
* per symbol (:func:`excluded_symbols`): its best candidate's lot broke a limit when selected,
  its slots went to other symbols, or every candidate was ineligible (the commonest reason).
"""

from __future__ import annotations

from collections import Counter
from enum import StrEnum, auto

import numpy as np
import polars as pl

from .book import Book, Limit, inr, pct
from .config import MarketRules
from .errors import InsufficientCapital, NoCandidates

__all__ = ["EXCLUDED_COLUMNS", "KIND", "ExclusionCode", "code_counts", "excluded_symbols", "raise_nothing_eligible",
           "reason_kinds", "with_exclusions"]


class ExclusionCode(StrEnum):
    """Why a candidate (eligibility) or a symbol (selection) has no position."""

    NO_CAPITAL_FIGURE = auto()  #: no margin and no debit: the capital per lot is unknown
    INDUSTRY_WEIGHT_ZERO = auto()  #: the industry's weight is 0
    CONVICTION_NOT_IN_TIER = auto()  #: the conviction level fills no tier
    OPPOSES_VIEW = auto()  #: the strategy's outlook opposes the industry view
    OFF_VIEW = auto()  #: the strategy fits no fallback level of the industry view
    LOW_EXPECTED_VALUE = auto()  #: expected value below ``min_expected_value``
    LOT_ABOVE_POSITION_LIMIT = auto()  #: one lot needs more than the per-position (symbol, portfolio) cap
    LOT_ABOVE_UNLIMITED_RISK_LIMIT = auto()  #: unbounded loss and one lot exceeds the unlimited-risk cap
    LOT_BREAKS_LIMIT = auto()  #: the symbol's pick: one lot breaks a book limit when it would be opened
    NOT_SELECTED = auto()  #: the symbol's pick lost its slot to higher-priority industries or better scores
    NOT_ELIGIBLE = auto()  #: no eligible candidate and no recorded reason


#: the short kind of each code (the summary's ``excluded_reasons`` keys)
KIND: dict[ExclusionCode, str] = {
    ExclusionCode.NO_CAPITAL_FIGURE: "no margin or debit figure",
    ExclusionCode.INDUSTRY_WEIGHT_ZERO: "industry weight 0",
    ExclusionCode.CONVICTION_NOT_IN_TIER: "conviction in no tier",
    ExclusionCode.OPPOSES_VIEW: "opposes the industry view",
    ExclusionCode.OFF_VIEW: "does not fit the industry view",
    ExclusionCode.LOW_EXPECTED_VALUE: "expected value too low",
    ExclusionCode.LOT_ABOVE_POSITION_LIMIT: "one lot above the per-position limit",
    ExclusionCode.LOT_ABOVE_UNLIMITED_RISK_LIMIT: "one lot above the unlimited-risk limit",
    ExclusionCode.LOT_BREAKS_LIMIT: "one lot breaks a limit when selected",
    ExclusionCode.NOT_SELECTED: "not selected",
    ExclusionCode.NOT_ELIGIBLE: "not eligible",
}
_LOT_TOO_BIG = (ExclusionCode.LOT_ABOVE_POSITION_LIMIT, ExclusionCode.LOT_ABOVE_UNLIMITED_RISK_LIMIT)
EXCLUDED_COLUMNS: dict[str, pl.DataType] = {"symbol": pl.Utf8, "industry": pl.Utf8, "code": pl.Utf8,
                                            "reason": pl.Utf8}


def _eligibility_rules(rules: MarketRules, book: Book) -> list[tuple[ExclusionCode, pl.Expr, pl.Expr]]:
    """(code, condition, text) per exclusion, in the order they are tested."""
    mev = rules.risk_limits.min_expected_value
    per_lot_cap = book.per_lot_cap
    no_level = pl.col("fallback_level").is_null()
    return [
        (ExclusionCode.NO_CAPITAL_FIGURE, pl.col("capital_per_lot").is_null() | ~(pl.col("capital_per_lot") > 0),
         pl.lit("no margin or debit figure")),
        (ExclusionCode.INDUSTRY_WEIGHT_ZERO, ~(pl.col("industry_weight") > 0),
         pl.format("industry {} has weight 0", "industry")),
        (ExclusionCode.CONVICTION_NOT_IN_TIER, pl.col("tier").is_null(),
         pl.format("conviction {} is in no tier", "conviction")),
        (ExclusionCode.OPPOSES_VIEW, no_level & pl.col("_opposes"),
         pl.format("{} opposes the {} view of {}", "strategy_name", "position_type", "industry")),
        (ExclusionCode.OFF_VIEW, no_level, pl.format("{} does not fit the {} view", "strategy_name", "position_type")),
        (ExclusionCode.LOW_EXPECTED_VALUE,
         pl.lit(mev is not None) & (pl.col("expected_value").fill_null(-np.inf) < (mev or 0.0)),
         pl.lit(f"expected value below {mev}")),
        (ExclusionCode.LOT_ABOVE_POSITION_LIMIT, pl.col("capital_per_lot") > per_lot_cap + book.eps,
         pl.format("1 lot needs {} > max per position {}", pl.col("capital_per_lot").round(0),
                   pl.lit(round(per_lot_cap)))),
        (ExclusionCode.LOT_ABOVE_UNLIMITED_RISK_LIMIT,
         pl.col("unlimited_risk") & (pl.col("capital_per_lot") > book.cap_unlimited + book.eps),
         pl.lit(f"unbounded loss and 1 lot exceeds the unlimited-risk limit {inr(book.cap_unlimited)}")),
    ]


def with_exclusions(c: pl.DataFrame, rules: MarketRules, book: Book) -> pl.DataFrame:
    """The prepared candidates with ``_code`` and ``_reason`` (both null: eligible)."""
    code = reason = None
    for k, cond, text in _eligibility_rules(rules, book):
        code = (pl.when(cond) if code is None else code.when(cond)).then(pl.lit(k.value))
        reason = (pl.when(cond) if reason is None else reason.when(cond)).then(text)
    return c.with_columns(_code=code.otherwise(None), _reason=reason.otherwise(None))


def _pairs(frame: pl.DataFrame) -> Counter[tuple[str, str]]:
    """(code, text) of the excluded candidates, counted."""
    return Counter((k, r) for k, r in zip(frame.get_column("_code").to_list(), frame.get_column("_reason").to_list(),
                                          strict=True) if r)


def code_counts(c: pl.DataFrame) -> dict[str, int]:
    """Excluded candidates per code (sorted by code)."""
    return dict(sorted(Counter(k for k in c.get_column("_code").to_list() if k).items()))


def reason_kinds(c: pl.DataFrame) -> dict[str, int]:
    """Excluded candidates per kind of reason (:data:`KIND`, sorted by kind)."""
    out: Counter[str] = Counter()
    for k, v in code_counts(c).items():
        out[KIND[ExclusionCode(k)]] += v
    return dict(sorted(out.items()))


def raise_nothing_eligible(c: pl.DataFrame, capital: float, book: Book) -> None:
    """No candidate is eligible: :class:`InsufficientCapital` when some fail only on the size of
    one lot, else :class:`NoCandidates` with the commonest reasons."""
    money_ok = c.filter(pl.col("_code").is_in([k.value for k in _LOT_TOO_BIG]))
    if money_ok.height:
        cheapest = money_ok.sort(["capital_per_lot", "strategy_id"]).row(0, named=True)
        raise InsufficientCapital(
            f"capital {inr(capital)} is too small for one whole lot: the cheapest eligible candidate, "
            f"{cheapest['symbol']} {cheapest['strategy_name']}, needs margin {inr(cheapest['capital_per_lot'])} "
            f"per lot, above the {inr(book.per_lot_cap)} allowed per position "
            f"({pct(book.cap_position / capital)} of capital)")
    counts = Counter(r for r in c.get_column("_reason").to_list() if r)
    top = "; ".join(f"{k} ({v})" for k, v in counts.most_common(5))
    raise NoCandidates(f"none of the {c.height} strategy candidates is eligible for allocation: {top}")


def excluded_symbols(c: pl.DataFrame, rows: list[dict], used: set[str], skipped: dict[str, Limit]) -> pl.DataFrame:
    """One row per symbol with candidates but no position: symbol, industry, code and reason."""
    picked = {r["symbol"]: r for r in rows}
    held = {r["symbol"] for r in rows if r["strategy_id"] in used}
    out = []
    for sym, grp in c.group_by("symbol", maintain_order=True):
        s = sym[0]
        if s in held:
            continue
        ind = grp.get_column("industry")[0]
        if s in picked:
            pick = picked[s]
            sid = pick["strategy_id"]
            if sid in skipped:
                code, why = ExclusionCode.LOT_BREAKS_LIMIT, f"{pick['strategy_name']}: one lot breaks the " \
                                                            f"{skipped[sid]} limit"
            else:
                code, why = ExclusionCode.NOT_SELECTED, (f"{pick['strategy_name']} ({pick['tier']}) not selected: "
                                                         "slots filled by higher-priority industries or better scores")
        else:
            reasons = _pairs(grp)
            if reasons:
                (code, why), top = reasons.most_common(1)[0]
                if len(reasons) > 1:
                    why += f" (+{sum(reasons.values()) - top} other candidate(s) excluded)"
            else:
                code, why = ExclusionCode.NOT_ELIGIBLE, "not eligible"
        out.append({"symbol": s, "industry": ind, "code": str(code), "reason": why})
    return pl.DataFrame(out, schema=EXCLUDED_COLUMNS).sort("symbol")
