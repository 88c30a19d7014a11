"""Industry weights and views (LONG / SHORT / NEUTRAL), sectors, and the strategy-view matching rule.

**Industries** are the ``industry`` column of the F&O universe (``reference/fno_universe.csv``: NSE's
sector level of its industry classification, e.g. "Financial Services", "Capital Goods"; the indices
form the industry "Index").

**Weights.** An industry's raw weight is the weight given in the file, else (``weighting: fno_count``,
the default) its share of the universe's F&O underlyings, or (``weighting: equal``) 1 / number of
industries. All weights are then scaled to sum to 1. Weight 0 keeps an industry out of the allocation.

**Sectors** are a coarser grouping: NSE's *macro-economic sector* of each industry (NSE groups its
sectors into 12 macro-economic sectors; see :data:`SECTOR_OF_INDUSTRY`), plus "Index" for the index
underlyings and "Other" for an industry not in the table. A sector's weight is the sum of its
industries' weights.

**Matching rule** (:func:`matches_view`, :func:`opposes_view`):

* LONG industries take BULLISH strategies, and the *neutral-bullish* ones (:data:`NEUTRAL_BULLISH`):
  premium sellers that profit when the price stays flat *or* rises -- bull put spread, short put,
  cash-secured put, covered call, jade lizard, broken-wing butterfly, collar (all BULLISH in the
  catalogue with a weak view), and the call ratio spread (NEUTRAL in the catalogue, but it profits
  from a modest rise);
* SHORT industries take BEARISH strategies and the *neutral-bearish* ones (:data:`NEUTRAL_BEARISH`):
  bear call spread, short call (BEARISH, weak view) and the put ratio spread (profits from a modest fall);
* NEUTRAL industries take NEUTRAL and VOLATILE strategies.

A strategy *opposes* a view when it is BULLISH or neutral-bullish in a SHORT industry, or BEARISH or
neutral-bearish in a LONG industry. The allocator's last fallback level ("any strategy") still never
takes an opposing strategy: a SHORT industry never gets a bullish strategy.

Files (:func:`load_industry_allocations`):

* YAML (``config/industry_allocations.yaml`` is the packaged default)::

    weighting: fno_count          # or equal: the raw weight of industries without an explicit weight
    default_position_type: NEUTRAL  # for universe industries not listed
    include_unlisted: true        # universe industries not listed are included (with the default view)
    industries:
      Financial Services: {position_type: LONG}
      Information Technology: {position_type: SHORT, weight: 0.08}

* CSV with a header ``industry,weight,position_type`` (a blank weight = the ``fno_count`` share);
  only the listed industries are included.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError
from ..yaml_config import format_errors, parse_yaml_mapping

__all__ = [
    "NEUTRAL_BEARISH", "NEUTRAL_BULLISH", "POSITION_TYPES", "SECTOR_OF_INDUSTRY", "IndustryAllocations",
    "allocation_tables", "default_industry_allocations", "load_industry_allocations", "matches_view",
    "opposes_view", "sector_of", "view_match_exprs",
]

POSITION_TYPES = ("LONG", "SHORT", "NEUTRAL")
DEFAULT_FILE = "config/industry_allocations.yaml"

#: Strategies that profit when the price stays flat or rises (taken by LONG industries).
NEUTRAL_BULLISH = frozenset({
    "bull_put_spread", "short_put", "cash_secured_put", "covered_call", "jade_lizard", "broken_wing_butterfly",
    "collar", "call_ratio_spread",
})
#: Strategies that profit when the price stays flat or falls (taken by SHORT industries).
NEUTRAL_BEARISH = frozenset({"bear_call_spread", "short_call", "put_ratio_spread"})

#: NSE sector (the universe's ``industry``) -> NSE macro-economic sector.
SECTOR_OF_INDUSTRY: dict[str, str] = {
    "Index": "Index",
    "Financial Services": "Financial Services",
    "Capital Goods": "Industrials",
    "Construction": "Industrials",
    "Services": "Services",
    "Automobile and Auto Components": "Consumer Discretionary",
    "Consumer Durables": "Consumer Discretionary",
    "Consumer Services": "Consumer Discretionary",
    "Media Entertainment & Publication": "Consumer Discretionary",
    "Realty": "Consumer Discretionary",
    "Textiles": "Consumer Discretionary",
    "Fast Moving Consumer Goods": "Fast Moving Consumer Goods",
    "Healthcare": "Healthcare",
    "Information Technology": "Information Technology",
    "Telecommunication": "Telecommunication",
    "Metals & Mining": "Commodities",
    "Chemicals": "Commodities",
    "Construction Materials": "Commodities",
    "Forest Materials": "Commodities",
    "Oil Gas & Consumable Fuels": "Energy",
    "Power": "Utilities",
    "Diversified": "Diversified",
}
OTHER_SECTOR = "Other"
UNCLASSIFIED = "Unclassified"


def sector_of(industry: str | None) -> str:
    if industry is None:
        return OTHER_SECTOR
    return SECTOR_OF_INDUSTRY.get(str(industry).strip(), OTHER_SECTOR)


# --------------------------------------------------------------------------------------------
# matching rule

def matches_view(position_type: str, outlook: str | None, strategy_name: str | None) -> bool:
    """Whether a strategy fits an industry view (see the module docstring)."""
    pt, o, n = (position_type or "").upper(), (outlook or "").upper(), strategy_name or ""
    if pt == "LONG":
        return o == "BULLISH" or n in NEUTRAL_BULLISH
    if pt == "SHORT":
        return o == "BEARISH" or n in NEUTRAL_BEARISH
    if pt == "NEUTRAL":
        return o in ("NEUTRAL", "VOLATILE")
    raise ConfigError(f"position_type {position_type!r} is not one of {', '.join(POSITION_TYPES)}")


def opposes_view(position_type: str, outlook: str | None, strategy_name: str | None) -> bool:
    """A bullish (or neutral-bullish) strategy in a SHORT industry, or a bearish one in a LONG industry."""
    pt, o, n = (position_type or "").upper(), (outlook or "").upper(), strategy_name or ""
    if pt == "LONG":
        return o == "BEARISH" or n in NEUTRAL_BEARISH
    if pt == "SHORT":
        return o == "BULLISH" or n in NEUTRAL_BULLISH
    return False


def view_match_exprs(position_type: str = "position_type", outlook: str = "outlook",
                     name: str = "strategy_name") -> tuple[pl.Expr, pl.Expr]:
    """Polars expressions (matches, opposes) of :func:`matches_view` / :func:`opposes_view` over columns."""
    pt, o, n = pl.col(position_type).str.to_uppercase(), pl.col(outlook).str.to_uppercase(), pl.col(name)
    bull = (o == "BULLISH") | n.is_in(list(NEUTRAL_BULLISH))
    bear = (o == "BEARISH") | n.is_in(list(NEUTRAL_BEARISH))
    matches = (pl.when(pt == "LONG").then(bull).when(pt == "SHORT").then(bear)
               .when(pt == "NEUTRAL").then(o.is_in(["NEUTRAL", "VOLATILE"])).otherwise(False)).fill_null(False)
    opposes = (pl.when(pt == "LONG").then((o == "BEARISH") | n.is_in(list(NEUTRAL_BEARISH)))
               .when(pt == "SHORT").then((o == "BULLISH") | n.is_in(list(NEUTRAL_BULLISH)))
               .otherwise(False)).fill_null(False)
    return matches, opposes


# --------------------------------------------------------------------------------------------
# allocations

@dataclass(frozen=True)
class IndustryAllocations:
    """Normalized industry weights (sum 1) and views, plus the symbol -> industry mapping."""

    weights: dict[str, float]
    position_types: dict[str, str]
    default_position_type: str = "NEUTRAL"
    symbol_industry: dict[str, str] = field(default_factory=dict)
    source: str = "code"
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.default_position_type not in POSITION_TYPES:
            raise ConfigError(f"default_position_type {self.default_position_type!r} is not one of "
                              f"{', '.join(POSITION_TYPES)}")
        for ind, pt in self.position_types.items():
            if pt not in POSITION_TYPES:
                raise ConfigError(f"{self.source}: industry {ind!r}: position_type {pt!r} is not one of "
                                  f"{', '.join(POSITION_TYPES)}")
        total = sum(self.weights.values())
        if any(w < 0 for w in self.weights.values()) or not total > 0:
            raise ConfigError(f"{self.source}: industry weights must be >= 0 with a positive total")
        if abs(total - 1.0) > 1e-9:
            object.__setattr__(self, "weights", {k: v / total for k, v in self.weights.items()})

    @classmethod
    def from_weights(cls, weights: Mapping[str, float], position_types: Mapping[str, str] | None = None, *,
                     default_position_type: str = "NEUTRAL", symbol_industry: Mapping[str, str] | None = None,
                     source: str = "code") -> IndustryAllocations:
        """From raw weights (scaled to sum 1) and views (industries not given take the default)."""
        pts = {k: str(v).upper() for k, v in (position_types or {}).items()}
        for ind, w in weights.items():
            if w is None or not float(w) >= 0:
                raise ConfigError(f"{source}: industry {ind!r}: weight must be >= 0, got {w!r}")
        return cls(weights={str(k): float(v) for k, v in weights.items()},
                   position_types={k: pts.get(k, default_position_type.upper()) for k in weights},
                   default_position_type=default_position_type.upper(),
                   symbol_industry=dict(symbol_industry or {}), source=source)

    @property
    def industries(self) -> list[str]:
        return sorted(self.weights)

    def weight(self, industry: str | None) -> float:
        return float(self.weights.get(industry or "", 0.0))

    def position_type(self, industry: str | None) -> str:
        return self.position_types.get(industry or "", self.default_position_type)

    def industry_of(self, symbol: str) -> str | None:
        return self.symbol_industry.get(symbol)

    def frame(self) -> pl.DataFrame:
        """industry_allocations_current: (industry, weight, position_type), sorted by weight then name."""
        rows = sorted(self.weights.items(), key=lambda kv: (-kv[1], kv[0]))
        return pl.DataFrame(
            {"industry": [k for k, _ in rows], "weight": [float(v) for _, v in rows],
             "position_type": [self.position_type(k) for k, _ in rows]},
            schema={"industry": pl.Utf8, "weight": pl.Float64, "position_type": pl.Utf8},
        )


def allocation_tables(allocations: IndustryAllocations, universe: pl.DataFrame | None = None) -> dict[str, pl.DataFrame]:
    """Frames for the tables ``industry_allocations_current`` (industry, weight, position_type),
    ``sector_allocations_current`` (sector, weight) and ``stock_industry_mapping`` (symbol, industry,
    sector). The mapping comes from ``universe`` (symbol, industry columns; default: the packaged
    universe), else from the allocations' own symbol mapping."""
    ind = allocations.frame()
    sec = (ind.with_columns(pl.col("industry").map_elements(sector_of, return_dtype=pl.Utf8).alias("sector"))
           .group_by("sector").agg(pl.col("weight").sum()).sort(["weight", "sector"], descending=[True, False]))
    if universe is None and not allocations.symbol_industry:
        universe = _universe()
    if universe is not None:
        pairs = universe.select("symbol", pl.col("industry").fill_null(UNCLASSIFIED))
    else:
        pairs = pl.DataFrame({"symbol": list(allocations.symbol_industry),
                              "industry": list(allocations.symbol_industry.values())},
                             schema={"symbol": pl.Utf8, "industry": pl.Utf8})
    mapping = (pairs.unique("symbol", keep="first", maintain_order=True)
               .with_columns(pl.col("industry").map_elements(sector_of, return_dtype=pl.Utf8).alias("sector"))
               .sort("symbol"))
    return {"industry_allocations_current": ind, "sector_allocations_current": sec.select("sector", "weight"),
            "stock_industry_mapping": mapping.select("symbol", "industry", "sector")}


