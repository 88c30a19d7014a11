"""Data-quality rules of the stored session rows (pure: frames in, an :class:`Outcome` out; the Dagster
asset checks in ``defs/*/checks.py`` read the rows and report the outcome).

Two severities: ``WARN`` for a session that is thin but usable (few contracts priced well enough for an
IV, underlyings without a 30-day ATM IV or a direction), ``ERROR`` for one that is wrong or unusable
(rows missing, values out of their range, coverage below the error floor)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

Severity = Literal["WARN", "ERROR"]

#: an implied vol above this (500%) is extreme: an ATM IV is a fault, a contract's IV a tick-priced wing
MAX_IV = 5.0


@dataclass(frozen=True)
class Outcome:
    """A rule's verdict: ``passed``, the ``severity`` it fails with (meaningless when it passes), a
    one-line ``description`` and the figures behind it (shares as fractions, counts as ints)."""

    passed: bool
    severity: Severity
    description: str
    figures: dict[str, float | int | None] = field(default_factory=dict)


def _typed(frame: pl.DataFrame, floats: tuple[str, ...], texts: tuple[str, ...] = ()) -> pl.DataFrame:
    """``frame`` with its number and text columns typed: a column null on every row reads back from the
    warehouse as polars' Null type, which has no comparisons."""
    return frame.with_columns(*(pl.col(c).cast(pl.Float64) for c in floats if c in frame.columns),
                              *(pl.col(c).cast(pl.Utf8) for c in texts if c in frame.columns))


def _verdict(errors: list[str], warnings: list[str], ok: str, figures: dict) -> Outcome:
    if errors:
        return Outcome(False, "ERROR", "; ".join(errors + warnings), figures)
    if warnings:
        return Outcome(False, "WARN", "; ".join(warnings), figures)
    return Outcome(True, "WARN", ok, figures)


def _share_rule(share: float | None, what: str, warn_below: float, error_below: float | None,
                errors: list[str], warnings: list[str]) -> None:
    if share is None:
        return
    if error_below is not None and share < error_below:
        errors.append(f"{what} {share:.1%} < error floor {error_below:.0%}")
    elif share < warn_below:
        warnings.append(f"{what} {share:.1%} < warning floor {warn_below:.0%}")


def iv_coverage(greeks: pl.DataFrame, *, warn_below: float, error_below: float, max_iv: float = MAX_IV,
                max_extreme_share: float = 0.01) -> Outcome:
    """option_greeks of a session (columns iv, iv_reason): the share of contracts with an IV against the
    floors (below ``error_below``: ERROR, below ``warn_below``: WARN); an IV <= 0 or NaN is a solver
    fault (ERROR); IVs above ``max_iv`` (far-from-the-money contracts priced at a tick) are counted, and
    WARN when more than ``max_extreme_share`` of the IVs."""
    n = greeks.height
    if n == 0:
        return Outcome(False, "ERROR", "no option_greeks rows for the session", {"contracts": 0})
    greeks = _typed(greeks, ("iv",), ("iv_reason",))
    iv = greeks.get_column("iv")
    with_iv = int(iv.is_not_null().sum())
    invalid = int(((iv <= 0) | iv.is_nan()).fill_null(False).sum())
    extreme = int((iv > max_iv).fill_null(False).sum())
    share = with_iv / n
    reasons = {str(r): int(c) for r, c in greeks.filter(pl.col("iv").is_null()).group_by("iv_reason").len()
               .sort("len", descending=True).iter_rows()}
    figures = {"contracts": n, "with_iv": with_iv, "iv_share": share, "invalid_iv": invalid,
               "iv_above_max": extreme, **{f"no_iv_{r}": c for r, c in reasons.items()}}
    errors, warnings = [], []
    if invalid:
        errors.append(f"{invalid} IVs <= 0 or NaN")
    _share_rule(share, "contracts with an IV", warn_below, error_below, errors, warnings)
    if with_iv and extreme / with_iv > max_extreme_share:
        warnings.append(f"{extreme} IVs above {max_iv:.0%} ({extreme / with_iv:.1%} of the IVs > "
                        f"{max_extreme_share:.0%})")
    why = ", ".join(f"{r} {c}" for r, c in reasons.items())
    return _verdict(errors, warnings, f"{with_iv} of {n} contracts have an IV ({share:.1%})"
                    + (f"; without: {why}" if why else "") + (f"; {extreme} above {max_iv:.0%}" if extreme else ""),
                    figures)


