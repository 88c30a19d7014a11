"""Resources: the warehouse and the market-data provider, configured from the environment."""

from __future__ import annotations

import os
import threading

import dagster as dg

from options_v4_dagster import config
from options_v4_dagster.market import MarketDataProvider, get_provider
from options_v4_dagster.store import Warehouse

_lock = threading.Lock()
_warehouses: dict[str, Warehouse] = {}
_providers: dict[tuple, MarketDataProvider] = {}


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse. ``database_url`` empty: ``DATABASE_URL`` or the SQLite file in ``.data/``."""

    database_url: str = ""

    def get(self) -> Warehouse:
        url = self.database_url or config.database_url()
        with _lock:
            if url not in _warehouses:
                _warehouses[url] = Warehouse(url)
            return _warehouses[url]


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from: simulated (default), nse_files, dhan or yfinance.

    ``source`` empty: ``OPTIONS_V4_MARKET_DATA``. Dhan credentials come only from the
    environment (DHAN_CLIENT_ID, DHAN_ACCESS_TOKEN) and are never logged.
    """

    source: str = ""
    nse_data_dir: str = ""
    horizon_days: int = 90

    def resolved_source(self) -> str:
        return config.market_source(self.source or None)

    def get(self) -> MarketDataProvider:
        src = self.resolved_source()
        kwargs = {}
        if src == "nse_files":
            kwargs["data_dir"] = str(config.nse_data_dir(self.nse_data_dir or None))
        key = (src, tuple(sorted(kwargs.items())), os.environ.get("DHAN_API_BASE_URL", ""))
        with _lock:
            if key not in _providers:
                _providers[key] = get_provider(src, **kwargs)
            return _providers[key]


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"warehouse": WarehouseResource(), "market_data": MarketDataResource()})
