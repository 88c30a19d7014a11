"""Resources: the warehouse and the market-data provider.

Lifecycle: Dagster gives every run its own copy of a resource; :meth:`get` builds the warehouse
(SQLAlchemy engine) or provider on the run's first use and :meth:`teardown_after_execution` disposes
of it when the run ends. Built on first use rather than in ``setup_for_execution`` so that a run
that does not need one never builds it (``portfolio_allocation`` alone needs no provider) and a
misconfiguration (no Dhan token) fails the step that needs it with its own message.

Secrets (``DHAN_CLIENT_ID``, ``DHAN_ACCESS_TOKEN``, ``SUPABASE_DB_URL``, ``SUPABASE_DB_PASSWORD``) are
fields set with ``dg.EnvVar`` in :func:`resources`: the UI shows the variable's name, never its value,
and the values are not in run config or logs. They are passed to the provider factory and to
:func:`config.database_url` explicitly; only the CLI's direct paths read them from ``os.environ``.
"""

from __future__ import annotations

import os
import threading

import dagster as dg
from pydantic import Field, PrivateAttr

from options_v4_dagster import config
from options_v4_dagster.defs.common import MarketSourceChoice
from options_v4_dagster.market import MarketDataProvider, get_provider
from options_v4_dagster.store import Warehouse, WarehouseLike


def _secret(description: str):
    """An optional string field the Dagster UI masks (``is_secret``) and ``repr`` leaves out."""
    return Field(default=None, description=description, repr=False, json_schema_extra={"dagster__is_secret": True})


def env_secret(var: str) -> dg.EnvVar | None:
    """``dg.EnvVar(var)`` when ``var`` is set where the definitions load, else ``None``.

    Dagster resolves an ``EnvVar`` when a run starts and fails the run if the variable is unset, even
    for an optional field (``EnvVar`` has no default: dagster-io/dagster#16232). Leaving an unset
    secret out keeps the default setup (simulated source, SQLite) running without any of them; a
    source that needs one then fails with a :class:`ConfigError` naming the variable."""
    return dg.EnvVar(var) if os.environ.get(var, "").strip() else None


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse. ``database_url`` empty: ``OPTIONS_V4_WAREHOUSE`` decides (``sqlalchemy``:
    ``DATABASE_URL`` or the SQLite file in ``.data/``; ``supabase``: the Supabase project's PostgreSQL
    from ``SUPABASE_DB_URL`` or ``SUPABASE_URL`` + ``SUPABASE_DB_PASSWORD``)."""

    database_url: str = ""
    supabase_db_url: str | None = _secret("SUPABASE_DB_URL: the Supabase project's Postgres connection string")
    supabase_db_password: str | None = _secret("SUPABASE_DB_PASSWORD: the Supabase project's database password")

    _warehouse: Warehouse | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def resolved_url(self) -> str:
        if self.database_url:
            return self.database_url
        return config.database_url(supabase_db_url=self.supabase_db_url or "",
                                   supabase_db_password=self.supabase_db_password or "")

    def get(self) -> WarehouseLike:
        with self._lock:
            if self._warehouse is None:
                self._warehouse = Warehouse(self.resolved_url())
            return self._warehouse

    def teardown_after_execution(self, context: dg.InitResourceContext | None = None) -> None:
        with self._lock:
            if self._warehouse is not None:
                self._warehouse.dispose()
                self._warehouse = None


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from: simulated (default), nse_files, dhan or yfinance.

    ``source`` unset: ``OPTIONS_V4_MARKET_DATA``. Dhan's credentials are the ``dhan_*`` fields
    (``dg.EnvVar`` in the definitions), passed to the provider and never logged.
    """

    source: MarketSourceChoice | None = None
    nse_data_dir: str = ""
    horizon_days: int = 90
    dhan_client_id: str | None = _secret("DHAN_CLIENT_ID")
    dhan_access_token: str | None = _secret("DHAN_ACCESS_TOKEN")

    _provider: MarketDataProvider | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def resolved_source(self) -> str:
        return config.market_source(str(self.source) if self.source else None)

    def get(self) -> MarketDataProvider:
        with self._lock:
            if self._provider is None:
                src = self.resolved_source()
                kwargs: dict = {}
                if src == "nse_files":
                    kwargs["data_dir"] = str(config.nse_data_dir(self.nse_data_dir or None))
                if src == "dhan":
                    kwargs.update(client_id=self.dhan_client_id or "", access_token=self.dhan_access_token or "")
                self._provider = get_provider(src, **kwargs)
            return self._provider

    def teardown_after_execution(self, context: dg.InitResourceContext | None = None) -> None:
        with self._lock:
            if self._provider is not None:
                self._provider.close()
                self._provider = None


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={
        "warehouse": WarehouseResource(supabase_db_url=env_secret("SUPABASE_DB_URL"),
                                       supabase_db_password=env_secret("SUPABASE_DB_PASSWORD")),
        "market_data": MarketDataResource(dhan_client_id=env_secret("DHAN_CLIENT_ID"),
                                          dhan_access_token=env_secret("DHAN_ACCESS_TOKEN")),
    })
