"""A local stand-in for Dhan's v2 REST API, for driving the real ``dhanhq`` SDK in tests.

It listens on 127.0.0.1 (ephemeral port, stdlib ``http.server`` in a thread) and answers in
Dhan's documented v2 shapes:

- ``POST /v2/optionchain/expirylist`` -> ``{"data": ["YYYY-MM-DD", ...], "status": "success"}``
- ``POST /v2/optionchain`` -> ``{"data": {"last_price": .., "oc": {"25000.000000": {"ce": {..}, "pe": {..}}}},
  "status": "success"}`` (quantities, OI and volume in shares, IV in percent)
- ``POST /v2/charts/historical`` -> column arrays ``open/high/low/close/volume/timestamp`` (epoch
  seconds of IST midnight; ``toDate`` exclusive)
- ``POST /v2/marketfeed/ltp|ohlc|quote`` -> ``{"data": {"NSE_FNO": {"<id>": {...}}}, "status": "success"}``:
  ``ltp`` gives ``last_price``; ``ohlc`` adds ``ohlc {open, close, high, low}``; ``quote`` adds the
  5-level ``depth {buy, sell: [{quantity, orders, price}]}``, ``volume``, ``oi``, ``last_trade_time``
  (``DD/MM/YYYY HH:MM:SS`` IST), circuit limits etc. (see :meth:`DhanStandIn.quote_item`). Ids in
  ``unknown_ids`` are left out of the answer, as Dhan leaves out ids it does not know; NSE_FNO ids
  divisible by 50 are untraded contracts (zeros, ``01/01/1980 00:00:00``); more than
  ``quote_max_instruments`` in one request -> 400 ``DH-905``.

Every request must carry the ``access-token`` and ``client-id`` headers it was built with,
otherwise it answers 401 with ``DH-901``. Faults can be injected per path (``inject_*``):
failure envelopes in Dhan's trading-API shape (``errorType/errorCode/errorMessage``) or its
data-API shape (``{"data": {"805": "..."}, "status": "failed"}``), HTTP 429 rate limits,
5xx pages that are not JSON, and delays longer than a client timeout.

Use::

    with DhanStandIn() as dhan:
        provider = DhanProvider(dhan.client_id, dhan.access_token, base_url=dhan.base_url)
        # or: monkeypatch.setenv(...) for each item of dhan.env(); DhanProvider.from_env()

Extend it by subclassing and registering handlers with :meth:`DhanStandIn.route` (the order
endpoints: :mod:`.dhan_order_standin`); a handler takes ``(body: dict, request: Recorded)`` and
returns ``(http_status, json_obj)``. A path may hold ``{name}`` parts (one path segment each),
found in ``request.params``.

The content is generated from simple deterministic formulas of the security id, the strike and
the expiry, so tests can recompute what they expect with :meth:`chain_payload` or
:meth:`historical_payload`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from options_v4_dagster import calendar

IST = calendar.IST

#: Underlying prices and lot sizes by Dhan security id (NIFTY 13, BANKNIFTY 25, FINNIFTY 27,
#: MIDCPNIFTY 442, INDIA VIX 21); other ids get prices derived from the id.
DEFAULT_SPOTS = {13: 25012.35, 25: 54321.10, 27: 26150.40, 442: 13010.75, 21: 12.85}
DEFAULT_LOTS = {13: 65, 25: 30, 27: 60, 442: 120}
WEEKLY_IDS = frozenset({13})

Handler = Callable[[dict, "Recorded"], tuple[int, Any]]


@dataclass
class Recorded:
    """One request the stand-in received (body already decoded from JSON)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict | None
    at: float  # time.monotonic() on arrival
    params: dict[str, str] = field(default_factory=dict)  # {name} parts of a routed path


