"""A tick never waits behind long runs: ticks have their own queue and their own worker
process (the Procfile's `scheduler`), so runs as long as their timeout filling every
process of the run workers cannot delay, collapse or expire a tick."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import state
from tasks.celery_app import DISPATCH_TASK, RUNS_QUEUE, SCHEDULER_QUEUE
from tests.integration.runner.workers import Workers, wait_for, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture()
def workers(settings, tmp_path) -> Iterator[Workers]:
    manager = Workers(worker_env(settings), tmp_path)
    yield manager
    manager.stop_all()


def test_a_tick_runs_while_long_runs_fill_every_run_process(
    harness, workers, celery_app, settings, publish
) -> None:
    trigger_id = harness.trigger(payload={"sleep_seconds": 20})
    long_runs = [harness.run(trigger_id, scheduled_for=harness.clock.advance(seconds=1))
                 for _ in range(2)]  # fmt: skip
    workers.start("runs", concurrency=2, queues=RUNS_QUEUE)
    workers.start("ticks", concurrency=1, queues=SCHEDULER_QUEUE)
    publish(long_runs)
    wait_for(lambda: harness.statuses().get("running") == 2, timeout=30)

    celery_app.send_task(DISPATCH_TASK, args=(settings.release_id,))

    def ticked() -> bool:
        with harness.engine.connect() as conn:
            return state.get_state(conn).last_tick_at is not None

    wait_for(ticked, timeout=10, every=0.2)
    assert harness.statuses() == {"running": 2}, "both run processes were busy all along"
