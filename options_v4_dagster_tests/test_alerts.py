"""Failed-run alerts: the JSON POST to OPTIONS_V4_ALERT_WEBHOOK_URL, retried, against a local http.server."""

import socket

import pytest

from options_v4_dagster.alerts import (
    AlertDeliveryError,
    RunFailureAlert,
    post_json,
    send_run_failure,
    webhook_url,
)
from options_v4_dagster_tests.webhook_server import webhook

ALERT = RunFailureAlert(run_id="0a1b2c3d-run", job_name="daily_pipeline", reason="option_chains 2025-07-17: broken feed",
                        partition="2025-07-17", steps_failed=("option_chains",), tags={"options_v4/trigger": "x"})


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_alert_is_posted_once_as_json():
    with webhook() as hook:
        assert send_run_failure(ALERT, hook.url, backoff=0) == 200
    assert len(hook.requests) == 1
    path, body = hook.requests[0]
    assert path == "/hooks/T0KEN-secret"
    assert body["run_id"] == "0a1b2c3d-run" and body["job_name"] == "daily_pipeline"
    assert body["partition"] == "2025-07-17" and body["steps_failed"] == ["option_chains"]
    assert body["event"] == "dagster_run_failure" and body["tags"] == {"options_v4/trigger": "x"}
    assert body["text"] == ALERT.line()
    assert ALERT.line() == ("run 0a1b2c3d-run of daily_pipeline for session 2025-07-17 failed (steps failed: "
                            "option_chains): option_chains 2025-07-17: broken feed")


def test_5xx_and_429_are_retried_until_the_webhook_takes_it():
    with webhook([503, 429, 502]) as hook:
        assert post_json(hook.url, {"a": 1}, attempts=4, backoff=0) == 200
    assert [b for _, b in hook.requests] == [{"a": 1}] * 4


def test_retries_end_with_an_error_naming_the_host_not_the_token():
    with webhook([500] * 5) as hook:
        with pytest.raises(AlertDeliveryError) as err:
            post_json(hook.url, {"a": 1}, attempts=3, backoff=0)
    assert len(hook.requests) == 3
    msg = str(err.value)
    assert "after 3 tries" in msg and "HTTP 500" in msg and "127.0.0.1" in msg and "T0KEN" not in msg


def test_a_refusal_is_not_retried():
    with webhook([400]) as hook:
        with pytest.raises(AlertDeliveryError, match="refused the alert: HTTP 400"):
            post_json(hook.url, {"a": 1}, attempts=3, backoff=0)
    assert len(hook.requests) == 1


def test_connection_refused_is_retried_then_reported():
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    with pytest.raises(AlertDeliveryError, match=r"after 2 tries: URLError"):
        post_json(url, {"a": 1}, attempts=2, backoff=0)


def test_webhook_url_comes_from_the_environment_and_must_be_http():
    assert webhook_url({}) is None and webhook_url({"OPTIONS_V4_ALERT_WEBHOOK_URL": "  "}) is None
    assert webhook_url({"OPTIONS_V4_ALERT_WEBHOOK_URL": "https://x/y"}) == "https://x/y"
    assert send_run_failure(ALERT, None) is None
    with pytest.raises(AlertDeliveryError, match="http"):
        post_json("file:///etc/passwd", {})
