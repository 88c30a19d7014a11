"""Static PNG charts embedded in Dagster markdown metadata (payoff charts of strategy_candidates)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import re

import pytest

from options_v4_dagster.market.simulated import SimulatedMarket
from options_v4_dagster.quant import surface
from options_v4_dagster.reports.payoff_chart import charts_markdown, payoff_png
from options_v4_dagster.reports.png import PNG_MAGIC, markdown_image
from options_v4_dagster.strategies import pipeline

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
        png = payoff_png(rc.candidate)
        img = _decode(png)
        assert img.format == "PNG" and 300 <= img.width <= 1000 and 200 <= img.height <= 700, img.size
        assert 5_000 < len(png) <= 60_000, len(png)


def test_metadata_markdown_embeds_one_decodable_png_per_chart(ranked):
    md = charts_markdown(ranked, 2)
    found = DATA_URI.findall(md)
    assert len(found) == 2 and "file://" not in md
    best = sorted((rc for rc in ranked if rc.rank == 1), key=lambda rc: -rc.scored.total_score)[:2]
    for (alt, b64), rc in zip(found, best, strict=True):
        assert rc.candidate.symbol in alt
        _decode(base64.b64decode(b64, validate=True))
    assert charts_markdown(ranked, 0) == ""


def test_markdown_image_keeps_the_alt_text_closed():
    md = markdown_image("a [b] c", PNG_MAGIC + b"x")
    (alt, b64), = DATA_URI.findall(md)
    assert alt == "a (b) c" and base64.b64decode(b64) == PNG_MAGIC + b"x"
