"""A session with Dhan through the official ``dhanhq`` SDK (2.3.0): construction, transport, typed
errors and the circuit breaker, for any Dhan API (market data: :class:`~.dhan.DhanProvider`).

Construct with :meth:`DhanClient.from_env` (``DHAN_CLIENT_ID``, ``DHAN_ACCESS_TOKEN``, optional
``DHAN_API_BASE_URL``) or directly with ``DhanClient(client_id, access_token, base_url=...)``.
The token is handed to the SDK and never logged, shown in ``repr`` or put in an error message.

Every SDK call goes through :meth:`DhanClient.call`: spaced by a :class:`Throttle` (per key; the data
APIs' 5/s -> 0.2 s apart by default, whose clock and sleep can be injected), each request holding a
slot of the account's buckets in the machine's shared ledger (:mod:`.dhan_limits`: Dhan's limits
across every process; opened by ``from_env`` / ``from_credentials``), retried on transient
failures (no answer / timeout, HTTP 429 or 5xx, DH-904/805 rate limit, DH-908/DH-909/800 server
errors) with exponential back-off a bounded number of times, then raised as :class:`RateLimited` /
:class:`ProviderError`. The SDK never raises: it returns ``{'status': 'failure', 'remarks': ...}``;
every failure becomes a typed error (Dhan's "no data", DH-907, is :class:`DataUnavailable`).

Outages: each HTTP request has a connect timeout (``connect_timeout``, 3 s) and a read timeout
(``timeout``, 10 s), and one call gives up retrying once ``call_timeout`` (25 s) has passed, so a
server that accepts and never answers costs seconds, not a minute a call. A circuit breaker counts
consecutive *connection failures* (refused, reset, timed out: no HTTP answer at all); after
``circuit_failures`` (4) of them every call fails at once, without a request, with one
:class:`CircuitOpen` error "circuit open after N consecutive connection failures to <host>: <cause>"
for ``circuit_reset`` seconds (600: the rest of a run); any HTTP answer, even an error, resets the
count. :meth:`DhanClient.from_env` reads these from ``DHAN_CIRCUIT_FAILURES``,
``DHAN_CIRCUIT_RESET_SECONDS``, ``DHAN_TIMEOUT_SECONDS``, ``DHAN_CONNECT_TIMEOUT_SECONDS`` and
``DHAN_CALL_TIMEOUT_SECONDS`` (see :func:`options_v4_dagster.config.dhan_settings`).
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
from contextlib import nullcontext
from typing import Any, Self
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ConnectTimeout, RequestException
from tenacity import RetryCallState, Retrying, retry_if_exception
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from ..errors import CircuitOpen, ConfigError, DataError, DataUnavailable, ProviderError, RateLimited
from .dhan_limits import DhanRateLimits

log = logging.getLogger(__name__)

PROVIDER = "dhan"
ENV_CLIENT_ID = "DHAN_CLIENT_ID"
ENV_ACCESS_TOKEN = "DHAN_ACCESS_TOKEN"
ENV_BASE_URL = "DHAN_API_BASE_URL"

#: Dhan error codes (v2 annexure): trading-API style ``DH-9xx`` and data-API numbers.
RATE_LIMIT_CODES = frozenset({"DH-904", "805"})
AUTH_CODES = frozenset({"DH-901", "807", "808", "809", "810"})
ACCESS_CODES = frozenset({"DH-902", "DH-903", "806"})
TRANSIENT_CODES = frozenset({"DH-908", "DH-909", "800"})
NO_DATA_CODES = frozenset({"DH-907"})


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


def normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{ENV_BASE_URL}={url!r} is not an http(s) URL")
    return url if url.endswith("/v2") else url + "/v2"


def error_details(remarks: Any, body: str | None) -> tuple[str | None, str | None, str]:
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


def request_sent(exc: BaseException | None, message: str = "") -> bool:
    """Whether a request that got no HTTP answer may have reached the server: False only when it
    certainly did not (connection refused, DNS failure, connect timeout); a read timeout or a
    connection dropped after connecting may have delivered it (True). ``exc`` is the requests
    exception when it was captured, else the SDK's ``remarks`` string is read."""
    if exc is not None:
        if isinstance(exc, ConnectTimeout):
            return False
        if isinstance(exc, RequestsConnectionError):
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            if isinstance(reason, (NewConnectionError, ConnectTimeoutError)):
                return False
        return True
    return not re.search(r"NewConnectionError|Failed to establish a new connection|ConnectTimeoutError|"
                         r"connect timeout=|NameResolutionError", message)


class _RecordingAdapter(HTTPAdapter):
    """Keeps the exception of a failed request (the SDK turns it into a string) in a thread-local."""

    def __init__(self, local: threading.local) -> None:
        super().__init__()
        self._local = local

    def send(self, request, **kwargs):
        try:
            return super().send(request, **kwargs)
        except RequestException as exc:
            self._local.exc = exc
            raise


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


def connection_cause(message: str) -> str:
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


