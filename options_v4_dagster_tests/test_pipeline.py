"""End-to-end: the daily job through Dagster (real instance, real warehouse), as `options-v4 run` does it."""

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.cli import run_pipeline
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.defs.strategies.assets import technical_signals
from options_v4_dagster.store import Warehouse

ROOT = Path(__file__).resolve().parents[1]
D = dt.date(2025, 7, 17)
TABLES = ("fno_universe", "option_chain_data", "instruments", "market_conditions", "option_greeks", "historical_iv_summary",
          "technical_signals", "strategies", "strategy_details", "strategy_parameters", "strategy_exit_levels",
          "portfolio_allocation", "portfolio_allocation_summary")

pytestmark = pytest.mark.slow


def _counts(url: str, session: dt.date) -> dict[str, int]:
    wh = Warehouse(url)
    out = {t: wh.count(t, session) for t in TABLES}
    out["underlying_bars"] = wh.count("underlying_bars")
    out["nifty_historical_data"] = wh.count("nifty_historical_data")
    out["pipeline_failures"] = wh.count("pipeline_failures", session)
    wh.dispose()
    return out


@pytest.fixture()
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_simulated_day_end_to_end_and_idempotent(dagster_home, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    result, instance = run_pipeline(D, "simulated")
    assert result.success
    first = _counts(url, D)
    wh = Warehouse(url)
    symbols = wh.read("select count(distinct symbol) n from option_chain_data where trade_date = :d", {"d": D})
    assert symbols.item() >= 200
    # market data and volatility are complete; strategies that cannot be built are listed with reasons
    fails = wh.read_partition("pipeline_failures", D)
    assert fails.filter(~pl.col("asset").is_in(["strategy_candidates"])).height == 0, fails
    assert fails.filter(pl.col("reason").cast(pl.Utf8).str.len_chars() < 10).height == 0
    assert first["pipeline_failures"] <= 10
    # every underlying with a chain gets strategy candidates, each with legs, metrics and exit levels
    strat = wh.read_partition("strategies", D)
    assert strat.get_column("symbol").n_unique() == symbols.item()
    assert strat.filter(pl.col("rank") == 1).height == symbols.item()
    ids = set(strat.get_column("strategy_id"))
    for t in ("strategy_details", "strategy_parameters", "strategy_exit_levels"):
        assert set(wh.read_partition(t, D).get_column("strategy_id")) == ids, t
    mc = wh.read_partition("market_conditions", D).row(0, named=True)
    assert mc["vix_band"] in ("VERY_LOW", "LOW", "NORMAL", "HIGH", "VERY_HIGH")
    assert mc["pcr_sentiment"] in ("BULLISH", "NEUTRAL", "BEARISH") and mc["nifty_trend"] is not None
    # the run and its materializations are in the instance (what the UI shows)
    assert instance.get_run_by_id(result.run_id).tags["dagster/partition"] == "2025-07-17"
    mats = {e.asset_key.to_user_string() for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert {"universe", "option_chains", "instruments", "underlying_bars", "market_conditions", "option_greeks",
            "iv_history", "iv_percentiles", "technical_signals", "strategy_candidates", "portfolio_allocation"} <= mats
    checks = {e.event_specific_data.check_name: e.event_specific_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {"chain_sanity": True, "chains_fresh": True, "legs_in_chain": True, "bounded_loss_unless_flagged": True,
                      "candidate_invariants": True, "allocation_invariants": True,
                      "within_limits": True, "iv_coverage": True, "atm_iv_coverage": True, "signal_coverage": True}
    # payoff charts of the best candidates, linked from strategy_candidates' metadata, open offline
    mat = next(e.event_specific_data.materialization for e in result.all_events
               if e.event_type_value == "ASSET_MATERIALIZATION"
               and e.asset_key.to_user_string() == "strategy_candidates")
    assert len(re.findall(r"!\[[^\]]*\]\(data:image/png;base64,", mat.metadata["payoff_charts"].value)) == 5
    links = mat.metadata["payoff_charts_html"].value.splitlines()
    assert len(links) == 5
    for link in links:
        html = Path(link).read_text()
        assert "BE " in html and "max loss" in html and 'src="plotly.min.js"' in html
        assert (Path(link).parent / "plotly.min.js").exists()
    # re-running leaves the same row counts
    result2, _ = run_pipeline(D, "simulated")
    assert result2.success
    assert _counts(url, D) == first
    # provenance: every asset's rows of the session join to its market-data source
    prov = wh.read_partition("session_provenance", D)
    assert dict(prov.select("asset", "source").iter_rows()) == {
        a: "simulated" for a in ("universe", "option_chains", "instruments", "underlying_bars", "market_conditions",
                                 "option_greeks", "iv_history", "iv_percentiles", "technical_signals",
                                 "strategy_candidates", "portfolio_allocation")}
    # inputs from two sources (bars replayed from files, chains still simulated) fail the step, naming both
    with wh.engine.begin() as conn:
        conn.execute(sa.text("update session_provenance set source = 'nse_files' "
                             "where trade_date = :d and asset = 'underlying_bars'"), {"d": D})
    before = wh.read_partition("technical_signals", D).height
    res = dg.materialize([technical_signals], partition_key=D.isoformat(), raise_on_error=False,
                         resources={"warehouse": WarehouseResource(database_url=url)})
    assert not res.success
    failure = next(e for e in res.all_events if e.event_type_value == "STEP_FAILURE")
    msg = str(failure.event_specific_data.error)
    assert "MixedSources" in msg and "underlying_bars=nse_files" in msg and "option_chains=simulated" in msg
    assert wh.read_partition("technical_signals", D).height == before  # the stored rows stay
    wh.dispose()


@pytest.mark.postgres
def test_postgres_warehouse_gets_the_same_rows(dagster_home, tmp_path, monkeypatch, pg_url):
    sqlite_url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    assert run_pipeline(D, "simulated")[0].success
    monkeypatch.setenv("DATABASE_URL", pg_url)
    assert run_pipeline(D, "simulated")[0].success
    assert _counts(pg_url, D) == _counts(sqlite_url, D)
    # same contracts, same prices
    q = "select symbol, expiry, strike, option_type, bid, ask, oi from option_chain_data order by 1, 2, 3, 4"
    a, b = Warehouse(sqlite_url).read(q), Warehouse(pg_url).read(q)
    assert a.height == b.height and a.equals(b)


@pytest.mark.postgres
def test_dagster_postgres_instance_from_deploy_postgres(tmp_path, monkeypatch, pg_url):
    """DAGSTER_HOME with deploy/postgres/dagster.yaml: runs and events go to PostgreSQL."""
    import shutil

    import sqlalchemy as sa

    u = sa.engine.make_url(pg_url)
    (tmp_path / "dh").mkdir()
    shutil.copy(ROOT / "deploy" / "postgres" / "dagster.yaml", tmp_path / "dh" / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    for k, v in {"USERNAME": u.username, "PASSWORD": u.password or "", "HOST": u.host, "DB": u.database,
                 "PORT": str(u.port or 5432)}.items():
        monkeypatch.setenv(f"DAGSTER_PG_{k}", v)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    result, instance = run_pipeline(D, "simulated")
    assert result.success
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    eng = sa.create_engine(pg_url)
    with eng.connect() as c:
        n = c.exec_driver_sql("select count(*) from runs where run_id = %s", (result.run_id,)).scalar()
    eng.dispose()
    assert n == 1
    instance.dispose()


def test_cli_refuses_a_holiday_with_a_clear_message(capsys):
    assert cli_main(["run", "--date", "2025-10-21"]) == 2
    out = capsys.readouterr().err  # one line on stderr (issue 9 item 10)
    assert "2025-10-21" in out and "not an NSE trading session" in out and "2025-10-20" in out


def test_cli_entry_point_is_installed():
    exe = Path(sys.executable).parent / "options-v4"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=os.environ, timeout=120)
    assert out.returncode == 0 and "run" in out.stdout


@pytest.mark.nse_data
def test_nse_files_2025_07_17_stores_the_real_snapshots(dagster_home, tmp_path, monkeypatch, nse_data_dir):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    result, _ = run_pipeline(D, "nse_files", str(nse_data_dir))
    assert result.success
    wh = Warehouse(url)
    spots = wh.read("select symbol, min(underlying_price) lo, max(underlying_price) hi, count(*) n "
                    "from option_chain_data where trade_date = :d group by symbol", {"d": D})
    by = {r["symbol"]: r for r in spots.iter_rows(named=True)}
    assert set(by) == {"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "RELIANCE", "INFY", "TCS", "HDFCBANK",
                       "SBIN", "ICICIBANK"}
    assert by["NIFTY"]["lo"] == by["NIFTY"]["hi"] == 25111.45
    assert by["RELIANCE"]["lo"] == 1478.7
    mc = wh.read_partition("market_conditions", D).row(0, named=True)
    assert mc["nifty_close"] == pytest.approx(25111.45)  # from NSE's NIFTY export of that day
    # every underlying of the real snapshots gets ranked strategy candidates
    strat = wh.read_partition("strategies", D)
    assert set(strat.filter(pl.col("rank") == 1).get_column("symbol")) == set(by)
    wh.dispose()


@pytest.mark.nse_data
def test_nse_files_2025_09_11_stores_every_udiff_underlying_with_nse_lots(dagster_home, tmp_path, monkeypatch,
                                                                          nse_data_dir):
    import csv
    import io
    import zipfile

    session = dt.date(2025, 9, 11)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert run_pipeline(session, "nse_files", str(nse_data_dir))[0].success
    z = zipfile.ZipFile(nse_data_dir / "bhavcopy" / "BhavCopy_NSE_FO_0_0_0_20250911_F_0000.csv.zip")
    rows = list(csv.DictReader(io.TextIOWrapper(z.open(z.namelist()[0]), encoding="utf-8")))
    nearest: dict[str, tuple[str, int]] = {}
    for r in rows:
        if r["FinInstrmTp"] in ("IDO", "STO"):
            cur = nearest.get(r["TckrSymb"])
            if cur is None or r["XpryDt"] < cur[0]:
                nearest[r["TckrSymb"]] = (r["XpryDt"], int(r["NewBrdLotQty"]))
    wh = Warehouse(url)
    stored = wh.read("select symbol, expiry, lot_size from option_chain_data where trade_date = :d", {"d": session})
    lots = {r["symbol"]: r["lot_size"] for r in
            stored.sort("expiry").unique("symbol", keep="first").iter_rows(named=True)}
    assert set(lots) == set(nearest), set(nearest) ^ set(lots)
    assert {s: lots[s] for s in nearest} == {s: v[1] for s, v in nearest.items()}
    assert (lots["NIFTY"], lots["BANKNIFTY"], lots["RELIANCE"], lots["HDFCBANK"]) == (75, 35, 500, 1100)
    failures = wh.read("select symbol, kind, reason from pipeline_failures where trade_date = :d "
                       "and asset = 'option_chains'", {"d": session})
    assert failures.height == 0, failures
    wh.dispose()


def test_cli_backfill_then_iv_show_writes_table_and_chart(dagster_home, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    # 2025-10-18/19 are a weekend and 10-21/22 holidays: two sessions in the range
    assert cli_main(["backfill", "--start", "2025-10-17", "--end", "2025-10-22", "--job", "iv_collection"]) == 0
    out = capsys.readouterr().out
    assert "2 sessions 2025-10-17 .. 2025-10-20" in out and "failed: none" in out
    chart = tmp_path / "iv_nifty.html"
    assert cli_main(["iv", "show", "nifty", "--days", "5", "--out", str(chart)]) == 0
    out = capsys.readouterr().out
    assert "NIFTY: 30-day ATM IV" in out and "2025-10-20" in out
    html = chart.read_text()
    assert "30-day ATM implied volatility" in html
    # opens offline: plotly.js sits beside the chart (once per folder) and the page loads it from there
    assert 'src="plotly.min.js"' in html and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert cli_main(["iv", "show", "NOSUCH"]) == 2


@pytest.mark.nse_data
def test_nse_files_backfill_records_sessions_without_files_as_missing(dagster_home, tmp_path, monkeypatch, capsys,
                                                                     nse_data_dir):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    code = cli_main(["backfill", "--start", "2025-07-16", "--end", "2025-07-18", "--job", "iv_collection",
                     "--source", "nse_files", "--nse-dir", str(nse_data_dir)])
    out = capsys.readouterr().out
    assert code == 0 and "failed: none" in out
    wh = Warehouse(url)
    gaps = wh.read("select trade_date, kind from pipeline_failures where asset = 'universe' order by trade_date")
    assert gaps.get_column("trade_date").to_list() == [dt.date(2025, 7, 16), dt.date(2025, 7, 18)]
    assert set(gaps.get_column("kind")) == {"missing"}
    assert wh.count("historical_iv_summary", D) == 10 and wh.count("historical_iv_summary") == 10
    wh.dispose()
