"""Failed-run alerts: one line for the log and, when ``OPTIONS_V4_ALERT_WEBHOOK_URL`` is set, a JSON POST
to that URL (Slack-style incoming webhooks, a chat bot, an on-call tool).

Delivery retries what can pass on a second try (connection refused or reset, a timeout, HTTP 429 and 5xx)
with tenacity, a few times with a short exponential back-off; an HTTP 4xx other than 429 is the webhook
refusing the message and is not retried. After the last try :class:`AlertDeliveryError` names the URL's
host (never its path or query, which often carry a token) and the last error.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from tenacity import RetryError, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from options_v4_dagster.errors import OptionsV4Error

WEBHOOK_ENV = "OPTIONS_V4_ALERT_WEBHOOK_URL"
ATTEMPTS = 4
TIMEOUT_SECONDS = 10.0


class AlertDeliveryError(OptionsV4Error):
    """The webhook did not take the alert (after the retries, or refused at once with a 4xx)."""


@dataclass(frozen=True)
class RunFailureAlert:
    """What a person needs to act on a failed run."""

    run_id: str
    job_name: str
    reason: str
    partition: str | None = None
    steps_failed: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    event: str = "dagster_run_failure"

    def line(self) -> str:
        where = f" for session {self.partition}" if self.partition else ""
        steps = f" (steps failed: {', '.join(self.steps_failed)})" if self.steps_failed else ""
        return f"run {self.run_id} of {self.job_name}{where} failed{steps}: {self.reason}"

    def payload(self) -> dict:
        out = asdict(self)
        out["steps_failed"] = list(self.steps_failed)
        out["tags"] = dict(self.tags)
        out["text"] = self.line()  # what chat webhooks display
        return out


def webhook_url(env: Mapping[str, str] | None = None) -> str | None:
    url = (os.environ if env is None else env).get(WEBHOOK_ENV, "").strip()
    return url or None


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "(no host)"


class _Retryable(Exception):
    """A delivery error worth another try."""


def _post_once(url: str, body: bytes, timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "options-v4-alerts"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the operator's own URL)
            return resp.status
    except urllib.error.HTTPError as exc:
        if exc.code == 429 or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        raise AlertDeliveryError(f"webhook {_host(url)} refused the alert: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retryable(f"{type(exc).__name__}: {reason}") from exc


def post_json(url: str, payload: Mapping, *, attempts: int = ATTEMPTS, timeout: float = TIMEOUT_SECONDS,
              backoff: float = 0.5) -> int:
    """POST ``payload`` as JSON to ``url``; the HTTP status of the accepted try. Raises
    :class:`AlertDeliveryError` when every try failed or the webhook refused the message."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise AlertDeliveryError(f"{WEBHOOK_ENV} must be an http(s) URL, got scheme "
                                 f"{urllib.parse.urlsplit(url).scheme or '(none)'!r}")
    body = json.dumps(payload, default=str).encode()
    retrying = Retrying(stop=stop_after_attempt(attempts),
                        wait=wait_exponential(multiplier=backoff, max=max(backoff * 8, 0.0)),
                        retry=retry_if_exception(lambda e: isinstance(e, _Retryable)), reraise=False)
    try:
        return retrying(_post_once, url, body, timeout)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise AlertDeliveryError(f"webhook {_host(url)} did not take the alert after {attempts} tries: {last}") from last


def send_run_failure(alert: RunFailureAlert, url: str | None, **kw) -> int | None:
    """POST ``alert`` to ``url`` (None: no webhook configured, nothing sent)."""
    if not url:
        return None
    return post_json(url, alert.payload(), **kw)
