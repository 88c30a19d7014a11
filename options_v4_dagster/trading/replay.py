"""Paper execution on a simulated clock: the :class:`~.paper.PaperBroker` over a quote book (a
stored session's, see ``store.trading_queries.session_quote_book``) and the
:class:`~.placement.ExecutionConfig` that drives it, sharing one :class:`~.clock.ManualClock`.

Every wait of the execution (fill timeouts, polls, retry backoffs after the paper broker's
10 orders/second limit) advances the clock instead of sleeping and then gives the paper market one
more matching round (:meth:`PaperBroker.step`: the displayed quantities are shown again, so partial
fills continue at the book's prices). The paper broker fills at once where the quote allows, so an
execution spends no wall time waiting; its timestamps start at ``start`` (default: now).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from .clock import ManualClock
from .paper import PaperBroker, PaperConfig
from .placement import ExecutionConfig
from .quotes import QuoteBook

__all__ = ["PaperExecution", "paper_execution"]


@dataclass
class PaperExecution:
    broker: PaperBroker
    clock: ManualClock
    config: ExecutionConfig  # clock and sleep bound to :attr:`clock` and :attr:`broker`

    def sleep(self, seconds: float) -> None:
        """Time passes on the paper market: the clock moves on, working orders meet the book again."""
        self.clock.advance(seconds)
        self.broker.step()


def paper_execution(quotes: QuoteBook, *, capital: float | None = None, paper: PaperConfig | None = None,
                    config: ExecutionConfig | None = None, start: dt.datetime | None = None,
                    clock: ManualClock | None = None, **broker_kwargs) -> PaperExecution:
    """A paper broker over ``quotes`` and an execution config on one simulated clock (module
    docstring). ``capital``: the paper account's (default ``paper.capital``); ``clock``: the one to
    share (default a new one at ``start``, else now); ``broker_kwargs`` go to :class:`PaperBroker`
    (``freeze_limits``, ``charges``, ``instruments``, ``margin_fn``, ...); ``instruments`` defaults to the
    book's (``quotes.instruments``: the session's instruments table, see ``session_quote_book``)."""
    paper = paper or PaperConfig()
    if capital is not None:
        paper = replace(paper, capital=float(capital))
    clock = clock or ManualClock(start or dt.datetime.now(dt.UTC))
    broker_kwargs.setdefault("instruments", getattr(quotes, "instruments", None))
    broker = PaperBroker(quotes, paper, clock=clock, **broker_kwargs)
    px = PaperExecution(broker, clock, config or ExecutionConfig())
    px.config = replace(px.config, clock=clock, sleep=px.sleep)
    return px
