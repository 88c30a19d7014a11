"""The real-time monitor's quote books: a REST answer as a book (:func:`rest_book`) and the book it
values and fills paper exits at (:class:`LiveBook`: the feed's quotes first while the feed is up, the
REST answer first while it is down)."""

from __future__ import annotations

import polars as pl

from .feed import FeedQuoteBook
from .quotes import Quote, QuoteBook, StaticQuoteBook

__all__ = ["LiveBook", "rest_book"]


def rest_book(got: pl.DataFrame | QuoteBook) -> QuoteBook:
    """A REST answer (a quotes frame or a book) as a book."""
    if not isinstance(got, pl.DataFrame):
        return got

    def col(name: str) -> list:
        return got.get_column(name).to_list() if name in got.columns else [None] * got.height

    qs = [Quote(str(s), b, a, None if bq is None else int(bq), None if aq is None else int(aq), lt)
          for s, b, a, bq, aq, lt in zip(col("security_id"), col("bid"), col("ask"), col("bid_qty"), col("ask_qty"),
                                         col("ltp"), strict=True)]
    return StaticQuoteBook(qs)


class LiveBook:
    """The feed's book first while connected, the REST answer first while the feed is down."""

    def __init__(self, feed: FeedQuoteBook, rest: QuoteBook | None, feed_first: bool) -> None:
        self.books = [b for b in ((feed, rest) if feed_first else (rest, feed)) if b is not None]

    def quote(self, security_id: str) -> Quote | None:
        for b in self.books:
            q = b.quote(security_id)
            if q is not None and (q.bid is not None or q.ltp is not None):
                return q
        return None
