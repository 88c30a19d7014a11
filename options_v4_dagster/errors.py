"""Typed errors. Every data error names the symbol, the session and the field at fault."""

from __future__ import annotations

import datetime as dt


class OptionsV4Error(Exception):
    """Base class of the project's own errors."""


class ConfigError(OptionsV4Error):
    """A setting (environment variable, YAML key, CLI flag) is missing or invalid."""


class DataError(OptionsV4Error):
    """Bad or missing market data for one symbol on one session."""

    def __init__(
        self,
        message: str,
        *,
        symbol: str | None = None,
        session: dt.date | None = None,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.symbol = symbol
        self.session = session
        self.field = field
        self.source = source
        self.reason = message
        where = ", ".join(
            f"{k}={v}"
            for k, v in (("source", source), ("symbol", symbol), ("session", session), ("field", field))
            if v is not None
        )
        super().__init__(f"{message} [{where}]" if where else message)


class DataUnavailable(DataError):
    """The source holds nothing for this symbol and session (not an error of the data itself).

    A backfill over a range where files are missing records these as *missing*, not failed.
    """


class MixedSources(OptionsV4Error):
    """A session's upstream rows come from more than one market-data source."""


class ProviderError(OptionsV4Error):
    """A market-data provider (broker API, HTTP source) failed after its retries."""

    def __init__(self, message: str, *, provider: str, status: int | None = None, code: str | None = None,
                 retryable: bool = False) -> None:
        self.provider = provider
        self.status = status
        self.code = code
        self.retryable = retryable
        extra = ", ".join(f"{k}={v}" for k, v in (("status", status), ("code", code)) if v is not None)
        super().__init__(f"{provider}: {message}" + (f" ({extra})" if extra else ""))


class CircuitOpen(ProviderError):
    """The provider could not be reached N times in a row: calls fail at once, without a request.
    A step that meets it fails as a whole (one clear error) instead of recording every symbol."""


class RateLimited(ProviderError):
    """The provider answered 429 / a rate-limit error code; retried with back-off."""
