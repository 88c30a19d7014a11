"""Dhan v2 rows (order book, trade book, positions, fund limits, margin, order-update messages) as
the broker interface's typed values.

Status normalization (:func:`normalize_status`): Dhan's REST API spells statuses in upper case
(TRANSIT, PENDING, PART_TRADED, TRADED, REJECTED, CANCELLED, EXPIRED; CLOSED/TRIGGERED for super
orders); the order-update WebSocket abbreviates and varies the case (``Pending``, ``Part_Traded``,
``Cancelled``, ``Traded``...). Aliases seen on other platforms (OPEN, COMPLETE, CANCELED, PARTIALLY
FILLED, MODIFIED, TRIGGER PENDING) are mapped too. A working status with a traded quantity is
PART_TRADED; a status nothing maps is a working status by its traded quantity (logged), never an
exception in the middle of following fills.

Times: Dhan gives ``YYYY-MM-DD HH:MM:SS`` in IST (``createTime``, ``updateTime``, ``exchangeTime``;
the WebSocket's ``LastUpdatedTime``); they become aware datetimes; ``0001-01-01 ...`` / empty → None.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from .broker import BrokerOrder, BrokerPosition, Fill, Funds, MarginQuote
from .orders import OrderStatus, Side

log = logging.getLogger(__name__)
S = OrderStatus
IST = ZoneInfo("Asia/Kolkata")

_ALIASES: dict[str, OrderStatus] = {
    "TRANSIT": S.TRANSIT, "PENDING": S.PENDING, "OPEN": S.PENDING, "TRIGGER_PENDING": S.PENDING,
    "TRIGGERED": S.PENDING, "MODIFIED": S.PENDING, "CONFIRM": S.PENDING, "CONFIRMED": S.PENDING,
    "PART_TRADED": S.PART_TRADED, "PARTTRADED": S.PART_TRADED, "PARTIALLY_TRADED": S.PART_TRADED,
    "PARTIALLY_FILLED": S.PART_TRADED, "PARTIAL": S.PART_TRADED,
    "TRADED": S.TRADED, "COMPLETE": S.TRADED, "COMPLETED": S.TRADED, "FILLED": S.TRADED, "EXECUTED": S.TRADED,
    "CLOSED": S.TRADED,
    "REJECTED": S.REJECTED, "CANCELLED": S.CANCELLED, "CANCELED": S.CANCELLED, "EXPIRED": S.EXPIRED,
}


def normalize_status(raw: Any, *, quantity: int = 0, filled: int = 0) -> OrderStatus:
    """Dhan's status text (any case, spaces/hyphens or underscores) as an :class:`OrderStatus`."""
    key = re.sub(r"[\s\-]+", "_", str(raw or "").strip()).upper()
    status = _ALIASES.get(key)
    if status is None:
        log.warning("dhan: unknown order status %r; followed as a working order", raw)
        status = S.PENDING
    if status in (S.TRANSIT, S.PENDING) and filled > 0:
        status = S.TRADED if quantity and filled >= quantity else S.PART_TRADED
    return status


def normalize_side(raw: Any) -> Side:
    key = str(raw or "").strip().upper()
    if key in ("B", "BUY"):
        return Side.BUY
    if key in ("S", "SELL"):
        return Side.SELL
    raise ValueError(f"unknown transaction type {raw!r}")


def parse_time(raw: Any) -> dt.datetime | None:
    text = str(raw or "").strip()
    if not text or text.startswith(("0001", "1970", "1980")) or text in ("NA", "None"):
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M:%S.%f", "%d-%m-%Y %H:%M:%S", "%d/%m/%Y %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=IST)
        except ValueError:
            continue
    return None


def _num(row: Mapping, *keys: str, default: float = 0.0) -> float:
    for k in keys:
        v = row.get(k)
        if v not in (None, "", "NA"):
            try:
                return float(v)
            except (TypeError, ValueError):
                continue
    return default


def _text(row: Mapping, *keys: str) -> str | None:
    for k in keys:
        v = row.get(k)
        if v not in (None, "", "NA"):
            return str(v)
    return None


