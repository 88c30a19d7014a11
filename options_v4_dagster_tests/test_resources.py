"""Resources: secrets through ``dg.EnvVar``, one warehouse/provider per run disposed at its end, typed run config."""

from __future__ import annotations

import dagster as dg
import pytest

from options_v4_dagster.defs import resources as res_module
from options_v4_dagster.defs.resources import MarketDataResource, WarehouseResource
from options_v4_dagster.errors import ConfigError
from options_v4_dagster.market.dhan import DhanProvider
from options_v4_dagster.store import Warehouse

TOKEN = "tok-en-never-shown"


def _resources(monkeypatch, **env) -> dict:
    from options_v4_dagster.definitions import build_defs

    for var in ("DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return build_defs().resources


def test_unset_secrets_leave_the_definitions_loadable_and_the_default_source_running(monkeypatch):
    r = _resources(monkeypatch)
    assert r["market_data"].dhan_client_id is None and r["warehouse"].supabase_db_password is None
    md = r["market_data"]
    dhan = MarketDataResource(source="dhan", dhan_client_id=md.dhan_client_id, dhan_access_token=md.dhan_access_token)
    with pytest.raises(ConfigError, match="DHAN_CLIENT_ID is not set"):  # only a dhan source needs them
        dhan.get()


def test_set_secrets_are_env_vars_in_the_definitions_never_values(monkeypatch):
    r = _resources(monkeypatch, DHAN_CLIENT_ID="1000000001", DHAN_ACCESS_TOKEN=TOKEN, SUPABASE_DB_PASSWORD=TOKEN)
    md, wh = r["market_data"], r["warehouse"]
    assert isinstance(md.dhan_access_token, dg.EnvVar) and md.dhan_access_token.env_var_name == "DHAN_ACCESS_TOKEN"
    assert isinstance(wh.supabase_db_password, dg.EnvVar) and wh.supabase_db_password.env_var_name == \
        "SUPABASE_DB_PASSWORD"
    assert TOKEN not in repr(md) + repr(wh) + repr(MarketDataResource(dhan_access_token=TOKEN))


def test_dhan_credentials_are_passed_in_not_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("DHAN_CLIENT_ID", "from-env")
    monkeypatch.setenv("DHAN_ACCESS_TOKEN", "from-env")
    p = MarketDataResource(source="dhan", dhan_client_id="1000000001", dhan_access_token=TOKEN).get()
    assert isinstance(p, DhanProvider) and p.client_id == "1000000001" and TOKEN not in repr(p)
    with pytest.raises(ConfigError, match="DHAN_ACCESS_TOKEN is not set"):
        MarketDataResource(source="dhan", dhan_client_id="1000000001").get()
    assert DhanProvider.from_env().client_id == "from-env"  # the CLI's path keeps reading the environment


def test_one_warehouse_and_provider_per_run_disposed_at_its_end(tmp_path, monkeypatch):
    made, closed = [], []

    class CountingWarehouse(Warehouse):
        def __init__(self, url, **kw):
            super().__init__(url, **kw)
            made.append(self)

        def dispose(self):
            closed.append(self)
            super().dispose()

    class Provider:
        def close(self):
            closed.append(self)

    monkeypatch.setattr(res_module, "Warehouse", CountingWarehouse)
    monkeypatch.setattr(res_module, "get_provider", lambda src, **kw: made.append(Provider()) or made[-1])
    seen = []

    @dg.asset
    def first(warehouse: WarehouseResource, market_data: MarketDataResource):
        seen.append((warehouse.get(), market_data.get()))

    @dg.asset(deps=[first])
    def second(warehouse: WarehouseResource, market_data: MarketDataResource):
        seen.append((warehouse.get(), market_data.get()))
        assert not any(x is o for x in closed for o in seen[-1])  # still open during the run

    resources = {"warehouse": WarehouseResource(database_url=f"sqlite:///{tmp_path / 'w.db'}"),
                 "market_data": MarketDataResource()}
    for _ in range(2):
        assert dg.materialize([first, second], resources=resources).success
    assert len(made) == 4 and seen[0] == seen[1] and seen[2] == seen[3] and seen[0] != seen[2]
    assert sorted(map(id, closed)) == sorted(map(id, made))  # each disposed once, at the end of its run


def test_run_config_takes_only_the_closed_vocabularies():
    from options_v4_dagster.definitions import build_defs

    job = build_defs().resolve_job_def("daily_pipeline")

    def valid(cfg: dict) -> bool:
        try:
            dg.validate_run_config(job, cfg)
            return True
        except dg.DagsterInvalidConfigError:
            return False

    def alloc(risk):
        return {"ops": {"portfolio_allocation": {"config": {"risk_tolerance": risk}}}}

    assert valid(alloc(None)) and valid(alloc("aggressive"))
    assert not valid(alloc("")) and not valid(alloc("reckless"))
    assert valid({"ops": {"strategy_candidates": {"config": {"risk_tolerance": "conservative"}}}})
    assert not valid({"ops": {"strategy_candidates": {"config": {"risk_tolerance": "yolo"}}}})
    assert valid({"resources": {"market_data": {"config": {"source": "nse_files"}}}})
    assert not valid({"resources": {"market_data": {"config": {"source": "bloomberg"}}}})
