"""The walk-forward track record end to end (issue 14): ``options-v4 track-record --json`` over three weeks of
the simulated market on 19 underlyings, every trade's P&L against its fills and fees, a re-run giving the
same numbers, no look-ahead (the replay on data truncated after a session gives the same sessions up to it)
and the ``track_record`` asset's metadata."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from options_v4_dagster import calendar
from options_v4_dagster.errors import DataUnavailable
from options_v4_dagster.market import get_provider
from options_v4_dagster.store import Replace
from options_v4_dagster.store.provenance import provenance_replace
from options_v4_dagster.store.schema import strategy_execution_status, trades
from options_v4_dagster.store.warehouse import Warehouse
from options_v4_dagster.track_record.inputs import CANDIDATE_TABLES, LookAhead, SessionView, entry_inputs
from options_v4_dagster.track_record.replay import ReplayConfig
from options_v4_dagster.track_record.report import run

from .pipeline_run import cli_call

START, END, CUT = dt.date(2025, 1, 1), dt.date(2025, 1, 24), dt.date(2025, 1, 10)
SYMBOLS = ("NIFTY,BANKNIFTY,FINNIFTY,RELIANCE,TCS,INFY,HDFCBANK,ICICIBANK,SBIN,ITC,LT,AXISBANK,MARUTI,"
           "BHARTIARTL,KOTAKBANK,HINDUNILVR,SUNPHARMA,WIPRO,ONGC")
CAPITAL = 1_500_000.0


def _env(base: Path) -> dict:
    (base / "dagster_home").mkdir(exist_ok=True)
    return {"DAGSTER_HOME": str(base / "dagster_home"), "DATABASE_URL": f"sqlite:///{base / 'wh.db'}",
            "OPTIONS_V4_HOME": str(base / "home")}


def _config(end: dt.date = END) -> ReplayConfig:
    return ReplayConfig(START, end, capital=CAPITAL, cadence="daily", symbols=tuple(SYMBOLS.split(",")))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``options-v4 track-record --json`` over START..END (daily entries, the 19 symbols)."""
    base = tmp_path_factory.mktemp("track_record")
    code, out, err = cli_call(_env(base), ["track-record", "--start", START.isoformat(), "--end", END.isoformat(),
                                           "--cadence", "daily", "--symbols", SYMBOLS, "--json"])
    assert code == 0, err
    return json.loads(out)


def _fills(db: str) -> pl.DataFrame:
    wh = Warehouse(f"sqlite:///{db}", create=False)
    try:
        return wh.read(sa.select(trades.c.allocation_id, trades.c.position_id, trades.c.leg, trades.c.side,
                                 trades.c.quantity, trades.c.price, trades.c.fees, trades.c.traded_at)
                       .order_by(trades.c.traded_at, trades.c.allocation_id, trades.c.position_id, trades.c.leg,
                                 trades.c.side, trades.c.quantity, trades.c.price))
    finally:
        wh.dispose()


def test_json_has_the_statistics_and_every_trade_an_entry_and_an_exit_or_marked_open(cli_run):
    s = cli_run
    assert {"sessions", "trades", "total_return", "monthly_returns", "sharpe", "max_drawdown", "win_rate",
            "profit_factor", "calibration", "by_strategy"} <= set(s)
    assert s["sessions"] == len(calendar.sessions_between(START, END)) == len(s["equity_curve"])
    assert s["monthly_returns"][0]["month"] == "2025-01" and s["monthly_returns"][0]["target"] == 0.04
    assert {"pop_bucket", "predicted", "realized", "n"} <= set(s["calibration"][0])
    assert sum(r["n"] for r in s["calibration"]) == s["trade_counts"]["closed"]
    statuses = {t["status"] for t in s["trades"]}
    assert {"closed", "open"} <= statuses <= {"closed", "open", "unwound"}  # both kinds, or the test proves little
    for t in s["trades"]:
        assert t["entry_date"] is not None and START.isoformat() <= t["entry_date"] <= END.isoformat()
        if t["status"] == "open":
            assert t["exit_date"] is None and t["exit_rule"] is None
        else:
            assert t["exit_date"] >= t["entry_date"] and t["exit_rule"]
    assert {r["strategy_name"] for r in s["by_strategy"]} == {t["strategy_name"] for t in s["trades"]}
    assert sum(r["trades"] for r in s["by_strategy"]) == s["trade_counts"]["closed"]
    assert Path(s["run"]["report"]).read_text().count("data:image/png;base64,") == 4


