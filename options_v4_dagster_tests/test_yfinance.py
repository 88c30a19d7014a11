"""YFinanceProvider offline: yfinance over ``requests`` with Yahoo's HTTP answers stubbed by ``responses``."""

from __future__ import annotations

import os

os.environ.setdefault("YF_DISABLE_CURL_CFFI", "1")  # before yfinance is imported: use requests

import datetime as dt
import re

import polars as pl
import pytest
import requests
import responses
import yfinance as yf  # imported here (after the variable) so no test pays the import
from yfinance.data import YfData

from options_v4_dagster import calendar
from options_v4_dagster.errors import DataUnavailable, ProviderError, RateLimited
from options_v4_dagster.market.base import BARS_SCHEMA
from options_v4_dagster.market.yfinance_provider import YFinanceProvider

# yfinance 1.7 calls sort_index(inplace=True), which pandas 3.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword:Warning")

IST = calendar.IST
CHART = re.compile(r"https://query2\.finance\.yahoo\.com/v8/finance/chart/.*")


def chart_json(symbol: str, rows: list[tuple[dt.date, float, float, float, float, int]],
               instrument: str = "INDEX") -> dict:
    """Yahoo's v8 chart answer; daily bars are stamped 09:15 IST."""
    ts = [int(dt.datetime.combine(d, dt.time(9, 15), tzinfo=IST).timestamp()) for d, *_ in rows]
    last = ts[-1] if ts else 1752000000
    period = {"timezone": "IST", "gmtoffset": 19800, "start": last, "end": last + 22500}
    meta = {
        "currency": "INR", "symbol": symbol, "exchangeName": "NSI", "fullExchangeName": "NSE",
        "instrumentType": instrument, "firstTradeDate": 1190000000, "regularMarketTime": last,
        "hasPrePostMarketData": False, "gmtoffset": 19800, "timezone": "IST",
        "exchangeTimezoneName": "Asia/Kolkata", "regularMarketPrice": rows[-1][4] if rows else 1.0,
        "chartPreviousClose": rows[0][4] if rows else 1.0, "priceHint": 2,
        "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
        "dataGranularity": "1d", "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    result: dict = {"meta": meta}
    if rows:
        result["timestamp"] = ts
        result["indicators"] = {
            "quote": [{"open": [r[1] for r in rows], "high": [r[2] for r in rows], "low": [r[3] for r in rows],
                       "close": [r[4] for r in rows], "volume": [r[5] for r in rows]}],
            "adjclose": [{"adjclose": [None if r[4] is None else r[4] * 0.99 for r in rows]}],
        }
    else:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
    return {"chart": {"result": [result], "error": None}}


NOT_FOUND = {"chart": {"result": None, "error": {"code": "Not Found",
                                                 "description": "No data found, symbol may be delisted"}}}

ROWS = [
    (dt.date(2025, 7, 14), 25100.0, 25150.5, 24990.1, 25082.3, 281000),
    (dt.date(2025, 7, 15), 25090.0, 25220.0, 25060.2, 25195.8, 300500),
    (dt.date(2025, 7, 16), 25200.0, 25255.3, 25130.0, 25212.05, 0),
]


@pytest.fixture()
def yfstub(tmp_path):
    """A provider with its yfinance cache in tmp_path, a requests session and no real sleeps."""
    YfData.cache_get.cache_clear()  # yfinance memoizes GETs process-wide
    sleeps: list[float] = []
    provider = YFinanceProvider(cache_dir=tmp_path / "yf", session=requests.Session(), sleep=sleeps.append,
                                max_attempts=3)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, "https://fc.yahoo.com/", status=404, body="")
        rsps.add(responses.GET, re.compile(r"https://query\d\.finance\.yahoo\.com/v1/test/getcrumb"),
                 body="stub-crumb")
        yield provider, rsps, sleeps
    YfData.cache_get.cache_clear()


def chart_calls(rsps) -> list:
    return [c for c in rsps.calls if "/v8/finance/chart/" in c.request.url]


