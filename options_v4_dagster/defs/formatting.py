"""Metadata values for people: counts as integers, shares as percentages, money in INR with Indian
digit grouping (``₹15,00,000``), durations in seconds. An integer is never shown as a float
(``41,938,461.00``): :func:`count` makes it an ``int`` value and :func:`number_cell` drops the decimals
of a whole number in a markdown table column."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import dagster as dg

NA = "n/a"


def count(n) -> dg.MetadataValue:
    """A count (rows, symbols, contracts) as an integer value, whatever numeric type it arrived as."""
    return dg.MetadataValue.int(int(n or 0))


def seconds(s: float) -> dg.MetadataValue:
    return dg.MetadataValue.float(round(float(s), 3))


def pct_text(x: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: 0.1234 -> "12.3%"; None or NaN -> "n/a"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    return f"{100 * float(x):.{digits}f}%"


def pct(x: float | None, digits: int = 1) -> dg.MetadataValue:
    """A fraction (share, return, deployment) as a percentage text value: 0.1234 -> "12.3%"."""
    return dg.MetadataValue.text(pct_text(x, digits))


def pct_json(shares: Mapping[str, float], digits: int = 1) -> dg.MetadataValue:
    """Shares by name as percentages, largest first: {"T1": "61.2%", ...}."""
    ordered = sorted(shares.items(), key=lambda kv: -(kv[1] or 0.0))
    return dg.MetadataValue.json({str(k): pct_text(v, digits) for k, v in ordered})


def indian_digits(n: int) -> str:
    """An integer with Indian digit grouping: 1500000 -> "15,00,000"; -12345678 -> "-1,23,45,678"."""
    sign, s = ("-" if n < 0 else ""), str(abs(int(n)))
    if len(s) <= 3:
        return sign + s
    head, tail = s[:-3], s[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return sign + ",".join([*groups, tail])


def inr_text(x: float | None, digits: int = 0) -> str:
    """An amount in rupees: 1500000 -> "₹15,00,000"; 1234.5 with digits=2 -> "₹1,234.50"; None -> "n/a"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NA
    value = round(float(x), digits)
    whole = int(abs(value))
    frac = f"{abs(value) - whole:.{digits}f}"[1:] if digits else ""
    return ("-" if value < 0 else "") + "₹" + indian_digits(whole) + frac


def inr(x: float | None, digits: int = 0) -> dg.MetadataValue:
    """An amount in rupees as a text value (``₹15,00,000``)."""
    return dg.MetadataValue.text(inr_text(x, digits))


def number_cell(v, whole: bool, floatfmt: str = "{:,.2f}") -> str:
    """A markdown table cell: whole-number floats (a column of them: ``whole``) without decimals."""
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return f"{int(v):,}" if whole else floatfmt.format(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


Formatter = Callable[[object], str]


def figures_metadata(figures: Mapping[str, float | int | None]) -> dict[str, dg.MetadataValue]:
    """A data-quality rule's figures as metadata: ``*_share`` keys as percentages, ints as counts."""
    out: dict[str, dg.MetadataValue] = {}
    for k, v in figures.items():
        if k.endswith("_share"):
            out[k] = pct(v)
        elif isinstance(v, bool) or v is None:
            out[k] = dg.MetadataValue.text(NA if v is None else str(v))
        elif isinstance(v, int):
            out[k] = count(v)
        else:
            out[k] = dg.MetadataValue.float(round(float(v), 4))
    return out
