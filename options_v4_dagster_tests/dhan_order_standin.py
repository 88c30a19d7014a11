"""The order side of the Dhan stand-in: :class:`DhanOrderStandIn` adds Dhan v2's order endpoints to
:class:`~.dhan_standin.DhanStandIn`, a simple matching model, fault injection and the order-update
WebSocket, for driving the real dhanhq SDK (through DhanBroker) in tests.

Endpoints (Dhan v2 shapes): ``POST /v2/orders`` (``correlationId`` from the SDK's ``tag``; answers
``{orderId, orderStatus}``), ``PUT /v2/orders/{id}`` (price and *total* quantity; at most 25
modifications), ``DELETE /v2/orders/{id}``, ``GET /v2/orders``, ``/v2/orders/{id}``,
``/v2/orders/external/{correlationId}`` (404 "Order not found" when none), ``GET /v2/trades/``,
``/v2/trades/{order-id}``, ``GET /v2/positions``, ``GET /v2/fundlimit`` (``availabelBalance``, as Dhan
spells it), ``POST /v2/margincalculator`` and ``/v2/margincalculator/multi``.

Matching, per security id (:meth:`DhanOrderStandIn.script`; default ``fill``): an accepted order is
TRANSIT, then the "exchange" either rejects it (``reject``: REJECTED with ``omsErrorCode`` /
``omsErrorDescription``) or makes it PENDING and matches it: ``fill`` trades everything at once at
``price`` (default: the order's limit); ``steps`` trades one ``(shares, price)`` step on placement
and one more each time the order is read by id or correlation id (time passing between polls);
``at_price`` trades in full once a buy's limit is at or above ``price`` (a sell's at or below);
``never`` rests forever. Every trade lands in the trade book and the positions.

Faults: those of the base class (``inject_rate_limit("/v2/orders")`` → 429 DH-904,
``inject_server_error`` → a 5xx page, ``inject_failure`` → an error envelope; all answered before the
order is recorded) and :meth:`~DhanOrderStandIn.inject_after_accept`: the order is recorded (and
matched), then the answer is delayed beyond the client's timeout, or replaced by a 5xx.
``placed_per_correlation_id`` counts recorded orders per correlation id.

The order-update WebSocket (:meth:`~DhanOrderStandIn.start_order_feed`, ``order_feed_url``) takes
Dhan's login message and sends ``{"Type": "order_alert", "Data": {...}}`` for every change, with
Dhan's abbreviations and mixed case (``TxnType`` B/S, ``Status`` "Part_Traded", "Traded").
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .dhan_standin import IST, DhanStandIn, Recorded

WORKING = ("TRANSIT", "PENDING", "PART_TRADED")
FEED_STATUS = {"TRANSIT": "Transit", "PENDING": "Pending", "PART_TRADED": "Part_Traded", "TRADED": "Traded",
               "REJECTED": "Rejected", "CANCELLED": "Cancelled", "EXPIRED": "Expired"}


@dataclass
class OrderScript:
    kind: str = "fill"  # fill | steps | at_price | never | reject
    price: float | None = None  # fill: trade price (None: the limit); at_price: the crossing price
    steps: list[tuple[int, float]] = field(default_factory=list)
    code: str = "RS-9005"  # reject: omsErrorCode
    message: str = "Price outside the protection band"


@dataclass
class AfterAccept:
    delay: float = 0.0
    status: int | None = None  # None: the normal answer (after the delay)
    times: int = 1


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most timestamps inside any half-open window of ``window`` seconds."""
    ts, best, j = sorted(times), 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def _now_text() -> str:
    return f"{dt.datetime.now(IST):%Y-%m-%d %H:%M:%S}"


