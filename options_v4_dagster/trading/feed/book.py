"""The latest quote of every instrument the feed reported: a :class:`~..quotes.QuoteBook` the
valuation can read while the feed runs (``book.apply`` as, or inside, the client's ``on_tick``)."""

from __future__ import annotations

import threading
import time

from ..quotes import Quote
from .packets import FeedTick

__all__ = ["FeedQuoteBook"]


class FeedQuoteBook:
    """Merges ticks into one :class:`Quote` per security id: a full packet sets bid/ask (top of the
    depth), LTP and LTT; ticker and quote packets move LTP and LTT and keep the last bid/ask. OI,
    previous-close, status and disconnect packets leave the book alone. ``updated_at`` holds the
    ``time.monotonic()`` of each id's last change, so a reader can tell a fresh quote from an old one."""

    def __init__(self) -> None:
        self._quotes: dict[str, Quote] = {}
        self.updated_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def apply(self, tick: FeedTick) -> Quote | None:
        """Merge ``tick``; the instrument's new quote, or ``None`` when the packet carries no price."""
        if tick.ltp is None:
            return None
        sid = tick.security_id
        with self._lock:
            if tick.depth:
                q = tick.to_quote()
            else:
                old = self._quotes.get(sid)
                q = (Quote(sid, old.bid, old.ask, old.bid_qty, old.ask_qty, tick.ltp, tick.ltt or old.ts)
                     if old is not None else Quote(sid, None, None, None, None, tick.ltp, tick.ltt))
            self._quotes[sid] = q
            self.updated_at[sid] = time.monotonic()
        return q

    def quote(self, security_id: str) -> Quote | None:
        return self._quotes.get(str(security_id))

    def age(self, security_id: str) -> float | None:
        """Seconds since ``security_id`` last changed (``None``: never quoted)."""
        t = self.updated_at.get(str(security_id))
        return None if t is None else time.monotonic() - t

    def __len__(self) -> int:
        return len(self._quotes)
