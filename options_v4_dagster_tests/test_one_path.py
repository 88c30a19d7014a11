"""One path for strategy creation (issue 10 item 1): `options-v4 analyze` and the strategy_candidates
asset give the same candidates for a stored session, because both call
``strategies.pipeline.create_for_session`` on the inputs the upstream assets stored; analyze without a
stored session computes those inputs through the same functions and gets the same candidates."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from options_v4_dagster.cli import main as cli_main
from options_v4_dagster.store import Warehouse

from .pipeline_run import run_session

D = dt.date(2025, 7, 17)
TOP = 5  # CandidateSettings.top_per_symbol's default; risk moderate and one lot are the defaults of both

pytestmark = pytest.mark.slow


def _run(base, source: str, extra: list[str]) -> dict:
    env = run_session(base, D, source, extra)  # allocation may fail: not compared
    env.pop("exit_code")
    return env


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("one_sim"), "simulated", [])


@pytest.fixture(scope="module")
def nse(tmp_path_factory):
    from options_v4_dagster import config

    path = config.nse_data_dir()
    if not (path / "option_chain").is_dir():
        pytest.skip(f"NSE data folder not found at {path}")
    return _run(tmp_path_factory.mktemp("one_nse"), "nse_files", ["--nse-dir", str(path)])


def _stored(env) -> dict[tuple[str, str], dict]:
    wh = Warehouse(env["DATABASE_URL"], create=False)
    s = wh.read_partition("strategies", D)
    p = wh.read_partition("strategy_parameters", D)
    d = wh.read_partition("strategy_details", D).sort("strategy_id", "leg")
    legs = d.group_by("strategy_id", maintain_order=True).agg(
        pl.struct("side", "instrument", "strike", "expiry", "quantity", "price").alias("legs"))
    rows = s.join(p, on="strategy_id").join(legs, on="strategy_id", how="left")
    out = {}
    for r in rows.iter_rows(named=True):
        out[(r["symbol"], r["strategy_name"])] = {
            "rank": r["rank"], "score": round(r["total_score"], 4), "conviction": r["conviction"],
            "pop": r["pop"], "ev": r["expected_value"], "max_loss": r["max_loss"], "net_premium": r["net_premium"],
            "legs": [(leg["side"], leg["instrument"], leg["strike"], str(leg["expiry"]), leg["quantity"], leg["price"])
                     for leg in r["legs"]],
        }
    return out


def _analyzed(rows: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["symbol"], r["strategy_name"]): {
        "rank": r["rank"], "score": round(r["total_score"], 4), "conviction": r["conviction"], "pop": r["pop"],
        "ev": r["expected_value"], "max_loss": r["max_loss"], "net_premium": r["net_premium"],
        "legs": [(leg["side"], leg["instrument"], leg["strike"], str(leg["expiry"]), leg["quantity"], leg["price"])
                 for leg in r["legs"]],
    } for r in rows}


def _close(a: dict, b: dict) -> list[str]:
    """Differences between two candidate maps (floats to 1e-9 relative: the stored ones went through the DB)."""
    diffs = []
    if set(a) != set(b):
        return [f"only stored: {sorted(set(a) - set(b))[:5]}; only analyzed: {sorted(set(b) - set(a))[:5]}"]
    for key in a:
        for field, x in a[key].items():
            y = b[key][field]
            if field == "legs":
                same = len(x) == len(y) and all(
                    lx[:5] == ly[:5] and (lx[5] == ly[5] or (lx[5] is not None and ly[5] is not None
                                                            and abs(lx[5] - ly[5]) <= 1e-9 * max(1, abs(lx[5]))))
                    for lx, ly in zip(x, y, strict=True))
            elif isinstance(x, float) and isinstance(y, float):
                same = abs(x - y) <= 1e-9 * max(1.0, abs(x))
            else:
                same = x == y
            if not same:
                diffs.append(f"{key} {field}: stored {x!r} analyzed {y!r}")
    return diffs


def _analyze(capsys, env, source: str, extra=()) -> tuple[list[dict], str]:
    capsys.readouterr()  # drop what the module's `run` printed
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        code = cli_main(["analyze", "--universe", "--date", D.isoformat(), "--source", source, "--json",
                         "--top", str(TOP), *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out), out.err


@pytest.mark.parametrize("source", ["simulated", "nse_files"])
def test_analyze_of_a_stored_session_equals_the_asset(source, request, capsys):
    env = request.getfixturevalue("simulated" if source == "simulated" else "nse")
    stored = _stored(env)
    assert len({s for s, _ in stored}) >= 5, "the run stored candidates for several symbols"
    rows, said = _analyze(capsys, env, source)
    assert "stored inputs" in said and f"market data: {source}" in said
    assert {r["inputs"] for r in rows} == {"stored"} and {r["market_data_source"] for r in rows} == {source}
    assert _close(stored, _analyzed(rows)) == []


def test_analyze_of_another_source_computes_on_the_fly(simulated, capsys, tmp_path):
    """The warehouse holds the simulated session; asking for nse_files does not read it."""
    from options_v4_dagster import config

    if not (config.nse_data_dir() / "option_chain").is_dir():
        pytest.skip("no NSE data")
    rows, said = _analyze(capsys, simulated, "nse_files", ["--symbol", "NIFTY"])
    assert "computed inputs" in said and "from simulated, not nse_files" in said
    assert {r["market_data_source"] for r in rows} == {"nse_files"}


def test_analyze_computed_on_the_fly_equals_the_stored_session(simulated, capsys, tmp_path):
    """An empty warehouse: analyze computes the inputs from the simulated market (deterministic) through
    the assets' functions and gets the candidates the pipeline stored."""
    empty = {**simulated, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    rows, said = _analyze(capsys, empty, "simulated")
    assert "computed inputs" in said
    assert _close(_stored(simulated), _analyzed(rows)) == []
