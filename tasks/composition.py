"""This process's scheduler (app/service.py, the composition root) on the Celery side.

Built in each pool process right after the fork (tasks/celery_app.py, worker_process_init),
or on first use in a process that never forks (beat, `python -m tasks.dispatch`): never
inherited across a fork, as it holds the process's database engine.
"""

from __future__ import annotations

import os
from datetime import datetime

from app import config, service
from tasks import celery, publish
from tasks.celery_app import HAND_OFF_TASK

_built: dict[int, service.Scheduler] = {}


def _wake(at: datetime) -> None:
    celery.send_task(HAND_OFF_TASK, eta=at, retry=False)


def build() -> service.Scheduler:
    """A new scheduler for this process, from its settings, publishing to Celery."""
    found = service.Scheduler(
        settings=config.get_settings(), publish=publish.enqueue_runs,
        pass_on=publish.request_hand_off, wake=_wake,
    )  # fmt: skip
    _built.clear()
    _built[os.getpid()] = found
    return found


def scheduler() -> service.Scheduler:
    """This process's scheduler (built now if this process has none yet)."""
    return _built.get(os.getpid()) or build()
