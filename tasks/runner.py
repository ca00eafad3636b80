"""The run_trigger task: a thin wrapper over app.runs.execute_run (DESIGN section 6)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from celery import signals

from app import config, db, limiter, logs, runs
from tasks import celery, publish
from tasks.celery_app import RUN_TASK, SCHEDULER_QUEUE

# One runtime per process, built in the process that uses it: connections and the random
# generator's state must never be shared across the prefork pool's fork.
_runtimes: dict[tuple[int, str], runs.Runtime] = {}
# Set in the worker's main process before the pool forks: how many runs this node may
# execute at once (None: no node limit).
_node_run_slots: dict[str, int | None] = {}


@signals.celeryd_after_setup.connect
def _reserve_a_process_for_ticks(sender: str, instance: Any, **_kwargs: Any) -> None:
    """A worker that also consumes the dispatch ticks keeps one pool process free of runs.

    Otherwise runs as long as their timeout could occupy every process, and the tick (on
    the `scheduler` queue) would wait behind them: fires late, collapsed by catch-up or
    expired. Each node's runs are capped at its concurrency minus one in the limiter;
    a run refused for that waits `pending`, like one refused for the global limit.
    """
    queues = instance.app.amqp.queues
    consumed = set(queues.consume_from or queues)
    concurrency = int(instance.concurrency or 0)
    reserve = SCHEDULER_QUEUE in consumed and concurrency > 1
    _node_run_slots[sender] = concurrency - 1 if reserve else None


def _now() -> datetime:
    return datetime.now(UTC)


def _publish(run_id: uuid.UUID | str, eta: datetime | None) -> None:
    publish.enqueue_runs([run_id], eta=eta)


def runtime(worker: str, node: str | None = None) -> runs.Runtime:
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
                node=node,
                max_per_node=_node_run_slots.get(node or ""),
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
    node = self.request.hostname
    worker = f"{node or 'worker'}:{os.getpid()}"
    with logs.bind(release=config.get_settings().release_id):
        return runs.execute_run(run_id, runtime(worker, node))
