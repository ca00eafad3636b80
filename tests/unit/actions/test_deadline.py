"""`within`: an attempt is bounded by its timeout, in the main thread and elsewhere."""

from __future__ import annotations

import signal
import threading
import time

from app import actions
from app.errors import ActionError


def sleeper(seconds: float):
    def work() -> actions.Attempt:
        time.sleep(seconds)
        return actions.Attempt(True, result="done")

    return work


def test_a_quick_attempt_returns_its_outcome() -> None:
    assert actions.within(sleeper(0), 1) == actions.Attempt(True, result="done")


def test_in_the_main_thread_an_alarm_stops_the_attempt_and_is_disarmed() -> None:
    previous = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    outcome = actions.within(sleeper(10), 0.2)
    assert time.monotonic() - started < 1
    assert outcome == actions.Attempt(False, error="attempt timed out after 0.2 s", retryable=True)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is previous


def test_a_handler_catching_exception_cannot_swallow_the_timeout() -> None:
    def stubborn() -> actions.Attempt:
        try:
            time.sleep(10)
        except Exception:
            return actions.Attempt(True, result="swallowed")
        return actions.Attempt(True)

    assert actions.within(stubborn, 0.2).error == "attempt timed out after 0.2 s"


def test_off_the_main_thread_the_attempt_is_abandoned_at_the_deadline() -> None:
    box: list[actions.Attempt] = []
    thread = threading.Thread(target=lambda: box.append(actions.within(sleeper(10), 0.2)))
    started = time.monotonic()
    thread.start()
    thread.join()
    assert time.monotonic() - started < 1
    assert box[0].error == "attempt timed out after 0.2 s"


def test_exceptions_become_failed_attempts() -> None:
    def crash() -> actions.Attempt:
        raise KeyError("k")

    def refuse() -> actions.Attempt:
        raise ActionError("no", retryable=False, retry_after=3)

    assert actions.within(crash, 1) == actions.Attempt(
        False, error=f"KeyError: {actions.HIDDEN_ERROR}"
    )
    assert actions.within(refuse, 1) == actions.Attempt(
        False, error="no", retryable=False, retry_after=3
    )
