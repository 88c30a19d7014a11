"""What NSE and the broker enforce on an F&O order: ticks, whole lots, freeze quantities, the limit
price protection band, and market orders turned into protected limits. Freeze limits are data
(``config/freeze_limits.yaml``, :func:`load_freeze_limits`).

Choices (each conservative, so an order that passes here is not rejected for these reasons):

* **Tick rounding** (:func:`round_to_tick`): a BUY price rounds *down*, a SELL price *up* — a
  rounded limit is never more aggressive than the price asked for (never pays more, never
  accepts less), and a band edge rounded this way stays inside the band. Without a side: the
  nearest tick. The result is always on the tick.
* **Freeze quantity**: NSE's circulars say an order with quantity *above* the freeze limit is
  frozen and rejected (so the freeze quantity itself would pass). We take the stricter reading,
  ``quantity >= freeze_quantity`` is rejected, so every slice is *strictly below* the freeze
  quantity (NIFTY lot 75, freeze 1,800: at most 23 lots per order, not 24).
* **Protection band** (NSE limit price protection): reference premium up to INR 50: +-20 INR;
  above: +-40%. A BUY above the upper edge or a SELL below the lower edge is rejected (a BUY
  below / SELL above is merely not marketable). The lower edge is at least one tick.

Rejections raise :class:`~options_v4_dagster.trading.broker.OrderRejected`: ``DH-905`` (input:
lots, ticks, price) or ``DH-906`` (order: freeze, band).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, field_validator

from ..universe import is_index
from ..yaml_config import PackagedYaml, StrictModel, read_yaml_mapping, validate_model
from .broker import OrderRejected
from .orders import Side

__all__ = [
    "BAND_ABSOLUTE", "BAND_ABSOLUTE_UP_TO", "BAND_FRACTION", "INPUT_ERROR", "ORDER_ERROR", "TICK_SIZE", "FreezeLimits",
    "InstrumentSpec", "check_band", "check_freeze", "check_price", "check_quantity", "default_freeze_limits_path",
    "is_on_tick", "load_freeze_limits", "market_limit_price", "max_order_quantity", "protection_band",
    "round_to_tick", "slices",
]

TICK_SIZE = 0.05
BAND_ABSOLUTE_UP_TO = 50.0  # premium up to which the band is absolute
BAND_ABSOLUTE = 20.0  # INR either side
BAND_FRACTION = 0.40  # above BAND_ABSOLUTE_UP_TO
INPUT_ERROR = "DH-905"
ORDER_ERROR = "DH-906"
_EPS = 1e-9
DEFAULT_FILE = "config/freeze_limits.yaml"


@dataclass(frozen=True)
class InstrumentSpec:
    """One tradable contract as the exchange defines it (from the instruments table)."""

    security_id: str
    symbol: str
    expiry: dt.date
    strike: float
    option_type: str  # CE / PE (FUT / EQ for a future / an equity)
    lot_size: int
    tick_size: float = TICK_SIZE
    freeze_quantity: int | None = None  # shares; None = no freeze limit known

    @property
    def max_order_quantity(self) -> int | None:
        return None if self.freeze_quantity is None else max_order_quantity(self.lot_size, self.freeze_quantity)


def _decimals(tick: float) -> int:
    return max(0, -math.floor(math.log10(tick)) + 2)


def is_on_tick(price: float, tick: float = TICK_SIZE) -> bool:
    n = price / tick
    return abs(n - round(n)) < 1e-6


def round_to_tick(price: float, tick: float = TICK_SIZE, side: Side | str | None = None) -> float:
    """``price`` on the tick grid: BUY down, SELL up, no side the nearest (see the module docstring)."""
    if tick <= 0:
        raise ValueError(f"tick size must be positive, got {tick}")
    n = price / tick
    if side is None:
        k = math.floor(n + 0.5)
    elif Side(side) is Side.BUY:
        k = math.floor(n + 1e-6)
    else:
        k = math.ceil(n - 1e-6)
    return round(k * tick, _decimals(tick))


def check_price(price: float, tick: float = TICK_SIZE) -> float:
    """``price`` if positive and on the tick, else :class:`OrderRejected` (DH-905)."""
    if not (price > 0 and math.isfinite(price)):
        raise OrderRejected(f"price {price} must be a positive number", code=INPUT_ERROR)
    if not is_on_tick(price, tick):
        raise OrderRejected(f"price {price} is not a multiple of the tick size {tick}", code=INPUT_ERROR)
    return round(price, _decimals(tick))


def check_quantity(quantity: int, lot_size: int) -> int:
    """The number of lots in ``quantity`` (shares); :class:`OrderRejected` (DH-905) unless a
    positive whole number of lots."""
    if lot_size <= 0:
        raise OrderRejected(f"lot size {lot_size} must be positive", code=INPUT_ERROR)
    if isinstance(quantity, bool) or int(quantity) != quantity or quantity <= 0:
        raise OrderRejected(f"quantity {quantity} must be a positive whole number of shares", code=INPUT_ERROR)
    if quantity % lot_size:
        raise OrderRejected(f"quantity {quantity} is not a multiple of the lot size {lot_size}", code=INPUT_ERROR)
    return int(quantity) // lot_size


def max_order_quantity(lot_size: int, freeze_quantity: int) -> int:
    """The largest whole-lot quantity strictly below ``freeze_quantity`` (ValueError if none)."""
    lots = (freeze_quantity - 1) // lot_size
    if lots < 1:
        raise ValueError(f"freeze quantity {freeze_quantity} leaves no whole lot of {lot_size} strictly below it")
    return lots * lot_size


def check_freeze(quantity: int, freeze_quantity: int | None) -> None:
    """:class:`OrderRejected` (DH-906) when ``quantity >= freeze_quantity`` (the conservative reading)."""
    if freeze_quantity is not None and quantity >= freeze_quantity:
        raise OrderRejected(f"quantity {quantity} is at or above the freeze quantity {freeze_quantity}: "
                            "slice the order", code=ORDER_ERROR)


def slices(quantity: int, lot_size: int, freeze_quantity: int | None) -> list[int]:
    """``quantity`` split into whole-lot orders each strictly below ``freeze_quantity``: full slices
    of :func:`max_order_quantity` first, then the remainder (fewest orders). Raises
    :class:`OrderRejected` for a quantity that is not a positive whole number of lots."""
    check_quantity(quantity, lot_size)
    if freeze_quantity is None or quantity < freeze_quantity:
        return [int(quantity)]
    top = max_order_quantity(lot_size, freeze_quantity)
    full, rest = divmod(int(quantity), top)
    return [top] * full + ([rest] if rest else [])


def protection_band(reference_price: float, tick: float = TICK_SIZE) -> tuple[float, float]:
    """(low, high) of NSE's limit price protection around ``reference_price`` (unrounded; the low
    edge is never below one ``tick``)."""
    if not (reference_price > 0 and math.isfinite(reference_price)):
        raise ValueError(f"reference price {reference_price} must be positive")
    if reference_price <= BAND_ABSOLUTE_UP_TO:
        low, high = reference_price - BAND_ABSOLUTE, reference_price + BAND_ABSOLUTE
    else:
        low, high = reference_price * (1 - BAND_FRACTION), reference_price * (1 + BAND_FRACTION)
    return max(low, tick), high


def check_band(side: Side | str, price: float, reference: float | None, tick: float = TICK_SIZE) -> None:
    """:class:`OrderRejected` (DH-906) for a BUY above or a SELL below the protection band around
    ``reference`` (contract tick ``tick``); nothing to check without a reference."""
    if reference is None:
        return
    low, high = protection_band(reference, tick)
    s = Side(side)
    if s is Side.BUY and price > high + _EPS:
        raise OrderRejected(f"BUY limit {price:.2f} is above the price protection band "
                            f"{low:.2f}-{high:.2f} (reference {reference:.2f})", code=ORDER_ERROR)
    if s is Side.SELL and price < low - _EPS:
        raise OrderRejected(f"SELL limit {price:.2f} is below the price protection band "
                            f"{low:.2f}-{high:.2f} (reference {reference:.2f})", code=ORDER_ERROR)


def market_limit_price(side: Side | str, reference: float | None, tick: float = TICK_SIZE) -> float:
    """The limit a market order becomes (market price protection, as Dhan does since 2026): the band
    edge on the order's side, rounded inwards to the tick. :class:`OrderRejected` without a reference."""
    if reference is None:
        raise OrderRejected("a market order needs a reference price (no last price or quote)", code=ORDER_ERROR)
    low, high = protection_band(reference, tick)
    s = Side(side)
    return round_to_tick(high, tick, Side.BUY) if s is Side.BUY else round_to_tick(low, tick, Side.SELL)


