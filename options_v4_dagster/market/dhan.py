"""Live market data from Dhan through the official ``dhanhq`` SDK (2.3.0).

Construct with :meth:`DhanProvider.from_env` (``DHAN_CLIENT_ID``, ``DHAN_ACCESS_TOKEN``, optional
``DHAN_API_BASE_URL``) or directly with ``DhanProvider(client_id, access_token, base_url=...)``.
The token is handed to the SDK and never logged, shown in ``repr`` or put in an error message.

Units (Dhan -> :data:`~options_v4_dagster.market.base.CHAIN_SCHEMA`):

- Dhan's option chain gives ``oi``, ``previous_oi``, ``volume`` and the top-of-book quantities in
  **shares** (multiples of the lot size: NIFTY ``oi`` 3786445 = 58253 x 65). ``oi``, ``volume`` and
  ``oi_change`` are divided by the universe's lot size to give **contracts**, as NSE's chain shows
  them (fractional if Dhan's lot differs from the universe's). ``bid_qty``/``ask_qty`` stay in
  shares, as NSE's ``bidQty``/``askQty`` are.
- ``implied_volatility`` is in percent -> ``exchange_iv`` as a fraction; 0 -> null.
- ``top_bid_price``/``top_ask_price``/``last_price`` of 0 mean "none" -> null.
- ``close`` and ``futures_price`` are null (the live chain has neither; ``previous_close_price`` is
  the previous session's).
- ``snapshot_ts`` is the time of the request (the chain is live), ``underlying_price`` Dhan's
  ``last_price`` of the underlying.

Dhan only serves the *live* option chain: asking for any session other than the current one
raises :class:`DataUnavailable` unless ``allow_stale=True`` (then the live chain is labelled with
the requested session; ``snapshot_ts`` still tells when it was taken).

Requests are spaced to Dhan's published limits (data APIs 5/s -> 0.2 s apart; the option chain
once per 3 s for the same underlying and expiry, or for any option chain with
``chain_scope="global"``; spaced 3.05 s, since exactly 3.000 s was answered 429 at 2.999 s on Dhan's clock) by a :class:`Throttle` whose clock and sleep can be injected. Transient failures (no answer / timeout, HTTP 429 or 5xx, DH-904/805 rate
limit, DH-908/DH-909/800 server errors) are retried with exponential back-off a bounded number
of times, then raised as :class:`RateLimited` / :class:`ProviderError`. The SDK never raises: it
returns ``{'status': 'failure', 'remarks': ...}``; every failure becomes a typed error, and an
empty chain is :class:`DataUnavailable`, never an empty frame.

Outages: each HTTP request has a connect timeout (``connect_timeout``, 3 s) and a read timeout
(``timeout``, 10 s), and one call gives up retrying once ``call_timeout`` (25 s) has passed, so a
server that accepts and never answers costs seconds, not a minute a call. A circuit breaker counts
consecutive *connection failures* (refused, reset, timed out: no HTTP answer at all); after
``circuit_failures`` (4) of them every call fails at once, without a request, with one
:class:`CircuitOpen` error "circuit open after N consecutive connection failures to <host>: <cause>"
for ``circuit_reset`` seconds (600: the rest of a run); any HTTP answer, even an error, resets the
count. :meth:`DhanProvider.from_env` reads these from ``DHAN_CIRCUIT_FAILURES``,
``DHAN_CIRCUIT_RESET_SECONDS``, ``DHAN_TIMEOUT_SECONDS``, ``DHAN_CONNECT_TIMEOUT_SECONDS`` and
``DHAN_CALL_TIMEOUT_SECONDS`` (see :func:`options_v4_dagster.config.dhan_settings`).

Market quotes (:meth:`DhanProvider.quotes`, POST ``/marketfeed/quote|ltp|ohlc`` through the SDK's
``quote_data`` / ``ticker_data`` / ``ohlc_data``) come as a frame of :data:`QUOTE_SCHEMA`, one row per
instrument Dhan answered for. At most 1000 instruments go in one request and quote requests are
spaced 1 s apart (Dhan's published quote limit, a throttle key of its own apart from the 5/s of the
other data APIs). Ids Dhan leaves out of its answer (unknown or expired contracts) are simply absent
from the frame, and a warning naming them is logged; no error is raised for them. Prices of 0
(``last_price``, ``ohlc``, depth) mean "none" -> null, and a null bid/ask nulls its quantity;
``volume``/``oi`` are as Dhan gives them (shares for F&O). ``last_trade_time`` (Dhan's
``DD/MM/YYYY HH:MM:SS`` IST, only in the ``quote`` answer; its ``01/01/1980`` placeholder means
"never traded") and ``fetched_at`` (when the answer came) are tz-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import polars as pl
from tenacity import RetryCallState, Retrying, retry_if_exception

from .. import calendar, universe
from ..errors import CircuitOpen, ConfigError, DataError, DataUnavailable, ProviderError, RateLimited
from .base import Failure, MarketDataProvider, empty_chain, normalize_bars, normalize_chain

log = logging.getLogger(__name__)

PROVIDER = "dhan"
ENV_CLIENT_ID = "DHAN_CLIENT_ID"
ENV_ACCESS_TOKEN = "DHAN_ACCESS_TOKEN"
ENV_BASE_URL = "DHAN_API_BASE_URL"

IST = calendar.IST
MARKET_OPEN = dt.time(9, 15)
#: India VIX on Dhan (scrip master: NSE, I, 21, INDEX, "INDIA VIX").
VIX_INSTRUMENT = ("21", "IDX_I", "INDEX")

#: Dhan error codes (v2 annexure): trading-API style ``DH-9xx`` and data-API numbers.
RATE_LIMIT_CODES = frozenset({"DH-904", "805"})
AUTH_CODES = frozenset({"DH-901", "807", "808", "809", "810"})
ACCESS_CODES = frozenset({"DH-902", "DH-903", "806"})
TRANSIENT_CODES = frozenset({"DH-908", "DH-909", "800"})
NO_DATA_CODES = frozenset({"DH-907"})

#: Dhan v2 exchange segments accepted by the market quote APIs.
QUOTE_SEGMENTS = frozenset({"IDX_I", "NSE_EQ", "NSE_FNO", "NSE_CURRENCY", "BSE_EQ", "BSE_FNO", "BSE_CURRENCY",
                            "MCX_COMM"})
#: quote mode -> SDK method (POST /marketfeed/quote, /ltp, /ohlc).
QUOTE_METHODS = {"quote": "quote_data", "ltp": "ticker_data", "ohlc": "ohlc_data"}
#: Dhan's published cap on instruments in one market quote request.
QUOTE_BATCH_MAX = 1000
#: The frame :meth:`DhanProvider.quotes` returns.
QUOTE_SCHEMA: dict[str, pl.DataType] = {
    "security_id": pl.Utf8(), "segment": pl.Utf8(),
    **{c: pl.Float64() for c in ("ltp", "bid", "ask", "bid_qty", "ask_qty", "volume", "oi",
                                 "open", "high", "low", "close")},
    "last_trade_time": pl.Datetime("us", "UTC"), "fetched_at": pl.Datetime("us", "UTC"),
}


class Throttle:
    """Minimum spacing between requests that share a key; thread-safe.

    ``acquire([(key, interval), ...])`` blocks until every key's interval since its previous
    grant has passed, then grants all keys at once. ``clock`` and ``sleep`` are injectable (a
    fake clock whose ``sleep`` advances it makes tests instant). ``grants`` keeps the grant times.
    """

    def __init__(self, clock: Callable[[], float] | None = None, sleep: Callable[[float], None] | None = None,
                 keep: int = 1000) -> None:
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self._next: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        self._keep = keep
        self.grants: list[tuple[float, tuple[Hashable, ...]]] = []

    def acquire(self, slots: Iterable[tuple[Hashable, float]]) -> float:
        slots = list(slots)
        with self._lock:
            ready = max((self._next.get(k, float("-inf")) for k, _ in slots), default=float("-inf"))
            now = self.clock()
            if ready > now:
                self.sleep(ready - now)
                now = self.clock()
            at = max(now, ready)
            for key, interval in slots:
                self._next[key] = at + interval
            self.grants.append((at, tuple(k for k, _ in slots)))
            del self.grants[:-self._keep]
            return at


def _normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{ENV_BASE_URL}={url!r} is not an http(s) URL")
    return url if url.endswith("/v2") else url + "/v2"


def _num(value: Any, field: str, symbol: str, session: dt.date | None) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise DataError(f"Dhan gave a boolean for {field}", symbol=symbol, session=session, field=field, source=PROVIDER)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"Dhan gave a non-numeric {field}: {value!r}", symbol=symbol, session=session,
                        field=field, source=PROVIDER) from None


#: Dhan's last trade times before this are placeholders (``01/01/1980 00:00:00``: never traded).
_EPOCH_FLOOR = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_LTT_FORMATS = ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def _trade_time(value: Any, symbol: str) -> dt.datetime | None:
    """Dhan's ``last_trade_time`` -> tz-aware UTC: ``DD/MM/YYYY HH:MM:SS`` (or ISO) in IST unless it
    names a zone, or epoch seconds; empty or a pre-2000 placeholder -> None."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, bool):
        raise DataError("Dhan gave a boolean for last_trade_time", symbol=symbol, field="last_trade_time",
                        source=PROVIDER)
    if isinstance(value, int | float):
        when = dt.datetime.fromtimestamp(float(value), dt.UTC)
    elif isinstance(value, str):
        text = value.strip()
        parsed = None
        for fmt in _LTT_FORMATS:
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if parsed is None:
            try:
                parsed = dt.datetime.fromisoformat(text)
            except ValueError:
                raise DataError(f"Dhan gave an unreadable last_trade_time: {value!r}", symbol=symbol,
                                field="last_trade_time", source=PROVIDER) from None
        when = (parsed if parsed.tzinfo else parsed.replace(tzinfo=IST)).astimezone(dt.UTC)
    else:
        raise DataError(f"Dhan gave a last_trade_time of type {type(value).__name__}", symbol=symbol,
                        field="last_trade_time", source=PROVIDER)
    return when if when >= _EPOCH_FLOOR else None


