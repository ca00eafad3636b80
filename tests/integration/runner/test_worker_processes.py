"""The runner in real `celery -A tasks worker` processes: a worker killed mid-run, double
delivery across processes, a retry re-published with an ETA, a timeout in a prefork child."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.runner.receiver import Reply
from tests.integration.runner.workers import (
    Workers,
    status_is,
    sweep_until_requeued,
    wait_for,
    worker_env,
)

# Each test runs on Redis and on RabbitMQ.
pytestmark = [pytest.mark.slow, pytest.mark.parametrize("broker", ["redis", "amqp"], indirect=True)]


@pytest.fixture()
def workers(settings, broker, tmp_path) -> Iterator[Workers]:
    manager = Workers(worker_env(settings, BROKER_URL=broker), tmp_path)
    yield manager
    manager.stop_all()


def test_a_worker_killed_mid_run_hands_the_run_to_another_worker(harness, workers, publish) -> None:
    workers.stop_all()  # which worker takes the run must be known
    run_id = harness.run(harness.trigger(payload={"sleep_seconds": 3}))
    workers.start("first")
    publish([run_id])
    row = wait_for(status_is(harness, run_id, "running"), timeout=30)
    assert row["worker"].startswith("first@")

    workers.kill("first")  # SIGKILL, mid-attempt: no chance to report anything
    workers.start("second")
    sweep_until_requeued(harness, publish, timeout=15)
    row = wait_for(status_is(harness, run_id, "succeeded"), timeout=30)
    assert row["attempt"] == 2
    assert row["worker"].startswith("second@")
    workers.stop_all()


def test_a_run_delivered_twice_to_two_worker_processes_executes_once(
    harness, workers, publish, receiver
) -> None:
    workers.shared()
    receiver.plan("/hook", Reply(200, delay=0.5))
    action = {"type": "webhook", "url": receiver.url("/hook")}
    run_id = harness.run(harness.trigger(action=action))

    publish([run_id, run_id])

    wait_for(status_is(harness, run_id, "succeeded"), timeout=30)
    # The second delivery did arrive, and was turned away without a side effect.
    wait_for(
        lambda: any(
            f"run_id={run_id}" in line and "event=run_duplicate" in line
            for line in workers.log("shared").splitlines()
        ),
        timeout=10,
    )
    assert len(receiver.hits("/hook")) == 1
    assert harness.row(run_id)["attempt"] == 1


def test_a_failed_attempt_is_republished_by_the_worker_and_then_succeeds(
    harness, workers, publish
) -> None:
    workers.shared()
    trigger_id = harness.trigger(payload={"fail_times": 1}, retry_backoff_seconds=1)
    run_id = harness.run(trigger_id)

    publish([run_id])

    row = wait_for(status_is(harness, run_id, "succeeded"), timeout=30)
    assert row["attempt"] == 2


def test_a_timeout_stops_a_hung_handler_in_a_prefork_worker(harness, workers, publish) -> None:
    workers.shared()
    trigger_id = harness.trigger(payload={"sleep_seconds": 60}, timeout_seconds=1, max_attempts=1)
    run_id = harness.run(trigger_id)

    publish([run_id])

    row = wait_for(status_is(harness, run_id, "failed"), timeout=30)
    assert row["error"] == "attempt timed out after 1 s"
    assert (row["finished_at"] - row["started_at"]).total_seconds() < 3
