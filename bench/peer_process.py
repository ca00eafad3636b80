"""The peer side of bench.peers: one dispatcher process, set up, then timed by the parent.

`python -m bench.peer_process PEER N DUE REDIS_URL WORKDIR` (started by bench.peers, not by
hand). Imports only what the peer itself needs, so its peak RSS is the peer's own: the
benchmark's helpers (psutil, alembic, the database helpers) stay in the parent.

Protocol: set up, print `READY`, read the due instant T (epoch seconds) from stdin, then
dispatch with a clock on which minute DUE begins at T.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

QUEUE = "runs"  # where run_trigger goes in this service (tasks.celery_app.RUNS_QUEUE)
RUN_TASK = "run_trigger"
REDBEAT_PREFIX = "bench-redbeat:"


def _ready(**facts: Any) -> float:
    """Tell the parent this peer is set up; return the due instant T (epoch seconds) it sends."""
    print("READY " + json.dumps(facts), flush=True)
    return float(sys.stdin.readline())


def _peer_app(redis_url: str):
    """A Celery app for the peer beats, publishing like this service does (JSON, `runs`)."""
    from celery import Celery
    from kombu import Queue

    class ShiftedClockCelery(Celery):
        """Celery whose clock (`now`, read by every schedule and by the schedulers) runs
        `offset_seconds` ahead of the wall clock."""

        offset_seconds = 0.0

        def now(self) -> datetime:
            return super().now() + timedelta(seconds=self.offset_seconds)

    app = ShiftedClockCelery("peer", set_as_current=True)
    app.conf.update(
        broker_url=redis_url,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_queues=[Queue(QUEUE)],
        task_default_queue=QUEUE,
        task_routes={RUN_TASK: {"queue": QUEUE}},
        timezone="UTC",
        enable_utc=True,
        redbeat_redis_url=redis_url,
        redbeat_key_prefix=REDBEAT_PREFIX,
    )
    # RedBeat decodes its crontabs without an app: they must find this one as the default.
    app.set_default()
    return app


def _beat_peer(kind: str, count: int, due: datetime, redis_url: str, workdir: str) -> None:
    from celery import beat
    from celery.schedules import crontab

    app = _peer_app(redis_url)
    app.conf.beat_schedule = {
        f"trigger-{n}": {
            "task": RUN_TASK,
            "schedule": crontab(minute=due.minute),
            "args": (f"trigger-{n}",),
        }
        for n in range(count)
    }
    if kind == "redbeat":
        from redbeat import RedBeatScheduler as scheduler_cls
    else:
        scheduler_cls = beat.PersistentScheduler  # `celery beat`'s default
    service = beat.Service(
        app, scheduler_cls=scheduler_cls, schedule_filename=os.path.join(workdir, "schedule")
    )
    service.scheduler  # noqa: B018 - set up now (entries stored), as beat does at start-up
    due_at = _ready()
    app.offset_seconds = due.timestamp() - due_at
    service.start()  # the tick loop of `celery beat`, until this process is terminated


def _our_peer(due: datetime) -> None:
    from tasks import dispatch  # reads DATABASE_URL and REDIS_URL from the environment

    due_at = _ready()
    time.sleep(max(0.0, due_at - time.time()))
    offset = due.timestamp() - due_at
    stats = dispatch.tick(now=datetime.fromtimestamp(time.time() + offset, UTC))
    print(json.dumps(stats, default=str), flush=True)
    sys.stdin.read()  # stay alive (and measurable) until the parent has read its figures


def _bare_peer(count: int, redis_url: str) -> None:
    """No scheduler: publish `count` run_trigger messages at T (the bare Celery ceiling)."""
    app = _peer_app(redis_url)
    task = app.signature(RUN_TASK)
    with app.producer_or_acquire() as producer:  # connected before T
        due_at = _ready()
        time.sleep(max(0.0, due_at - time.time()))
        for n in range(count):
            task.apply_async(args=(f"trigger-{n}",), producer=producer)
    sys.stdin.read()


def main(argv: list[str]) -> None:
    peer, count, due, redis_url, workdir = argv
    if peer == "celery-bare":
        _bare_peer(int(count), redis_url)
    elif peer == "ours":
        _our_peer(datetime.fromisoformat(due))
    else:
        _beat_peer(peer, int(count), datetime.fromisoformat(due), redis_url, workdir)


if __name__ == "__main__":
    main(sys.argv[1:])
