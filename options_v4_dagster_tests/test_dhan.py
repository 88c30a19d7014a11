"""DhanProvider driving the real dhanhq 2.3.0 SDK against the local Dhan stand-in."""

from __future__ import annotations

import datetime as dt
import logging
import time

import polars as pl
import pytest

from options_v4_dagster.errors import ConfigError, DataUnavailable, ProviderError, RateLimited
from options_v4_dagster.market.base import BARS_SCHEMA, CHAIN_SCHEMA
from options_v4_dagster.market.dhan import (
    CHAIN_INTERVAL,
    IST,
    QUOTE_SCHEMA,
    CircuitOpen,
    DhanProvider,
    Throttle,
)

from .dhan_standin import DhanStandIn

SESSION = dt.date(2025, 7, 17)  # a Thursday: NIFTY weekly expiry day before the 2025-09 change
NOW = dt.datetime(2025, 7, 17, 11, 0, tzinfo=IST)
OC = "/v2/optionchain"
EXPIRY_LIST = "/v2/optionchain/expirylist"
HIST = "/v2/charts/historical"
QUOTE = "/v2/marketfeed/quote"


class FakeClock:
    """A monotonic clock whose sleep advances it instantly and records the requested waits."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture()
def standin():
    with DhanStandIn(today=SESSION) as s:
        yield s


@pytest.fixture()
def clock():
    return FakeClock()


@pytest.fixture()
def make(standin, clock):
    made = []

    def _make(**kw) -> DhanProvider:
        opts = dict(base_url=standin.base_url, now=lambda: NOW, clock=clock.now, sleep=clock.sleep,
                    timeout=0.5, max_attempts=3)
        opts.update(kw)
        client_id = opts.pop("client_id", standin.client_id)
        token = opts.pop("access_token", standin.access_token)
        p = DhanProvider(client_id, token, **opts)
        made.append(p)
        return p

    yield _make
    for p in made:
        p.close()


def test_expiry_list_and_chain_normalized(standin, make):
    p = make()
    expiries = p.expiry_list("NIFTY")
    assert expiries == standin.expiry_dates(13, "IDX_I")
    assert expiries[:2] == [dt.date(2025, 7, 17), dt.date(2025, 7, 24)]

    df = p.option_chain("NIFTY", SESSION, horizon_days=10)
    assert dict(df.schema) == CHAIN_SCHEMA
    assert sorted(df["expiry"].unique().to_list()) == [dt.date(2025, 7, 17), dt.date(2025, 7, 24)]
    # 21 strikes x 2 sides per expiry, minus the first strike's null ce and the last one's missing pe
    assert df.height == 2 * (21 * 2 - 2)
    assert df["trade_date"].unique().to_list() == [SESSION]
    assert df["underlying_price"].unique().to_list() == [25012.35]
    assert df["lot_size"].unique().to_list() == [65]
    assert df["snapshot_ts"].unique().to_list() == [NOW.astimezone(dt.UTC)]
    assert df["source"].unique().to_list() == ["dhan"]
    assert df.filter((pl.col("strike") == 24500.0) & (pl.col("option_type") == "CE")).height == 0
    assert df.filter((pl.col("strike") == 25500.0) & (pl.col("option_type") == "PE")).height == 0

    # one contract, value by value against the stand-in's raw answer
    raw = standin.chain_payload(13, "IDX_I", dt.date(2025, 7, 24))["oc"]["25000.000000"]["ce"]
    row = df.filter((pl.col("expiry") == dt.date(2025, 7, 24)) & (pl.col("strike") == 25000.0)
                    & (pl.col("option_type") == "CE")).row(0, named=True)
    assert row["ltp"] == raw["last_price"]
    assert row["bid"] == raw["top_bid_price"] and row["ask"] == raw["top_ask_price"]
    assert row["bid_qty"] == raw["top_bid_quantity"]  # shares, as Dhan and NSE give them
    assert row["exchange_iv"] == pytest.approx(raw["implied_volatility"] / 100)
    assert row["oi"] == raw["oi"] / 65 and row["oi"] == int(row["oi"])  # shares -> contracts
    assert row["volume"] == raw["volume"] / 65
    assert row["oi_change"] == pytest.approx(100.0)  # the stand-in's previous_oi is 100 lots lower
    assert row["security_id"] == str(raw["security_id"])
    assert row["close"] is None and row["futures_price"] is None

    # Dhan's zeros mean "none": no bid -> null bid and bid_qty; IV 0 -> null
    no_bid = df.filter(pl.col("bid").is_null())
    assert no_bid.height > 0 and no_bid["bid_qty"].null_count() == no_bid.height
    assert df.filter(pl.col("exchange_iv").is_null()).height > 0
    assert (df["exchange_iv"].drop_nulls() < 1.0).all()

    bodies = [c.body for c in standin.calls(OC)]
    assert bodies == [{"UnderlyingScrip": 13, "UnderlyingSeg": "IDX_I", "Expiry": e, "dhanClientId": standin.client_id}
                      for e in ("2025-07-17", "2025-07-24")]


def test_stock_chain_uses_universe_id_and_lot(standin, make):
    p = make()
    df = p.option_chain("RELIANCE", SESSION)
    body = standin.calls(OC)[0].body
    assert body["UnderlyingSeg"] == "NSE_EQ" and body["UnderlyingScrip"] == 2885
    assert df["lot_size"].unique().to_list() == [500]
    assert df["expiry"].n_unique() == 3  # three monthlies within 90 days


def test_failure_envelope_is_a_typed_error_and_not_retried(standin, make):
    standin.inject_failure(OC, status=400, code="DH-905", message="Invalid expiry")
    p = make()
    with pytest.raises(ProviderError) as ei:
        p.option_chain("NIFTY", SESSION, horizon_days=3)
    err = ei.value
    assert not isinstance(err, RateLimited)
    assert err.code == "DH-905" and err.status == 400 and not err.retryable
    assert "Invalid expiry" in str(err) and "NIFTY" in str(err)
    assert len(standin.calls(OC)) == 1


def test_no_data_envelope_is_data_unavailable_naming_symbol_and_expiry(standin, make):
    standin.inject_failure(OC, status=400, code="DH-907", error_type="Data_Error", message="No data present")
    with pytest.raises(DataUnavailable) as ei:
        make().option_chain("NIFTY", SESSION, horizon_days=3)
    assert "NIFTY" in str(ei.value) and "2025-07-17" in str(ei.value) and "DH-907" in str(ei.value)


def test_data_api_style_envelope_is_decoded(standin, make):
    # {"data": {"806": ...}, "status": "failed"}: the SDK reports all-None remarks; the provider reads the body
    standin.inject_failure(EXPIRY_LIST, status=400, code="806", message="Data APIs not Subscribed", style="data")
    with pytest.raises(ProviderError) as ei:
        make().expiry_list("NIFTY")
    assert ei.value.code == "806" and "Data APIs not Subscribed" in str(ei.value)
    assert "access denied" in str(ei.value)


def test_rate_limit_is_retried_then_succeeds(standin, make, clock):
    standin.inject_rate_limit(EXPIRY_LIST, times=2, style="data")
    p = make(rate_limit_backoff=1.0)
    assert p.expiry_list("NIFTY")
    assert len(standin.calls(EXPIRY_LIST)) == 3
    assert sum(s >= 1.0 for s in clock.sleeps) == 2  # backed off at least rate_limit_backoff, twice


def test_rate_limit_exhausted_raises_rate_limited(standin, make):
    standin.inject_rate_limit(EXPIRY_LIST, times=None)
    with pytest.raises(RateLimited) as ei:
        make(max_attempts=3).expiry_list("NIFTY")
    assert ei.value.code == "DH-904" and ei.value.status == 429
    assert "gave up after 3 attempts" in str(ei.value)
    assert len(standin.calls(EXPIRY_LIST)) == 3


def test_server_errors_are_retried(standin, make):
    standin.inject_server_error(OC, status=503, times=2)  # HTML pages the SDK cannot parse
    df = make(max_attempts=3).option_chain("NIFTY", SESSION, horizon_days=3)
    assert df.height == 40
    assert len(standin.calls(OC)) == 3


def test_server_errors_exhausted(standin, make):
    standin.inject_server_error(HIST, status=502, times=None)
    with pytest.raises(ProviderError) as ei:
        make(max_attempts=2).daily_bars("NIFTY", dt.date(2025, 7, 1), dt.date(2025, 7, 4))
    assert ei.value.status == 502 and ei.value.retryable and "gave up after 2 attempts" in str(ei.value)


def _count_real_sleeps(monkeypatch) -> list[float]:
    """Record every real time.sleep from here on (the throttle must sleep on the injected clock)."""
    sleeps: list[float] = []
    real = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (sleeps.append(s), real(s))[1])
    return sleeps


def test_timeout_is_retried_then_succeeds(standin, make):
    standin.inject_delay(EXPIRY_LIST, 0.8, times=1)
    p = make(timeout=0.2)
    assert p._http.timeout == (0.2, 0.2)  # the SDK's DhanHTTP.timeout (connect, read), used for every request
    assert p.expiry_list("NIFTY")
    assert len(standin.calls(EXPIRY_LIST)) == 2  # the timed-out request, then the retry that answered


def test_timeout_exhausted_raises_provider_error(standin, make):
    standin.inject_delay(EXPIRY_LIST, 0.6, times=None)
    with pytest.raises(ProviderError) as ei:
        make(timeout=0.15, max_attempts=2).expiry_list("NIFTY")
    assert len(standin.calls(EXPIRY_LIST)) == 2  # one request per attempt, each cut at the timeout
    err = ei.value
    assert err.status is None and err.retryable and "no answer" in str(err) and "timed out" in str(err)
    assert "gave up after 2 attempts" in str(err)


def test_bad_credentials_give_a_clear_error_without_the_token(standin, make, caplog):
    caplog.set_level(logging.DEBUG)
    p = make(access_token="wrong-secret-token")
    with pytest.raises(ProviderError) as ei:
        p.option_chain("NIFTY", SESSION)
    err = ei.value
    assert err.code == "DH-901" and err.status == 401 and not err.retryable
    assert "authentication failed" in str(err) and "DHAN_ACCESS_TOKEN" in str(err)
    assert "wrong-secret-token" not in str(err) and "wrong-secret-token" not in repr(p)
    assert "wrong-secret-token" not in caplog.text
    assert len(standin.calls()) == 1  # not retried
    assert standin.calls()[0].headers["access-token"] == "wrong-secret-token"


def test_empty_oc_is_data_unavailable_never_an_empty_frame(standin, make):
    standin.route("POST", OC)(lambda body, req: (200, {"data": {"last_price": 25000.0, "oc": {}}, "status": "success"}))
    p = make()
    with pytest.raises(DataUnavailable) as ei:
        p.option_chain("NIFTY", SESSION, horizon_days=3)
    assert "empty option chain" in str(ei.value) and "2025-07-17" in str(ei.value) and "NIFTY" in str(ei.value)

    frame, failures = p.option_chains(["NIFTY"], SESSION, horizon_days=3)
    assert frame.height == 0 and [(f.symbol, f.kind) for f in failures] == [("NIFTY", "missing")]


def test_chain_of_only_null_sides_is_data_unavailable(standin, make):
    standin.route("POST", OC)(lambda body, req: (200, {
        "data": {"last_price": 25000.0, "oc": {"25000.000000": {"ce": None, "pe": None}}}, "status": "success"}))
    with pytest.raises(DataUnavailable, match="no CE or PE"):
        make().option_chain("NIFTY", SESSION, horizon_days=3)


def test_past_session_is_unavailable_unless_stale_allowed(standin, make):
    with pytest.raises(DataUnavailable, match="only the live option chain"):
        make().option_chain("NIFTY", dt.date(2025, 7, 16))
    assert standin.calls() == []  # refused before any request

    stale = make(allow_stale=True).option_chain("NIFTY", dt.date(2025, 7, 16), horizon_days=2)
    assert stale["trade_date"].unique().to_list() == [dt.date(2025, 7, 16)]
    assert stale["snapshot_ts"].unique().to_list() == [NOW.astimezone(dt.UTC)]


def test_live_session_before_the_open_is_the_previous_session(make):
    early = make(now=lambda: dt.datetime(2025, 7, 17, 8, 0, tzinfo=IST))
    assert early.live_session() == dt.date(2025, 7, 16)
    weekend = make(now=lambda: dt.datetime(2025, 7, 19, 12, 0, tzinfo=IST))
    assert weekend.live_session() == dt.date(2025, 7, 18)


def test_throttle_spaces_requests_with_an_injected_clock(standin, make, clock, monkeypatch):
    p = make()  # default limits: data APIs 0.2 s apart, the same option chain 3 s apart
    seen: list[tuple[str, float]] = []
    for name in ("expiry_list", "option_chain"):
        real = getattr(p.client, name)

        def wrapped(*args, _real=real, _name=name):
            seen.append((_name if _name == "expiry_list" else args[2], clock.now()))
            return _real(*args)

        setattr(p.client, name, wrapped)

    real_sleeps = _count_real_sleeps(monkeypatch)
    p.option_chain("NIFTY", SESSION, horizon_days=10)
    p.option_chain("NIFTY", SESSION, horizon_days=10)
    assert real_sleeps == []  # the spacing waited on the injected clock, not for real

    times = [t for _, t in seen]
    assert len(seen) == 6
    assert all(b - a >= 0.2 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    first = {k: t for k, t in reversed(seen)}
    last = dict(seen)
    for expiry in ("2025-07-17", "2025-07-24"):
        assert last[expiry] - first[expiry] >= 3.0 - 1e-9
    # waited what was needed plus the margin: exactly 3.000 s was answered 429 at 2.999 s on Dhan's clock
    assert last["2025-07-17"] - first["2025-07-17"] == pytest.approx(3.05)


def test_global_chain_scope_spaces_every_chain_request(standin, make, clock):
    p = make(chain_scope="global")
    real = p.client.option_chain
    at: list[float] = []
    p.client.option_chain = lambda *a: (at.append(clock.now()), real(*a))[1]
    p.option_chain("NIFTY", SESSION, horizon_days=10)
    assert len(at) == 2 and at[1] - at[0] == pytest.approx(3.05)
    with pytest.raises(ConfigError, match="chain_scope"):
        make(chain_scope="per-symbol")


def test_throttle_unit():
    c = FakeClock()
    th = Throttle(clock=c.now, sleep=c.sleep)
    t1 = th.acquire([("a", 1.0)])
    t2 = th.acquire([("b", 1.0)])
    t3 = th.acquire([("a", 1.0), ("b", 0.5)])
    assert t1 == t2 == 1000.0 and t3 == 1001.0 and c.sleeps == [1.0]
    assert th.acquire([("b", 0.0)]) == 1001.5


def test_daily_bars_index_vix_and_stock(standin, make):
    p = make()
    nifty = p.daily_bars("NIFTY", dt.date(2025, 7, 1), dt.date(2025, 7, 8))
    assert dict(nifty.schema) == BARS_SCHEMA
    assert nifty["date"].to_list() == [dt.date(2025, 7, d) for d in (1, 2, 3, 4, 7, 8)]  # IST dates, weekdays
    raw = standin.historical_payload(13, dt.date(2025, 7, 1), dt.date(2025, 7, 9))
    assert nifty["close"].to_list() == raw["close"] and nifty["open"].to_list() == raw["open"]
    assert standin.calls(HIST)[0].body == {
        "securityId": "13", "exchangeSegment": "IDX_I", "instrument": "INDEX", "expiryCode": 0, "oi": False,
        "fromDate": "2025-07-01", "toDate": "2025-07-09", "dhanClientId": standin.client_id}  # toDate exclusive

    vix = p.daily_bars("INDIAVIX", dt.date(2025, 7, 7), dt.date(2025, 7, 7))
    assert vix["date"].to_list() == [dt.date(2025, 7, 7)] and vix["volume"].to_list() == [0.0]
    assert standin.calls(HIST)[1].body["securityId"] == "21"

    p.daily_bars("RELIANCE", dt.date(2025, 7, 7), dt.date(2025, 7, 8))
    body = standin.calls(HIST)[2].body
    assert (body["securityId"], body["exchangeSegment"], body["instrument"]) == ("2885", "NSE_EQ", "EQUITY")

    with pytest.raises(DataUnavailable, match="no daily bars"):
        p.daily_bars("NIFTY", dt.date(2025, 7, 5), dt.date(2025, 7, 6))  # a weekend


def test_from_env(standin, monkeypatch):
    for var in ("DHAN_CLIENT_ID", "DHAN_ACCESS_TOKEN", "DHAN_API_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError, match="DHAN_CLIENT_ID"):
        DhanProvider.from_env()
    monkeypatch.setenv("DHAN_CLIENT_ID", standin.client_id)
    with pytest.raises(ConfigError, match="DHAN_ACCESS_TOKEN is not set"):
        DhanProvider.from_env()
    monkeypatch.setenv("DHAN_ACCESS_TOKEN", "   ")
    with pytest.raises(ConfigError, match="DHAN_ACCESS_TOKEN"):
        DhanProvider.from_env()

    for var, value in standin.env().items():
        monkeypatch.setenv(var, value)
    p = DhanProvider.from_env(now=lambda: NOW)
    assert p.base_url == standin.base_url
    assert p.expiry_list("NIFTY")[0] == SESSION
    assert standin.access_token not in repr(p)
    # the root URL works too (/v2 is appended); an explicit base_url wins over the variable
    monkeypatch.setenv("DHAN_API_BASE_URL", standin.url)
    assert DhanProvider.from_env().base_url == standin.base_url
    assert DhanProvider.from_env(base_url="http://example.invalid/v2").base_url == "http://example.invalid/v2"
    monkeypatch.delenv("DHAN_API_BASE_URL")
    assert DhanProvider.from_env().base_url == "https://api.dhan.co/v2"


def test_factory_builds_dhan_from_env(standin, monkeypatch):
    from options_v4_dagster.market import get_provider

    for var, value in standin.env().items():
        monkeypatch.setenv(var, value)
    p = get_provider("dhan", now=lambda: NOW)
    assert isinstance(p, DhanProvider) and p.name == "dhan"
    assert p.option_chain("NIFTY", SESSION, horizon_days=3).height == 40


def test_standin_market_feed_through_the_sdk(standin, make):
    sdk = make().client
    ltp = sdk.ticker_data({"IDX_I": [13]})
    assert ltp["status"] == "success" and ltp["data"]["data"]["IDX_I"]["13"]["last_price"] == 25012.35
    quote = sdk.quote_data({"NSE_FNO": [40001]})
    q = quote["data"]["data"]["NSE_FNO"]["40001"]
    assert len(q["depth"]["buy"]) == 5 and "ohlc" in q
    ohlc = sdk.ohlc_data({"NSE_EQ": [2885]})
    assert set(ohlc["data"]["data"]["NSE_EQ"]["2885"]["ohlc"]) == {"open", "high", "low", "close"}


# --- market quotes ----------------------------------------------------------------------


def test_quotes_values_parsed_and_missing_ids_warned(standin, make, caplog):
    standin.unknown_ids = {99999}
    p = make()
    with caplog.at_level(logging.WARNING, logger="options_v4_dagster.market.dhan"):
        df = p.quotes(["40001", "40050", "99999", " 40001"])
    assert dict(df.schema) == QUOTE_SCHEMA
    assert df["security_id"].to_list() == ["40001", "40050"]  # request order; the unknown id is just absent
    assert "1 of 3 requested ids not in the answer" in caplog.text and "99999" in caplog.text
    assert [c.body for c in standin.calls(QUOTE)] == [
        {"NSE_FNO": [40001, 40050, 99999], "dhanClientId": standin.client_id}]  # int ids, de-duplicated

    raw = standin.quote_item("NSE_FNO", 40001)
    row = df.row(0, named=True)
    assert row["segment"] == "NSE_FNO" and row["ltp"] == raw["last_price"]
    assert (row["bid"], row["bid_qty"]) == (raw["depth"]["buy"][0]["price"], raw["depth"]["buy"][0]["quantity"])
    assert (row["ask"], row["ask_qty"]) == (raw["depth"]["sell"][0]["price"], raw["depth"]["sell"][0]["quantity"])
    assert row["bid"] < row["ltp"] < row["ask"]
    assert (row["volume"], row["oi"]) == (raw["volume"], raw["oi"])
    assert [row[c] for c in ("open", "high", "low", "close")] == [raw["ohlc"][c] for c in ("open", "high", "low", "close")]
    ltt = dt.datetime.strptime(raw["last_trade_time"], "%d/%m/%Y %H:%M:%S").replace(tzinfo=IST)
    assert row["last_trade_time"] == ltt and row["last_trade_time"].tzinfo is not None
    assert row["last_trade_time"].date() == SESSION
    assert row["fetched_at"] == NOW and str(row["fetched_at"].tzinfo) == "UTC"

    # an untraded contract: zero prices -> null (and its quantities), the 1980 placeholder -> null
    untraded = df.row(1, named=True)
    assert untraded["ltp"] is None and untraded["bid"] is None and untraded["ask"] is None
    assert untraded["bid_qty"] is None and untraded["ask_qty"] is None
    assert untraded["open"] is None and untraded["high"] is None and untraded["low"] is None
    assert untraded["close"] == standin.quote_item("NSE_FNO", 40050)["ohlc"]["close"] > 0
    assert untraded["last_trade_time"] is None and untraded["volume"] == 0.0


def test_quotes_ltp_and_ohlc_modes(standin, make):
    p = make()
    ltp = p.quotes(["13", "25"], segment="IDX_I", mode="ltp")
    assert ltp["ltp"].to_list() == [25012.35, 54321.10]
    assert ltp.select(pl.exclude("security_id", "segment", "ltp", "fetched_at")).null_count().sum_horizontal()[0] \
        == 2 * (len(QUOTE_SCHEMA) - 4)
    assert standin.calls("/v2/marketfeed/ltp")[0].body == {"IDX_I": [13, 25], "dhanClientId": standin.client_id}

    ohlc = p.quotes([2885], segment="NSE_EQ", mode="ohlc").row(0, named=True)
    raw = standin.quote_item("NSE_EQ", 2885, "ohlc")
    assert ohlc["security_id"] == "2885" and ohlc["close"] == raw["ohlc"]["close"] and ohlc["ltp"] == raw["last_price"]
    assert ohlc["bid"] is None and ohlc["volume"] is None and ohlc["last_trade_time"] is None
    assert len(standin.calls("/v2/marketfeed/ohlc")) == 1


def test_quotes_batches_of_1000_one_second_apart(standin, make, clock, monkeypatch):
    p = make()
    real = p.client.quote_data
    at: list[float] = []
    p.client.quote_data = lambda securities: (at.append(clock.now()), real(securities))[1]
    ids = [str(50001 + i) for i in range(1500)]
    real_sleeps = _count_real_sleeps(monkeypatch)
    df = p.quotes(ids)
    assert df.height == 1500 and df["security_id"].to_list() == ids
    assert [len(c.body["NSE_FNO"]) for c in standin.calls(QUOTE)] == [1000, 500]
    assert len(at) == 2 and at[1] - at[0] == pytest.approx(1.0)  # Dhan: quotes 1 request/s
    p.quotes(["40001"])  # the next quote request waits its second too; the other data APIs do not
    p.expiry_list("NIFTY")
    assert real_sleeps == []  # the 1 request/s spacing waited on the injected clock, not for real
    grants = p.throttle.grants
    assert [t - grants[0][0] for t, _ in grants] == pytest.approx([0.0, 1.0, 2.0, 2.0])
    assert [keys for _, keys in grants] == [("quote-api",)] * 3 + [("data-api",)]


def test_quotes_failure_envelope_is_a_typed_error(standin, make):
    standin.inject_failure(QUOTE, status=400, code="DH-905", message="Invalid SecurityId")
    with pytest.raises(ProviderError) as ei:
        make().quotes(["40001"])
    err = ei.value
    assert not isinstance(err, RateLimited) and not err.retryable
    assert err.code == "DH-905" and err.status == 400 and "Invalid SecurityId" in str(err)
    assert "market quote NSE_FNO" in str(err)
    assert len(standin.calls(QUOTE)) == 1

    standin.inject_failure(QUOTE, status=400, code="806", message="Data APIs not Subscribed", style="data")
    with pytest.raises(ProviderError, match="access denied") as ei:
        make().quotes(["40001"])
    assert ei.value.code == "806"

    standin.route("POST", QUOTE)(lambda body, req: (200, {"data": {"810": "Client ID invalid"}, "status": "failed"}))
    with pytest.raises(ProviderError, match="authentication failed"):
        make().quotes(["40001"])


def test_quotes_rate_limit_is_retried(standin, make, clock):
    standin.inject_rate_limit(QUOTE, times=1)
    df = make(rate_limit_backoff=1.0).quotes(["40001", "40002"])
    assert df.height == 2
    calls = standin.calls(QUOTE)
    assert len(calls) == 2 and calls[0].body == calls[1].body
    assert any(s >= 1.0 for s in clock.sleeps)


def test_quotes_arguments(standin, make):
    p = make()
    empty = p.quotes([])
    assert empty.height == 0 and dict(empty.schema) == QUOTE_SCHEMA
    with pytest.raises(ValueError, match="mode"):
        p.quotes(["1"], mode="full")
    with pytest.raises(ValueError, match="segment"):
        p.quotes(["1"], segment="NSE")
    with pytest.raises(ValueError, match="not a number"):
        p.quotes(["NIFTY"])
    with pytest.raises(TypeError):
        p.quotes("40001")
    assert standin.calls() == []
    with pytest.raises(ConfigError, match="quote_batch_size"):
        make(quote_batch_size=1001)


# --- outages: circuit breaker, per-call timeout, chain spacing margin (issue 9 item 11) -----------


def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Hanging:
    """A server that accepts connections and never answers; counts the connections (= attempts)."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list = []
        self._stop = False
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for c in self.accepted:
            c.close()


