"""A worker that consumes both queues (the Procfile's) never lets runs occupy all of its
processes: a dispatch tick gets through while long runs execute."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from app import state
from tasks.celery_app import DISPATCH_TASK, SCHEDULER_QUEUE
from tests.integration.runner.workers import Workers, wait_for, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture()
def workers(settings, tmp_path) -> Iterator[Workers]:
    manager = Workers(worker_env(settings), tmp_path)
    yield manager
    manager.stop_all()


def test_a_tick_runs_while_long_runs_would_fill_every_process(
    harness, workers, celery_app, settings
) -> None:
    from tasks import publish

    harness.clock.set(datetime.now(UTC))
    trigger_id = harness.trigger(payload={"sleep_seconds": 20})
    long_runs = [harness.run(trigger_id, scheduled_for=harness.clock.advance(seconds=1))
                 for _ in range(3)]  # fmt: skip
    workers.start("both", concurrency=2, queues=f"{SCHEDULER_QUEUE},runs")
    publish.enqueue_runs(long_runs)
    wait_for(lambda: harness.statuses().get("running") == 1, timeout=30)

    celery_app.send_task(DISPATCH_TASK, args=(settings.release_id,))

    def ticked() -> bool:
        with harness.engine.connect() as conn:
            return state.get_state(conn).last_tick_at is not None

    wait_for(ticked, timeout=10, every=0.2)
    assert harness.statuses() == {"running": 1, "pending": 2}, "runs kept one process free"
