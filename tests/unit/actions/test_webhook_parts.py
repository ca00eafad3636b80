"""The pure parts of the webhook action: signature, headers, Retry-After, redirect rules."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from app.actions import registry, webhook

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CTX = registry.RunContext(
    run_id="run-1",
    trigger_id="trig-1",
    tenant_id="tenant",
    idempotency_key="trig-1:2026-01-05T12:00:00Z",
    scheduled_for=datetime(2026, 1, 5, 12, tzinfo=UTC),
    attempt=1,
    payload={"b": 1, "a": "é"},
)


def test_the_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    body = webhook.encode_body({"x": 1})
    expected = hmac.new(b"k", b'{"x":1}', hashlib.sha256).hexdigest()
    assert webhook.signature(body, "k") == f"sha256={expected}"


def test_the_body_is_compact_utf8_json() -> None:
    assert webhook.encode_body(CTX.payload) == '{"b":1,"a":"é"}'.encode()


def test_the_scheduler_headers_win_over_the_actions() -> None:
    action = {"headers": {"idempotency-key": "mine", "X-Custom": "v", "User-Agent": "me"}}
    body = webhook.encode_body(CTX.payload)
    headers = webhook.request_headers(action, CTX, body, signing_secret="s")
    assert headers["Idempotency-Key"] == CTX.idempotency_key
    assert "idempotency-key" not in headers
    assert headers["X-Custom"] == "v"
    assert headers["User-Agent"] == "me"
    assert headers["X-Scheduled-For"] == "2026-01-05T12:00:00Z"
    assert headers["X-Signature"] == webhook.signature(body, "s")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 05 Jan 2026 12:05:00 GMT", 300.0),
        ("Mon, 05 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds) -> None:
    assert webhook.retry_after_seconds(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("origin", "target", "allowed"),
    [
        ("http://a.com/x", "http://a.com/y", True),
        ("http://a.com/x", "https://a.com/y", True),
        ("https://a.com/x", "http://a.com/y", False),
        ("http://a.com/x", "http://b.com/y", False),
        ("http://a.com:8080/x", "http://a.com:9090/y", False),
        ("http://A.com/x", "http://a.COM/y", True),
        ("http://a.com/x", "ftp://a.com/y", False),
    ],
)
def test_redirects_are_allowed_to_the_same_host_only(origin, target, allowed) -> None:
    assert webhook._same_host(origin, target) is allowed