@dataclass
class Fault:
    """An injected answer for requests to ``path`` (exact; a trailing ``*`` matches a prefix), the
    next ``times`` of them (``None``: all)."""

    path: str
    status: int = 500
    body: Any = None  # dict/list -> JSON; str -> sent as-is (text/html); None -> empty
    delay: float = 0.0  # seconds to wait before answering
    times: int | None = 1
    passthrough: bool = False  # after the delay, answer normally instead of with status/body
    hits: int = field(default=0, init=False)


def _round_tick(x: float, tick: float = 0.05) -> float:
    return round(round(x / tick) * tick, 2)


def _nice_step(spot: float) -> float:
    raw = spot * 0.01
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


class DhanStandIn:
    """A small extensible fake of Dhan's v2 REST API. See the module docstring."""

    def __init__(
        self,
        client_id: str = "1000000001",
        access_token: str = "standin-access-token",
        *,
        today: dt.date | None = None,
        spots: dict[int, float] | None = None,
        lot_sizes: dict[int, int] | None = None,
        strikes_each_side: int = 10,
        expiries: dict[int, list[dt.date]] | None = None,
        sparse: bool = True,
        enforce_chain_interval: float | None = None,
        unknown_ids: set[int] | None = None,
        quote_max_instruments: int = 1000,
    ) -> None:
        self.client_id = client_id
        self.access_token = access_token
        self.today = today or dt.datetime.now(IST).date()
        self.spots = {**DEFAULT_SPOTS, **(spots or {})}
        self.lot_sizes = {**DEFAULT_LOTS, **(lot_sizes or {})}
        self.strikes_each_side = strikes_each_side
        self.expiries = dict(expiries or {})
        #: first strike's ``ce`` is null and last strike has no ``pe`` key (Dhan does this)
        self.sparse = sparse
        #: answer 429/DH-904 when the same option chain is asked again within this many seconds
        self.enforce_chain_interval = enforce_chain_interval
        #: security ids the market quote routes leave out of their answers
        self.unknown_ids: set[int] = set(unknown_ids or ())
        self.quote_max_instruments = quote_max_instruments
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._routes: dict[tuple[str, str], Handler] = {}
        self._patterns: list[tuple[str, re.Pattern, Handler]] = []
        self._last_chain: dict[tuple, float] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.route("POST", "/v2/optionchain/expirylist")(self._expiry_list)
        self.route("POST", "/v2/optionchain")(self._option_chain)
        self.route("POST", "/v2/charts/historical")(self._historical)
        self.route("POST", "/v2/marketfeed/ltp")(self._marketfeed("ltp"))
        self.route("POST", "/v2/marketfeed/ohlc")(self._marketfeed("ohlc"))
        self.route("POST", "/v2/marketfeed/quote")(self._marketfeed("quote"))

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> DhanStandIn:
        if self._server is not None:
            return self
        standin = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server naming
                standin._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                standin._handle(self, "POST")

            def do_PUT(self):  # noqa: N802
                standin._handle(self, "PUT")

            def do_DELETE(self):  # noqa: N802
                standin._handle(self, "DELETE")

            def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="dhan-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> DhanStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("DhanStandIn is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:54321`` (the API lives under ``/v2``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the SDK's ``DhanHTTP.base_url`` should be set to: ``<url>/v2``."""
        return self.url + "/v2"

    def env(self) -> dict[str, str]:
        """Environment for ``DhanProvider.from_env()`` / ``--source dhan`` pointed at this stand-in."""
        return {"DHAN_CLIENT_ID": self.client_id, "DHAN_ACCESS_TOKEN": self.access_token,
                "DHAN_API_BASE_URL": self.base_url}

    # --- extension and inspection ---------------------------------------------------------

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Register ``handler(body, request) -> (status, obj)`` for ``method path`` (exact path, or
        with ``{name}`` segments matched after every exact path)."""

        def deco(fn: Handler) -> Handler:
            if "{" in path:
                rx = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(path)) + "$")
                self._patterns.append((method.upper(), rx, fn))
            else:
                self._routes[(method.upper(), path)] = fn
            return fn

        return deco

    def calls(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self._last_chain.clear()

    # --- fault injection ------------------------------------------------------------------

    def inject(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def inject_failure(self, path: str, *, status: int = 400, code: str = "DH-905",
                       error_type: str = "Input_Exception", message: str = "Missing required fields, bad values for parameters etc.",
                       style: str = "trading", times: int | None = 1) -> Fault:
        """A failure envelope: ``trading`` style ``{errorType, errorCode, errorMessage}`` or ``data``
        style ``{"data": {code: message}, "status": "failed"}`` (which the SDK reports as all-null remarks)."""
        if style == "trading":
            body: Any = {"errorType": error_type, "errorCode": code, "errorMessage": message}
        elif style == "data":
            body = {"data": {code: message}, "status": "failed"}
        else:
            raise ValueError(f"unknown error style {style!r}")
        return self.inject(Fault(path, status=status, body=body, times=times))

    def inject_rate_limit(self, path: str, *, times: int | None = 1, style: str = "trading") -> Fault:
        if style == "data":
            return self.inject_failure(path, status=429, code="805", style="data", times=times,
                                       message="Too many requests. Further requests may result in the user being blocked.")
        return self.inject_failure(path, status=429, code="DH-904", error_type="Rate_Limit", times=times,
                                   message="Too many requests on server from single user breaching rate limits.")

    def inject_server_error(self, path: str, *, status: int = 503, times: int | None = 1) -> Fault:
        """An HTML 5xx page (not JSON), as a load balancer sends it."""
        return self.inject(Fault(path, status=status, times=times,
                                 body=f"<html><body><h1>{status} Service Temporarily Unavailable</h1></body></html>"))

    def inject_delay(self, path: str, seconds: float, *, times: int | None = 1) -> Fault:
        """Wait ``seconds`` before answering normally (longer than the client timeout -> the client times out)."""
        return self.inject(Fault(path, delay=seconds, times=times, passthrough=True))

    # --- deterministic content ------------------------------------------------------------

    def spot(self, security_id: int) -> float:
        sid = int(security_id)
        if sid in self.spots:
            return self.spots[sid]
        return round(200.0 + (sid * 7919) % 4800 + (sid % 100) / 20.0, 2)

    def lot_size(self, security_id: int) -> int:
        return self.lot_sizes.get(int(security_id), 500)

    def expiry_dates(self, security_id: int, segment: str) -> list[dt.date]:
        sid = int(security_id)
        if sid in self.expiries:
            return sorted(self.expiries[sid])
        # Thursday expiries before 2025-09-01, Tuesday after (NSE's change); no holiday shifts.
        def weekday_for(d: dt.date) -> int:
            return 1 if d >= dt.date(2025, 9, 1) else 3

        out: set[dt.date] = set()
        y, m = self.today.year, self.today.month
        for _ in range(4):
            nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
            last = nxt - dt.timedelta(days=1)
            e = last - dt.timedelta(days=(last.weekday() - weekday_for(last)) % 7)
            if e >= self.today:
                out.add(e)
            y, m = nxt.year, nxt.month
        monthlies = sorted(out)[:3]
        out = set(monthlies)
        if sid in WEEKLY_IDS and segment == "IDX_I":
            d = self.today
            weeklies: list[dt.date] = []
            while len(weeklies) < 4:
                if d.weekday() == weekday_for(d):
                    weeklies.append(d)
                d += dt.timedelta(days=1)
            out.update(weeklies)
        return sorted(out)

    def strikes(self, security_id: int) -> list[float]:
        spot = self.spot(security_id)
        step = {13: 50.0, 25: 100.0, 27: 50.0, 442: 25.0}.get(int(security_id)) or _nice_step(spot)
        atm = round(spot / step) * step
        n = self.strikes_each_side
        return [atm + k * step for k in range(-n, n + 1)]

    def option_quote(self, security_id: int, expiry: dt.date, strike: float, kind: str, index: int) -> dict:
        """One ``ce``/``pe`` object; prices per share, IV in percent, OI/volume/quantities in shares."""
        sid = int(security_id)
        spot = self.spot(sid)
        lot = self.lot_size(sid)
        days = max((expiry - self.today).days, 0) + 0.5
        t = days / 365.0
        m = strike / spot - 1.0
        iv = 12.0 + 150.0 * m * m + (1.5 if kind == "pe" else 0.0)  # percent, a smile
        sd = spot * iv / 100.0 * math.sqrt(t)
        intrinsic = max(spot - strike, 0.0) if kind == "ce" else max(strike - spot, 0.0)
        z = (strike - spot) / sd if sd > 0 else 0.0
        price = _round_tick(intrinsic + 0.4 * sd * math.exp(-0.5 * z * z))
        spread = _round_tick(max(0.05, price * 0.004))
        near = math.exp(-0.5 * (z / 1.5) ** 2)
        oi_lots = int(200 + 9800 * near)
        vol_lots = int(50 + 20000 * near * near)
        bid = _round_tick(price - spread) if price >= 1.0 else 0.0  # far OTM: no bid
        ask = _round_tick(price + spread) if price > 0 else 0.0
        return {
            "average_price": _round_tick(price * 1.01),
            "greeks": {"delta": round(0.5 - 0.4 * math.tanh(z) if kind == "ce" else -0.5 - 0.4 * math.tanh(z), 5),
                       "theta": round(-0.5 * sd / max(days, 1), 5), "gamma": round(0.001 * near, 5),
                       "vega": round(0.1 * sd * near, 5)},
            "implied_volatility": round(iv, 6) if price > 0 else 0,
            "last_price": price,
            "oi": oi_lots * lot,
            "previous_close_price": _round_tick(price * 1.03),
            "previous_oi": (oi_lots - 100) * lot,
            "previous_volume": vol_lots // 2 * lot,
            "security_id": 40000 + index * 2 + (0 if kind == "ce" else 1),
            "top_ask_price": ask,
            "top_ask_quantity": (3 + index % 5) * lot if ask else 0,
            "top_bid_price": bid,
            "top_bid_quantity": (2 + index % 7) * lot if bid else 0,
            "volume": vol_lots * lot,
        }

    def chain_payload(self, security_id: int, segment: str, expiry: dt.date) -> dict:
        """The ``data`` object of an option-chain answer."""
        strikes = self.strikes(security_id)
        oc: dict[str, dict] = {}
        for i, k in enumerate(strikes):
            entry: dict[str, Any] = {"ce": self.option_quote(security_id, expiry, k, "ce", i),
                                     "pe": self.option_quote(security_id, expiry, k, "pe", i)}
            if self.sparse and i == 0:
                entry["ce"] = None
            if self.sparse and i == len(strikes) - 1:
                del entry["pe"]
            oc[f"{k:.6f}"] = entry
        return {"last_price": self.spot(security_id), "oc": oc}

    def quote_item(self, segment: str, security_id: int, kind: str = "quote") -> dict | None:
        """One instrument of a ``/marketfeed/<kind>`` answer (``kind``: ltp, ohlc, quote); None if unknown.

        NSE_FNO ids divisible by 50 have not traded: zero prices and depth, the previous close in
        ``ohlc.close`` and Dhan's ``01/01/1980 00:00:00`` placeholder as the last trade time."""
        sid = int(security_id)
        if sid in self.unknown_ids:
            return None
        ltp = self.spot(sid) if segment != "NSE_FNO" else _round_tick(50 + sid % 400)
        untraded = segment == "NSE_FNO" and sid % 50 == 0
        if untraded:
            ohlc = {"open": 0, "close": ltp, "high": 0, "low": 0}
            ltp = 0
        else:
            ohlc = {"open": _round_tick(ltp * 0.995), "close": _round_tick(ltp * 0.99),
                    "high": _round_tick(ltp * 1.01), "low": _round_tick(ltp * 0.985)}
        if kind == "ltp":
            return {"last_price": ltp}
        if kind == "ohlc":
            return {"last_price": ltp, "ohlc": ohlc}
        depth = {side: [{"quantity": 0 if untraded else 75 * (i + 1), "orders": 0 if untraded else i + 1,
                         "price": 0 if untraded else _round_tick(ltp + (-1 if side == "buy" else 1) * 0.05 * (i + 1))}
                        for i in range(5)] for side in ("buy", "sell")}
        secs = 15 * 3600 + 29 * 60 + 59 - sid % 600
        ltt = ("01/01/1980 00:00:00" if untraded
               else f"{self.today:%d/%m/%Y} {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}")
        return {"average_price": ltp, "buy_quantity": 0 if untraded else 1125, "depth": depth, "last_price": ltp,
                "last_quantity": 0 if untraded else 75, "last_trade_time": ltt,
                "lower_circuit_limit": _round_tick(ohlc["close"] * 0.8), "net_change": 0 if untraded else _round_tick(ltp * 0.01),
                "ohlc": ohlc, "oi": 0 if untraded else 150000 + sid % 1000 * 75,
                "oi_day_high": 0 if untraded else 160000, "oi_day_low": 0 if untraded else 140000,
                "sell_quantity": 0 if untraded else 1125, "upper_circuit_limit": _round_tick(ohlc["close"] * 1.2),
                "volume": 0 if untraded else 987650 + sid % 1000 * 75}

    def historical_payload(self, security_id: int, from_date: dt.date, to_date: dt.date) -> dict:
        """Daily candles on weekdays in [from_date, to_date) with deterministic prices."""
        sid = int(security_id)
        base = self.spot(sid)
        cols: dict[str, list] = {k: [] for k in ("open", "high", "low", "close", "volume", "timestamp")}
        d = from_date
        while d < to_date:
            if d.weekday() < 5:
                n = d.toordinal()
                close = round(base * (1 + 0.02 * math.sin(n / 5.0)), 2)
                opn = round(close * (1 - 0.003 * math.cos(n)), 2)
                cols["open"].append(opn)
                cols["close"].append(close)
                cols["high"].append(round(max(opn, close) * 1.004, 2))
                cols["low"].append(round(min(opn, close) * 0.996, 2))
                cols["volume"].append(0 if sid == 21 else 1_000_000 + (n % 97) * 1000)
                cols["timestamp"].append(int(dt.datetime.combine(d, dt.time(0, 0), tzinfo=IST).timestamp()))
            d += dt.timedelta(days=1)
        return cols

    # --- built-in handlers ----------------------------------------------------------------

    @staticmethod
    def _bad_request(message: str, code: str = "DH-905") -> tuple[int, dict]:
        return 400, {"errorType": "Input_Exception", "errorCode": code, "errorMessage": message}

    def _expiry_list(self, body: dict, req: Recorded) -> tuple[int, Any]:
        if "UnderlyingScrip" not in body or "UnderlyingSeg" not in body:
            return self._bad_request("UnderlyingScrip and UnderlyingSeg are required")
        exp = self.expiry_dates(int(body["UnderlyingScrip"]), body["UnderlyingSeg"])
        return 200, {"data": [e.isoformat() for e in exp], "status": "success"}

    def _option_chain(self, body: dict, req: Recorded) -> tuple[int, Any]:
        try:
            sid, seg = int(body["UnderlyingScrip"]), body["UnderlyingSeg"]
            expiry = dt.date.fromisoformat(body["Expiry"])
        except (KeyError, TypeError, ValueError):
            return self._bad_request("UnderlyingScrip, UnderlyingSeg and Expiry (YYYY-MM-DD) are required")
        if self.enforce_chain_interval is not None:
            key = (sid, seg, expiry)
            with self._lock:
                last = self._last_chain.get(key)
                self._last_chain[key] = req.at
            if last is not None and req.at - last < self.enforce_chain_interval:
                return 429, {"errorType": "Rate_Limit", "errorCode": "DH-904",
                             "errorMessage": "Option chain: one request every 3 seconds"}
        if expiry not in self.expiry_dates(sid, seg):
            return 400, {"errorType": "Data_Error", "errorCode": "DH-907",
                         "errorMessage": f"No option chain for expiry {expiry.isoformat()}"}
        return 200, {"data": self.chain_payload(sid, seg, expiry), "status": "success"}

    def _historical(self, body: dict, req: Recorded) -> tuple[int, Any]:
        try:
            sid = int(body["securityId"])
            start = dt.date.fromisoformat(body["fromDate"])
            end = dt.date.fromisoformat(body["toDate"])
        except (KeyError, TypeError, ValueError):
            return self._bad_request("securityId, fromDate and toDate (YYYY-MM-DD) are required")
        if body.get("exchangeSegment") not in ("IDX_I", "NSE_EQ", "NSE_FNO", "BSE_EQ"):
            return self._bad_request("invalid exchangeSegment")
        return 200, self.historical_payload(sid, start, end)

    def _marketfeed(self, kind: str) -> Handler:
        def handler(body: dict, req: Recorded) -> tuple[int, Any]:
            segments = {seg: ids for seg, ids in body.items() if seg != "dhanClientId"}
            if not segments:
                return self._bad_request("at least one exchange segment with security ids is expected")
            for seg, ids in segments.items():
                if not isinstance(ids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in ids):
                    return self._bad_request(f"{seg}: a list of integer security ids is expected")
            total = sum(len(ids) for ids in segments.values())
            if total > self.quote_max_instruments:
                return self._bad_request(f"At most {self.quote_max_instruments} instruments per request, got {total}")
            out: dict[str, dict] = {}
            for seg, ids in segments.items():
                out[seg] = {}
                for sid in ids:
                    item = self.quote_item(seg, sid, kind)
                    if item is not None:
                        out[seg][str(sid)] = item
            return 200, {"data": out, "status": "success"}

        return handler

    # --- request plumbing -----------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                hit = path.startswith(f.path[:-1]) if f.path.endswith("*") else path == f.path
                if hit and (f.times is None or f.hits < f.times):
                    f.hits += 1
                    return f
        return None

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        path = h.path.split("?", 1)[0]
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(method, path, {k.lower(): v for k, v in h.headers.items()}, body, time.monotonic())
        with self._lock:
            self.requests.append(rec)

        if (rec.headers.get("access-token") != self.access_token
                or rec.headers.get("client-id") != self.client_id):
            self._send(h, 401, {"errorType": "Invalid_Authentication", "errorCode": "DH-901",
                                "errorMessage": "Client ID or user generated access token is invalid or expired."})
            return

        fault = self._take_fault(path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if not fault.passthrough:
                self._send(h, fault.status, fault.body)
                return

        handler = self._routes.get((method, path))
        if handler is None:
            for m, rx, fn in self._patterns:
                hit = rx.match(path) if m == method else None
                if hit:
                    handler, rec.params = fn, hit.groupdict()
                    break
        if handler is None:
            self._send(h, 404, {"errorType": "Input_Exception", "errorCode": "DH-905",
                                "errorMessage": f"No such endpoint {method} {path}"})
            return
        if method in ("POST", "PUT") and not isinstance(body, dict):
            self._send(h, 400, {"errorType": "Input_Exception", "errorCode": "DH-905",
                                "errorMessage": "Request body must be a JSON object"})
            return
        try:
            status, obj = handler(body or {}, rec)
        except Exception as exc:  # noqa: BLE001 - a stand-in bug must show up as a 500, not a hang
            status, obj = 500, {"errorType": "Internal_Server_Error", "errorCode": "DH-908",
                                "errorMessage": f"stand-in handler failed: {exc!r}"}
        self._send(h, status, obj)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, obj: Any) -> None:
        if obj is None:
            payload, ctype = b"", "application/json"
        elif isinstance(obj, str):
            payload, ctype = obj.encode(), "text/html"
        else:
            payload, ctype = json.dumps(obj).encode(), "application/json"
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            pass