def test_every_trade_pnl_is_the_sum_of_its_fills_and_fees(cli_run):
    s = cli_run
    fills = _fills(s["run"]["warehouse"])
    assert fills.height and s["trades"]
    for t in s["trades"]:
        f = fills.filter((pl.col("allocation_id") == t["allocation_id"]) & (pl.col("position_id") == t["position_id"]))
        flow = sum((1 if r["side"] == "SELL" else -1) * r["price"] * r["quantity"] for r in f.iter_rows(named=True))
        fees = float(f.get_column("fees").sum())
        assert t["fees"] == pytest.approx(fees, abs=0.01)
        assert t["pnl"] == pytest.approx(flow - fees + t["open_value"], abs=0.02), t["trade"]
        assert (t["open_value"] == 0) == (t["status"] != "open")
        assert t["spread_paid"] >= 0  # fills at the quotes: a buy at or above the mid, a sell at or below
    assert s["spread_paid"] == pytest.approx(sum(t["spread_paid"] for t in s["trades"]), abs=0.1)
    # a closed trade's P&L is also what the trading store recorded for the strategy (realized less fees)
    wh = Warehouse(f"sqlite:///{s['run']['warehouse']}", create=False)
    stored = dict(((r[0], r[1]), r[2]) for r in wh.read(sa.select(
        strategy_execution_status.c.allocation_id, strategy_execution_status.c.position_id,
        strategy_execution_status.c.realized_pnl)).iter_rows())
    wh.dispose()
    closed = [t for t in s["trades"] if t["status"] == "closed"]
    assert closed
    for t in closed:
        assert t["pnl"] == pytest.approx(stored[(t["allocation_id"], t["position_id"])], abs=0.02)
    # and the equity at the end is the capital plus every trade's P&L
    assert s["end_equity"] == pytest.approx(CAPITAL + sum(t["pnl"] for t in s["trades"]), abs=1.0)


def test_rerun_gives_identical_numbers(cli_run, tmp_path):
    again = run(_config(), get_provider("simulated"), db_path=tmp_path / "again.db").summary
    first = {k: v for k, v in cli_run.items() if k != "run"}
    assert json.loads(json.dumps({k: v for k, v in again.items() if k != "run"})) == first


class Truncated:
    """The simulated market with everything after ``cut`` deleted: no chain of a later session, no bar
    after it."""

    def __init__(self, cut: dt.date) -> None:
        self.inner, self.cut, self.name = get_provider("simulated"), cut, "simulated"

    def symbols_for(self, session, symbols):
        return self.inner.symbols_for(session, symbols)

    def option_chains(self, symbols, session, *, horizon_days=90):
        if session > self.cut:
            raise DataUnavailable("truncated", session=session)
        return self.inner.option_chains(symbols, session, horizon_days=horizon_days)

    def daily_bars(self, symbol, start, end):
        bars = self.inner.daily_bars(symbol, start, min(end, self.cut))
        return bars.filter(pl.col("date") <= self.cut)


def test_no_look_ahead_a_replay_on_data_truncated_after_a_session_is_the_same_up_to_it(cli_run, tmp_path):
    cut = run(_config(CUT), Truncated(CUT), db_path=tmp_path / "cut.db").summary
    full = cli_run
    upto = [e for e in full["equity_curve"] if e["session"] <= CUT.isoformat()]
    assert cut["equity_curve"] == upto and len(upto) == len(calendar.sessions_between(START, CUT))
    close = calendar.session_close(CUT).astimezone(dt.UTC)
    a = _fills(full["run"]["warehouse"]).filter(pl.col("traded_at") <= close)
    b = _fills(str(tmp_path / "cut.db"))
    assert a.height and a.drop("traded_at").equals(b.drop("traded_at"))
    assert a.get_column("traded_at").to_list() == b.get_column("traded_at").to_list()
    # the trades entered up to the cut are the same trades, with the same entries
    entered = {(t["allocation_id"], t["position_id"], t["entry_date"]) for t in full["trades"]
               if t["entry_date"] <= CUT.isoformat()}
    assert entered == {(t["allocation_id"], t["position_id"], t["entry_date"]) for t in cut["trades"]}


