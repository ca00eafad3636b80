"""The Celery worker that the peers feed: `celery -A bench.peer_worker worker -Q runs ...`.

Its `run_trigger` is a no-op that counts itself done (INCR of DONE_KEY, and the finishing
instant in LAST_KEY), so bench.peers_e2e can tell when the last run has finished. The worker
settings are this service's (tasks.celery_app): JSON, late acks, prefetch 1, the `runs`
queue; the benchmark starts it with the same pool and concurrency as the product's worker.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery
from kombu import Queue

from bench.peer_process import QUEUE, RUN_TASK

DONE_KEY = "bench-peer-done"
LAST_KEY = "bench-peer-last"

app = Celery("peerworker")
app.conf.update(
    broker_url=os.environ["REDIS_URL"],
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_queues=[Queue(QUEUE)],
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)
_client: redis.Redis | None = None


@app.task(name=RUN_TASK)
def run_trigger(*args: object, **kwargs: object) -> None:
    """No work: count the run finished."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    pipe = _client.pipeline(transaction=False)
    pipe.incr(DONE_KEY)
    pipe.set(LAST_KEY, repr(time.time()))
    pipe.execute()