# --------------------------------------------------------------------------------------------
# files

class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    position_type: str | None = None
    weight: float | None = Field(None, ge=0)

    @field_validator("position_type")
    @classmethod
    def _pt(cls, v: str | None) -> str | None:
        if v is None:
            return None
        s = v.strip().upper()
        if s not in POSITION_TYPES:
            raise ValueError(f"must be one of {', '.join(POSITION_TYPES)} (got {v!r})")
        return s


class _IndustryFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weighting: Literal["fno_count", "equal"] = "fno_count"
    default_position_type: str = "NEUTRAL"
    include_unlisted: bool = True
    industries: dict[str, _Entry] = {}

    @field_validator("default_position_type")
    @classmethod
    def _pt(cls, v: str) -> str:
        s = v.strip().upper()
        if s not in POSITION_TYPES:
            raise ValueError(f"must be one of {', '.join(POSITION_TYPES)} (got {v!r})")
        return s


def _universe() -> pl.DataFrame:
    from ..universe import universe_frame

    return universe_frame().select("symbol", "industry")


def _counts(universe: pl.DataFrame) -> dict[str, int]:
    g = universe.select(pl.col("industry").fill_null(UNCLASSIFIED)).group_by("industry").len()
    return {r["industry"]: int(r["len"]) for r in g.iter_rows(named=True)}


