"""The heartbeat thread is woken only when a new beat is due before it would wake anyway."""

from __future__ import annotations

import time
import uuid

from app import heartbeats


def test_short_runs_one_after_another_do_not_wake_the_heartbeat_thread() -> None:
    beats = heartbeats._Heartbeats()
    sent: list[int] = []
    real_notify = beats._cond.notify

    def counted(n: int = 1) -> None:
        sent.append(n)
        real_notify(n)

    beats._cond.notify = counted  # type: ignore[method-assign]
    with beats.watch(None, uuid.uuid4(), 1, interval=10):  # type: ignore[arg-type]
        pass  # starts the thread
    for _ in range(20):
        # What a busy machine does to the thread: it looks at the beats only after the
        # run has ended, and finds none.
        with beats._cond:
            real_notify()
        time.sleep(0.01)
        with beats.watch(None, uuid.uuid4(), 1, interval=10):  # type: ignore[arg-type]
            pass
    assert sent == [], "each short run woke the thread"
