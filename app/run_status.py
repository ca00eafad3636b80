"""The run state machine as data: a run's statuses, the moves between them, and what one
delivery of a run did (docs/design.md section 6).

    (insert) ---------------------------------------------> pending | skipped
    pending --admission: a slot is free--> admitted --claim--> running
    pending --the round of a finish, for the worker that keeps the run--> running
    running --success--> succeeded
       |---retryable failure, attempts left; the sweep takes a stale run back--> pending
       |---cancel requested--> cancelled
       '---other failure, attempts used up--> failed
    admitted --lease expired, publish failed: back in the queue--> pending
    admitted --cancel, trigger deleted or disabled--> cancelled
    admitted --attempts used up--> failed
    pending | admitted --overlap policy `skip`/`buffer_one`, another run in progress--> skipped
    pending --cancel, trigger deleted or disabled--> cancelled

Every transition is a conditional UPDATE in app/queries (or in the SQL functions of
app/queries/sql); tests/unit/test_run_transitions.py reads each one and checks its from-to
pairs against TRANSITIONS. Standard library only: the schedule engine labels fires with it.
"""

from __future__ import annotations

import enum


class RunStatus(enum.StrEnum):
    """A run's status, as the `runs.status` column stores it (a CHECK constraint keeps the
    column to these values)."""

    PENDING = "pending"  # waiting in PostgreSQL for a slot (or for a retry's not_before)
    ADMITTED = "admitted"  # holds a slot; published to the broker, not yet claimed
    RUNNING = "running"  # claimed by a worker: an attempt is under way
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # never ran: overlap policy, catch-up policy or the waiting cap


# Groups of statuses, in the order of the enum.
WAITING = (RunStatus.PENDING,)
IN_PROGRESS = (RunStatus.ADMITTED, RunStatus.RUNNING)  # hold a slot (docs/design.md sec. 12)
UNFINISHED = WAITING + IN_PROGRESS
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.SKIPPED)

P, A, R = RunStatus.PENDING, RunStatus.ADMITTED, RunStatus.RUNNING
# (from, to): every move a statement may make. `None` is the insert.
TRANSITIONS: frozenset[tuple[RunStatus | None, RunStatus]] = frozenset(
    {
        (None, P),
        (None, RunStatus.SKIPPED),
        (P, A),
        (P, R),  # the run a finishing worker keeps, started by its round (migration 0015)
        (P, RunStatus.CANCELLED),
        (P, RunStatus.SKIPPED),
        (A, R),
        (A, P),
        (A, RunStatus.CANCELLED),
        (A, RunStatus.FAILED),
        (A, RunStatus.SKIPPED),
        (R, RunStatus.SUCCEEDED),
        (R, RunStatus.FAILED),
        (R, RunStatus.CANCELLED),
        (R, P),
    }
)
del P, A, R


def can_move(old: RunStatus | None, new: RunStatus) -> bool:
    """Whether the state machine allows `old` -> `new` (`old` None: a new run)."""
    return (old, new) in TRANSITIONS


def check_move(old: RunStatus, new: RunStatus) -> None:
    """Refuse a move the state machine does not allow (for statements that take the new
    status as a parameter)."""
    if not can_move(old, new):
        raise ValueError(f"a run cannot move from {old} to {new}")


class Delivery(enum.StrEnum):
    """What one delivery of a run (one `run_trigger` message, or a kept run) did: the run's
    new status, or why it changed nothing. Not a run status: these are never stored."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    RETRYING = "retrying"  # back to pending until not_before; admission hands it on then
    DUPLICATE = "duplicate"  # not admitted: another delivery, the API or the sweep came first
    MISSING = "missing"  # no such run
    LOST = "lost"  # the recovery sweep handed the run to another attempt meanwhile
    RUNNING = "running"  # claimed: the attempt goes ahead
