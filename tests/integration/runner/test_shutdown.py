"""Graceful shutdown: on SIGTERM a worker finishes what it can within its grace period and
gives back the rest, which runs again elsewhere. Nothing is lost or left `running`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.runner.workers import (
    Workers,
    status_is,
    sweep_until_requeued,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow

GRACE = 2


@pytest.fixture()
def workers(settings, tmp_path) -> Iterator[Workers]:
    # The Procfile runs workers with REMAP_SIGTERM=SIGQUIT: SIGTERM is a soft shutdown.
    env = worker_env(settings, REMAP_SIGTERM="SIGQUIT", WORKER_SHUTDOWN_GRACE_SECONDS=str(GRACE))
    manager = Workers(env, tmp_path)
    yield manager
    manager.stop_all()


def test_a_run_shorter_than_the_grace_period_finishes_before_the_worker_exits(
    harness, workers, publish
) -> None:
    run_id = harness.run(harness.trigger(payload={"sleep_seconds": 1}))
    workers.start("stopping")
    publish([run_id])
    wait_for(status_is(harness, run_id, "running"), timeout=30)

    took = workers.terminate("stopping", timeout=GRACE + 15)

    row = harness.row(run_id)
    assert (row["status"], row["attempt"]) == ("succeeded", 1)
    assert took < GRACE + 10


def test_a_longer_run_is_given_back_and_runs_again_on_another_worker(
    harness, workers, publish
) -> None:
    run_id = harness.run(harness.trigger(payload={"sleep_seconds": 5}))
    workers.start("stopping")
    publish([run_id])
    wait_for(status_is(harness, run_id, "running"), timeout=30)

    took = workers.terminate("stopping", timeout=GRACE + 15)
    assert took < GRACE + 10, "the worker left within the platform's grace period"

    workers.start("next")
    sweep_until_requeued(harness, publish, timeout=20)
    row = wait_for(status_is(harness, run_id, "succeeded"), timeout=30)
    assert row["attempt"] == 2
    assert row["worker"].startswith("next@")
