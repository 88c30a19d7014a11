"""Dhan's market feed v2 for the real-time monitor: packets (:mod:`.packets`), the WebSocket client
(:class:`MarketFeedClient`), a quote book fed by it (:class:`FeedQuoteBook`) and an offline stand-in
server (:mod:`.standin`, imported on demand). No Dagster, no database."""

from .book import FeedQuoteBook
from .client import DHAN_FEED_URL, DisconnectReason, FeedCapacityError, FeedStats, MarketFeedClient
from .packets import (
    DepthLevel,
    FeedTick,
    FrameError,
    RequestCode,
    ltt_to_utc,
    parse_frame,
    subscription_messages,
)

__all__ = [
    "DHAN_FEED_URL", "DepthLevel", "DisconnectReason", "FeedCapacityError", "FeedQuoteBook", "FeedStats",
    "FeedTick", "FrameError", "MarketFeedClient", "RequestCode", "ltt_to_utc", "parse_frame",
    "subscription_messages",
]