def _error_details(remarks: Any, body: str | None) -> tuple[str | None, str | None, str]:
    """(code, type, message) from the SDK's remarks or, when those are empty, the raw body.

    Dhan's trading APIs answer ``{errorType, errorCode, errorMessage}`` (the SDK copies these into
    ``remarks``); its data APIs answer ``{"data": {"805": "..."}, "status": "failed"}``, which the
    SDK reports as remarks full of None, so the raw body is read too.
    """
    code = etype = msg = None
    if isinstance(remarks, dict):
        code, etype, msg = remarks.get("error_code"), remarks.get("error_type"), remarks.get("error_message")
    if not code and body:
        try:
            obj = json.loads(body)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            code = code or obj.get("errorCode")
            etype = etype or obj.get("errorType")
            msg = msg or obj.get("errorMessage")
            inner = obj.get("data")
            if not code and isinstance(inner, dict) and len(inner) == 1:
                (k, v), = inner.items()
                code, msg = str(k), msg or str(v)
            msg = msg or obj.get("remarks") or obj.get("message")
    if not msg:
        if isinstance(remarks, str) and remarks:
            msg = remarks
        elif body:
            msg = " ".join(body.split())[:200]
        else:
            msg = "no details"
    return (str(code) if code else None), (str(etype) if etype else None), str(msg)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