def _bars_loop(p: DhanProvider, symbols) -> list[Exception]:
    """What underlying_bars does: one call per symbol, each failure recorded and the loop goes on."""
    errors = []
    for sym in symbols:
        try:
            p.daily_bars(sym, dt.date(2025, 7, 1), dt.date(2025, 7, 4))
        except ProviderError as exc:
            errors.append(exc)
    return errors


SYMBOLS = ["NIFTY", "BANKNIFTY", "RELIANCE", "TCS", "INFY", "SBIN", "HDFCBANK", "ITC"]


def test_unreachable_api_opens_the_circuit_after_n_connection_failures(make):
    port = _closed_port()
    p = make(base_url=f"http://127.0.0.1:{port}", max_attempts=4, circuit_failures=6)
    errors = _bars_loop(p, SYMBOLS)
    assert len(errors) == len(SYMBOLS)
    # first symbol: 4 attempts; second: 2 more, the 6th failure opens the circuit; the rest send nothing
    assert p.attempts == 6 and p.refused == len(SYMBOLS) - 2
    assert not isinstance(errors[0], CircuitOpen) and "Connection refused" in str(errors[0])
    assert all(isinstance(e, CircuitOpen) for e in errors[1:])
    msg = str(errors[-1])
    assert f"circuit open after 6 consecutive connection failures to 127.0.0.1:{port}" in msg
    assert "Connection refused" in msg and "HTTPConnectionPool" not in msg
    assert p.circuit_open


