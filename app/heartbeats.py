"""Heartbeats: one thread per worker process stamps `heartbeat_at` of its attempts in progress.

The stamp (PostgreSQL's clock) is what holds a running run's slot: the recovery sweep takes
back a run whose heartbeat is older than `heartbeat_timeout_seconds` (app/recovery.py).
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from app import db
from app.queries import runs as q

logger = logging.getLogger(__name__)


@dataclass
class _Beat:
    key: int
    engine: Engine
    interval: float
    run_id: uuid.UUID
    attempt: int
    context: contextvars.Context  # the run's log fields
    due: float


class _Heartbeats:
    """One daemon thread per process that stamps `heartbeat_at` (which holds the slot) of
    every attempt in progress in the process, every `heartbeat_seconds`, so the recovery
    sweep can tell a slow worker from a dead one. One thread for the process rather than one
    per attempt: starting a thread per run cost as much as the rest of a short run."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._beats: dict[int, _Beat] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None
        # When the waiting thread wakes next (monotonic); -inf while it is not waiting (it
        # looks at every beat before it waits again). A new beat due no sooner needs no wake-up.
        self._wakes_at = float("-inf")
        # How long the thread sleeps with no beat to wait for: the shortest interval seen, so
        # that a new beat (due one interval after it starts) is never due before the thread
        # wakes. With a fixed minute instead, every run woke the thread: on a busy machine
        # the woken thread ran only after that short run had ended, found no beat, and slept
        # the minute again (a tenth of the workers' time, in Condition.notify).
        self._idle_seconds = 60.0

    @contextmanager
    def watch(
        self, engine: Engine, run_id: uuid.UUID, attempt: int, *, interval: float
    ) -> Iterator[None]:
        with self._cond:
            # Read under the lock, after the thread set its wake-up time: a beat due one
            # interval from now is then never due before an idle thread wakes.
            due = time.monotonic() + interval
            key = next(self._keys)
            self._idle_seconds = min(self._idle_seconds, interval)
            context = contextvars.copy_context()
            self._beats[key] = _Beat(key, engine, interval, run_id, attempt, context, due)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
                self._thread.start()
            elif due < self._wakes_at:
                # Waking the thread costs a switch of threads for every run; it is needed
                # only when this beat is due before the thread means to wake anyway.
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                del self._beats[key]

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                due = [beat for beat in self._beats.values() if beat.due <= now]
                if not due:
                    idle = now + self._idle_seconds
                    soonest = min((beat.due for beat in self._beats.values()), default=idle)
                    self._wakes_at = soonest
                    self._cond.wait(soonest - now)
                    self._wakes_at = float("-inf")
                    continue
                for beat in due:
                    beat.due = now + beat.interval
            for beat in due:
                beat.context.run(self._beat, beat)

    def _beat(self, beat: _Beat) -> None:
        try:
            with db.statements(beat.engine) as conn:
                ours = q.touch_heartbeat(conn, beat.run_id, attempt=beat.attempt)
        except Exception:
            # A database blip must not end the attempt; the next beat retries.
            logger.exception("heartbeat failed", extra={"event": "heartbeat_failed"})
            return
        with self._cond:
            if beat.key not in self._beats:
                return  # the attempt ended while this beat ran: nothing was lost
        if not ours:
            logger.warning("run no longer owned by this attempt", extra={"event": "run_lost"})


_heartbeats = _Heartbeats()


def _after_fork() -> None:
    # Threads do not survive a fork (and a lock held at fork time never gets released in
    # the child): each pool process starts afresh.
    global _heartbeats
    _heartbeats = _Heartbeats()


os.register_at_fork(after_in_child=_after_fork)


def watch(engine: Engine, run_id: uuid.UUID, attempt: int, *, interval: float) -> Any:
    """Stamp the attempt's heartbeat every `interval` seconds while the block runs."""
    return _heartbeats.watch(engine, run_id, attempt, interval=interval)