def test_session_view_refuses_later_dates():
    view = SessionView(get_provider("simulated"), dt.date(2025, 1, 10))
    view.daily_bars("NIFTY", dt.date(2025, 1, 1), dt.date(2025, 1, 10))
    with pytest.raises(LookAhead):
        view.daily_bars("NIFTY", dt.date(2025, 1, 1), dt.date(2025, 1, 13))
    with pytest.raises(LookAhead):
        view.option_chains(["NIFTY"], dt.date(2025, 1, 13))
    assert view.requested == dt.date(2025, 1, 10)


@pytest.mark.parametrize("argv, fragment", [
    (["--start", "2025-02-01", "--end", "2025-01-01"], "--start 2025-02-01 is after --end"),
    (["--start", "2025-01-01", "--end", "2099-01-01"], "after the last partition"),
    (["--start", "2025-01-01", "--end", "2025-01-05", "--cadence", "monthly"], "--cadence"),
    (["--start", "2025-01-04", "--end", "2025-01-05"], "no NSE session"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, argv, fragment):
    code, out, err = cli_call(_env(tmp_path), ["track-record", *argv])
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_track_record_asset_metadata_has_the_figures_and_png_charts(tmp_path):
    from options_v4_dagster.defs.resources import WarehouseResource
    from options_v4_dagster.defs.track_record.assets import track_record

    cfg = {"start": "2025-01-01", "end": "2025-01-08", "cadence": "daily", "symbols": SYMBOLS.split(",")[:10],
           "output_dir": str(tmp_path)}
    result = dg.materialize([track_record], run_config={"ops": {"track_record": {"config": cfg}}},
                            resources={"warehouse": WarehouseResource(database_url=f"sqlite:///{tmp_path / 'wh.db'}")})
    assert result.success
    md = result.asset_materializations_for_node("track_record")[0].metadata
    assert md["sessions"].value == len(calendar.sessions_between(dt.date(2025, 1, 1), dt.date(2025, 1, 8)))
    charts = md["charts"].value
    assert charts.count("](data:image/png;base64,") == 4 and "file://" not in charts
    assert {"total_return", "max_drawdown", "calibration", "by_strategy", "exit_rules"} <= set(md)
    assert Path(md["report"].value).exists() and Path(md["replay_warehouse"].value).exists()


def test_stored_candidates_are_used_where_the_warehouse_holds_them_from_the_same_source(tmp_path):
    """Candidates stored for a session (as strategy_candidates writes them) are what its entry uses; a
    session stored from another source is computed. The same candidates give the same track record."""
    symbols = tuple(SYMBOLS.split(",")[:10])
    provider = get_provider("simulated")
    src = Warehouse(f"sqlite:///{tmp_path / 'src.db'}")
    for day, source in ((dt.date(2025, 1, 1), "simulated"), (dt.date(2025, 1, 2), "nse_files")):
        ei = entry_inputs(SessionView(provider, day), day, symbols=symbols)
        src.replace_together([*(Replace.partition(k, day, ei.tables[k]) for k in CANDIDATE_TABLES),
                              Replace.partition("fno_universe", day, ei.universe),
                              Replace.partition("market_conditions", day, ei.conditions),
                              Replace.partition("option_chain_data", day, ei.chain),
                              provenance_replace(day, "strategy_candidates", source)])
    cfg = ReplayConfig(dt.date(2025, 1, 1), dt.date(2025, 1, 3), cadence="daily", symbols=symbols)
    stored = run(cfg, provider, db_path=tmp_path / "stored.db", stored=src)
    computed = run(cfg, provider, db_path=tmp_path / "computed.db")
    src.dispose()
    assert stored.result.sessions[0].inputs == "stored"
    assert [r.inputs for r in stored.result.sessions[1:]] == [r.inputs for r in computed.result.sessions[1:]]
    assert stored.result.sessions[1].inputs in (None, "computed")  # the nse_files rows are not this source's
    assert stored.summary["stored_candidate_sessions"] == 1 and computed.summary["stored_candidate_sessions"] == 0
    assert stored.summary["trades"] and stored.summary["trades"] == computed.summary["trades"]
    assert stored.summary["equity_curve"] == computed.summary["equity_curve"]