def test_index_bars_parsed(yfstub, tmp_path):
    provider, rsps, _ = yfstub
    rsps.add(responses.GET, CHART, json=chart_json("^NSEI", ROWS))
    bars = provider.daily_bars("NIFTY", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert dict(bars.schema) == BARS_SCHEMA
    assert bars["date"].to_list() == [r[0] for r in ROWS]  # IST session dates
    assert bars["close"].to_list() == [r[4] for r in ROWS]  # unadjusted Close, not Adj Close
    assert bars["open"].to_list() == [r[1] for r in ROWS]
    assert bars["volume"].to_list() == [float(r[5]) for r in ROWS]
    assert bars["symbol"].unique().to_list() == ["NIFTY"] and bars["source"].unique().to_list() == ["yfinance"]
    urls = [c.request.url for c in chart_calls(rsps)]
    assert urls and all("/chart/%5ENSEI" in u or "/chart/^NSEI" in u for u in urls)
    period2 = [u for u in urls if "period2=" in u][0]
    # end is inclusive for us, exclusive for Yahoo: period2 is the day after the end
    p2 = int(re.search(r"period2=(\d+)", period2).group(1))
    assert dt.datetime.fromtimestamp(p2, IST).date() == dt.date(2025, 7, 17)
    assert (tmp_path / "yf").is_dir()  # cache folder applied


def test_stock_and_vix_tickers(yfstub):
    provider, rsps, _ = yfstub
    assert provider.ticker_for("RELIANCE") == "RELIANCE.NS"
    assert provider.ticker_for("INDIAVIX") == "^INDIAVIX"
    assert provider.ticker_for("banknifty") == "^NSEBANK"
    rsps.add(responses.GET, CHART, json=chart_json("RELIANCE.NS", ROWS[:2], instrument="EQUITY"))
    bars = provider.daily_bars("RELIANCE", dt.date(2025, 7, 14), dt.date(2025, 7, 15))
    assert bars.height == 2 and bars["symbol"].to_list() == ["RELIANCE", "RELIANCE"]
    assert all("RELIANCE.NS" in c.request.url for c in chart_calls(rsps))


def test_range_filter_and_nan_rows(yfstub):
    provider, rsps, _ = yfstub
    rows = [*ROWS[:2], (dt.date(2025, 7, 16), None, None, None, None, None)]
    rsps.add(responses.GET, CHART, json=chart_json("^INDIAVIX", rows))
    bars = provider.daily_bars("INDIAVIX", dt.date(2025, 7, 15), dt.date(2025, 7, 16))
    assert bars["date"].to_list() == [dt.date(2025, 7, 15)]
    assert bars.filter(pl.col("close").is_null()).height == 0


def test_unknown_symbol_is_data_unavailable(yfstub):
    provider, rsps, _ = yfstub
    rsps.add(responses.GET, CHART, json=NOT_FOUND, status=404)
    with pytest.raises(DataUnavailable) as ei:
        provider.daily_bars("NOSUCHCO", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert "NOSUCHCO.NS" in str(ei.value) and ei.value.symbol == "NOSUCHCO"


def test_empty_answer_is_a_clear_error_not_an_empty_frame(yfstub):
    provider, rsps, _ = yfstub
    rsps.add(responses.GET, CHART, json=chart_json("^NSEI", []))
    with pytest.raises(DataUnavailable) as ei:
        provider.daily_bars("NIFTY", dt.date(2025, 7, 12), dt.date(2025, 7, 13))
    assert "^NSEI" in str(ei.value) and "NIFTY" in str(ei.value)


def test_rate_limit_retried_then_raised(yfstub):
    provider, rsps, sleeps = yfstub
    rsps.add(responses.GET, CHART, status=429, body="Too Many Requests")
    with pytest.raises(RateLimited) as ei:
        provider.daily_bars("NIFTY", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert "gave up after 3 attempts" in str(ei.value)
    assert sleeps == [1.0, 2.0]


def test_server_error_is_a_provider_error(yfstub):
    provider, rsps, _ = yfstub
    rsps.add(responses.GET, CHART, status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(ProviderError) as ei:
        provider.daily_bars("NIFTY", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert "^NSEI" in str(ei.value)


def test_transient_failure_then_success(yfstub):
    provider, rsps, sleeps = yfstub
    rsps.add(responses.GET, CHART, body=requests.ConnectionError("connection reset"))
    rsps.add(responses.GET, CHART, json=chart_json("^NSEI", ROWS))
    bars = provider.daily_bars("NIFTY", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert bars.height == 3 and sleeps == [1.0]


def test_error_switch_restored_and_no_chain(yfstub):
    provider, rsps, _ = yfstub
    rsps.add(responses.GET, CHART, json=chart_json("^NSEI", ROWS))
    provider.daily_bars("NIFTY", dt.date(2025, 7, 14), dt.date(2025, 7, 16))
    assert yf.config.debug.hide_exceptions is True
    with pytest.raises(DataUnavailable, match="no NSE option chains"):
        provider.option_chain("NIFTY", dt.date(2025, 7, 16))
