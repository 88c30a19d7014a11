"""Daily bars from Yahoo Finance through ``yfinance`` (1.x): ``SYMBOL.NS`` for stocks, ``^NSEI``
(NIFTY), ``^NSEBANK`` (BANKNIFTY), ``^INDIAVIX`` (INDIAVIX) and Yahoo's tickers of the other F&O
indices. Yahoo has no NSE option chains: :meth:`YFinanceProvider.option_chain` raises
:class:`DataUnavailable`.

Bars are unadjusted (``auto_adjust=False``: the exchange's traded prices, as NSE's files and the
option chains use). Dates are the IST session dates. ``volume`` is Yahoo's (shares; 0 for India
VIX).

yfinance hides errors by default and returns an empty frame; this provider turns its exceptions
on for its own calls (``yf.config.debug.hide_exceptions = False``, restored afterwards) and
raises :class:`DataUnavailable` for a missing symbol or an empty range, :class:`RateLimited` /
:class:`ProviderError` for HTTP failures after bounded retries, never an empty frame.

yfinance keeps process-wide state (one HTTP session, a timezone/cookie cache folder); the
``cache_dir`` and ``session`` given here are applied to it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from .. import calendar, config
from ..errors import DataError, DataUnavailable, ProviderError, RateLimited
from .base import MarketDataProvider, normalize_bars

PROVIDER = "yfinance"
IST = calendar.TZ_NAME  # pandas takes the zone name

#: Yahoo tickers of the F&O indices and India VIX; stocks are ``SYMBOL.NS``.
INDEX_TICKERS = {
    "NIFTY": "^NSEI",
    "BANKNIFTY": "^NSEBANK",
    "INDIAVIX": "^INDIAVIX",
    "FINNIFTY": "NIFTY_FIN_SERVICE.NS",
    "MIDCPNIFTY": "NIFTY_MID_SELECT.NS",
    "NIFTYNXT50": "^NSMIDCP",
}

_yf_lock = threading.Lock()  # yfinance's error switch and cache location are process-wide


def _set_cache_location(yf: Any, cache_dir: Path) -> None:
    """Point yfinance's timezone/cookie/ISIN caches at ``cache_dir``, also after they were used."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = yf.cache
    cache.set_cache_location(str(cache_dir))
    # The cache objects keep the database they opened first; drop them so they reopen here.
    for manager, attr in (("_TzCacheManager", "_tz_cache"), ("_CookieCacheManager", "_Cookie_cache"),
                          ("_ISINCacheManager", "_isin_cache")):
        cls = getattr(cache, manager, None)
        if cls is not None and hasattr(cls, attr):
            setattr(cls, attr, None)


