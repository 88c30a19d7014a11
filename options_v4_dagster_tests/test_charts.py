"""Static PNG charts embedded in Dagster markdown metadata (payoff charts of strategy_candidates)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re

import numpy as np
import polars as pl
import pytest

from options_v4_dagster import calendar
from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.reports.iv_chart import break_gaps, iv_charts_markdown, iv_png, session_gaps
from options_v4_dagster.reports.payoff_chart import PNG_POINTS, charts_markdown, payoff_png
from options_v4_dagster.reports.png import PNG_MAGIC, markdown_image
from options_v4_dagster.store import Warehouse
from options_v4_dagster.strategies import pipeline
from options_v4_dagster.strategies.payoff_curves import payoff_curves

SESSION = dt.date(2025, 7, 17)
DATA_URI = re.compile(r"!\[([^\]]*)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


@pytest.fixture(scope="module")
def ranked():
    chains, _ = SimulatedMarket().option_chains(["NIFTY", "RELIANCE"], SESSION)
    res = pipeline.create_candidates(surface.chain_iv(chains), pipeline.pl.DataFrame(
        schema={"symbol": pipeline.pl.Utf8, "direction": pipeline.pl.Utf8}), SESSION)
    return res.ranked


def _decode(png: bytes):
    from PIL import Image

    assert png.startswith(PNG_MAGIC)
    img = Image.open(io.BytesIO(png))
    img.load()
    return img


def test_payoff_png_is_a_small_readable_image(ranked):
    for rc in ranked[:6]:
        png = payoff_png(payoff_curves(rc.candidate, PNG_POINTS))
        img = _decode(png)
        assert img.format == "PNG" and 300 <= img.width <= 1000 and 200 <= img.height <= 700, img.size
        assert 5_000 < len(png) <= 60_000, len(png)


def test_metadata_markdown_embeds_one_decodable_png_per_chart(ranked):
    md = charts_markdown(pipeline.chart_curves(ranked, 2, PNG_POINTS))
    found = DATA_URI.findall(md)
    assert len(found) == 2 and "file://" not in md
    best = sorted((rc for rc in ranked if rc.rank == 1), key=lambda rc: -rc.scored.total_score)[:2]
    for (alt, b64), rc in zip(found, best, strict=True):
        assert rc.candidate.symbol in alt
        _decode(base64.b64decode(b64, validate=True))
    assert pipeline.chart_curves(ranked, 0) == [] and charts_markdown([]) == ""


def test_markdown_image_keeps_the_alt_text_closed():
    md = markdown_image("a [b] c", PNG_MAGIC + b"x")
    (alt, b64), = DATA_URI.findall(md)
    assert alt == "a (b) c" and base64.b64decode(b64) == PNG_MAGIC + b"x"


# --- IV history charts (iv_percentiles' metadata, `iv show`) ------------------------------------

def _iv_history(sessions: list[dt.date], seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    iv = 0.15 + 0.03 * np.sin(np.arange(len(sessions)) / 20) + rng.normal(0, 0.004, len(sessions))
    return pl.DataFrame({"trade_date": sessions, "atm_iv_30d": iv, "rv_20": iv * 0.8})


def test_break_gaps_inserts_nan_only_between_sessions_far_apart():
    s = calendar.sessions_back(SESSION, 60)
    # consecutive sessions (across weekends and holidays), then 5 sessions apart (kept), then 6 and 30 (broken)
    picked = [s[0], s[1], s[2], s[7], s[13], s[43], s[44]]
    assert session_gaps(np.array(picked, dtype="datetime64[D]")).tolist() == [1, 1, 5, 6, 30, 1]
    x, cols = break_gaps(np.array(picked, dtype="datetime64[D]"), {"iv": np.arange(7.0), "rv": np.arange(7.0) * 2})
    iv = cols["iv"]
    assert x.size == iv.size == cols["rv"].size == 9
    nan_at = np.flatnonzero(np.isnan(iv)).tolist()
    assert nan_at == [4, 6] and np.isnan(cols["rv"][nan_at]).all()
    assert iv[~np.isnan(iv)].tolist() == list(range(7))  # every point kept, in order
    assert np.all(np.diff(x) > np.timedelta64(0, "D"))  # the break sits between its neighbours
    assert x[4] == np.datetime64(s[7]) + (np.datetime64(s[13]) - np.datetime64(s[7])) // 2
    # no gap: the data is returned as it came
    x2, cols2 = break_gaps(np.array(s[:10], dtype="datetime64[D]"), {"iv": np.ones(10)})
    assert x2.size == 10 and not np.isnan(cols2["iv"]).any()


def test_iv_png_is_a_small_readable_image_with_gaps_and_bands():
    s = calendar.sessions_back(SESSION, 400)
    hist = _iv_history(s[:150] + s[250:])  # 100 sessions without data
    hist = hist.with_columns(pl.lit(None, dtype=pl.Float64).alias("window_min"),
                             pl.lit(None, dtype=pl.Float64).alias("window_max"),
                             pl.lit(62.0).alias("iv_percentile"), pl.lit(55.0).alias("iv_rank"))
    for since in (None, s[-252]):
        png = iv_png("NIFTY", hist, SESSION, since=since)
        img = _decode(png)
        assert img.format == "PNG" and 300 <= img.width <= 1000 and 200 <= img.height <= 700, img.size
        assert 5_000 < len(png) <= 60_000, len(png)
    assert _decode(iv_png("NIFTY", hist.head(2))).width > 300  # two points are enough


def test_iv_png_needs_two_sessions_and_says_which_symbol():
    hist = _iv_history(calendar.sessions_back(SESSION, 3)).with_columns(
        pl.Series("atm_iv_30d", [None, None, 0.2], dtype=pl.Float64))
    with pytest.raises(ValueError, match="BANKNIFTY: 1 session"):
        iv_png("BANKNIFTY", hist)


def test_iv_charts_markdown_charts_indices_and_top_percentiles_and_notes_short_histories(tmp_path):
    wh = Warehouse(f"sqlite:///{tmp_path / 'wh.db'}")
    s = calendar.sessions_back(SESSION, 30)
    for i, d in enumerate(s):
        rows = [{"trade_date": d, "symbol": sym, "atm_iv_30d": 0.1 + 0.01 * k + 0.001 * i, "rv_20": 0.1}
                for k, sym in enumerate(("NIFTY", "AAA", "BBB", "CCC", "DDD"))]
        if d == SESSION:
            rows.append({"trade_date": d, "symbol": "BANKNIFTY", "atm_iv_30d": 0.14, "rv_20": None})
        wh.replace_partition("historical_iv_summary", d, pl.DataFrame(rows))
    standings = pl.DataFrame({"symbol": ["NIFTY", "BANKNIFTY", "AAA", "BBB", "CCC", "DDD"],
                              "iv_percentile": [99.0, None, 10.0, 80.0, None, 95.0]})
    md = iv_charts_markdown(wh, SESSION, standings, top=2)
    found = DATA_URI.findall(md)
    assert [alt.split()[0] for alt, _ in found] == ["NIFTY", "DDD", "BBB"]
    for _, b64 in found:
        _decode(base64.b64decode(b64, validate=True))
    assert "**BANKNIFTY**: 1 session(s) of 30-day ATM IV" in md and "no chart" in md
    assert "**AAA**" not in md and "**CCC**" not in md
    assert DATA_URI.findall(iv_charts_markdown(wh, SESSION, standings, top=0))[0][0].startswith("NIFTY")
    wh.dispose()


@pytest.mark.slow
def test_iv_collection_runs_embed_iv_charts_in_iv_percentiles_metadata(tmp_path, monkeypatch, capsys):
    from options_v4_dagster.cli import main as cli_main
    from options_v4_dagster.cli import run_pipeline

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    # 25 earlier sessions of history for a few stocks (with a 10-session hole), so they get percentiles:
    # AAA..CCC below anything simulated (percentile 100), DDD above (percentile 0)
    wh = Warehouse(url)
    earlier = calendar.sessions_back(SESSION, 36)[:-1]
    stocks = {"RELIANCE": 0.01, "TCS": 0.01, "INFY": 0.01, "SBIN": 5.0}
    for d in earlier[:10] + earlier[20:]:
        wh.replace_partition("historical_iv_summary", d, pl.DataFrame(
            [{"trade_date": d, "symbol": sym, "atm_iv_30d": v, "rv_20": 0.2} for sym, v in stocks.items()]))
    wh.dispose()
    sessions = [SESSION, calendar.next_session(SESSION)]
    charts = []
    for d in sessions:
        result, _ = run_pipeline(d, "simulated", job_name="iv_collection")
        assert result.success
        mat = next(e.event_specific_data.materialization for e in result.all_events
                   if e.event_type_value == "ASSET_MATERIALIZATION"
                   and e.asset_key.to_user_string() == "iv_percentiles")
        charts.append(mat.metadata["iv_charts"].value)
    first, second = charts
    # first session: the indices have one point (a note, no chart); the seeded stocks are charted
    assert "**NIFTY**: 1 session(s)" in first and "**BANKNIFTY**: 1 session(s)" in first
    assert [alt.split()[0] for alt, _ in DATA_URI.findall(first)] == ["INFY", "RELIANCE", "TCS"]
    # second session: NIFTY and BANKNIFTY have two sessions each, then the 3 highest IV percentiles
    found = DATA_URI.findall(second)
    assert [alt.split()[0] for alt, _ in found] == ["NIFTY", "BANKNIFTY", "INFY", "RELIANCE", "TCS"]
    assert "file://" not in second and "**SBIN**" not in second
    for _, b64 in found:
        png = base64.b64decode(b64, validate=True)
        img = _decode(png)
        assert 300 <= img.width <= 1000 and len(png) <= 60_000
    # `iv show` writes the same static chart beside its HTML
    assert cli_main(["iv", "show", "nifty", "--out", str(tmp_path / "iv_nifty.html")]) == 0
    assert _decode((tmp_path / "iv_nifty.png").read_bytes()).width > 300
    assert "iv_nifty.png" in capsys.readouterr().out
