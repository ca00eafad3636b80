"""Webhook runs against a real HTTP server on 127.0.0.1: headers, status classes,
Retry-After, timeouts and what errors may reveal. Signatures: test_webhook_signatures.py;
destinations: test_webhook_egress.py."""

from __future__ import annotations

import socket
import threading
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest

from app import backoff
from tests.integration.runner.receiver import Reply


def hook(receiver, path: str = "/hook", **fields) -> dict:
    return {"type": "webhook", "url": receiver.url(path), **fields}


def test_the_configured_method_is_used(harness, receiver) -> None:
    run_id = harness.run(harness.trigger(action=hook(receiver, method="put")))
    assert harness.execute(run_id) == "succeeded"
    assert receiver.hits()[0].method == "PUT"


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
    cap = backoff.BACKOFF_CAP_SECONDS
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
    thread.start()  # off the main thread the urllib3 timeout alone ends it
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
    assert error == "webhook to 127.0.0.1 failed: NewConnectionError"
    assert "s3cr3t" not in error