def test_hanging_api_costs_one_read_timeout_per_attempt_then_fails_fast(make):
    server = Hanging()
    try:
        p = make(base_url=f"http://127.0.0.1:{server.port}", timeout=0.2, max_attempts=2, circuit_failures=3,
                 call_timeout=None)
        errors = _bars_loop(p, SYMBOLS)
        assert p.attempts == 3 and len(server.accepted) == 3  # 2 + 1 requests, then none
        assert all(isinstance(e, CircuitOpen) for e in errors[1:])
        assert "timed out" in str(errors[-1]) and f"127.0.0.1:{server.port}" in str(errors[-1])
    finally:
        server.close()


def test_call_timeout_bounds_the_attempts_of_one_call(make):
    server = Hanging()
    try:
        # 10 attempts allowed, but the call's budget is 2.5 read timeouts (the back-off sleeps are fake)
        p = make(base_url=f"http://127.0.0.1:{server.port}", timeout=0.2, max_attempts=10, circuit_failures=100,
                 call_timeout=0.5)
        with pytest.raises(ProviderError, match="timed out"):
            p.expiry_list("NIFTY")
        assert 2 <= p.attempts <= 3 and not p.circuit_open
    finally:
        server.close()


def test_http_errors_and_answers_reset_the_count_and_never_open_the_circuit(standin, make):
    standin.inject_server_error(HIST, status=503, times=None)  # the server answers: not a connection failure
    p = make(max_attempts=2, circuit_failures=1)
    errors = _bars_loop(p, SYMBOLS[:3])
    assert len(errors) == 3 and not any(isinstance(e, CircuitOpen) for e in errors)
    assert p.attempts == 6 and not p.circuit_open

    standin.inject_delay(EXPIRY_LIST, 0.6, times=2)  # two timeouts, then an answer: the count starts over
    q = make(timeout=0.15, max_attempts=3, circuit_failures=3)
    assert q.expiry_list("NIFTY")
    standin.inject_delay(EXPIRY_LIST, 0.6, times=2)
    assert q.expiry_list("NIFTY") and not q.circuit_open


