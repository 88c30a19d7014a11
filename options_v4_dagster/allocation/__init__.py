"""Portfolio allocation (no Dagster): market rules, industry views and the allocation engine.

* :mod:`.config` -- ``market_conditions.yaml`` -> :class:`MarketRules` for a market state;
* :mod:`.industries` -- industry weights and LONG / SHORT / NEUTRAL views, sectors, the matching rule;
* :mod:`.engine` -- :func:`allocate`: tiers x industries, fallback hierarchy, fractional Kelly, whole
  lots, limits, deployment top-up and the expected monthly return, run as named steps from
  :mod:`.candidates`, :mod:`.exclusions`, :mod:`.selection`, :mod:`.sizing`, :mod:`.positions` and
  :mod:`.summary` (:class:`AllocationSummary`; :class:`ExclusionCode` says why a symbol is left out).
"""

from .config import MarketConditionsConfig, MarketRules, load_market_conditions
from .engine import (
    AllocationError,
    AllocationResult,
    AllocationSummary,
    ExclusionCode,
    InsufficientCapital,
    NoCandidates,
    allocate,
    candidates_from_tables,
    limit_breaches,
)
from .industries import (
    IndustryAllocations,
    allocation_tables,
    default_industry_allocations,
    load_industry_allocations,
    matches_view,
    opposes_view,
)

__all__ = [
    "AllocationError", "AllocationResult", "AllocationSummary", "ExclusionCode", "IndustryAllocations", "InsufficientCapital", "MarketConditionsConfig",
    "MarketRules", "NoCandidates", "allocate", "allocation_tables", "candidates_from_tables", "limit_breaches",
    "default_industry_allocations", "load_industry_allocations", "load_market_conditions", "matches_view",
    "opposes_view",
]