# -- freeze limits as data ------------------------------------------------------------------------


class _StockDefault(StrictModel):
    lots: int = Field(20, ge=2)


class FreezeLimitsFile(StrictModel):
    indices: dict[str, int] = Field(default_factory=dict)
    stocks: dict[str, int] = Field(default_factory=dict)
    stock_default: _StockDefault = _StockDefault()

    @field_validator("indices", "stocks")
    @classmethod
    def _positive(cls, v: dict[str, int]) -> dict[str, int]:
        bad = [k for k, q in v.items() if q <= 0]
        if bad:
            raise ValueError(f"freeze quantities must be positive ({', '.join(bad)})")
        return {k.upper(): q for k, q in v.items()}


class FreezeLimits:
    """Freeze quantity (shares) per underlying: the index table, a stock's own entry, else the
    stock default (``stock_default.lots`` x the lot size)."""

    def __init__(self, parsed: FreezeLimitsFile, path: Path | str = "freeze_limits.yaml") -> None:
        self.parsed = parsed
        self.path = Path(path)

    def freeze_quantity(self, symbol: str, lot_size: int) -> int:
        s = symbol.upper()
        if s in self.parsed.indices:
            return self.parsed.indices[s]
        if s in self.parsed.stocks:
            return self.parsed.stocks[s]
        if is_index(s):
            raise OrderRejected(f"no freeze quantity configured for index {s} in {self.path.name}", code=ORDER_ERROR)
        return self.parsed.stock_default.lots * lot_size

    def slices(self, symbol: str, quantity: int, lot_size: int) -> list[int]:
        return slices(quantity, lot_size, self.freeze_quantity(symbol, lot_size))


def _parse(p: Path) -> FreezeLimits:
    data = read_yaml_mapping(p, "the freeze limits", "(indices, stocks, stock_default)")
    return FreezeLimits(validate_model(FreezeLimitsFile, data, p.name), p)


_FILE = PackagedYaml(DEFAULT_FILE, _parse)


def default_freeze_limits_path() -> Path:
    return _FILE.default_path


def load_freeze_limits(path: str | Path | None = None) -> FreezeLimits:
    """Read and validate a freeze-limits YAML (default: the packaged one); ConfigError naming the key."""
    return _FILE.load(path)