class DhanOrderStandIn(DhanStandIn):
    """See the module docstring."""

    def __init__(self, *args: Any, available_balance: float = 5_000_000.0, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.available_balance = available_balance
        self.orders: dict[str, dict] = {}
        self.trade_rows: list[dict] = []
        self.scripts: dict[str, OrderScript] = {}
        self.placed_per_correlation_id: Counter[str] = Counter()
        self.modifications: Counter[str] = Counter()
        self.feed_messages: list[dict] = []
        self._steps: dict[str, list[tuple[int, float]]] = {}
        self._after: list[AfterAccept] = []
        self._ids = itertools.count(52_000_000_001)
        self._trade_ids = itertools.count(91_000_001)
        self._olock = threading.RLock()
        self._feed = None
        self._feed_thread: threading.Thread | None = None
        self._feed_clients: set = set()
        r = self.route
        r("POST", "/v2/orders")(self._place)
        r("GET", "/v2/orders")(lambda b, q: (200, [dict(o) for o in self.orders.values()]))
        r("GET", "/v2/orders/external/{cid}")(self._by_cid)
        r("GET", "/v2/orders/{order_id}")(self._get)
        r("PUT", "/v2/orders/{order_id}")(self._modify)
        r("DELETE", "/v2/orders/{order_id}")(self._cancel)
        r("GET", "/v2/trades/")(lambda b, q: (200, list(self.trade_rows)))
        r("GET", "/v2/trades")(lambda b, q: (200, list(self.trade_rows)))
        r("GET", "/v2/trades/{order_id}")(
            lambda b, q: (200, [t for t in self.trade_rows if t["orderId"] == q.params["order_id"]]))
        r("GET", "/v2/positions")(lambda b, q: (200, self.positions_payload()))
        r("GET", "/v2/fundlimit")(self._funds)
        r("POST", "/v2/margincalculator")(self._margin)
        r("POST", "/v2/margincalculator/multi")(self._margin_multi)

    # -- configuration -------------------------------------------------------------------------
    def script(self, security_id: str, kind: str = "fill", **kw: Any) -> OrderScript:
        sc = self.scripts[str(security_id)] = OrderScript(kind, **kw)
        return sc

    def inject_after_accept(self, *, delay: float = 0.0, status: int | None = None, times: int = 1) -> AfterAccept:
        """The next ``times`` accepted orders: recorded and matched, then answered after ``delay`` seconds
        (longer than the client timeout: the client sees a read timeout) or with HTTP ``status``."""
        a = AfterAccept(delay, status, times)
        with self._olock:
            self._after.append(a)
        return a

    def assert_no_key_twice(self) -> None:
        twice = {k: n for k, n in self.placed_per_correlation_id.items() if n > 1}
        assert not twice, f"placed twice: {twice}"

    def order_request_times(self) -> list[float]:
        """Arrival times (monotonic) of every order request (POST/PUT/DELETE under /v2/orders)."""
        return [r.at for r in self.calls() if r.method in ("POST", "PUT", "DELETE") and r.path.startswith("/v2/orders")]

    # -- matching ------------------------------------------------------------------------------
    def _set(self, o: dict, status: str, **fields: Any) -> None:
        o.update(fields, orderStatus=status, updateTime=_now_text())
        o["remainingQuantity"] = o["quantity"] - o["filledQty"]
        self._publish(o)

    def _trade(self, o: dict, qty: int, price: float) -> None:
        qty = min(qty, o["quantity"] - o["filledQty"])
        if qty <= 0:
            return
        value = o["averageTradedPrice"] * o["filledQty"] + qty * price
        o["filledQty"] += qty
        o["averageTradedPrice"] = round(value / o["filledQty"], 4)
        o["lastTradedPrice"] = price
        self.trade_rows.append({
            "dhanClientId": self.client_id, "orderId": o["orderId"], "exchangeOrderId": o["exchangeOrderId"],
            "exchangeTradeId": str(next(self._trade_ids)), "transactionType": o["transactionType"],
            "exchangeSegment": o["exchangeSegment"], "productType": o["productType"], "orderType": o["orderType"],
            "tradingSymbol": o["tradingSymbol"], "securityId": o["securityId"], "tradedQuantity": qty,
            "tradedPrice": price, "createTime": _now_text(), "updateTime": _now_text(), "exchangeTime": _now_text(),
            "drvExpiryDate": o["drvExpiryDate"], "drvOptionType": o["drvOptionType"], "drvStrikePrice": 0.0})
        self._set(o, "TRADED" if o["filledQty"] >= o["quantity"] else "PART_TRADED")

    def _match(self, o: dict, *, step: bool = True) -> None:
        if o["orderStatus"] not in ("PENDING", "PART_TRADED"):
            return
        sc = self.scripts.get(o["securityId"], OrderScript())
        left = o["quantity"] - o["filledQty"]
        if sc.kind == "fill":
            self._trade(o, left, o["price"] if sc.price is None else sc.price)
        elif sc.kind == "steps" and step and self._steps.get(o["orderId"]):
            qty, px = self._steps[o["orderId"]].pop(0)
            self._trade(o, qty, px)
        elif sc.kind == "at_price" and sc.price is not None:
            buy = o["transactionType"] == "BUY"
            if (buy and o["price"] >= sc.price) or (not buy and o["price"] <= sc.price):
                self._trade(o, left, o["price"])

    # -- handlers ------------------------------------------------------------------------------
    def _place(self, body: dict, req: Recorded) -> tuple[int, Any]:
        missing = [k for k in ("transactionType", "exchangeSegment", "productType", "orderType", "securityId",
                               "quantity") if body.get(k) in (None, "")]
        if missing:
            return self._bad_request(f"missing {', '.join(missing)}")
        if body["transactionType"] not in ("BUY", "SELL") or int(body["quantity"]) <= 0:
            return self._bad_request("transactionType BUY/SELL and a positive quantity are required")
        if body["orderType"] == "LIMIT" and not float(body.get("price") or 0) > 0:
            return self._bad_request("a LIMIT order needs a price")
        cid = body.get("correlationId")
        if cid is not None and len(str(cid)) > 30:
            return self._bad_request("correlationId is at most 30 characters")
        sid = str(body["securityId"])
        with self._olock:
            oid = str(next(self._ids))
            o = {"dhanClientId": self.client_id, "orderId": oid, "exchangeOrderId": str(10**15 + int(oid)),
                 "correlationId": cid, "orderStatus": "TRANSIT", "transactionType": body["transactionType"],
                 "exchangeSegment": body["exchangeSegment"], "productType": body["productType"],
                 "orderType": body["orderType"], "validity": body.get("validity", "DAY"),
                 "tradingSymbol": f"SID-{sid}", "securityId": sid, "quantity": int(body["quantity"]),
                 "disclosedQuantity": 0, "price": float(body.get("price") or 0.0), "triggerPrice": 0.0,
                 "afterMarketOrder": False, "legName": None, "createTime": _now_text(), "updateTime": _now_text(),
                 "exchangeTime": _now_text(), "drvExpiryDate": "2025-07-31 14:30:00", "drvOptionType": "CALL",
                 "drvStrikePrice": 0.0, "omsErrorCode": None, "omsErrorDescription": None, "algoId": "0",
                 "remainingQuantity": int(body["quantity"]), "averageTradedPrice": 0.0, "filledQty": 0}
            self.orders[oid] = o
            if cid:
                self.placed_per_correlation_id[cid] += 1
            self._publish(o)
            sc = self.scripts.get(sid, OrderScript())
            if sc.kind == "reject":
                self._set(o, "REJECTED", omsErrorCode=sc.code, omsErrorDescription=sc.message)
            else:
                if o["orderType"] == "MARKET":
                    o["price"] = sc.price or 0.0
                self._steps[oid] = list(sc.steps)
                self._set(o, "PENDING")
                self._match(o)
            answer = {"orderId": oid, "orderStatus": o["orderStatus"]}
            after = next((a for a in self._after if a.times > 0), None)
            if after is not None:
                after.times -= 1
        if after is not None:
            if after.delay:
                time.sleep(after.delay)
            if after.status is not None:
                return after.status, f"<html><body>{after.status} Bad Gateway</body></html>"
        return 200, answer

    def _find(self, oid: str) -> dict | None:
        return self.orders.get(oid)

    @staticmethod
    def _not_found(what: str) -> tuple[int, dict]:
        return 404, {"errorType": "Order_Error", "errorCode": "DH-906", "errorMessage": f"Order not found: {what}"}

    def _get(self, body: dict, req: Recorded) -> tuple[int, Any]:
        with self._olock:
            o = self._find(req.params["order_id"])
            if o is None:
                return self._not_found(req.params["order_id"])
            self._match(o)
            return 200, dict(o)

    def _by_cid(self, body: dict, req: Recorded) -> tuple[int, Any]:
        cid = req.params["cid"]
        with self._olock:
            mine = [o for o in self.orders.values() if o["correlationId"] == cid]
            if not mine:
                return self._not_found(f"correlation id {cid}")
            self._match(mine[-1])
            return 200, dict(mine[-1])

    def _modify(self, body: dict, req: Recorded) -> tuple[int, Any]:
        with self._olock:
            o = self._find(req.params["order_id"])
            if o is None:
                return self._not_found(req.params["order_id"])
            if o["orderStatus"] not in ("PENDING", "PART_TRADED"):
                return 400, {"errorType": "Order_Error", "errorCode": "DH-906",
                             "errorMessage": f"Order is {o['orderStatus']}: it cannot be modified"}
            if self.modifications[o["orderId"]] >= 25:
                return 400, {"errorType": "Order_Error", "errorCode": "DH-906",
                             "errorMessage": "Maximum 25 modifications allowed per order"}
            qty = int(body.get("quantity") or o["quantity"])
            if qty <= o["filledQty"]:
                return self._bad_request("quantity must exceed the traded quantity")
            self.modifications[o["orderId"]] += 1
            self._set(o, o["orderStatus"], price=float(body.get("price") or o["price"]), quantity=qty)
            self._match(o, step=False)
            return 200, {"orderId": o["orderId"], "orderStatus": o["orderStatus"]}

    def _cancel(self, body: dict, req: Recorded) -> tuple[int, Any]:
        with self._olock:
            o = self._find(req.params["order_id"])
            if o is None:
                return self._not_found(req.params["order_id"])
            if o["orderStatus"] not in WORKING:
                return 400, {"errorType": "Order_Error", "errorCode": "DH-906",
                             "errorMessage": f"Order is {o['orderStatus']}: it cannot be cancelled"}
            self._set(o, "CANCELLED")
            return 200, {"orderId": o["orderId"], "orderStatus": "CANCELLED"}

    def positions_payload(self) -> list[dict]:
        out: dict[str, dict] = {}
        for t in self.trade_rows:
            p = out.setdefault(t["securityId"], {"buyQty": 0, "sellQty": 0, "buyValue": 0.0, "sellValue": 0.0, **{
                k: t[k] for k in ("securityId", "tradingSymbol", "exchangeSegment", "productType", "drvExpiryDate",
                                  "drvOptionType")}})
            side = "buy" if t["transactionType"] == "BUY" else "sell"
            p[f"{side}Qty"] += t["tradedQuantity"]
            p[f"{side}Value"] += t["tradedQuantity"] * t["tradedPrice"]
        rows = []
        for p in out.values():
            buy_avg = p["buyValue"] / p["buyQty"] if p["buyQty"] else 0.0
            sell_avg = p["sellValue"] / p["sellQty"] if p["sellQty"] else 0.0
            net = p["buyQty"] - p["sellQty"]
            closed = min(p["buyQty"], p["sellQty"])
            rows.append({"dhanClientId": self.client_id, "tradingSymbol": p["tradingSymbol"],
                         "securityId": p["securityId"], "positionType": "LONG" if net > 0 else "SHORT" if net else "CLOSED",
                         "exchangeSegment": p["exchangeSegment"], "productType": p["productType"],
                         "buyAvg": round(buy_avg, 4), "buyQty": p["buyQty"], "sellAvg": round(sell_avg, 4),
                         "sellQty": p["sellQty"], "netQty": net, "costPrice": round(buy_avg or sell_avg, 4),
                         "realizedProfit": round(closed * (sell_avg - buy_avg), 4), "unrealizedProfit": 0.0,
                         "multiplier": 1, "drvExpiryDate": p["drvExpiryDate"], "drvOptionType": p["drvOptionType"],
                         "drvStrikePrice": 0.0})
        return rows

    def _funds(self, body: dict, req: Recorded) -> tuple[int, Any]:
        used = sum(t["tradedQuantity"] * t["tradedPrice"] for t in self.trade_rows if t["transactionType"] == "BUY")
        return 200, {"dhanClientId": self.client_id, "availabelBalance": round(self.available_balance - used, 2),
                     "sodLimit": self.available_balance, "collateralAmount": 0.0, "receiveableAmount": 0.0,
                     "utilizedAmount": round(used, 2), "blockedPayoutAmount": 0.0,
                     "withdrawableBalance": round(self.available_balance - used, 2)}

    @staticmethod
    def leg_margin(leg: dict) -> tuple[float, float]:
        """(span, exposure) of one leg: a buy pays its premium; a sell 5x premium + 2,000 per 100 shares."""
        value = float(leg.get("price") or 0.0) * int(leg.get("quantity") or 0)
        if leg.get("transactionType") == "BUY":
            return value, 0.0
        return 5 * value, 20.0 * int(leg.get("quantity") or 0)

    def _margin(self, body: dict, req: Recorded) -> tuple[int, Any]:
        span, exposure = self.leg_margin(body)
        return 200, {"totalMargin": span + exposure, "spanMargin": span, "exposureMargin": exposure,
                     "availableBalance": self.available_balance, "variableMargin": 0.0, "insufficientBalance": 0.0,
                     "brokerage": 20.0, "leverage": "1.00"}

    def _margin_multi(self, body: dict, req: Recorded) -> tuple[int, Any]:
        legs = body.get("scripList") or []
        if not legs:
            return self._bad_request("scripList is required")
        parts = [self.leg_margin(g) for g in legs]
        span, exposure = sum(p[0] for p in parts), sum(p[1] for p in parts)
        hedged = {g.get("transactionType") for g in legs} == {"BUY", "SELL"}
        benefit = round(0.3 * span, 2) if hedged else 0.0
        return 200, {"total_margin": f"{span + exposure - benefit:.2f}", "span_margin": f"{span:.2f}",
                     "exposure_margin": f"{exposure:.2f}", "equity_margin": "0.00", "fo_margin": f"{span + exposure:.2f}",
                     "commodity_margin": "0.00", "currency": "INR", "hedge_benefit": f"{benefit:.2f}"}

    # -- order-update WebSocket ----------------------------------------------------------------
    def start_order_feed(self) -> str:
        """Start the order-update WebSocket server; its ``ws://`` URL."""
        from websockets.sync.server import serve

        if self._feed is None:
            self._feed = serve(self._feed_session, "127.0.0.1", 0)
            self._feed_thread = threading.Thread(target=self._feed.serve_forever, name="dhan-order-feed", daemon=True)
            self._feed_thread.start()
        return self.order_feed_url

    @property
    def order_feed_url(self) -> str:
        return f"ws://127.0.0.1:{self._feed.socket.getsockname()[1]}"

    def _feed_session(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            login = json.loads(ws.recv(timeout=5))
            req = login.get("LoginReq") or {}
            if req.get("MsgCode") != 42 or req.get("ClientId") != self.client_id or req.get("Token") != self.access_token:
                ws.close(4001, "login failed")
                return
            with self._olock:
                self._feed_clients.add(ws)
            for _ in ws:
                pass
        except (ConnectionClosed, TimeoutError, ValueError):
            pass
        finally:
            with self._olock:
                self._feed_clients.discard(ws)

    def feed_clients(self) -> int:
        with self._olock:
            return len(self._feed_clients)

    def drop_feed_connections(self) -> None:
        """Close every order-feed connection (the client must reconnect)."""
        with self._olock:
            clients = list(self._feed_clients)
        for ws in clients:
            ws.close(1011, "stand-in dropped the connection")

    def _publish(self, o: dict) -> None:
        data = {"Exchange": "NSE", "Segment": "D", "Source": "P", "SecurityId": o["securityId"],
                "ClientId": self.client_id, "OrderNo": o["orderId"], "ExchOrderNo": o["exchangeOrderId"],
                "Product": "M", "TxnType": "B" if o["transactionType"] == "BUY" else "S",
                "OrderType": "LMT" if o["orderType"] == "LIMIT" else "MKT", "Validity": o["validity"],
                "Quantity": o["quantity"], "TradedQty": o["filledQty"], "RemainingQuantity": o["quantity"] - o["filledQty"],
                "Price": o["price"], "TradedPrice": o.get("lastTradedPrice", 0.0), "AvgTradedPrice": o["averageTradedPrice"],
                "Status": FEED_STATUS.get(o["orderStatus"], o["orderStatus"]), "CorrelationId": o["correlationId"],
                "ReasonDescription": o["omsErrorDescription"] or "CONFIRMED", "LegNo": 1,
                "LastUpdatedTime": o["updateTime"]}
        msg = {"Type": "order_alert", "Data": data}
        self.feed_messages.append(msg)
        for ws in list(self._feed_clients):
            try:
                ws.send(json.dumps(msg))
            except Exception:  # noqa: BLE001 - a closed client is dropped; the others still get it
                self._feed_clients.discard(ws)

    def stop(self) -> None:
        if self._feed is not None:
            self._feed.shutdown()
            self._feed = None
        super().stop()