class DhanClient:
    """The SDK object with timeouts, throttling, retries, typed errors and a circuit breaker (see the
    module docstring). Subclasses add the endpoints they wrap; :attr:`client` is the raw SDK."""

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
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        rate_limits: DhanRateLimits | None = None,
    ) -> None:
        if not client_id or not str(client_id).strip():
            raise ConfigError(f"{ENV_CLIENT_ID} is empty: the dhan source needs a Dhan client id")
        if not access_token or not str(access_token).strip():
            raise ConfigError(f"{ENV_ACCESS_TOKEN} is empty: the dhan source needs a Dhan access token")
        if max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if circuit_failures < 1:
            raise ConfigError("circuit_failures (DHAN_CIRCUIT_FAILURES) must be at least 1")
        from dhanhq import DhanContext, dhanhq

        self._ctx = DhanContext(str(client_id).strip(), str(access_token).strip())
        http = self._ctx.get_dhan_http()
        if base_url:
            http.base_url = normalize_base_url(base_url)
        # (connect, read) timeouts of every request the SDK sends (requests' timeout tuple)
        http.timeout = (min(connect_timeout, timeout), timeout)
        # The SDK drops the HTTP status and, for data-API errors, the error code; keep both.
        self._tl = threading.local()
        http.session.hooks["response"].append(self._capture_response)
        # ... and the exception of a request without answer (was it sent? see request_sent)
        adapter = _RecordingAdapter(self._tl)
        http.session.mount("http://", adapter)
        http.session.mount("https://", adapter)
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
        self._sleep = sleep or time.sleep
        self.throttle = Throttle(clock=clock, sleep=self._sleep)
        #: Dhan's limits across processes (:mod:`.dhan_limits`; ``from_credentials`` opens the machine's ledger)
        self.rate_limits = rate_limits

    @classmethod
    def from_credentials(cls, client_id: str, access_token: str, base_url: str | None = None,
                         **kw: Any) -> Self:
        """Credentials passed in (the Dagster resource resolves them from ``dg.EnvVar``); an empty one is a
        :class:`ConfigError` naming its variable. REST base from ``base_url``, else ``DHAN_API_BASE_URL``,
        else Dhan's (``https://api.dhan.co/v2``); transport settings from :func:`config.dhan_settings`."""
        for var, value in ((ENV_CLIENT_ID, client_id), (ENV_ACCESS_TOKEN, access_token)):
            if not (value or "").strip():
                raise ConfigError(f"{var} is not set: Dhan needs {ENV_CLIENT_ID} and "
                                  f"{ENV_ACCESS_TOKEN} (from web.dhan.co > My Profile > DhanHQ Trading APIs)")
        base_url = base_url or os.environ.get(ENV_BASE_URL, "").strip() or None
        from .. import config

        kw = {**config.dhan_settings(), **kw}
        if "rate_limits" not in kw:
            kw["rate_limits"] = DhanRateLimits.from_env(client_id.strip())
        return cls(client_id.strip(), access_token.strip(), base_url=base_url, **kw)

    @classmethod
    def from_env(cls, base_url: str | None = None, **kw: Any) -> Self:
        """Credentials from ``DHAN_CLIENT_ID`` / ``DHAN_ACCESS_TOKEN`` (the CLI's path; Dagster runs pass
        them to :meth:`from_credentials`), otherwise as :meth:`from_credentials`."""
        return cls.from_credentials(os.environ.get(ENV_CLIENT_ID, ""), os.environ.get(ENV_ACCESS_TOKEN, ""),
                                    base_url, **kw)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r}, base_url={self.base_url!r})"

    @property
    def base_url(self) -> str:
        return self._http.base_url

    @property
    def client(self):
        """The SDK object (``dhanhq``), for callers that need endpoints this class does not wrap."""
        return self._dhan

    def close(self) -> None:
        self._http.session.close()
        if self.rate_limits is not None:
            self.rate_limits.close()

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

    def call(self, what: str, fn: Callable[..., dict], *args: Any, symbol: str | None = None,
             session: dt.date | None = None, slots: Sequence[tuple[Hashable, float]] | None = None,
             max_attempts: int | None = None) -> Any:
        """One SDK call: throttled, retried on transient failures, unwrapped or turned into a typed error.

        ``slots`` replaces the default throttle key (the data APIs' 5/s); ``fn`` is called anew on
        every attempt (the SDK adds ``dhanClientId`` to the payload it is given). ``max_attempts=1``
        sends once, never again (order placement). A failure without an HTTP answer carries
        ``connection_failure=True`` and ``request_sent`` (:func:`request_sent`)."""
        slots = list(slots) if slots is not None else [("data-api", self.data_interval)]
        max_attempts = max_attempts or self.max_attempts
        attempts = 0
        started = time.monotonic()

        def once() -> Any:
            nonlocal attempts
            self._check_circuit(what)
            attempts += 1
            self.attempts += 1
            self.throttle.acquire(slots)
            self._tl.last = self._tl.exc = None
            with self.rate_limits.slot(what, slots) if self.rate_limits is not None else nullcontext():
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
            if state.attempt_number >= max_attempts:
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
        code, etype, message = error_details(resp.get("remarks"), body)
        detail = f"{etype}: {message}" if etype else message
        if status is None and body is None:
            err = self._error(ProviderError, what, f"no answer from {self.base_url} ({connection_cause(message)})",
                              status=None, code=None, retryable=True)
            err.connection_failure = True
            err.cause = connection_cause(message)
            err.request_sent = request_sent(getattr(self._tl, "exc", None), message)
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