def _symbol_map(universe: pl.DataFrame) -> dict[str, str]:
    return {r["symbol"]: (r["industry"] or UNCLASSIFIED) for r in universe.select("symbol", "industry").iter_rows(named=True)}


def _build(entries: Mapping[str, tuple[float | None, str | None]], *, weighting: str, default_pt: str,
           include_unlisted: bool, universe: pl.DataFrame, source: str) -> IndustryAllocations:
    counts = _counts(universe)
    total_count = sum(counts.values()) or 1
    names: list[str] = list(entries)
    if include_unlisted:
        names += sorted(k for k in counts if k not in entries)
    notes = []
    unknown = [k for k in entries if k not in counts]
    if unknown:
        notes.append(f"industries not in the universe (no symbol maps to them): {', '.join(sorted(unknown))}")
    weights, pts = {}, {}
    for name in names:
        w, pt = entries.get(name, (None, None))
        if w is None:
            w = counts.get(name, 0) / total_count if weighting == "fno_count" else 1.0 / max(len(names), 1)
        weights[name] = float(w)
        pts[name] = pt or default_pt
    if not sum(weights.values()) > 0:
        raise ConfigError(f"{source}: the industry weights add up to 0")
    alloc = IndustryAllocations(weights=weights, position_types=pts, default_position_type=default_pt,
                                symbol_industry=_symbol_map(universe), source=source, notes=tuple(notes))
    return alloc


