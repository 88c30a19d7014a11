"""Market data adapters: simulated, nse_files, dhan, yfinance (see :func:`get_provider`)."""

from .base import (
    BARS_SCHEMA,
    CHAIN_SCHEMA,
    Failure,
    MarketDataProvider,
    empty_bars,
    empty_chain,
    normalize_bars,
    normalize_chain,
)
from .factory import get_provider

__all__ = [
    "BARS_SCHEMA", "CHAIN_SCHEMA", "Failure", "MarketDataProvider", "empty_bars", "empty_chain",
    "get_provider", "normalize_bars", "normalize_chain",
]