def test_circuit_closes_again_after_its_reset_time(make, monkeypatch):
    port = _closed_port()
    p = make(base_url=f"http://127.0.0.1:{port}", max_attempts=1, circuit_failures=2, circuit_reset=60.0)
    _bars_loop(p, SYMBOLS[:3])
    assert p.attempts == 2 and p.circuit_open
    import options_v4_dagster.market.dhan_client as dhan_mod

    real = time.monotonic
    monkeypatch.setattr(dhan_mod.time, "monotonic", lambda: real() + 61.0)
    assert not p.circuit_open
    errors = _bars_loop(p, SYMBOLS[:2])  # half-open: one request tries; its failure re-opens the circuit
    assert p.attempts == 3 and all(isinstance(e, CircuitOpen) for e in errors)


def test_option_chains_stop_at_an_open_circuit(make):
    port = _closed_port()
    p = make(base_url=f"http://127.0.0.1:{port}", max_attempts=2, circuit_failures=2)
    with pytest.raises(CircuitOpen, match="circuit open after 2 consecutive"):
        p.option_chains(SYMBOLS, SESSION)
    assert p.attempts == 2


def test_from_env_reads_the_outage_settings(standin, monkeypatch):
    for var, value in standin.env().items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("DHAN_CIRCUIT_FAILURES", "7")
    monkeypatch.setenv("DHAN_TIMEOUT_SECONDS", "4")
    monkeypatch.setenv("DHAN_CONNECT_TIMEOUT_SECONDS", "1.5")
    p = DhanProvider.from_env(now=lambda: NOW)
    assert p.circuit_failures == 7 and p._http.timeout == (1.5, 4.0) and p.call_timeout == 25.0
    p.close()
    monkeypatch.setenv("DHAN_CIRCUIT_FAILURES", "0")
    with pytest.raises(ConfigError, match="DHAN_CIRCUIT_FAILURES"):
        DhanProvider.from_env()


def test_chain_spacing_keeps_a_margin_over_dhans_three_seconds(standin, make, clock):
    """Dhan answered 429 to a chain request 2.999 s after the previous one (its clock against ours): the
    same chain is asked again no sooner than CHAIN_INTERVAL > 3 s on the injected clock."""
    assert 3.0 < CHAIN_INTERVAL <= 3.1
    p = make()
    real = p.client.option_chain
    at: list[float] = []
    p.client.option_chain = lambda *a: (at.append(clock.now()), real(*a))[1]
    for _ in range(4):
        p.option_chain("NIFTY", SESSION, horizon_days=3)  # one expiry: the same chain four times
    gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
    assert len(gaps) == 3 and min(gaps) >= CHAIN_INTERVAL - 1e-9
    assert all(g - 3.0 >= 0.05 - 1e-9 for g in gaps)  # a clock 50 ms off still sees >= 3.000 s
