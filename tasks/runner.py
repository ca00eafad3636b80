"""The run_trigger task: a thin wrapper over app.runs.execute_run (DESIGN section 6)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import redis

from app import config, db, limiter, logs, runs
from tasks import celery, publish
from tasks.celery_app import RUN_TASK

# One runtime per process, built in the process that uses it: connections and the random
# generator's state must never be shared across the prefork pool's fork.
_runtimes: dict[tuple[int, str], runs.Runtime] = {}


def _now() -> datetime:
    return datetime.now(UTC)


def _publish(run_id: uuid.UUID | str, eta: datetime | None) -> None:
    publish.enqueue_runs([run_id], eta=eta)


def runtime(worker: str) -> runs.Runtime:
    """This process's runtime for the runner (database, limiter, publisher, clock)."""
    key = (os.getpid(), worker)
    found = _runtimes.get(key)
    if found is None:
        settings = config.get_settings()
        client = redis.Redis.from_url(settings.redis_url)
        found = runs.Runtime(
            engine=db.get_engine(),
            limiter=limiter.Limiter(
                client,
                max_running=settings.max_running,
                max_per_tenant=settings.max_running_per_tenant,
                lease_seconds=settings.slot_lease_seconds,
            ),
            publish=_publish,
            settings=settings,
            worker=worker,
            clock=_now,
        )
        _runtimes.clear()
        _runtimes[key] = found
    return found


@celery.task(
    name=RUN_TASK,
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
)
def run_trigger(self, run_id: str) -> str:
    worker = f"{self.request.hostname or 'worker'}:{os.getpid()}"
    with logs.bind(release=config.get_settings().release_id):
        return runs.execute_run(run_id, runtime(worker))