#: Dhan's option-chain limit is one request per 3 s; exactly 3.000 s was answered 429 (at 2.999 s on
#: Dhan's clock), so requests are spaced with a small margin.
CHAIN_INTERVAL = 3.05


def _connection_cause(message: str) -> str:
    """The useful end of a requests/urllib3 connection error (``[Errno 111] Connection refused``,
    ``Read timed out. (read timeout=10)``) instead of its 300-character repr."""
    m = re.search(r"\[Errno -?\d+\][^'\")]*", message)
    if m:
        return m.group(0).strip()
    m = re.search(r"(Read timed out[^'\")]*\)?|Connect(ion)? timed out[^'\")]*\)?|timed out)", message)
    if m:
        return m.group(0).strip()
    m = re.search(r"(Connection (reset|aborted|refused)[^'\")]*|RemoteDisconnected[^'\")]*)", message)
    return m.group(0).strip() if m else " ".join(message.split())[:160]


class DhanProvider(MarketDataProvider):
    """Option chains, expiries and daily bars from Dhan (see the module docstring)."""

    name = PROVIDER

    def __init__(
        self,
        client_id: str,
        access_token: str,
        *,
        base_url: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        call_timeout: float | None = 25.0,
        circuit_failures: int = 4,
        circuit_reset: float = 600.0,
        max_attempts: int = 4,
        backoff: float = 0.5,
        backoff_max: float = 8.0,
        rate_limit_backoff: float = 1.0,
        data_interval: float = 0.2,
        chain_interval: float = CHAIN_INTERVAL,
        quote_interval: float = 1.0,
        quote_batch_size: int = QUOTE_BATCH_MAX,
        chain_scope: str = "expiry",
        allow_stale: bool = False,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if not client_id or not str(client_id).strip():
            raise ConfigError(f"{ENV_CLIENT_ID} is empty: the dhan source needs a Dhan client id")
        if not access_token or not str(access_token).strip():
            raise ConfigError(f"{ENV_ACCESS_TOKEN} is empty: the dhan source needs a Dhan access token")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if circuit_failures < 1:
            raise ConfigError("circuit_failures (DHAN_CIRCUIT_FAILURES) must be at least 1")
        if chain_scope not in ("expiry", "global"):
            raise ConfigError(f"chain_scope must be 'expiry' or 'global', not {chain_scope!r}")
        if not 1 <= quote_batch_size <= QUOTE_BATCH_MAX:
            raise ConfigError(f"quote_batch_size must be between 1 and {QUOTE_BATCH_MAX}, not {quote_batch_size}")
        from dhanhq import DhanContext, dhanhq

        self._ctx = DhanContext(str(client_id).strip(), str(access_token).strip())
        http = self._ctx.get_dhan_http()
        if base_url:
            http.base_url = _normalize_base_url(base_url)
        # (connect, read) timeouts of every request the SDK sends (requests' timeout tuple)
        http.timeout = (min(connect_timeout, timeout), timeout)
        # The SDK drops the HTTP status and, for data-API errors, the error code; keep both.
        self._tl = threading.local()
        http.session.hooks["response"].append(self._capture_response)
        self._http = http
        self._dhan = dhanhq(self._ctx)

        self.client_id = str(client_id).strip()
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        #: seconds one call may spend across its attempts (None: only max_attempts bounds it)
        self.call_timeout = call_timeout
        self.circuit_failures = circuit_failures
        self.circuit_reset = circuit_reset
        self._conn_failures = 0  # consecutive requests that got no HTTP answer
        self._circuit_until: float | None = None
        self._circuit_cause = ""
        self._circuit_lock = threading.Lock()
        #: attempts (HTTP requests) made and calls refused by the open circuit, for logs and tests
        self.attempts = 0
        self.refused = 0
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.rate_limit_backoff = rate_limit_backoff
        self.data_interval = data_interval
        self.chain_interval = chain_interval
        #: spacing of market quote requests (Dhan: 1 request/s) and instruments per request (<= 1000)
        self.quote_interval = quote_interval
        self.quote_batch_size = quote_batch_size
        #: "expiry": ``chain_interval`` between requests for the same underlying and expiry (Dhan's
        #: "one unique request every 3 seconds"); "global": between any two option-chain requests.
        self.chain_scope = chain_scope
        self.allow_stale = allow_stale
        self._sleep = sleep or time.sleep
        self.throttle = Throttle(clock=clock, sleep=self._sleep)
        self._now = now or (lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def from_credentials(cls, client_id: str, access_token: str, base_url: str | None = None,
                         **kw: Any) -> DhanProvider:
        """Credentials passed in (the Dagster resource resolves them from ``dg.EnvVar``); an empty one is a
        :class:`ConfigError` naming its variable. REST base from ``base_url``, else ``DHAN_API_BASE_URL``,
        else Dhan's (``https://api.dhan.co/v2``); transport settings from :func:`config.dhan_settings`."""
        for var, value in ((ENV_CLIENT_ID, client_id), (ENV_ACCESS_TOKEN, access_token)):
            if not (value or "").strip():
                raise ConfigError(f"{var} is not set: the dhan market data source needs {ENV_CLIENT_ID} and "
                                  f"{ENV_ACCESS_TOKEN} (from web.dhan.co > My Profile > DhanHQ Trading APIs)")
        base_url = base_url or os.environ.get(ENV_BASE_URL, "").strip() or None
        from .. import config

        kw = {**config.dhan_settings(), **kw}
        return cls(client_id.strip(), access_token.strip(), base_url=base_url, **kw)

    @classmethod
    def from_env(cls, base_url: str | None = None, **kw: Any) -> DhanProvider:
        """Credentials from ``DHAN_CLIENT_ID`` / ``DHAN_ACCESS_TOKEN`` (the CLI's path; Dagster runs pass
        them to :meth:`from_credentials`), otherwise as :meth:`from_credentials`."""
        return cls.from_credentials(os.environ.get(ENV_CLIENT_ID, ""), os.environ.get(ENV_ACCESS_TOKEN, ""),
                                    base_url, **kw)

    def __repr__(self) -> str:
        return f"DhanProvider(client_id={self.client_id!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def client(self):
        """The SDK object (``dhanhq``), for callers that need endpoints this class does not wrap."""
        return self._dhan

    def close(self) -> None:
        self._http.session.close()

    # --- transport ---------------------------------------------------------------------

    def _capture_response(self, response, *args, **kwargs):
        try:
            body = response.text[:4000]
        except (UnicodeDecodeError, LookupError, RuntimeError):  # undecodable body: the status is what matters
            body = None
        self._tl.last = (response.status_code, body)
        return response

    def _wait(self, state: RetryCallState) -> float:
        wait = min(self.backoff_max, self.backoff * 2 ** (state.attempt_number - 1))
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimited):
            wait = max(wait, self.rate_limit_backoff)
        return wait

    @staticmethod
    def _error(cls: type[ProviderError], what: str, message: str, *, status: int | None,
               code: str | None, retryable: bool) -> ProviderError:
        text = f"{what}: {message}" if what else message
        err = cls(text, provider=PROVIDER, status=status, code=code, retryable=retryable)
        err.detail = text  # the message without the provider/status suffix, for re-wrapping
        return err

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def circuit_open(self) -> bool:
        return self._circuit_until is not None and time.monotonic() < self._circuit_until

    def _circuit_error(self, what: str) -> CircuitOpen:
        return self._error(CircuitOpen, what, f"circuit open after {self.circuit_failures} consecutive connection "
                           f"failures to {self.host}: {self._circuit_cause} (no request sent; retried after "
                           f"{self.circuit_reset:.0f} s)", status=None, code=None, retryable=False)

    def _check_circuit(self, what: str) -> None:
        with self._circuit_lock:
            if self._circuit_until is None:
                return
            if time.monotonic() < self._circuit_until:
                self.refused += 1
                raise self._circuit_error(what)
            # half-open: the reset time has passed, one request may try again (a failure re-opens at once)
            self._circuit_until = None
            self._conn_failures = self.circuit_failures - 1

    def _record_answer(self, *, no_answer: bool, what: str = "", exc: ProviderError | None = None) -> None:
        """``no_answer=True``: this request got no HTTP answer (counts towards opening the circuit)."""
        with self._circuit_lock:
            if not no_answer:
                self._conn_failures = 0
                return
            self._conn_failures += 1
            self._circuit_cause = getattr(exc, "cause", "") or str(exc)
            if self._conn_failures >= self.circuit_failures and self._circuit_until is None:
                self._circuit_until = time.monotonic() + self.circuit_reset
                log.error("dhan: circuit open after %d consecutive connection failures to %s: %s; failing fast "
                          "for %.0f s", self._conn_failures, self.host, self._circuit_cause, self.circuit_reset)
        if self._circuit_until is not None and self._conn_failures >= self.circuit_failures:
            raise self._circuit_error(what) from exc

    def _call(self, what: str, fn: Callable[..., dict], *args: Any, symbol: str | None = None,
              session: dt.date | None = None, chain_key: tuple | None = None,
              slots: Sequence[tuple[Hashable, float]] | None = None) -> Any:
        """One SDK call: throttled, retried on transient failures, unwrapped or turned into a typed error.

        ``slots`` replaces the default throttle key (the data APIs' 5/s); ``fn`` is called anew on
        every attempt (the SDK adds ``dhanClientId`` to the payload it is given)."""
        slots = list(slots) if slots is not None else [("data-api", self.data_interval)]
        if chain_key is not None:
            key = ("optionchain",) if self.chain_scope == "global" else ("optionchain", *chain_key)
            slots.append((key, self.chain_interval))
        attempts = 0
        started = time.monotonic()

        def once() -> Any:
            nonlocal attempts
            self._check_circuit(what)
            attempts += 1
            self.attempts += 1
            self.throttle.acquire(slots)
            self._tl.last = None
            resp = fn(*args)
            try:
                out = self._unwrap(resp, what, symbol, session)
            except ProviderError as exc:
                self._record_answer(no_answer=getattr(exc, "connection_failure", False), what=what, exc=exc)
                raise
            except DataError:
                self._record_answer(no_answer=False)
                raise
            self._record_answer(no_answer=False)
            return out

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number >= self.max_attempts:
                return True
            return self.call_timeout is not None and time.monotonic() - started >= self.call_timeout

        retrying = Retrying(stop=stop, wait=self._wait,
                            retry=retry_if_exception(_retryable), sleep=self._sleep, reraise=True,
                            before_sleep=lambda s: log.warning("dhan %s failed (attempt %d), retrying: %s", what,
                                                               s.attempt_number, s.outcome.exception()))
        try:
            return retrying(once)
        except CircuitOpen:
            raise
        except ProviderError as exc:
            if exc.retryable and attempts > 1:
                raise self._error(type(exc), "", f"{getattr(exc, 'detail', exc)} (gave up after {attempts} attempts)",
                                  status=exc.status, code=exc.code, retryable=True) from exc
            raise

    def _unwrap(self, resp: Any, what: str, symbol: str | None, session: dt.date | None) -> Any:
        last = getattr(self._tl, "last", None)
        status, body = (last if last else (None, None))
        if not isinstance(resp, dict):
            raise self._error(ProviderError, what, f"the SDK returned {type(resp).__name__}, not an envelope",
                              status=status, code=None, retryable=False)
        if resp.get("status") == "success":
            data = resp.get("data")
            inner_status = data.get("status") if isinstance(data, dict) else None
            if inner_status in (None, "success"):
                return data
            body = json.dumps(data)  # HTTP 2xx carrying a failure: classify it like one
        code, etype, message = _error_details(resp.get("remarks"), body)
        detail = f"{etype}: {message}" if etype else message
        if status is None and body is None:
            err = self._error(ProviderError, what, f"no answer from {self.base_url} ({_connection_cause(message)})",
                              status=None, code=None, retryable=True)
            err.connection_failure = True
            err.cause = _connection_cause(message)
            raise err
        if status == 429 or code in RATE_LIMIT_CODES:
            raise self._error(RateLimited, what, f"rate limited ({detail})", status=status, code=code, retryable=True)
        if status == 401 or code in AUTH_CODES:
            raise self._error(ProviderError, what,
                              f"authentication failed ({detail}); check {ENV_CLIENT_ID} and {ENV_ACCESS_TOKEN} "
                              "(Dhan access tokens expire)", status=status, code=code, retryable=False)
        if status == 403 or code in ACCESS_CODES:
            raise self._error(ProviderError, what, f"access denied ({detail}); is the Data API subscription active?",
                              status=status, code=code, retryable=False)
        if (status is not None and status >= 500) or code in TRANSIENT_CODES:
            raise self._error(ProviderError, what, f"server error ({detail})", status=status, code=code,
                              retryable=True)
        if code in NO_DATA_CODES:
            raise DataUnavailable(f"{what}: Dhan has no data ({code}: {message})", symbol=symbol, session=session,
                                  source=PROVIDER)
        if status is not None and 200 <= status < 300:
            detail = f"unreadable answer ({detail})"
        else:
            detail = f"request rejected ({detail})"
        raise self._error(ProviderError, what, detail, status=status, code=code, retryable=False)

    # --- instruments -------------------------------------------------------------------

    def symbols_for(self, session: dt.date, universe_symbols: Iterable[str]) -> list[str]:
        out = []
        for sym in universe_symbols:
            try:
                if universe.get(sym).dhan_security_id:
                    out.append(sym)
            except DataError:
                continue
        return out

    def _underlying(self, symbol: str) -> universe.Underlying:
        und = universe.get(symbol)
        if not und.dhan_security_id or not und.dhan_segment:
            raise DataUnavailable("no Dhan security id in the universe table", symbol=symbol, field="dhan_security_id",
                                  source=PROVIDER)
        return und

    def _bars_instrument(self, symbol: str) -> tuple[str, str, str]:
        if symbol == universe.VIX_SYMBOL:
            return VIX_INSTRUMENT
        und = self._underlying(symbol)
        instrument = "INDEX" if und.dhan_segment == "IDX_I" else "EQUITY"
        return und.dhan_security_id, und.dhan_segment, instrument

    def live_session(self) -> dt.date:
        """The session whose chain Dhan serves now: today from 09:15 IST on a session day, else the previous one."""
        now = self._now().astimezone(IST)
        today = now.date()
        if calendar.is_session(today) and now.time() >= MARKET_OPEN:
            return today
        return calendar.previous_session(today)

    # --- data --------------------------------------------------------------------------

    def expiry_list(self, symbol: str) -> list[dt.date]:
        """Expiries Dhan lists now for ``symbol``'s options, sorted."""
        sym = symbol.upper()
        und = self._underlying(sym)
        data = self._call(f"expiry list {sym}", self._dhan.expiry_list, int(und.dhan_security_id),
                          und.dhan_segment, symbol=sym)
        raw = data.get("data") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            raise DataError("Dhan's expiry list answer has no data list", symbol=sym, field="data", source=PROVIDER)
        if not raw:
            raise DataUnavailable("Dhan lists no option expiries", symbol=sym, field="expiry", source=PROVIDER)
        try:
            return sorted({dt.date.fromisoformat(str(x)[:10]) for x in raw})
        except ValueError:
            raise DataError(f"Dhan's expiry list has a date that is not YYYY-MM-DD: {raw[:3]!r}", symbol=sym,
                            field="expiry", source=PROVIDER) from None

    def option_chains(self, symbols: Iterable[str], session: dt.date, *, horizon_days: int = 90):
        """As the base class (one symbol's failure is recorded), except that an open circuit stops the loop:
        Dhan is unreachable, so the step fails with that one error instead of a failure row per symbol."""
        frames, failures = [], []
        for sym in symbols:
            try:
                frames.append(self.option_chain(sym, session, horizon_days=horizon_days))
            except CircuitOpen:
                raise
            except (DataError, ProviderError) as exc:
                failures.append(Failure.from_exception(sym, "option_chain", exc))
        return (pl.concat(frames, how="vertical") if frames else empty_chain()), failures

    def option_chain(self, symbol: str, session: dt.date, *, horizon_days: int = 90) -> pl.DataFrame:
        sym = symbol.upper()
        und = self._underlying(sym)
        live = self.live_session()
        if session != live and not self.allow_stale:
            raise DataUnavailable(
                f"Dhan serves only the live option chain (session {live}); use the nse_files source for past "
                "sessions or allow_stale=True to label the live chain with this session",
                symbol=sym, session=session, source=PROVIDER)
        limit = session + dt.timedelta(days=horizon_days)
        expiries = [e for e in self.expiry_list(sym) if session <= e <= limit]
        if not expiries:
            raise DataUnavailable(f"Dhan lists no expiry within {horizon_days} days", symbol=sym, session=session,
                                  field="expiry", source=PROVIDER)
        snapshot = self._now().astimezone(dt.UTC)
        frames = [self._chain_for_expiry(sym, und, expiry, session, snapshot) for expiry in expiries]
        return normalize_chain(pl.concat(frames, how="vertical"), symbol=sym, session=session)

    def _chain_for_expiry(self, sym: str, und: universe.Underlying, expiry: dt.date, session: dt.date,
                          snapshot: dt.datetime) -> pl.DataFrame:
        what = f"option chain {sym} {expiry.isoformat()}"
        data = self._call(what, self._dhan.option_chain, int(und.dhan_security_id), und.dhan_segment,
                          expiry.isoformat(), symbol=sym, session=session,
                          chain_key=(und.dhan_security_id, und.dhan_segment, expiry))
        payload = data.get("data") if isinstance(data, dict) else None
        if not isinstance(payload, dict):
            raise DataError(f"{what}: answer has no data object", symbol=sym, session=session, field="data",
                            source=PROVIDER)
        oc = payload.get("oc")
        if not oc:
            raise DataUnavailable(f"Dhan returned an empty option chain for expiry {expiry}", symbol=sym,
                                  session=session, field="oc", source=PROVIDER)
        if not isinstance(oc, dict):
            raise DataError(f"{what}: oc is not an object", symbol=sym, session=session, field="oc", source=PROVIDER)
        underlying = _num(payload.get("last_price"), "underlying_price", sym, session)

        cols: dict[str, list] = {k: [] for k in (
            "strike", "option_type", "bid", "ask", "bid_qty", "ask_qty", "ltp", "volume", "oi", "prev_oi",
            "iv", "security_id")}
        fields = (("bid", "top_bid_price"), ("ask", "top_ask_price"), ("bid_qty", "top_bid_quantity"),
                  ("ask_qty", "top_ask_quantity"), ("ltp", "last_price"), ("volume", "volume"), ("oi", "oi"),
                  ("prev_oi", "previous_oi"), ("iv", "implied_volatility"))
        for key, entry in oc.items():
            try:
                strike = float(key)
            except ValueError:
                raise DataError(f"{what}: strike key {key!r} is not a number", symbol=sym, session=session,
                                field="strike", source=PROVIDER) from None
            if entry is None:
                continue
            if not isinstance(entry, dict):
                raise DataError(f"{what}: strike {key} is not an object", symbol=sym, session=session,
                                field="oc", source=PROVIDER)
            for side, option_type in (("ce", "CE"), ("pe", "PE")):
                quote = entry.get(side)
                if not quote:
                    continue
                cols["strike"].append(strike)
                cols["option_type"].append(option_type)
                for col, src in fields:
                    cols[col].append(_num(quote.get(src), src, sym, session))
                sid = quote.get("security_id")
                cols["security_id"].append(None if sid in (None, "") else str(sid))
        if not cols["strike"]:
            raise DataUnavailable(f"Dhan's option chain for expiry {expiry} has no CE or PE quotes", symbol=sym,
                                  session=session, field="oc", source=PROVIDER)

        lot = float(und.lot_size)
        schema = {k: pl.Float64 for k in cols} | {"option_type": pl.Utf8, "security_id": pl.Utf8}
        raw = pl.DataFrame(cols, schema=schema)

        def positive(c: str) -> pl.Expr:
            return pl.when(pl.col(c) > 0).then(pl.col(c)).otherwise(None)

        return raw.select(
            pl.lit(session, dtype=pl.Date).alias("trade_date"),
            pl.lit(sym).alias("symbol"),
            pl.lit(expiry, dtype=pl.Date).alias("expiry"),
            "strike",
            "option_type",
            positive("bid").alias("bid"),
            positive("ask").alias("ask"),
            pl.when(pl.col("bid") > 0).then(pl.col("bid_qty")).alias("bid_qty"),
            pl.when(pl.col("ask") > 0).then(pl.col("ask_qty")).alias("ask_qty"),
            positive("ltp").alias("ltp"),
            pl.lit(None, dtype=pl.Float64).alias("close"),
            (pl.col("volume") / lot).alias("volume"),
            (pl.col("oi") / lot).alias("oi"),
            ((pl.col("oi") - pl.col("prev_oi")) / lot).alias("oi_change"),
            (positive("iv") / 100.0).alias("exchange_iv"),
            pl.lit(underlying, dtype=pl.Float64).alias("underlying_price"),
            pl.lit(None, dtype=pl.Float64).alias("futures_price"),
            pl.lit(und.lot_size, dtype=pl.Int64).alias("lot_size"),
            "security_id",
            pl.lit(snapshot, dtype=pl.Datetime("us", "UTC")).alias("snapshot_ts"),
            pl.lit(PROVIDER).alias("source"),
        )

    def daily_bars(self, symbol: str, start: dt.date, end: dt.date) -> pl.DataFrame:
        """Daily OHLCV in [start, end] (Dhan's ``toDate`` is exclusive, so end + 1 day is asked)."""
        sym = symbol.upper()
        if end < start:
            raise ValueError(f"daily_bars: end {end} is before start {start}")
        security_id, segment, instrument = self._bars_instrument(sym)
        data = self._call(f"daily bars {sym} {start}..{end}", self._dhan.historical_daily_data, security_id,
                          segment, instrument, start.isoformat(), (end + dt.timedelta(days=1)).isoformat(),
                          symbol=sym)
        if not isinstance(data, dict):
            raise DataError("Dhan's historical answer is not an object", symbol=sym, field="data", source=PROVIDER)
        names = ("open", "high", "low", "close", "volume", "timestamp")
        columns = {n: data.get(n) or [] for n in names}
        for n, values in columns.items():
            if not isinstance(values, list):
                raise DataError(f"Dhan's historical {n} is not an array", symbol=sym, field=n, source=PROVIDER)
        lengths = {n: len(v) for n, v in columns.items() if n != "volume" or v}
        if len(set(lengths.values())) > 1:
            raise DataError(f"Dhan's historical arrays differ in length: {lengths}", symbol=sym, field="timestamp",
                            source=PROVIDER)
        if not columns["timestamp"]:
            raise DataUnavailable(f"Dhan has no daily bars from {start} to {end}", symbol=sym, source=PROVIDER)
        if not columns["volume"]:
            columns["volume"] = [None] * len(columns["timestamp"])
        try:
            raw = pl.DataFrame(columns, schema={n: pl.Float64 for n in names}, strict=False)
        except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:  # unconvertible values
            raise DataError(f"Dhan's historical arrays are not numeric ({exc.__class__.__name__})", symbol=sym,
                            field="close", source=PROVIDER) from exc
        bars = raw.select(
            pl.from_epoch((pl.col("timestamp") * 1_000_000).round().cast(pl.Int64), time_unit="us")
            .dt.replace_time_zone("UTC").dt.convert_time_zone(str(IST)).dt.date().alias("date"),
            pl.lit(sym).alias("symbol"),
            "open", "high", "low", "close", "volume",
            pl.lit(PROVIDER).alias("source"),
        ).filter(pl.col("date").is_between(start, end))
        if bars.height == 0:
            raise DataUnavailable(f"Dhan has no daily bars from {start} to {end}", symbol=sym, source=PROVIDER)
        return normalize_bars(bars, symbol=sym)

    # --- market quotes -------------------------------------------------------------------

    def quotes(self, security_ids: Sequence[str], segment: str = "NSE_FNO", mode: str = "quote") -> pl.DataFrame:
        """Market quotes for ``security_ids`` of one exchange ``segment`` as a :data:`QUOTE_SCHEMA` frame.

        ``mode``: ``"quote"`` (LTP, OHLC, top of the 5-level depth, volume, OI, last trade time),
        ``"ohlc"`` (LTP and OHLC) or ``"ltp"``; columns a mode does not give are null. Ids are
        de-duplicated and sent in batches of at most ``quote_batch_size`` (1000), 1 s apart. Rows follow
        the order of the request; ids missing from Dhan's answer are left out and logged as a warning.
        Failures are typed errors as for the other calls (no partial frame).
        """
        if mode not in QUOTE_METHODS:
            raise ValueError(f"quotes: mode must be one of {sorted(QUOTE_METHODS)}, not {mode!r}")
        if segment not in QUOTE_SEGMENTS:
            raise ValueError(f"quotes: unknown Dhan exchange segment {segment!r} (one of {sorted(QUOTE_SEGMENTS)})")
        if isinstance(security_ids, str | bytes):
            raise TypeError("quotes: security_ids must be a sequence of ids, not one string")
        ids: list[str] = []
        for raw in security_ids:
            sid = str(raw).strip()
            if not sid.isdigit():
                raise ValueError(f"quotes: security id {raw!r} is not a number")
            sid = str(int(sid))
            if sid not in ids:
                ids.append(sid)
        if not ids:
            return pl.DataFrame(schema=QUOTE_SCHEMA)

        method = QUOTE_METHODS[mode]
        size = self.quote_batch_size
        rows: list[dict[str, Any]] = []
        missing: list[str] = []
        for start in range(0, len(ids), size):
            batch = ids[start:start + size]
            what = f"market {mode} {segment} ({len(batch)} instruments)"
            data = self._call(what, lambda b=batch: getattr(self._dhan, method)({segment: [int(x) for x in b]}),
                              slots=[("quote-api", self.quote_interval)])
            fetched = self._now().astimezone(dt.UTC)
            answered = self._quote_segment(data, what, segment)
            for sid in batch:
                item = answered.get(sid)
                if item is None:
                    missing.append(sid)
                    continue
                if not isinstance(item, dict):
                    raise DataError(f"{what}: the quote of {sid} is not an object", symbol=f"{segment}:{sid}",
                                    field="data", source=PROVIDER)
                rows.append(self._quote_row(item, sid, segment, fetched))
        if missing:
            shown = ", ".join(missing[:20]) + (", ..." if len(missing) > 20 else "")
            log.warning("dhan market %s %s: %d of %d requested ids not in the answer (unknown or expired): %s",
                        mode, segment, len(missing), len(ids), shown)
        return pl.DataFrame(rows, schema=QUOTE_SCHEMA, orient="row") if rows else pl.DataFrame(schema=QUOTE_SCHEMA)

    @staticmethod
    def _quote_segment(data: Any, what: str, segment: str) -> dict[str, Any]:
        payload = data.get("data") if isinstance(data, dict) else None
        if not isinstance(payload, dict):
            raise DataError(f"{what}: answer has no data object", field="data", source=PROVIDER)
        answered = payload.get(segment)
        if answered is None:
            return {}
        if not isinstance(answered, dict):
            raise DataError(f"{what}: data.{segment} is not an object", field=segment, source=PROVIDER)
        return {str(k).strip(): v for k, v in answered.items()}

    @staticmethod
    def _quote_row(item: dict, sid: str, segment: str, fetched: dt.datetime) -> dict[str, Any]:
        symbol = f"{segment}:{sid}"

        def num(value: Any, field: str) -> float | None:
            return _num(value, field, symbol, None)

        def price(value: Any, field: str) -> float | None:
            x = num(value, field)
            return x if x is not None and x > 0 else None

        ohlc = item.get("ohlc") or {}
        depth = item.get("depth") or {}
        if not isinstance(ohlc, dict) or not isinstance(depth, dict):
            raise DataError("Dhan's quote has an ohlc or depth that is not an object", symbol=symbol,
                            field="ohlc" if not isinstance(ohlc, dict) else "depth", source=PROVIDER)

        def top(side: str) -> tuple[float | None, float | None]:
            levels = depth.get(side) or []
            if not isinstance(levels, list):
                raise DataError(f"Dhan's quote depth.{side} is not a list", symbol=symbol, field=f"depth.{side}",
                                source=PROVIDER)
            level = levels[0] if levels and isinstance(levels[0], dict) else {}
            p = price(level.get("price"), f"depth.{side}.price")
            return p, (num(level.get("quantity"), f"depth.{side}.quantity") if p is not None else None)

        bid, bid_qty = top("buy")
        ask, ask_qty = top("sell")
        return {
            "security_id": sid, "segment": segment,
            "ltp": price(item.get("last_price"), "last_price"),
            "bid": bid, "ask": ask, "bid_qty": bid_qty, "ask_qty": ask_qty,
            "volume": num(item.get("volume"), "volume"), "oi": num(item.get("oi"), "oi"),
            **{c: price(ohlc.get(c), f"ohlc.{c}") for c in ("open", "high", "low", "close")},
            "last_trade_time": _trade_time(item.get("last_trade_time"), symbol),
            "fetched_at": fetched,
        }
