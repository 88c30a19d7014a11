"""Change detection on the trading tables, for the real-time monitor's cache of its inputs
(:mod:`..trading.monitor_fast`).

* **PostgreSQL: LISTEN/NOTIFY.** :class:`~.trading.TradingStore` sends ``pg_notify`` on
  :data:`CHANNEL` in the same transaction that writes a position (a fill) or a strategy's execution
  state (:func:`notify`), so the notification is delivered on commit and never for a write rolled
  back. :class:`ChangeListener` holds one connection of its own in a thread, LISTENs and calls back
  on every notification; it reconnects with back-off, and a (re)connection is reported as a change
  too (anything may have moved while nobody listened). The original system used Supabase Realtime
  for this. A connection pooler in transaction mode does not carry LISTEN: the listener then never
  connects and the monitor falls back to the version check.
* **Everywhere: a version token** (:func:`trading_version`): one query of counts and the latest
  ``updated_at`` of ``positions`` and ``strategy_execution_status`` (and how many strategies are
  monitored, so a state change written with a past ``at`` is still seen). Cheap enough to run
  before every evaluation when there is no listener (SQLite).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import sqlalchemy as sa

from .schema import positions, strategy_execution_status

__all__ = ["CHANNEL", "ChangeListener", "notify", "trading_version"]

log = logging.getLogger(__name__)
CHANNEL = "options_v4_trading"
_MONITORED = ("OPEN", "PARTIALLY_EXITED")  # = monitoring.MONITORED_STATES (monitoring imports trading, which imports this)
_NOTIFY = sa.select(sa.func.pg_notify(sa.bindparam("channel_"), sa.bindparam("payload_")))


def notify(conn: sa.Connection, payload: str) -> None:
    """``pg_notify(CHANNEL, payload)`` in ``conn``'s transaction (delivered at its commit); nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(_NOTIFY, {"channel_": CHANNEL, "payload_": payload[:7900]})


def _version_query() -> sa.Select:
    p, e = positions, strategy_execution_status
    return sa.select(
        sa.select(sa.func.count()).select_from(p).scalar_subquery(),
        sa.select(sa.func.max(p.c.updated_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(e).scalar_subquery(),
        sa.select(sa.func.max(e.c.updated_at)).scalar_subquery(),
        sa.select(sa.func.count()).select_from(e).where(e.c.state.in_(_MONITORED)).scalar_subquery(),
    )


_VERSION = _version_query()


def trading_version(wh) -> tuple:
    """A token that changes whenever a position or a strategy state is written (module docstring)."""
    with wh.engine.connect() as conn:
        return tuple(str(v) for v in conn.execute(_VERSION).one())


class ChangeListener:
    """LISTEN on :data:`CHANNEL` (PostgreSQL) in a daemon thread; ``on_change(payload)`` on the
    listener's thread for each notification, ``on_change(None)`` on each (re)connection. ``url``: the
    warehouse's SQLAlchemy URL (its driver part is dropped; psycopg 3 connects)."""

    def __init__(self, url: sa.engine.URL | str, on_change: Callable[[str | None], None], *,
                 reconnect_delay: float = 1.0, max_delay: float = 30.0, poll: float = 0.25) -> None:
        u = sa.engine.make_url(url)
        self.dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
        self.on_change, self.reconnect_delay, self.max_delay, self.poll = on_change, reconnect_delay, max_delay, poll
        self.notifications = 0
        self.connects = 0
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self, wait: float = 0.0) -> ChangeListener:
        """Start the thread; wait up to ``wait`` seconds for the first LISTEN."""
        self._thread = threading.Thread(target=self._run, name="options-v4-listen", daemon=True)
        self._thread.start()
        if wait > 0:
            self._connected.wait(wait)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        import psycopg

        delay = self.reconnect_delay
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connects += 1
                    self.on_change(None)
                    self._connected.set()
                    delay = self.reconnect_delay
                    while not self._stopping.is_set():
                        for n in conn.notifies(timeout=self.poll):
                            self.notifications += 1
                            self.on_change(n.payload)
            except psycopg.Error as exc:
                log.warning("trading change listener: %s: %s (retry in %.0f s)", exc.__class__.__name__, exc, delay)
            finally:
                self._connected.clear()
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self.max_delay)
