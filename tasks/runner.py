"""The run_trigger task: a thin wrapper over app.runs.execute_run (docs/design.md section 6)."""

from __future__ import annotations

import os

from app import config, logs, runs
from tasks import celery, composition
from tasks.celery_app import HAND_OFF_TASK, RUN_TASK

# One runtime per process, built in the process that uses it: connections and the random
# generator's state must never be shared across the prefork pool's fork.
_runtimes: dict[tuple[int, str], runs.Runtime] = {}


def runtime(worker: str) -> runs.Runtime:
    """This process's runtime for the runner (database, publisher, clock)."""
    key = (os.getpid(), worker)
    found = _runtimes.get(key)
    if found is None:
        found = composition.scheduler().runtime(worker)
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


@celery.task(name=HAND_OFF_TASK, acks_late=False, ignore_result=True)
def hand_off_runs() -> int:
    """Admit into the free slots and publish (a retry's wake-up); return how many."""
    worker = f"{hand_off_runs.request.hostname or 'worker'}:{os.getpid()}"
    result = runs.hand_off(runtime(worker))
    return len(result.admitted) if result else 0
