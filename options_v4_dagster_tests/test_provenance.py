"""Provenance: which market-data source each asset's rows of a session came from, and no mixing."""

import datetime as dt

import polars as pl
import pytest

from options_v4_dagster.defs.common import record_failures, upstream_source
from options_v4_dagster.errors import MixedSources
from options_v4_dagster.market import Failure
from options_v4_dagster.store import Replace, Warehouse
from options_v4_dagster.store.provenance import sources_of

D = dt.date(2025, 7, 17)


@pytest.fixture()
def wh(tmp_path):
    w = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    yield w
    w.dispose()


def _mc(source: str) -> pl.DataFrame:
    return pl.DataFrame([{"trade_date": D, "market_state": "X", "source": source}])


def test_provenance_is_written_with_the_assets_rows(wh):
    record_failures(wh, D, "market_conditions", [Failure("*", "s", "why")],
                    Replace.partition("market_conditions", D, _mc("simulated")), source="simulated")
    assert sources_of(wh, D) == {"market_conditions": "simulated"}
    # re-materializing from another source replaces the row, it never adds a second one
    record_failures(wh, D, "market_conditions", [], Replace.partition("market_conditions", D, _mc("nse_files")),
                    source="nse_files")
    assert sources_of(wh, D) == {"market_conditions": "nse_files"}
    assert wh.count("session_provenance", D) == 1


def test_a_bad_frame_writes_no_provenance(wh):
    bad = pl.DataFrame([{"trade_date": D, "market_state": "X"}])  # source is NOT NULL
    with pytest.raises(ValueError, match="source"):
        record_failures(wh, D, "market_conditions", [], Replace.partition("market_conditions", D, bad),
                        source="simulated")
    assert sources_of(wh, D) == {}


def test_upstream_source_is_the_one_source_or_fails_naming_the_mix(wh):
    assert upstream_source(wh, D, "option_greeks", ["option_chains"]) == "unknown"
    for asset, src in (("option_chains", "simulated"), ("underlying_bars", "simulated")):
        record_failures(wh, D, asset, [], source=src)
    assert upstream_source(wh, D, "technical_signals", ["option_chains", "underlying_bars"]) == "simulated"
    record_failures(wh, D, "underlying_bars", [], source="nse_files")
    with pytest.raises(MixedSources, match=r"option_chains=simulated, underlying_bars=nse_files"):
        upstream_source(wh, D, "technical_signals", ["option_chains", "underlying_bars"])
    # another session's provenance is not this session's
    assert upstream_source(wh, D + dt.timedelta(days=1), "x", ["option_chains", "underlying_bars"]) == "unknown"