def atm_iv_coverage(summary: pl.DataFrame, symbols_with_greeks: Iterable[str], *, warn_below: float,
                    error_below: float, max_iv: float = MAX_IV) -> Outcome:
    """historical_iv_summary of a session (symbol, atm_iv_30d, rv_20): a row per underlying with option
    greeks (a missing one: ERROR), the share with a 30-day ATM IV against the floors, every ATM IV in
    (0, ``max_iv``] and realized vol >= 0."""
    expected = set(symbols_with_greeks)
    summary = _typed(summary, ("atm_iv_30d", "rv_20"), ("symbol",))
    have = set(summary.get_column("symbol").to_list()) if summary.height else set()
    missing = sorted(expected - have)
    atm = summary.get_column("atm_iv_30d") if summary.height else pl.Series("atm_iv_30d", [], pl.Float64)
    with_atm = int(atm.is_not_null().sum())
    share = with_atm / summary.height if summary.height else None
    bad = int(((atm <= 0) | (atm > max_iv) | atm.is_nan()).fill_null(False).sum())
    rv = summary.get_column("rv_20") if summary.height else pl.Series("rv_20", [], pl.Float64)
    bad_rv = int((rv < 0).fill_null(False).sum())
    figures = {"underlyings": summary.height, "with_atm_iv_30d": with_atm, "atm_iv_share": share,
               "missing_underlyings": len(missing), "implausible_atm_iv": bad, "negative_rv": bad_rv}
    errors, warnings = [], []
    if not expected and not summary.height:
        return Outcome(False, "ERROR", "no historical_iv_summary rows and no option greeks for the session", figures)
    if missing:
        errors.append(f"{len(missing)} underlyings with option greeks have no row: {', '.join(missing[:5])}")
    if bad:
        errors.append(f"{bad} ATM IVs outside (0, {max_iv:.0%}]")
    if bad_rv:
        errors.append(f"{bad_rv} negative realized vols")
    _share_rule(share, "underlyings with a 30-day ATM IV", warn_below, error_below, errors, warnings)
    return _verdict(errors, warnings, f"{with_atm} of {summary.height} underlyings have a 30-day ATM IV "
                    f"({share:.1%})" if share is not None else "no underlyings", figures)


def _count_outside(frame: pl.DataFrame, column: str, low: float, high: float) -> int:
    c = pl.col(column)
    return int(frame.select(((c < low) | (c > high) | c.is_nan()).fill_null(False).sum()).item())


def signal_coverage(signals: pl.DataFrame, universe: Iterable[str], *, warn_below: float) -> Outcome:
    """technical_signals of a session: a row per underlying of the universe (a missing one: ERROR), RSI
    in [0, 100] and strength in [0, 1] (ERROR), and the share with a direction against ``warn_below``
    (WARN only: an underlying without a year of bars has no direction and is recorded as missing)."""
    expected = set(universe)
    signals = _typed(signals, ("rsi14", "strength"), ("symbol", "direction"))
    have = set(signals.get_column("symbol").to_list()) if signals.height else set()
    missing = sorted(expected - have)
    n = signals.height
    if n == 0:
        return Outcome(False, "ERROR", f"no technical_signals rows for the {len(expected)} underlyings of the "
                       "session", {"underlyings": 0, "missing_underlyings": len(missing)})
    with_dir = int(signals.get_column("direction").is_not_null().sum())
    bad_rsi = _count_outside(signals, "rsi14", 0.0, 100.0)
    bad_strength = _count_outside(signals, "strength", 0.0, 1.0)
    share = with_dir / n
    figures = {"underlyings": n, "with_direction": with_dir, "direction_share": share,
               "missing_underlyings": len(missing), "rsi_out_of_range": bad_rsi, "strength_out_of_range": bad_strength}
    errors, warnings = [], []
    if missing:
        errors.append(f"{len(missing)} underlyings of the universe have no row: {', '.join(missing[:5])}")
    if bad_rsi:
        errors.append(f"{bad_rsi} RSI values outside [0, 100]")
    if bad_strength:
        errors.append(f"{bad_strength} strengths outside [0, 1]")
    _share_rule(share, "underlyings with a direction", warn_below, None, errors, warnings)
    return _verdict(errors, warnings, f"{with_dir} of {n} underlyings have a direction ({share:.1%})", figures)
