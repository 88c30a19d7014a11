"""The data-quality asset checks (option_greeks iv_coverage, iv_history atm_iv_coverage,
technical_signals signal_coverage): they pass on a good session materialized through Dagster and fail,
with the right severity, on a copy of it whose rows were damaged."""

import datetime as dt
import re
import shutil

import dagster as dg
import pytest
import sqlalchemy as sa

from options_v4_dagster import quality
from options_v4_dagster.cli import run_pipeline
from options_v4_dagster.defs.partitions import nse_sessions
from options_v4_dagster.defs.resources import WarehouseResource
from options_v4_dagster.defs.strategies.assets import technical_signals
from options_v4_dagster.defs.strategies.checks import signal_coverage
from options_v4_dagster.defs.volatility.assets import iv_history, option_greeks
from options_v4_dagster.defs.volatility.checks import atm_iv_coverage, iv_coverage

D = dt.date(2025, 7, 17)
CHECKS = ("iv_coverage", "atm_iv_coverage", "signal_coverage")


@pytest.fixture(scope="module")
def good_session(tmp_path_factory):
    """One simulated session through the daily job (as `options-v4 run`): the warehouse file and the run."""
    base = tmp_path_factory.mktemp("good")
    (base / "dagster_home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(base / "dagster_home"))
        mp.setenv("DATABASE_URL", f"sqlite:///{base / 'wh.db'}")
        mp.setenv("OPTIONS_V4_HOME", str(base / "home"))
        mp.delenv("OPTIONS_V4_MARKET_DATA", raising=False)
        result, _ = run_pipeline(D, "simulated", log_level="WARNING")
    assert result.success
    return base / "wh.db", result


def _evaluations(events) -> dict[str, tuple[bool, str, str]]:
    return {e.event_specific_data.check_name: (e.event_specific_data.passed, e.event_specific_data.severity.value,
                                               e.event_specific_data.description or "")
            for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _run_checks(db) -> dict[str, tuple[bool, str, str]]:
    """The three checks alone (a checks-only job) over the warehouse file ``db`` for the session."""
    job = dg.define_asset_job("quality", selection=dg.AssetSelection.checks(iv_coverage, atm_iv_coverage,
                                                                            signal_coverage),
                              partitions_def=nse_sessions)
    defs = dg.Definitions(assets=[option_greeks, iv_history, technical_signals],
                          asset_checks=[iv_coverage, atm_iv_coverage, signal_coverage], jobs=[job],
                          resources={"warehouse": WarehouseResource(database_url=f"sqlite:///{db}")})
    # the partition as a run tag: execute_in_process(partition_key=...) asks a checks-only job for the
    # partitions of its assets, which it has none of (dagster 1.13)
    result = defs.resolve_job_def("quality").execute_in_process(tags={"dagster/partition": D.isoformat()},
                                                                instance=dg.DagsterInstance.ephemeral())
    assert result.success  # a failed check is an evaluation, not a failed step
    return _evaluations(result.all_events)


@pytest.mark.slow
def test_the_checks_pass_on_a_good_session(good_session):
    db, result = good_session
    in_run = _evaluations(result.all_events)
    assert {c: in_run[c][0] for c in CHECKS} == {c: True for c in CHECKS}, in_run
    assert {c: v[0] for c, v in _run_checks(db).items()} == {c: True for c in CHECKS}


#: damage, in SQL on a copy of the good session -> the checks expected to fail and their severity
DAMAGE = {
    "six in ten contracts lose their IV": (
        ["update option_greeks set iv = null, iv_reason = 'no_price' where trade_date = :d and rowid % 10 < 6"],
        {"iv_coverage": "WARN"}),
    "nine in ten contracts lose their IV": (
        ["update option_greeks set iv = null, iv_reason = 'no_price' where trade_date = :d and rowid % 10 < 9"],
        {"iv_coverage": "ERROR"}),
    "a negative IV": (
        ["update option_greeks set iv = -0.2 where trade_date = :d and rowid = "
         "(select min(rowid) from option_greeks where trade_date = :d and iv is not null)"],
        {"iv_coverage": "ERROR"}),
    "an underlying's IV summary row is gone, another's ATM IV is zero": (
        ["delete from historical_iv_summary where trade_date = :d and symbol = 'NIFTY'",
         "update historical_iv_summary set atm_iv_30d = 0 where trade_date = :d and symbol = 'BANKNIFTY'"],
        {"atm_iv_coverage": "ERROR"}),
    "a third of the underlyings lose their direction": (
        ["update technical_signals set direction = null where trade_date = :d and rowid % 3 = 0"],
        {"signal_coverage": "WARN"}),
    "an RSI above 100 and a missing underlying": (
        ["update technical_signals set rsi14 = 150 where trade_date = :d and symbol = 'NIFTY'",
         "delete from technical_signals where trade_date = :d and symbol = 'BANKNIFTY'"],
        {"signal_coverage": "ERROR"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_the_checks_fail_on_a_damaged_copy(good_session, tmp_path, damage):
    db, _ = good_session
    copy = tmp_path / "damaged.db"
    shutil.copy(db, copy)
    statements, expected = DAMAGE[damage]
    eng = sa.create_engine(f"sqlite:///{copy}")
    with eng.begin() as conn:
        for stmt in statements:
            assert conn.execute(sa.text(stmt), {"d": D.isoformat()}).rowcount > 0, stmt
    eng.dispose()
    got = _run_checks(copy)
    failed = {c: sev for c, (passed, sev, _) in got.items() if not passed}
    assert failed == expected, got


@pytest.mark.slow
def test_counts_are_integers_and_shares_percentages_in_the_run_metadata(good_session):
    _, result = good_session
    count_like = re.compile(r"(row_count|_count|symbols|contracts|positions|legs|rows|candidates|failures|"
                            r"underlyings|series|_days)$|^(with_|without_|failed_|missing_)")
    floats, shares = [], {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_MATERIALIZATION":
            md = e.event_specific_data.materialization.metadata
        elif e.event_type_value == "ASSET_CHECK_EVALUATION":
            md = e.event_specific_data.metadata
        else:
            continue
        for k, v in md.items():
            if isinstance(v, dg.FloatMetadataValue) and count_like.search(k):
                floats.append(k)
            if k in ("deployment", "expected_monthly_return", "iv_share", "with_iv_share", "failed_share"):
                shares[k] = v.value
    assert floats == []
    assert shares and all(re.fullmatch(r"-?\d+\.\d+%", s) for s in shares.values()), shares
    mat = next(e.event_specific_data.materialization for e in result.all_events
               if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key.to_user_string() == "option_chains")
    lines = mat.metadata["top_symbols_by_oi"].value.splitlines()
    col = [c.strip() for c in lines[0].strip("|").split("|")].index("oi_contracts")
    oi = [line.strip("|").split("|")[col].strip() for line in lines[2:] if not line.startswith("| …")]
    assert oi and all(re.fullmatch(r"\d{1,3}(,\d{3})*", v) for v in oi), oi  # 41,938,461, never 41,938,461.00
    alloc = next(e.event_specific_data.materialization for e in result.all_events
                 if e.event_type_value == "ASSET_MATERIALIZATION"
                 and e.asset_key.to_user_string() == "portfolio_allocation")
    assert re.fullmatch(r"₹\d{1,2}(,\d\d)*,\d{3}", alloc.metadata["capital"].value)


def test_rules_on_frames():
    import polars as pl

    greeks = pl.DataFrame({"iv": [0.2, 0.3, None, None], "iv_reason": [None, None, "no_price", "expired"]})
    assert quality.iv_coverage(greeks, warn_below=0.4, error_below=0.2).passed
    out = quality.iv_coverage(greeks, warn_below=0.6, error_below=0.2)
    assert (out.passed, out.severity, out.figures["no_iv_no_price"]) == (False, "WARN", 1)
    assert quality.iv_coverage(greeks, warn_below=0.9, error_below=0.6).severity == "ERROR"
    assert quality.iv_coverage(greeks.clear(), warn_below=0.5, error_below=0.2).severity == "ERROR"
    wings = pl.DataFrame({"iv": [0.2] * 97 + [7.0] * 3, "iv_reason": [None] * 100})
    assert quality.iv_coverage(wings, warn_below=0.5, error_below=0.2, max_extreme_share=0.05).passed
    assert quality.iv_coverage(wings, warn_below=0.5, error_below=0.2, max_extreme_share=0.01).severity == "WARN"
    summary = pl.DataFrame({"symbol": ["A", "B"], "atm_iv_30d": [0.2, None], "rv_20": [0.1, 0.2]})
    assert quality.atm_iv_coverage(summary, ["A", "B"], warn_below=0.5, error_below=0.2).passed
    assert quality.atm_iv_coverage(summary, ["A", "B", "C"], warn_below=0.5, error_below=0.2).severity == "ERROR"
    signals = pl.DataFrame({"symbol": ["A", "B"], "direction": ["BULLISH", None], "rsi14": [55.0, None],
                            "strength": [0.4, None]})
    assert quality.signal_coverage(signals, ["A", "B"], warn_below=0.5).passed
    assert quality.signal_coverage(signals, ["A", "B"], warn_below=0.8).severity == "WARN"
    assert quality.signal_coverage(signals, ["A", "B", "C"], warn_below=0.5).severity == "ERROR"


def test_rules_take_all_null_columns_as_read_back_from_the_warehouse():
    """A session where a column is null on every row (no bars: rv_20; nothing priced: iv) reads back with
    polars' Null type: the rules still judge it (found on the real 2020-04-17 files)."""
    import polars as pl

    summary = pl.DataFrame({"symbol": ["NIFTY"], "atm_iv_30d": [0.62], "rv_20": [None]})
    assert summary.schema["rv_20"] == pl.Null
    assert quality.atm_iv_coverage(summary, ["NIFTY"], warn_below=0.8, error_below=0.5).passed
    greeks = pl.DataFrame({"iv": [None, None], "iv_reason": [None, None]})
    assert quality.iv_coverage(greeks, warn_below=0.5, error_below=0.2).severity == "ERROR"
    signals = pl.DataFrame({"symbol": ["NIFTY"], "direction": [None], "rsi14": [None], "strength": [None]})
    out = quality.signal_coverage(signals, ["NIFTY"], warn_below=0.8)
    assert (out.passed, out.severity, out.figures["rsi_out_of_range"]) == (False, "WARN", 0)
