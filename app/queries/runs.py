"""Every SQL statement on the `runs` table, one named function each.

The run state machine (app/runs.py), admission (app/admission.py), the recovery sweep,
retention, dispatch's batch insert, run history and the metrics all call these.

Transitions are conditional UPDATEs whose WHERE clause states the status they leave (and, for
a running run, the attempt that owns it); callers check the row count, and "no row" means
another worker, the API or the recovery sweep got there first.

Every time that decides ownership is PostgreSQL's (`clock_timestamp()`), never the worker's:
the recovery sweep compares heartbeats with PostgreSQL's clock too, so a worker whose clock
is off by minutes neither looks dead while alive nor holds a slot past its lease
(docs/design.md section 15). A retry's `not_before` is on the same clock as admission's check.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, text

from app import queries
from app.queries.run_rows import RUN_AS_BESIDE, RunRow, TriggerRow
from app.run_status import Delivery, RunStatus, check_move

MAX_ERROR_CHARS = 4000
MAX_RESULT_CHARS = 16 * 1024


def as_uuid(value: uuid.UUID | str) -> uuid.UUID | None:
    """`value` as a UUID, or None when it is not one (a malformed message or URL)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def clip_text(value: str | None, limit: int = MAX_ERROR_CHARS) -> str | None:
    """Text fit for a `text` column: at most `limit` characters, no NUL (PostgreSQL
    refuses it)."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - 15] + "... [truncated]"


def clip_json(value: Any, limit: int = MAX_RESULT_CHARS) -> str | None:
    """A JSON document (as text) fit for a `jsonb` column, at most `limit` characters.

    A result that is too long, not JSON (NaN, odd types) becomes an object that says so and
    keeps a preview, so a handler's return value can never make the final UPDATE fail.
    """
    if value is None:
        return None
    try:
        encoded = json.dumps(value, allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:
        return json.dumps({"unserialisable": type(exc).__name__, "preview": clip_text(repr(value))})
    # jsonb refuses the NUL character, escaped or not.
    encoded = encoded.replace("\\u0000", "\\ufffd")
    if len(encoded) <= limit:
        return encoded
    return json.dumps({"truncated": True, "preview": encoded[: limit // 4]})


# The claim, the SQL function `scheduler_claim_v2` (app/queries/sql/claim_v2.sql, migration
# 0017): it decides what a delivery does (claim, or end the run without running it, or
# nothing), does it and returns the decision, in one call. The call is its own transaction
# (autocommit): a one-fire-at-a-time trigger's lock, taken inside, is held until it commits.
# The run's run_as comes with it (RUN_AS_BESIDE).
_CLAIM = text(
    f"SELECT fn.*, {RUN_AS_BESIDE} "
    "FROM scheduler_claim_v2(CAST(:id AS uuid), CAST(:worker AS varchar)) AS fn"
)


@dataclass(frozen=True, slots=True)
class Claim:
    """What the claim decided for one delivery, and the rows it read or claimed."""

    decision: Delivery  # running, duplicate, cancelled, failed, skipped or missing
    detail: str | None  # why (a duplicate: the status it found, or the decision it lost)
    run: RunRow | None  # as claimed (`attempt` is the new attempt), else as after the call
    trigger: TriggerRow | None  # None when deleted (or the run is missing)


def claim(session: queries.Executor, run_id: uuid.UUID, *, worker: str) -> Claim:
    """Decide and do what this delivery of the run does, in one round trip: claim it
    (admitted -> running) when nothing needs deciding; end an admitted run without running
    it (cancelled, failed, skipped); or nothing (duplicate, missing). The function's
    header says each outcome and who wins a race (every move is conditional on the run
    being admitted: the loser's outcome is `duplicate`). `session` must be in autocommit:
    the call is then its own transaction, and a one-fire-at-a-time trigger's lock, taken
    inside, is released when it returns (in a caller's transaction it would be held, and
    the claim undone by a rollback)."""
    row = session.execute(_CLAIM, {"id": run_id, "worker": worker[:200]}).one()
    decision = Delivery(row.decision)
    run = None if decision == Delivery.MISSING else RunRow.of(row)
    return Claim(decision, row.detail, run, TriggerRow.of(row))


def touch_heartbeat(session: queries.Executor, run_id: uuid.UUID, *, attempt: int) -> bool:
    """Record that the attempt is alive (PostgreSQL's clock); False when the run is no
    longer this attempt's."""
    result = session.execute(
        text(
            "UPDATE runs SET heartbeat_at = clock_timestamp() "
            "WHERE id = :id AND status = 'running' AND attempt = :attempt"
        ),
        {"id": run_id, "attempt": attempt},
    )
    return result.rowcount == 1


def lock_attempt(
    session: queries.Executor, run_id: uuid.UUID, *, attempt: int
) -> tuple[bool, bool]:
    """Lock a running run owned by `attempt`: (still ours, cancel requested).

    Not ours any more when the recovery sweep took it back while this attempt looked dead.
    """
    row = session.execute(
        text(
            "SELECT cancel_requested_at IS NOT NULL FROM runs "
            "WHERE id = :id AND status = 'running' AND attempt = :attempt FOR UPDATE"
        ),
        {"id": run_id, "attempt": attempt},
    ).one_or_none()
    return (False, False) if row is None else (True, bool(row[0]))


def finish(
    session: queries.Executor,
    run_id: uuid.UUID,
    *,
    attempt: int,
    status: RunStatus,
    result: Any,
    error: str | None,
) -> bool:
    """running -> a final status for the attempt that owns the run; False when not ours."""
    check_move(RunStatus.RUNNING, status)
    updated = session.execute(
        text(
            "UPDATE runs SET status = :status, "
            "(finished_at, heartbeat_at) = (SELECT now, now FROM clock_timestamp() AS now), "
            "result = CAST(:result AS jsonb), error = :error "
            "WHERE id = :id AND status = 'running' AND attempt = :attempt"
        ),
        {
            "id": run_id,
            "attempt": attempt,
            "status": status,
            "result": clip_json(result),
            "error": clip_text(error),
        },
    )
    return updated.rowcount == 1


def schedule_retry(
    session: queries.Executor,
    run_id: uuid.UUID,
    *,
    attempt: int,
    delay_seconds: float,
    result: Any,
    error: str | None,
) -> datetime | None:
    """running -> pending until `delay_seconds` from now on PostgreSQL's clock, keeping the
    attempt's error; return that `not_before`, or None when not ours. The run waits in
    PostgreSQL: admission hands it to the broker once it is due and a slot is free."""
    return session.execute(
        text(
            "UPDATE runs SET status = 'pending', "
            "not_before = clock_timestamp() + make_interval(secs => :delay), "
            "enqueued_at = NULL, admitted_at = NULL, heartbeat_at = NULL, worker = NULL, "
            "result = CAST(:result AS jsonb), error = :error "
            "WHERE id = :id AND status = 'running' AND attempt = :attempt "
            "RETURNING not_before"
        ),
        {
            "id": run_id,
            "attempt": attempt,
            "delay": float(delay_seconds),
            "result": clip_json(result),
            "error": clip_text(error),
        },
    ).scalar_one_or_none()


def request_cancel(session: queries.Executor, run_id: uuid.UUID, *, now: datetime) -> str | None:
    """Cancel a waiting (pending or admitted) run now, flag a running one; return the run's
    status after, or None when there is no such run. A finished run is left as it is.
    An admitted run's message may still reach a worker: it finds the run not admitted."""
    status = session.execute(
        text(
            "UPDATE runs SET "
            "status = CASE WHEN status = 'running' THEN status ELSE 'cancelled' END, "
            "finished_at = CASE WHEN status = 'running' THEN finished_at ELSE :now END, "
            "cancel_requested_at = COALESCE(cancel_requested_at, :now) "
            "WHERE id = :id AND status IN ('pending', 'admitted', 'running') RETURNING status"
        ),
        {"id": run_id, "now": now},
    ).scalar_one_or_none()
    if status is not None:
        return status
    return session.execute(
        text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}
    ).scalar_one_or_none()


def cancel_pending_for_trigger(
    session: queries.Executor, trigger_id: uuid.UUID, *, now: datetime
) -> int:
    """Cancel every waiting (pending or admitted) run of a trigger; return how many."""
    result = session.execute(
        text(
            "UPDATE runs SET status = 'cancelled', finished_at = :now, "
            "cancel_requested_at = COALESCE(cancel_requested_at, :now) "
            "WHERE trigger_id = :tid AND status IN ('pending', 'admitted')"
        ),
        {"tid": trigger_id, "now": now},
    )
    return result.rowcount


def database_now(engine: Engine) -> datetime:
    """PostgreSQL's clock: the one clock that decides what is due and who owns what
    (docs/design.md section 15), whatever the clock of the host that asks."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()
