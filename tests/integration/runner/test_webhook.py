"""Webhook runs against a real HTTP server on 127.0.0.1: headers, signature, status classes,
Retry-After, timeouts, redirects and what errors may reveal."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest

from app import runs
from app.actions import webhook
from tests.integration.runner.conftest import iso
from tests.integration.runner.receiver import Reply


def hook(receiver, path: str = "/hook", **fields) -> dict:
    return {"type": "webhook", "url": receiver.url(path), **fields}


def documented_verify():
    """The receiver recipe exactly as the webhook module's docstring documents it."""
    [code] = re.findall(r"::\n\n(.*?)\n\n    # Flask", webhook.__doc__, flags=re.S)
    namespace: dict = {}
    exec(compile(_dedent(code), "<docstring recipe>", "exec"), namespace)  # noqa: S102
    return namespace["verify"]


def _dedent(code: str) -> str:
    import textwrap

    return textwrap.dedent(code)


def test_a_webhook_posts_the_payload_with_run_headers_and_a_verifiable_signature(
    harness, receiver
) -> None:
    payload = {"order": 42, "note": "café"}
    action = hook(receiver, headers={"Authorization": "Bearer abc", "X-Run-Id": "forged"})
    trigger_id = harness.trigger(action=action, payload=payload)
    run_id = harness.run(trigger_id)

    assert harness.execute(run_id) == "succeeded"

    [request] = receiver.hits()
    row = harness.row(run_id)
    assert request.method == "POST"
    assert json.loads(request.body) == payload
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == row["idempotency_key"]
    assert request.headers["X-Trigger-Id"] == str(trigger_id)
    assert request.headers["X-Run-Id"] == str(run_id)  # an action cannot forge it
    assert request.headers["X-Scheduled-For"] == iso(row["scheduled_for"])
    assert request.headers["Authorization"] == "Bearer abc"
    verify = documented_verify()
    signature = request.headers["X-Signature"]
    assert verify(request.body, signature, "test-signing-secret")
    assert not verify(request.body, signature, "another-secret")
    assert not verify(request.body.replace(b"42", b"43"), signature, "test-signing-secret")
    assert row["result"] == {"status_code": 200, "body": "ok", "body_truncated": False}


def test_the_configured_method_is_used(harness, receiver) -> None:
    run_id = harness.run(harness.trigger(action=hook(receiver, method="put")))
    assert harness.execute(run_id) == "succeeded"
    assert receiver.hits()[0].method == "PUT"


def test_without_a_signing_secret_no_signature_is_sent(harness, receiver) -> None:
    harness.configure(webhook_signing_secret="")
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "succeeded"
    assert "X-Signature" not in receiver.hits()[0].headers


def test_the_response_body_is_stored_truncated(harness, receiver) -> None:
    receiver.plan("/hook", Reply(200, b"z" * 10_000))
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "succeeded"
    result = harness.row(run_id)["result"]
    assert (len(result["body"]), result["body_truncated"]) == (4096, True)


def test_a_5xx_is_retried_with_the_same_idempotency_key_and_then_succeeds(
    harness, receiver
) -> None:
    receiver.plan("/hook", Reply(503, b"busy"))
    run_id = harness.run(harness.trigger(action=hook(receiver)))

    assert harness.execute(run_id) == "retrying"
    row = harness.row(run_id)
    assert row["error"] == "HTTP 503 from 127.0.0.1"
    assert row["result"]["body"] == "busy"
    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "succeeded"

    first, second = receiver.hits()
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert first.body == second.body
    assert harness.row(run_id)["attempt"] == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502])
def test_these_statuses_are_retryable(harness, receiver, status: int) -> None:
    receiver.plan("/hook", Reply(status))
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "retrying"


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_other_4xx_fail_at_once(harness, receiver, status: int) -> None:
    receiver.plan("/hook", Reply(status, b"nope"))
    run_id = harness.run(harness.trigger(action=hook(receiver), max_attempts=5))

    assert harness.execute(run_id) == "failed"

    row = harness.row(run_id)
    assert (row["attempt"], row["error"]) == (1, f"HTTP {status} from 127.0.0.1")
    assert row["result"]["status_code"] == status
    assert harness.published == []
    assert len(receiver.hits()) == 1


def test_retry_after_in_seconds_sets_the_next_attempt(harness, receiver) -> None:
    receiver.plan("/hook", Reply(429, headers={"Retry-After": "120"}))
    run_id = harness.run(harness.trigger(action=hook(receiver), retry_backoff_seconds=1))
    assert harness.execute(run_id) == "retrying"
    # The jittered backoff alone would be under 1 s; the server asked for 120.
    assert 115 < harness.retry_due_in(run_id) <= 120


