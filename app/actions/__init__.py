"""Actions: what a run does. `perform` runs one attempt of an action within its timeout.

How an attempt is bounded by `timeout_seconds` (a hung handler must not hold a worker):

- In the main thread (Celery's prefork and solo pools run tasks there), a SIGALRM interval
  timer raises errors.AttemptTimeout inside the handler, which really stops it: the worker process
  is free again and the run's concurrency slot is honest. errors.AttemptTimeout derives from
  BaseException so a handler's `except Exception` cannot swallow it (a bare `except:` can;
  don't write one). C code that never returns to the interpreter cannot be interrupted.
- Anywhere else (threads pool, tests calling the runner from threads), signals are not
  available, so the attempt runs in a daemon thread joined with the timeout. On timeout the
  thread is abandoned: it may go on running in the background, but the worker moves on.
- Webhooks also pass the remaining time to urllib3 as connect and read timeouts, and stop
  reading a response body at the deadline, so they end on time in both modes.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from app import errors
from app.actions import registry, webhook
from app.actions.registry import (
    Attempt,
    RunContext,
    get_handler,
    handler,
    known_handlers,
    validate_action,
)
from app.errors import ActionError

__all__ = [
    "Attempt",
    "errors.AttemptTimeout",
    "RunContext",
    "get_handler",
    "handler",
    "known_handlers",
    "perform",
    "validate_action",
    "within",
]

logger = logging.getLogger(__name__)

# What a run stores in place of the text of a handler's exception.
HIDDEN_ERROR = "the handler raised an exception (its text is in the operator log)"


def perform(
    action: dict[str, Any],
    ctx: RunContext,
    *,
    timeout_seconds: float,
    signing_secrets: Sequence[str] = (),
    now: datetime,
    allow_private_networks: bool = False,
) -> Attempt:
    """Run one attempt of `action` for `ctx`, bounded by `timeout_seconds`. Never raises
    for a failure of the action itself: every failure is a failed Attempt. A webhook is
    signed with each of `signing_secrets` (the tenant's active secrets)."""
    kind = action.get("type") if isinstance(action, dict) else None
    if kind == "webhook":

        def work() -> Attempt:
            return webhook.call(
                action, ctx, signing_secrets=signing_secrets, timeout_seconds=timeout_seconds,
                now=now, allow_private_networks=allow_private_networks,
            )  # fmt: skip

    elif kind == "task":
        name = action.get("name")
        fn = registry.get_handler(name) if isinstance(name, str) else None
        if fn is None:
            return Attempt(False, error=f"unknown handler {name!r}", retryable=False)

        def work() -> Attempt:
            return Attempt(True, result=fn(ctx))

    else:
        return Attempt(False, error=f"unknown action type {kind!r}", retryable=False)
    return within(work, timeout_seconds)


def within(work: Callable[[], Attempt], seconds: float) -> Attempt:
    """Run `work`, turning its exceptions into a failed Attempt and an overrun into a
    retryable timeout failure (see the module docstring for the two mechanisms)."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_alarm(work, seconds)
    return _with_thread(work, seconds)


def _timed_out(seconds: float) -> Attempt:
    return Attempt(False, error=f"attempt timed out after {seconds:g} s", retryable=True)


def _guarded(work: Callable[[], Attempt]) -> Attempt:
    try:
        return work()
    except ActionError as exc:
        return Attempt(
            False, error=exc.message, retryable=exc.retryable, retry_after=exc.retry_after
        )
    except Exception as exc:
        # The text of an arbitrary exception may hold anything (a host, a credential, a
        # query): it goes to the operator log only; the run, which the tenant reads, keeps
        # its type and a fixed message. An ActionError's message is the handler's own text
        # for the tenant, and is stored as it is.
        logger.warning(
            "action raised",
            extra={"event": "action_raised", "error_type": type(exc).__name__},
            exc_info=True,
        )
        return Attempt(False, error=f"{type(exc).__name__}: {HIDDEN_ERROR}", retryable=True)


def _with_alarm(work: Callable[[], Attempt], seconds: float) -> Attempt:
    def on_alarm(_signum: int, _frame: Any) -> None:
        raise errors.AttemptTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            outcome = _guarded(work)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except errors.AttemptTimeout:
        # Also when the alarm lands between the end of `work` and the disarming above: the
        # attempt did overrun its budget.
        outcome = _timed_out(seconds)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return outcome


def _with_thread(work: Callable[[], Attempt], seconds: float) -> Attempt:
    box: list[Attempt] = []

    def target() -> None:
        box.append(_guarded(work))

    context = contextvars.copy_context()  # keeps the run's log fields in the thread
    thread = threading.Thread(target=context.run, args=(target,), name="attempt", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        logger.warning(
            "attempt thread abandoned after its timeout",
            extra={"event": "attempt_abandoned", "timeout_seconds": seconds},
        )
        return _timed_out(seconds)
    if not box:
        return Attempt(False, error="the handler exited without a result", retryable=True)
    return box[0]
