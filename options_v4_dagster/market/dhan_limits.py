"""Dhan's rate limits per API class, enforced across processes (:class:`DhanRateLimits`).

:class:`~.dhan_client.DhanClient` spaces its own requests with an in-process
:class:`~.dhan_client.Throttle`; Dagster runs steps in parallel processes and up to four runs at once,
and the CLI and the real-time monitor run beside them, so each process alone would keep Dhan's limits
while together they break them. Every :meth:`DhanClient.call <.dhan_client.DhanClient.call>` of a
client built by ``from_env`` / ``from_credentials`` therefore also holds a slot of a
:class:`~options_v4_dagster.rate_limiter.SharedRateLimiter` (one SQLite ledger per machine) in each
bucket its throttle keys name, per account (``dhan_<client id>``):

============================  =====================================  ======================================
throttle key                  bucket                                 Dhan's published limit
============================  =====================================  ======================================
``data-api``                  ``<account>:data-api``                 data APIs 5 / s (expiry list, option
                                                                     chain, historical bars)
``("optionchain", id, seg,    ``<account>:optionchain:id:seg:date``  option chain: one request per 3 s for
expiry)``                                                            the same underlying and expiry (3.05 s)
``quote-api``                 ``<account>:quote-api``                market quotes 1 / s
``dhan-order-read``           ``<account>:dhan-order-read``          non-trading APIs 20 / s (order book,
                                                                     positions, funds)
============================  =====================================  ======================================

Any other key is one request per its throttle interval. Order requests (place, modify, cancel) hold a
slot of :class:`~options_v4_dagster.trading.order_limiter.OrderRateLimiter` (the same class, Dhan's
10/s, 250/min, 1,000/h, 7,000/day) instead. Settings (:func:`dhan_rate_settings`):
``DHAN_RATE_LIMITER_PATH`` [``<home_dir>/dhan_rate_limiter.sqlite``], ``DHAN_RATE_MAX_WAIT_SECONDS``
[60: then the call fails with :class:`~options_v4_dagster.errors.RateLimited`, code
``LOCAL-RATE-LIMIT``, nothing sent] and ``DHAN_RATE_LIMITER`` [``on``; ``off`` leaves only the
per-process throttle, for one process alone].

The steps that call Dhan are also in the Dagster pool ``dhan_market_data`` (``pool=`` on the assets),
so that the instance's pool limit bounds how many of them wait on this ledger at once.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError, RateLimited
from ..rate_limiter import Bucket, SharedRateLimiter, bucket_key

#: Dhan's published limits per API class (the throttle key of :meth:`DhanClient.call`): (requests, window ms).
DHAN_API_RATES: dict[str, tuple[tuple[int, int], ...]] = {
    "data-api": ((5, 1_000),),
    "quote-api": ((1, 1_000),),
    "dhan-order-read": ((20, 1_000),),
}
LOCAL_LIMIT_CODE = "LOCAL-RATE-LIMIT"
#: the Dagster pool of every asset that calls Dhan's data APIs
DAGSTER_POOL = "dhan_market_data"


def dhan_rate_settings() -> dict:
    """The shared limiter's settings from the environment (see the module docstring)."""
    from .. import config

    path = os.environ.get("DHAN_RATE_LIMITER_PATH", "").strip()
    enabled = os.environ.get("DHAN_RATE_LIMITER", "on").strip().lower()
    if enabled not in ("on", "off", "1", "0", "true", "false", ""):
        raise ConfigError(f"DHAN_RATE_LIMITER={enabled!r} must be on or off")
    return {
        "enabled": enabled in ("on", "1", "true", ""),
        "path": Path(path).expanduser() if path else config.home_dir() / "dhan_rate_limiter.sqlite",
        "max_wait": config._env_number("DHAN_RATE_MAX_WAIT_SECONDS", 60.0, minimum=0.0),
    }


def buckets_for(account: str, slots: Sequence[tuple[Hashable, float]]) -> list[Bucket]:
    """The shared buckets of a call's throttle ``slots`` (key, interval) for ``account``."""
    out = []
    for key, interval in slots:
        parts = key if isinstance(key, tuple) else (key,)
        rates = DHAN_API_RATES.get(key) if isinstance(key, str) else None
        out.append((bucket_key(account, *parts), rates or ((1, max(1, math.ceil(interval * 1000))),)))
    return out


class DhanRateLimits:
    """One account's buckets in a shared ledger: :meth:`slot` wraps each HTTP request of a call."""

    def __init__(self, limiter: SharedRateLimiter, account: str) -> None:
        self.limiter = limiter
        self.account = account

    @classmethod
    def from_env(cls, client_id: str) -> DhanRateLimits | None:
        """The machine's ledger for ``client_id`` (None when ``DHAN_RATE_LIMITER=off``)."""
        s = dhan_rate_settings()
        if not s["enabled"]:
            return None
        return cls.open(s["path"], client_id, max_wait=s["max_wait"])

    @classmethod
    def open(cls, path: str | Path, client_id: str, **kw) -> DhanRateLimits:
        limiter = SharedRateLimiter(path, timeout_error=_refused, **kw)
        return cls(limiter, f"dhan_{client_id}")

    @contextmanager
    def slot(self, what: str, slots: Sequence[tuple[Hashable, float]]) -> Iterator[None]:
        with self.limiter.slot(what, buckets_for(self.account, slots)):
            yield

    def close(self) -> None:
        self.limiter.close()

    def __repr__(self) -> str:
        return f"DhanRateLimits({str(self.limiter.path)!r}, account={self.account!r})"


def _refused(label: str, message: str) -> RateLimited:
    err = RateLimited(f"{label}: {message}; nothing sent", provider="dhan", code=LOCAL_LIMIT_CODE, retryable=False)
    err.detail = f"{label}: {message}; nothing sent"
    return err