def order_from_row(row: Mapping) -> BrokerOrder:
    """One order-book row (GET /orders, /orders/{id}, /orders/external/{cid}) as a BrokerOrder."""
    qty = int(_num(row, "quantity"))
    filled = int(_num(row, "filledQty", "tradedQuantity"))
    if not filled and "remainingQuantity" in row and row.get("filledQty") is None:
        filled = max(qty - int(_num(row, "remainingQuantity", default=qty)), 0)
    status = normalize_status(row.get("orderStatus"), quantity=qty, filled=filled)
    code = _text(row, "omsErrorCode")
    reason = _text(row, "omsErrorDescription")
    if code in ("0", "NA"):
        code = None
    return BrokerOrder(
        order_id=str(row.get("orderId") or ""), correlation_id=_text(row, "correlationId"),
        security_id=str(row.get("securityId") or ""), side=normalize_side(row.get("transactionType")),
        quantity=qty, price=_num(row, "price"), status=status, filled_quantity=filled,
        average_price=_num(row, "averageTradedPrice") if filled else 0.0,
        reason=reason if (code or status in (S.REJECTED, S.CANCELLED, S.EXPIRED)) else None,
        error_code=code,
        updated_at=parse_time(row.get("updateTime")) or parse_time(row.get("createTime")))


def fill_from_row(row: Mapping, correlation_id: str | None = None) -> Fill:
    """One trade-book row (GET /trades, /trades/{order-id}) as a Fill."""
    traded_at = (parse_time(row.get("exchangeTime")) or parse_time(row.get("updateTime"))
                 or parse_time(row.get("createTime")) or dt.datetime.now(IST))
    return Fill(trade_id=str(row.get("exchangeTradeId") or row.get("tradeId") or ""),
                order_id=str(row.get("orderId") or ""), correlation_id=correlation_id or _text(row, "correlationId"),
                security_id=str(row.get("securityId") or ""), side=normalize_side(row.get("transactionType")),
                quantity=int(_num(row, "tradedQuantity")), price=_num(row, "tradedPrice"), traded_at=traded_at)


def position_from_row(row: Mapping) -> BrokerPosition:
    return BrokerPosition(security_id=str(row.get("securityId") or ""), net_quantity=int(_num(row, "netQty")),
                          buy_average=_num(row, "buyAvg"), sell_average=_num(row, "sellAvg"),
                          realized_pnl=_num(row, "realizedProfit"), unrealized_pnl=_num(row, "unrealizedProfit"))


def funds_from_row(row: Mapping) -> Funds:
    """GET /fundlimit (Dhan spells the key ``availabelBalance``; the corrected spelling is read too)."""
    available = _num(row, "availabelBalance", "availableBalance")
    used = _num(row, "utilizedAmount")
    return Funds(available=available, used_margin=used, total=available + used)


def margin_from_row(row: Mapping, *, model: str) -> MarginQuote:
    """A margin-calculator answer (single: camelCase numbers; multi: camelCase or snake_case, numbers
    or numeric strings)."""
    return MarginQuote(total=_num(row, "totalMargin", "total_margin"), span=_num(row, "spanMargin", "span_margin"),
                       exposure=_num(row, "exposureMargin", "exposure_margin"),
                       hedge_benefit=_num(row, "hedgeBenefit", "hedge_benefit"), details={"model": model, **row})


# -- order-update WebSocket messages --------------------------------------------------------------

@dataclass(frozen=True)
class OrderUpdate:
    """One normalized ``order_alert`` of Dhan's order-update stream (or a polled change)."""

    order_id: str
    correlation_id: str | None
    security_id: str | None
    side: Side | None
    status: OrderStatus
    quantity: int
    filled_quantity: int
    average_price: float
    last_price: float
    reason: str | None
    updated_at: dt.datetime | None
    raw: Mapping[str, Any]

    def as_order(self, price: float = 0.0) -> BrokerOrder:
        return BrokerOrder(self.order_id, self.correlation_id, self.security_id or "", self.side or Side.BUY,
                           self.quantity, price, self.status, self.filled_quantity, self.average_price,
                           self.reason, None, self.updated_at)


def order_update_from_message(message: Mapping) -> OrderUpdate | None:
    """``{"Type": "order_alert", "Data": {...}}`` → OrderUpdate; None for any other message type.
    Keys are matched case-insensitively (the stream varies ``OrderNo``/``orderNo``)."""
    if str(message.get("Type") or message.get("type") or "").lower() != "order_alert":
        return None
    data = {str(k).lower(): v for k, v in dict(message.get("Data") or message.get("data") or {}).items()}
    qty = int(_num(data, "quantity"))
    filled = int(_num(data, "tradedqty", "filledqty"))
    side = data.get("txntype") or data.get("transactiontype")
    return OrderUpdate(
        order_id=str(data.get("orderno") or data.get("orderid") or ""),
        correlation_id=_text(data, "correlationid"), security_id=_text(data, "securityid"),
        side=normalize_side(side) if side else None,
        status=normalize_status(data.get("status"), quantity=qty, filled=filled), quantity=qty,
        filled_quantity=filled, average_price=_num(data, "avgtradedprice"), last_price=_num(data, "tradedprice"),
        reason=_text(data, "reasondescription"), updated_at=parse_time(data.get("lastupdatedtime")), raw=dict(data))
