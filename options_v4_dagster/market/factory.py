"""Choose a market-data provider by name (``OPTIONS_V4_MARKET_DATA`` or an explicit argument)."""

from __future__ import annotations

from typing import Any

from .. import config
from .base import MarketDataProvider


def get_provider(name: str | None = None, *, client_id: str | None = None, access_token: str | None = None,
                 **kwargs: Any) -> MarketDataProvider:
    """The provider of source ``name`` (default ``OPTIONS_V4_MARKET_DATA``). ``client_id`` /
    ``access_token``: Dhan's credentials as the caller has them (the Dagster resource, from ``dg.EnvVar``);
    both ``None`` reads ``DHAN_CLIENT_ID`` / ``DHAN_ACCESS_TOKEN`` from the environment (the CLI)."""
    source = config.market_source(name)
    if source == "simulated":
        from .simulated import SimulatedMarket

        return SimulatedMarket(**kwargs)
    if source == "nse_files":
        from .nse_files import NseFilesProvider

        return NseFilesProvider(kwargs.pop("data_dir", None) or config.nse_data_dir(), **kwargs)
    if source == "dhan":
        from .dhan import DhanProvider

        if client_id is None and access_token is None:
            return DhanProvider.from_env(**kwargs)
        return DhanProvider.from_credentials(client_id or "", access_token or "", **kwargs)
    if source == "yfinance":
        from .yfinance_provider import YFinanceProvider

        return YFinanceProvider(**kwargs)
    raise AssertionError(source)  # config.market_source already validated the name
