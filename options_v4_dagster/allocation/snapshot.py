"""Allocation snapshots: the content hash that names an allocation.

An allocation is immutable once stored; its ``allocation_id`` is the sha256 of a canonical JSON of
everything it was made from and everything it says: the session, the capital, the resolved
market rules, the industry weights and views (and the symbol -> industry mapping) used, the risk
tolerance of the candidates and the positions. The same inputs give the same id; any change gives
another. Canonical JSON: keys sorted, rows sorted by ``position_id``, numbers as floats rounded to
12 significant digits (so 0.1 + 0.2 and 0.3, or 1500000 and 1500000.0, hash alike), NaN as null.
No Dagster and no warehouse here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from typing import Any

import polars as pl

from .config import MarketRules
from .industries import IndustryAllocations

SIGNIFICANT_DIGITS = 12
#: position columns left out of the hash: they restate inputs hashed on their own or are clocks
_NOT_HASHED = ("trade_date", "capital", "created_at", "allocation_id")


def _normalize(x: Any) -> Any:
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int | float):
        f = float(x)
        if not math.isfinite(f):
            return None
        f = float(f"{f:.{SIGNIFICANT_DIGITS}g}")
        return 0.0 if f == 0 else f
    if isinstance(x, dt.datetime | dt.date):
        return x.isoformat()
    if isinstance(x, dict):
        return {str(k): _normalize(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_normalize(v) for v in x]
    raise TypeError(f"canonical_json: cannot encode {type(x).__name__} {x!r}")


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys and normalized numbers (see the module docstring)."""
    return json.dumps(_normalize(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)


def industry_views(industries: IndustryAllocations) -> dict[str, Any]:
    """The industry weights, views and mapping an allocation used (JSON-ready; stored with the snapshot)."""
    return {"source": industries.source, "weights": dict(industries.weights),
            "position_types": dict(industries.position_types),
            "default_position_type": industries.default_position_type,
            "symbol_industry": dict(industries.symbol_industry)}


def snapshot_inputs(session: dt.date, capital: float, rules: MarketRules, industries: IndustryAllocations,
                    risk_tolerance: str | None, positions: pl.DataFrame) -> dict[str, Any]:
    """What the allocation id hashes (JSON-ready)."""
    keep = [c for c in positions.columns if c not in _NOT_HASHED]
    rows = positions.select(keep).sort("position_id").to_dicts() if positions.height else []
    return {"trade_date": session.isoformat(), "capital": float(capital), "rules": rules.to_dict(),
            "industries": industry_views(industries), "risk_tolerance": risk_tolerance, "positions": rows}


def allocation_id(inputs: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of :func:`snapshot_inputs`."""
    return hashlib.sha256(canonical_json(inputs).encode()).hexdigest()
