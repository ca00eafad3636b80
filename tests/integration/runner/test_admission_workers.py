"""Admission with real worker processes (docs/design.md section 12): a killed worker's slot comes
back, a burst survives the broker losing its messages with every run executed exactly once
(on Redis and on RabbitMQ), and `buffer_one` runs one fire at a time across processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from tests.integration.runner import brokers
from tests.integration.runner.workers import (
    Workers,
    hand_off,
    status_is,
    sweep_until_requeued,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow

PROBE = {"type": "task", "name": "test.probe"}


@pytest.fixture()
def start_workers(settings, broker, tmp_path) -> Iterator[Callable[..., Workers]]:
    started: list[Workers] = []

    def start(harness, *, max_running: int, per_tenant: int, **more: str) -> Workers:
        harness.configure(max_running=max_running, max_running_per_tenant=per_tenant)
        env = worker_env(settings, BROKER_URL=broker, MAX_RUNNING=str(max_running),
                         MAX_RUNNING_PER_TENANT=str(per_tenant),
                         HANDLER_MODULES="tests.integration.runner.probe", **more)  # fmt: skip
        workers = Workers(env, tmp_path)
        started.append(workers)
        return workers

    yield start
    for workers in started:
        workers.stop_all()


def test_a_killed_workers_slot_comes_back_and_the_next_run_gets_it(
    harness, start_workers, publish
) -> None:
    workers = start_workers(harness, max_running=1, per_tenant=1)
    trigger_id = harness.trigger(payload={"sleep_seconds": 2})
    first = harness.run(trigger_id, status="pending")
    second = harness.run(trigger_id, status="pending", scheduled_for=harness.clock.advance(
        seconds=1))  # fmt: skip
    workers.start("doomed")
    assert hand_off(harness, publish).admitted == [first]
    wait_for(status_is(harness, first, "running"), timeout=30)

    workers.kill("doomed")  # SIGKILL: the slot's holder never says goodbye
    assert harness.row(second)["status"] == "pending", "the dead worker still holds the slot"
    workers.start("next")
    sweep_until_requeued(harness, publish, timeout=20)

    one = wait_for(status_is(harness, first, "succeeded"), timeout=30)
    two = wait_for(status_is(harness, second, "succeeded"), timeout=30)
    assert one["attempt"] == 2
    assert two["started_at"] >= one["finished_at"], "never more than one slot in use"


@pytest.mark.parametrize(("chain_seconds", "chained"), [("2", 3), ("0", 0)])
def test_a_worker_runs_what_its_hand_offs_admit_itself_unless_told_not_to(
    harness, start_workers, publish, chain_seconds: str, chained: int
) -> None:
    workers = start_workers(
        harness, max_running=1, per_tenant=1, WORKER_CHAIN_SECONDS=chain_seconds
    )
    trigger_id = harness.trigger(action=PROBE, payload={"sleep": 0.05})
    start = harness.clock.now()
    for n in range(4):
        harness.run(trigger_id, status="pending", scheduled_for=start + timedelta(seconds=n))
    workers.start("w1")
    hand_off(harness, publish)  # one slot: the first run's message, and no other

    wait_for(lambda: harness.statuses() == {"succeeded": 4}, timeout=60)
    log = workers.log("w1")
    assert log.count("event=run_claimed") == 4
    assert log.count("chained=true") == chained, "the 3 runs after the first, or none"


@pytest.mark.parametrize("broker", ["redis", "amqp"], indirect=True)
def test_a_burst_survives_the_broker_losing_its_messages_and_runs_each_run_once(
    harness, start_workers, publish, broker, redis_client
) -> None:
    workers = start_workers(harness, max_running=4, per_tenant=3)
    trigger_ids = [harness.trigger(action=PROBE, payload={"sleep": 0.05}, tenant_id=tenant)
                   for tenant in ("a", "b")]  # fmt: skip
    start = harness.clock.now()
    run_ids = [
        harness.run(trigger_id, status="pending", scheduled_for=start + timedelta(seconds=n))
        for n in range(20)
        for trigger_id in trigger_ids
    ]
    # Two processes for four slots: two admitted runs' messages wait in the broker.
    workers.start("w1", concurrency=2)
    hand_off(harness, publish)
    wait_for(lambda: harness.statuses().get("succeeded", 0) >= 8, timeout=60, every=0.05)

    # The broker restarts and loses what it held (a Redis without persistence, a RabbitMQ
    # queue that was not durable): the admitted runs' messages are gone.
    if broker.startswith("amqp"):
        brokers.purge(broker)
    else:
        redis_client.delete("runs")

    requeued = []

    def drained() -> bool:
        requeued.append(sweep_once(harness, publish))
        return harness.statuses() == {"succeeded": len(run_ids)}

    wait_for(drained, timeout=90, every=0.5)
    assert sum(requeued) >= 1, "messages were lost, and the sweep gave their slots back"
    rows = [harness.row(run_id) for run_id in run_ids]
    assert {row["attempt"] for row in rows} == {1}, "no run started twice"
    done = sum(int(redis_client.llen(f"probe:done:{t}")) for t in ("a", "b"))
    assert done == len(run_ids), "each run executed exactly once"


def sweep_once(harness, publish) -> int:
    """What a tick does for lost messages: the sweep, then a hand-off; return how many runs
    went back to the queue."""
    from app import recovery

    options = recovery.RecoveryOptions(heartbeat_timeout_seconds=3, admitted_lease_seconds=5)
    requeued = recovery.sweep(harness.engine, options=options).requeued
    hand_off(harness, publish)
    return requeued


def test_buffer_one_a_long_run_and_three_fires_one_waits_then_runs_one_is_skipped(
    harness, start_workers, publish
) -> None:
    workers = start_workers(harness, max_running=10, per_tenant=10)
    trigger_id = harness.trigger(payload={"sleep_seconds": 2}, overlap_policy="buffer_one")
    first = harness.run(trigger_id, status="pending")
    workers.start("w1", concurrency=3)  # processes to spare: only the policy holds fires back
    hand_off(harness, publish)
    wait_for(status_is(harness, first, "running"), timeout=30)

    second, third = (
        harness.run(trigger_id, status="pending", scheduled_for=harness.clock.advance(minutes=1))
        for _ in range(2)
    )
    hand_off(harness, publish)  # what the dispatch batch that created them does

    assert harness.row(second)["status"] == "pending", "waits for the run in progress"
    assert harness.row(third)["status"] == "skipped", "at most one fire waits"
    one = wait_for(status_is(harness, first, "succeeded"), timeout=30)
    two = wait_for(status_is(harness, second, "succeeded"), timeout=30)
    assert two["started_at"] >= one["finished_at"], "started when the earlier run ended"