def test_retry_after_as_an_http_date_is_honoured(harness, receiver) -> None:
    when = harness.clock.now() + timedelta(minutes=5)
    receiver.plan("/hook", Reply(503, headers={"Retry-After": format_datetime(when, usegmt=True)}))
    run_id = harness.run(harness.trigger(action=hook(receiver), retry_backoff_seconds=1))
    assert harness.execute(run_id) == "retrying"
    assert 295 < harness.retry_due_in(run_id) <= 300  # the date, as seen from the worker


def test_retry_after_is_capped_by_the_backoff_bound(harness, receiver) -> None:
    receiver.plan("/hook", Reply(503, headers={"Retry-After": "9999999"}))
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "retrying"
    cap = runs.BACKOFF_CAP_SECONDS
    assert cap - 5 < harness.retry_due_in(run_id) <= cap


def test_a_hung_receiver_times_out_as_a_failed_attempt(harness, receiver) -> None:
    receiver.plan("/hook", Reply(200, delay=5), Reply(200, delay=5))
    trigger_id = harness.trigger(action=hook(receiver), timeout_seconds=1, max_attempts=2)
    run_id = harness.run(trigger_id)

    started = time.monotonic()
    assert harness.execute(run_id) == "retrying"
    assert time.monotonic() - started < 2.5
    assert harness.row(run_id)["error"] == "attempt timed out after 1 s"

    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(harness.execute(run_id)))
    started = time.monotonic()
    thread.start()  # off the main thread the requests timeout alone ends it
    thread.join()
    assert outcome == ["failed"]
    assert time.monotonic() - started < 2.5
    assert "timed out" in harness.row(run_id)["error"]


def test_a_network_error_is_retried_and_its_error_names_only_the_host(harness) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    action = {"type": "webhook", "url": f"http://127.0.0.1:{port}/p?token=s3cr3t"}
    run_id = harness.run(harness.trigger(action=action))

    assert harness.execute(run_id) == "retrying"

    error = harness.row(run_id)["error"]
    assert error == "webhook to 127.0.0.1 failed: ConnectionError"
    assert "s3cr3t" not in error


def test_a_same_host_redirect_is_followed_with_method_and_body(harness, receiver) -> None:
    receiver.plan("/hook", Reply(307, headers={"Location": "/moved"}))
    receiver.plan("/moved", Reply(302, headers={"Location": receiver.url("/final")}))
    run_id = harness.run(harness.trigger(action=hook(receiver), payload={"a": 1}))

    assert harness.execute(run_id) == "succeeded"

    [final] = receiver.hits("/final")
    assert (final.method, json.loads(final.body)) == ("POST", {"a": 1})
    assert "X-Signature" in final.headers


def test_a_redirect_to_another_host_is_not_followed(harness, receiver) -> None:
    elsewhere = f"http://localhost:{receiver.port}/elsewhere"
    receiver.plan("/hook", Reply(302, headers={"Location": elsewhere}))
    run_id = harness.run(harness.trigger(action=hook(receiver), max_attempts=3))

    assert harness.execute(run_id) == "failed"

    assert "redirect to another host not followed" in harness.row(run_id)["error"]
    assert receiver.hits("/elsewhere") == []


def test_endless_redirects_stop(harness, receiver) -> None:
    receiver.plan("/hook", *[Reply(307, headers={"Location": "/hook"})] * 10)
    run_id = harness.run(harness.trigger(action=hook(receiver)))
    assert harness.execute(run_id) == "failed"
    assert len(receiver.hits()) == webhook.MAX_REDIRECTS + 1


def test_a_non_http_url_is_refused_at_run_time(harness) -> None:
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": "file:///etc/passwd"}))
    assert harness.execute(run_id) == "failed"
    assert harness.row(run_id)["error"] == "webhook url must be an http or https URL"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "[::1]", "[::ffff:127.0.0.1]"]
)
def test_a_non_public_destination_is_refused_unless_the_operator_allows_it(
    harness, receiver, host
) -> None:
    harness.configure(webhook_allow_private_networks=False)
    port = receiver.url("/").split(":")[2].split("/")[0]
    url = f"http://{host}:{port}/hook"
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": url}, max_attempts=1))

    assert harness.execute(run_id) == "failed"
    error = harness.row(run_id)["error"]
    assert error.endswith("refused: its address is not public (set "
                          "WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow)")  # fmt: skip
    assert receiver.hits("/hook") == []


def test_the_destination_check_resolves_the_host_and_accepts_only_public_addresses() -> None:
    # Literals resolve without any network traffic.
    assert webhook.destination_problem("https://8.8.8.8/hook") is None
    for url in ("http://203.0.113.9/", "http://192.168.1.1/", "http://[fe80::1]/"):
        assert webhook.destination_problem(url) is not None, url
