"""Choose a market-data provider by name (``OPTIONS_V4_MARKET_DATA`` or an explicit argument)."""

from __future__ import annotations

from typing import Any

from .. import config
from .base import MarketDataProvider


def get_provider(name: str | None = None, **kwargs: Any) -> MarketDataProvider:
    source = config.market_source(name)
    if source == "simulated":
        from .simulated import SimulatedMarket

        return SimulatedMarket(**kwargs)
    if source == "nse_files":
        from .nse_files import NseFilesProvider

        return NseFilesProvider(kwargs.pop("data_dir", None) or config.nse_data_dir(), **kwargs)
    if source == "dhan":
        from .dhan import DhanProvider

        return DhanProvider.from_env(**kwargs)
    if source == "yfinance":
        from .yfinance_provider import YFinanceProvider

        return YFinanceProvider(**kwargs)
    raise AssertionError(source)  # config.market_source already validated the name