class YFinanceProvider(MarketDataProvider):
    """Daily OHLCV for NSE underlyings, NIFTY and India VIX from Yahoo Finance."""

    name = PROVIDER

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        session: Any = None,
        timeout: float = 10.0,
        max_attempts: int = 3,
        backoff: float = 1.0,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] | None = None,
        tickers: dict[str, str] | None = None,
    ) -> None:
        """``cache_dir``: yfinance's cache folder (default ``<OPTIONS_V4_HOME>/yfinance``);
        ``session``: a ``requests`` / ``curl_cffi`` session for yfinance to use (default its own);
        ``tickers``: extra or replacement symbol -> Yahoo ticker mappings."""
        self.cache_dir = Path(cache_dir) if cache_dir else config.home_dir() / "yfinance"
        self.session = session
        self.timeout = timeout
        self.max_attempts = max(1, int(max_attempts))
        self.backoff = backoff
        self.backoff_max = backoff_max
        self._sleep = sleep or time.sleep
        self.tickers = {**INDEX_TICKERS, **{k.upper(): v for k, v in (tickers or {}).items()}}
        self._cache_set = False

    def ticker_for(self, symbol: str) -> str:
        sym = symbol.upper().strip()
        if not sym:
            raise DataError("empty symbol", field="symbol", source=PROVIDER)
        return self.tickers.get(sym) or f"{sym}.NS"

    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        raise DataUnavailable("yfinance has no NSE option chains; use the dhan, nse_files or simulated source",
                              symbol=symbol, session=session, source=PROVIDER)

    # --- bars ----------------------------------------------------------------------------

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        sym = symbol.upper()
        if end < start:
            raise ValueError(f"daily_bars: end {end} is before start {start}")
        ticker = self.ticker_for(sym)
        frame = self._fetch_retrying(sym, ticker, start, end)
        if frame is None or len(frame) == 0:
            raise DataUnavailable(f"yfinance returned no bars for {ticker} from {start} to {end}", symbol=sym,
                                  source=PROVIDER)
        missing = [c for c in ("Open", "High", "Low", "Close") if c not in frame.columns]
        if missing:
            raise DataError(f"yfinance answer for {ticker} lacks {missing}", symbol=sym, field=missing[0].lower(),
                            source=PROVIDER)
        index = frame.index
        if getattr(index, "tz", None) is None:
            dates = index.date
        else:
            dates = index.tz_convert(IST).date
        volume = frame["Volume"].to_numpy(dtype="float64") if "Volume" in frame.columns else None
        bars = pl.DataFrame({
            "date": list(dates),
            "symbol": sym,
            "open": frame["Open"].to_numpy(dtype="float64"),
            "high": frame["High"].to_numpy(dtype="float64"),
            "low": frame["Low"].to_numpy(dtype="float64"),
            "close": frame["Close"].to_numpy(dtype="float64"),
            "volume": volume,
            "source": PROVIDER,
        }, schema_overrides={"date": pl.Date, "volume": pl.Float64}, nan_to_null=True)
        bars = bars.filter(pl.col("date").is_between(start, end) & pl.col("close").is_not_null())
        if bars.height == 0:
            raise DataUnavailable(f"yfinance returned no bars for {ticker} from {start} to {end}", symbol=sym,
                                  source=PROVIDER)
        return normalize_bars(bars, symbol=sym)

    def _wait(self, state: RetryCallState) -> float:
        return min(self.backoff_max, self.backoff * 2 ** (state.attempt_number - 1))

    def _fetch_retrying(self, sym: str, ticker: str, start: dt.date, end: dt.date):
        attempts = 0

        def once():
            nonlocal attempts
            attempts += 1
            return self._fetch(sym, ticker, start, end)

        retrying = Retrying(stop=stop_after_attempt(self.max_attempts), wait=self._wait, sleep=self._sleep,
                            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
                            reraise=True)
        try:
            return retrying(once)
        except ProviderError as exc:
            if exc.retryable and attempts > 1:
                detail = getattr(exc, "detail", None) or str(exc)
                raise type(exc)(f"{detail} (gave up after {attempts} attempts)", provider=PROVIDER,
                                status=exc.status, code=exc.code, retryable=True) from exc
            raise

    def _fetch(self, sym: str, ticker: str, start: dt.date, end: dt.date):
        import yfinance as yf
        from yfinance import exceptions as yfe
        from yfinance.data import _is_transient_error

        with _yf_lock:
            if not self._cache_set:
                _set_cache_location(yf, self.cache_dir)
                self._cache_set = True
            hide = yf.config.debug.hide_exceptions
            yf.config.debug.hide_exceptions = False
            try:
                t = yf.Ticker(ticker, session=self.session) if self.session is not None else yf.Ticker(ticker)
                return t.history(start=start.isoformat(), end=(end + dt.timedelta(days=1)).isoformat(),
                                 interval="1d", auto_adjust=False, actions=False, timeout=self.timeout)
            except yfe.YFRateLimitError as exc:
                err = RateLimited(f"{ticker}: rate limited by Yahoo ({exc})", provider=PROVIDER, status=429,
                                  retryable=True)
                err.detail = f"{ticker}: rate limited by Yahoo ({exc})"
                raise err from exc
            except yfe.YFTickerMissingError as exc:
                reason = getattr(exc, "rationale", None) or str(exc)
                raise DataUnavailable(f"yfinance has no data for {ticker}: {reason}", symbol=sym,
                                      source=PROVIDER) from exc
            # yfinance's own errors, the transport's (requests and curl_cffi errors are OSErrors) and
            # undecodable answers (JSONDecodeError is a ValueError); anything else is a bug and raises
            except (yfe.YFException, OSError, ValueError, KeyError) as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                transient = (status == 429 or status >= 500) if status is not None else _is_transient_error(exc)
                err = ProviderError(f"{ticker}: {type(exc).__name__}: {exc}", provider=PROVIDER, status=status,
                                    retryable=transient)
                err.detail = f"{ticker}: {type(exc).__name__}: {exc}"
                raise err from exc
            finally:
                yf.config.debug.hide_exceptions = hide
