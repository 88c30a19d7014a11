import numpy as np
import polars as pl
import pytest

from options_v4_dagster.quant import regime


@pytest.mark.parametrize("vix,band", [(10.0, "VERY_LOW"), (12.0, "LOW"), (14.99, "LOW"), (15.0, "NORMAL"),
                                      (19.9, "NORMAL"), (22.0, "HIGH"), (25.0, "VERY_HIGH"), (None, None),
                                      (float("nan"), None)])
def test_vix_bands(vix, band):
    assert regime.vix_band(vix) == band


@pytest.mark.parametrize("pcr,state", [(1.3, "BULLISH"), (1.2, "BULLISH"), (1.0, "NEUTRAL"), (0.8, "BEARISH"),
                                       (0.5, "BEARISH"), (None, None)])
def test_pcr_sentiment(pcr, state):
    assert regime.pcr_sentiment(pcr) == state


def test_trend_direction_from_synthetic_paths():
    t = np.arange(120)
    up = 100 * np.exp(0.004 * t + 0.002 * np.sin(t))
    down = up[::-1]
    flat = 100 + np.sin(t / 3.0)
    assert regime.nifty_trend(up).direction == "BULLISH"
    assert regime.nifty_trend(down).direction == "BEARISH"
    assert regime.nifty_trend(up).strength > 0.7
    assert regime.nifty_trend(flat).strength <= 0.5
    with pytest.raises(ValueError, match="at least 50"):
        regime.nifty_trend(up[:20])


def test_ema_matches_recursive_definition():
    x = np.array([1.0, 2.0, 3.0, 2.0, 5.0])
    a = 2 / (3 + 1)
    ref = [x[0]]
    for v in x[1:]:
        ref.append(a * v + (1 - a) * ref[-1])
    np.testing.assert_allclose(regime.ema(x, 3), ref)


def test_put_call_ratio():
    chain = pl.DataFrame({"option_type": ["CE", "PE", "PE"], "oi": [100.0, 80.0, 70.0], "volume": [10.0, 5.0, 0.0]})
    oi, vol = regime.put_call_ratio(chain)
    assert oi == pytest.approx(1.5) and vol == pytest.approx(0.5)
    assert regime.put_call_ratio(chain.filter(pl.col("option_type") == "CE")) == (None, None)
    assert regime.market_state("BULLISH", "VERY_HIGH") == "BULLISH_HIGH_VOL"