def load_industry_allocations(path: str | Path | None = None, universe: pl.DataFrame | None = None) -> IndustryAllocations:
    """Industry weights and views from a YAML or CSV file (default: the packaged YAML).

    ``universe`` (symbol, industry) gives the F&O counts behind ``fno_count`` weights and the
    symbol -> industry mapping (default: the packaged universe). Raises :class:`ConfigError` naming
    the file and the key or row at fault."""
    p = Path(path) if path is not None else _default_path()
    uni = universe if universe is not None else _universe()
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the industry allocations ({exc.strerror or exc})") from exc
    if p.suffix.lower() == ".csv":
        return _from_csv(text, p.name, uni)
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"{p.name}: industry allocations must be a .csv, .yaml or .yml file")
    return _from_yaml(text, p.name, uni)


def default_industry_allocations(universe: pl.DataFrame | None = None) -> IndustryAllocations:
    """The packaged ``industry_allocations.yaml`` over the universe (weights by F&O count)."""
    if universe is None:
        return _default_cached()
    return load_industry_allocations(None, universe)


@lru_cache(maxsize=1)
def _default_cached() -> IndustryAllocations:
    return load_industry_allocations(None, None)


def _default_path() -> Path:
    return Path(str(resources.files("options_v4_dagster").joinpath(DEFAULT_FILE)))


def _from_yaml(text: str, name: str, universe: pl.DataFrame) -> IndustryAllocations:
    data = parse_yaml_mapping(text, name, "keys")
    if isinstance(data.get("industries"), dict):
        data["industries"] = {str(k): ({} if v is None else v) for k, v in data["industries"].items()}
    try:
        f = _IndustryFile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, name)) from None
    entries = {k: (e.weight, e.position_type) for k, e in f.industries.items()}
    return _build(entries, weighting=f.weighting, default_pt=f.default_position_type,
                  include_unlisted=f.include_unlisted, universe=universe, source=name)


def _from_csv(text: str, name: str, universe: pl.DataFrame) -> IndustryAllocations:
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    need = ("industry", "weight", "position_type")
    missing = [c for c in need if c not in header]
    if missing:
        raise ConfigError(f"{name}: the header must have columns {', '.join(need)}; missing {', '.join(missing)}")
    entries: dict[str, tuple[float | None, str | None]] = {}
    for i, raw in enumerate(reader, start=2):  # row 1 is the header
        row = {str(k).strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        ind = row.get("industry", "")
        where = f"{name} row {i}"
        if not ind:
            raise ConfigError(f"{where}: industry is empty")
        if ind in entries:
            raise ConfigError(f"{where} (industry {ind!r}): industry listed twice")
        w_raw = row.get("weight", "")
        w: float | None = None
        if w_raw:
            try:
                w = float(w_raw)
            except ValueError:
                raise ConfigError(f"{where} (industry {ind!r}): weight {w_raw!r} is not a number") from None
            if not w >= 0 or w != w or w == float("inf"):
                raise ConfigError(f"{where} (industry {ind!r}): weight must be >= 0, got {w_raw}")
        pt = row.get("position_type", "").upper()
        if pt not in POSITION_TYPES:
            raise ConfigError(f"{where} (industry {ind!r}): position_type {row.get('position_type')!r} is not one "
                              f"of {', '.join(POSITION_TYPES)}")
        entries[ind] = (w, pt)
    if not entries:
        raise ConfigError(f"{name}: no industry rows")
    return _build(entries, weighting="fno_count", default_pt="NEUTRAL", include_unlisted=False,
                  universe=universe, source=name)

