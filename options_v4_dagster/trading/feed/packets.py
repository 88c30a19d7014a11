"""Dhan market feed v2: the binary packets it sends and the JSON subscription messages it takes.

Layouts as Dhan documents them and as dhanhq 2.3's ``marketfeed.py`` reads them (little-endian; every
packet starts with the 8-byte header ``<BHBI``: response code, message length, exchange segment,
security id):

====  ===========  =====  ==============================================================================
code  name         bytes  body after the header
====  ===========  =====  ==============================================================================
2     ticker       16     LTP f32, LTT u32
4     quote        50     LTP f32, LTQ u16, LTT u32, avg price f32, volume u32, total sell qty u32,
                          total buy qty u32, open f32, close f32, high f32, low f32
5     OI           12     open interest u32
6     prev close   16     previous close f32, previous OI u32
7     status        8     (header only: market status)
8     full        162     LTP f32, LTQ u16, LTT u32, avg f32, volume u32, total sell u32, total buy u32,
                          OI u32, OI day high u32, OI day low u32, open f32, close f32, high f32, low f32,
                          then 5 depth levels of 20 bytes: bid qty u32, ask qty u32, bid orders u16,
                          ask orders u16, bid price f32, ask price f32
50    disconnect   10     reason code u16 (805 too many connections, 806 no data plan, 807 token
                          expired, 808 invalid client id, 809 authentication failed)
====  ===========  =====  ==============================================================================

LTT is an epoch of *IST wall-clock* time (seconds from 1970-01-01 00:00 read on an Indian clock), so
09:15:00 IST is ``...33300`` past an IST midnight; :func:`ltt_to_utc` turns it into a tz-aware UTC
datetime (the SDK formats it as if it were UTC and drops the date). Dhan sends one packet per
WebSocket frame (the SDK reads only the first); :func:`parse_frame` also walks frames holding several
packets back to back, by the fixed size of each code. At one packet per frame a precompiled
``struct.Struct`` per code is the fast path (a few microseconds per packet); there is nothing to
vectorize.

Subscriptions are JSON text frames, exactly what the SDK sends:
``{"RequestCode": 15|17|21, "InstrumentCount": n, "InstrumentList": [{"ExchangeSegment": "NSE_FNO",
"SecurityId": "..."}]}`` with at most 100 instruments each; ``RequestCode + 1`` unsubscribes and
``{"RequestCode": 12}`` asks the server to disconnect.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..quotes import Quote

__all__ = [
    "DISCONNECT_REASONS", "FATAL_DISCONNECT_CODES", "MAX_INSTRUMENTS_PER_CONNECTION", "MAX_PER_MESSAGE",
    "PACKET_SIZES", "SEGMENT_CODES", "SEGMENT_NAMES", "DepthLevel", "FeedTick", "FrameError", "Instrument",
    "RequestCode", "ResponseCode", "ist_epoch", "ltt_to_utc", "normalize_instrument", "pack_disconnect",
    "pack_full", "pack_oi", "pack_prev_close", "pack_quote", "pack_status", "pack_ticker", "parse_frame",
    "subscription_messages",
]


class RequestCode:
    """Request codes of feed v2 (the SDK's ``MarketFeed.Ticker`` / ``Quote`` / ``Full`` and friends)."""

    DISCONNECT = 12
    TICKER = 15
    UNSUBSCRIBE_TICKER = 16
    QUOTE = 17
    UNSUBSCRIBE_QUOTE = 18
    FULL = 21
    UNSUBSCRIBE_FULL = 22
    SUBSCRIBE = (TICKER, QUOTE, FULL)


class ResponseCode:
    TICKER = 2
    QUOTE = 4
    OI = 5
    PREV_CLOSE = 6
    STATUS = 7
    FULL = 8
    DISCONNECT = 50


#: the packet a subscription mode streams
PACKET_FOR_REQUEST = {RequestCode.TICKER: ResponseCode.TICKER, RequestCode.QUOTE: ResponseCode.QUOTE,
                      RequestCode.FULL: ResponseCode.FULL}
KIND = {2: "ticker", 4: "quote", 5: "oi", 6: "prev_close", 7: "status", 8: "full", 50: "disconnect"}
PACKET_SIZES = {2: 16, 4: 50, 5: 12, 6: 16, 7: 8, 8: 162, 50: 10}
MAX_PER_MESSAGE = 100
MAX_INSTRUMENTS_PER_CONNECTION = 5000
MAX_CONNECTIONS_PER_USER = 5
DISCONNECT_REASONS = {805: "too many connections", 806: "no data plan", 807: "access token expired",
                      808: "invalid client id", 809: "authentication failed"}
#: reasons a reconnect with the same credentials cannot cure
FATAL_DISCONNECT_CODES = frozenset({806, 807, 808, 809})
#: the SDK's exchange segment codes and the names its subscription messages use
SEGMENT_NAMES = {0: "IDX_I", 1: "NSE_EQ", 2: "NSE_FNO", 3: "NSE_CURRENCY", 4: "BSE_EQ", 5: "MCX_COMM",
                 7: "BSE_CURRENCY", 8: "BSE_FNO"}
SEGMENT_CODES = {v: k for k, v in SEGMENT_NAMES.items()}
IST_OFFSET_S = 19_800  # +05:30; India has kept it since 1945 (no DST)

_HEADER = struct.Struct("<BHBI")
_TICKER = struct.Struct("<BHBIfI")
_QUOTE = struct.Struct("<BHBIfHIfIIIffff")
_OI = struct.Struct("<BHBII")
_PREV_CLOSE = struct.Struct("<BHBIfI")
_FULL = struct.Struct("<BHBIfHIfIIIIIIffff")  # 62 bytes, then the depth
_DEPTH = struct.Struct("<IIHHff")
_DEPTH5 = struct.Struct("<" + "IIHHff" * 5)
_DISCONNECT = struct.Struct("<BHBIH")

Instrument = tuple[str, str]  # (exchange segment name, security id)


class FrameError(ValueError):
    """A frame shorter than its packet code says."""


class DepthLevel(NamedTuple):
    bid_qty: int
    ask_qty: int
    bid_orders: int
    ask_orders: int
    bid: float
    ask: float


@dataclass(slots=True)
class FeedTick:
    """One parsed packet. Fields a packet does not carry are ``None``; prices in INR (f32 on the wire,
    rounded to paise here), quantities as Dhan sends them. ``received_at`` is the
    ``time.perf_counter()`` of the frame's arrival (for latency measurements). Treat it as read-only
    (not frozen only because a frozen dataclass takes several times longer to build)."""

    kind: str
    code: int
    segment: int
    security_id: str
    ltp: float | None = None
    ltt: dt.datetime | None = None
    ltq: int | None = None
    avg_price: float | None = None
    volume: int | None = None
    total_sell_qty: int | None = None
    total_buy_qty: int | None = None
    open: float | None = None
    close: float | None = None
    high: float | None = None
    low: float | None = None
    oi: int | None = None
    oi_high: int | None = None
    oi_low: int | None = None
    prev_close: float | None = None
    prev_oi: int | None = None
    depth: tuple[DepthLevel, ...] = ()
    disconnect_code: int | None = None
    received_at: float | None = None

    @property
    def bid(self) -> float | None:
        return self.depth[0].bid if self.depth and self.depth[0].bid > 0 else None

    @property
    def ask(self) -> float | None:
        return self.depth[0].ask if self.depth and self.depth[0].ask > 0 else None

    @property
    def disconnect_reason(self) -> str | None:
        if self.disconnect_code is None:
            return None
        return DISCONNECT_REASONS.get(self.disconnect_code, "unknown reason")

    def to_quote(self) -> Quote:
        """As a :class:`~options_v4_dagster.trading.quotes.Quote` (bid/ask only from a full packet)."""
        top = self.depth[0] if self.depth else None
        return Quote(self.security_id, self.bid, self.ask, top.bid_qty if self.bid is not None else None,
                     top.ask_qty if self.ask is not None else None, self.ltp, self.ltt)


def ltt_to_utc(epoch: int) -> dt.datetime | None:
    """Dhan's LTT (seconds of IST wall-clock time since 1970-01-01 00:00) as a tz-aware UTC datetime;
    ``None`` for 0 (no trade yet)."""
    if not epoch:
        return None
    return dt.datetime.fromtimestamp(epoch - IST_OFFSET_S, dt.UTC)


def ist_epoch(when: dt.datetime) -> int:
    """The inverse of :func:`ltt_to_utc`: the LTT Dhan would send for the tz-aware ``when``."""
    if when.tzinfo is None:
        raise ValueError("ist_epoch needs a tz-aware datetime")
    return int(when.timestamp()) + IST_OFFSET_S


def _px(x: float) -> float:
    """An f32 price to the nearest paisa (``round(x, 2)`` for prices >= 0, a few times faster)."""
    return int(x * 100.0 + 0.5) / 100.0


_depth = DepthLevel._make  # tuple.__new__: the cheapest way to build the 5 levels of every full packet


def _parse_one(buf: bytes, off: int, code: int, received_at: float | None) -> FeedTick:
    if code == 2:
        _, _, seg, sid, ltp, ltt = _TICKER.unpack_from(buf, off)
        return FeedTick("ticker", 2, seg, str(sid), ltp=_px(ltp), ltt=ltt_to_utc(ltt), received_at=received_at)
    if code == 8:
        (_, _, seg, sid, ltp, ltq, ltt, avg, vol, tsq, tbq, oi, oih, oil, op, cl, hi, lo) = _FULL.unpack_from(buf, off)
        v = _DEPTH5.unpack_from(buf, off + _FULL.size)
        depth = tuple([_depth((v[i], v[i + 1], v[i + 2], v[i + 3], int(v[i + 4] * 100.0 + 0.5) / 100.0,
                               int(v[i + 5] * 100.0 + 0.5) / 100.0)) for i in (0, 6, 12, 18, 24)])
        return FeedTick("full", 8, seg, str(sid), ltp=_px(ltp), ltt=ltt_to_utc(ltt), ltq=ltq, avg_price=_px(avg),
                        volume=vol, total_sell_qty=tsq, total_buy_qty=tbq, open=_px(op), close=_px(cl),
                        high=_px(hi), low=_px(lo), oi=oi, oi_high=oih, oi_low=oil, depth=depth,
                        received_at=received_at)
    if code == 4:
        (_, _, seg, sid, ltp, ltq, ltt, avg, vol, tsq, tbq, op, cl, hi, lo) = _QUOTE.unpack_from(buf, off)
        return FeedTick("quote", 4, seg, str(sid), ltp=_px(ltp), ltt=ltt_to_utc(ltt), ltq=ltq, avg_price=_px(avg),
                        volume=vol, total_sell_qty=tsq, total_buy_qty=tbq, open=_px(op), close=_px(cl),
                        high=_px(hi), low=_px(lo), received_at=received_at)
    if code == 5:
        _, _, seg, sid, oi = _OI.unpack_from(buf, off)
        return FeedTick("oi", 5, seg, str(sid), oi=oi, received_at=received_at)
    if code == 6:
        _, _, seg, sid, pc, poi = _PREV_CLOSE.unpack_from(buf, off)
        return FeedTick("prev_close", 6, seg, str(sid), prev_close=_px(pc), prev_oi=poi, received_at=received_at)
    if code == 50:
        _, _, seg, sid, reason = _DISCONNECT.unpack_from(buf, off)
        return FeedTick("disconnect", 50, seg, str(sid), disconnect_code=reason, received_at=received_at)
    _, _, seg, sid = _HEADER.unpack_from(buf, off)
    return FeedTick(KIND.get(code, f"code_{code}"), code, seg, str(sid), received_at=received_at)


def parse_frame(buf: bytes, received_at: float | None = None) -> list[FeedTick]:
    """Every packet of one binary frame, in order. A packet spans its code's documented size, or the
    header's length when that is larger and fits (fields added later are skipped); unknown codes are
    skipped by the header's length (returned with ``kind="code_<n>"``); a frame cut short raises
    :class:`FrameError`."""
    out: list[FeedTick] = []
    n, off = len(buf), 0
    while off < n:
        if n - off < _HEADER.size:
            raise FrameError(f"{n - off} trailing bytes, shorter than a header")
        code, length = buf[off], buf[off + 1] | buf[off + 2] << 8
        size = PACKET_SIZES.get(code)
        if size is None:
            size = length
            if size < _HEADER.size:
                raise FrameError(f"unknown packet code {code} with length {size}")
        elif size < length <= n - off:  # a longer packet than documented: read ours, skip the rest
            size = length
        if n - off < size:
            raise FrameError(f"packet code {code} needs {size} bytes, the frame has {n - off}")
        out.append(_parse_one(buf, off, code, received_at))
        off += size
    return out


# -- encoders (the stand-in feed and tests) ------------------------------------------------------------
def pack_ticker(security_id: int | str, ltp: float, ltt: int, segment: int = 2) -> bytes:
    return _TICKER.pack(2, _TICKER.size, segment, int(security_id), ltp, ltt)


def pack_quote(security_id: int | str, ltp: float, ltt: int, *, ltq: int = 0, avg_price: float = 0.0,
               volume: int = 0, total_sell_qty: int = 0, total_buy_qty: int = 0, open: float = 0.0,
               close: float = 0.0, high: float = 0.0, low: float = 0.0, segment: int = 2) -> bytes:
    return _QUOTE.pack(4, _QUOTE.size, segment, int(security_id), ltp, ltq, ltt, avg_price, volume,
                       total_sell_qty, total_buy_qty, open, close, high, low)


def pack_full(security_id: int | str, ltp: float, ltt: int, depth: Sequence[DepthLevel], *, ltq: int = 0,
              avg_price: float = 0.0, volume: int = 0, total_sell_qty: int = 0, total_buy_qty: int = 0,
              oi: int = 0, oi_high: int = 0, oi_low: int = 0, open: float = 0.0, close: float = 0.0,
              high: float = 0.0, low: float = 0.0, segment: int = 2) -> bytes:
    levels = list(depth)[:5] + [DepthLevel(0, 0, 0, 0, 0.0, 0.0)] * (5 - min(5, len(depth)))
    head = _FULL.pack(8, PACKET_SIZES[8], segment, int(security_id), ltp, ltq, ltt, avg_price, volume,
                      total_sell_qty, total_buy_qty, oi, oi_high, oi_low, open, close, high, low)
    return head + b"".join(_DEPTH.pack(d.bid_qty, d.ask_qty, d.bid_orders, d.ask_orders, d.bid, d.ask)
                           for d in levels)


def pack_oi(security_id: int | str, oi: int, segment: int = 2) -> bytes:
    return _OI.pack(5, _OI.size, segment, int(security_id), oi)


def pack_prev_close(security_id: int | str, prev_close: float, prev_oi: int = 0, segment: int = 2) -> bytes:
    return _PREV_CLOSE.pack(6, _PREV_CLOSE.size, segment, int(security_id), prev_close, prev_oi)


def pack_status(segment: int = 2, security_id: int = 0) -> bytes:
    return _HEADER.pack(7, _HEADER.size, segment, security_id)


def pack_disconnect(code: int, segment: int = 0, security_id: int = 0) -> bytes:
    return _DISCONNECT.pack(50, _DISCONNECT.size, segment, security_id, code)


# -- subscriptions -------------------------------------------------------------------------------------
def normalize_instrument(instrument: Instrument | tuple[int, str] | str) -> Instrument:
    """``(segment, security_id)`` with the segment as Dhan's name (``2`` or ``"NSE_FNO"`` →
    ``"NSE_FNO"``) and the id as text; a bare id is an NSE F&O contract."""
    if isinstance(instrument, str | int) and not isinstance(instrument, bool):
        seg, sid = "NSE_FNO", instrument
    else:
        seg, sid = instrument
    if isinstance(seg, int):
        if seg not in SEGMENT_NAMES:
            raise ValueError(f"unknown exchange segment code {seg}")
        seg = SEGMENT_NAMES[seg]
    elif seg not in SEGMENT_CODES:
        raise ValueError(f"unknown exchange segment {seg!r}")
    sid = str(sid).strip()
    if not sid.isdigit():
        raise ValueError(f"a Dhan security id is numeric, got {sid!r}")
    return seg, sid


def subscription_messages(instruments: Iterable[Instrument], request_code: int = RequestCode.FULL) -> list[str]:
    """The JSON frames subscribing (15/17/21) or unsubscribing (16/18/22) ``instruments``, at most
    :data:`MAX_PER_MESSAGE` per frame, as the SDK builds them (duplicates dropped, order kept)."""
    if request_code not in (15, 16, 17, 18, 21, 22):
        raise ValueError(f"not a subscription request code: {request_code}")
    items = list(dict.fromkeys(normalize_instrument(i) for i in instruments))
    out = []
    for i in range(0, len(items), MAX_PER_MESSAGE):
        batch = items[i:i + MAX_PER_MESSAGE]
        out.append(json.dumps({"RequestCode": request_code, "InstrumentCount": len(batch),
                               "InstrumentList": [{"ExchangeSegment": s, "SecurityId": t} for s, t in batch]}))
    return out


def disconnect_message() -> str:
    return json.dumps({"RequestCode": RequestCode.DISCONNECT})
