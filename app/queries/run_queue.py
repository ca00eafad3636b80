"""The statements on `runs` that work the queue: batch insert, admission, recovery.

Dispatch inserts a batch of runs (one round trip, each column one array parameter);
admission moves `pending` runs into free slots (app/admission.py explains the lock and the
fairness); the recovery sweep gives back the slots of dead workers and lost publishes.
`enqueued_at` is stamped by one statement, admission's (in `scheduler_admission_round_v2`):
the publish follows its commit at once, and every statement that takes a slot back clears
the stamp with it. It is also the lease of an admitted run. `admitted_at`, the same fact, is
no longer read (migration 0018); taking a slot back still clears it for an older sweep."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from app import queries
from app.queries.run_rows import RUN_AS_BESIDE, RunRow, TriggerRow
from app.schedule.planner import NewRun

# Advisory lock key (bigint) of the one admission critical section: ASCII "ADMIT".
ADMISSION_LOCK = 0x41444D4954

# Each column of the batch is one array parameter (queries.array_literal); the server makes
# the run ids. Each run records its trigger's `run_as` (docs/design.md section 18), read from
# the row this batch holds locked (claimed FOR UPDATE), so it is the value the fire was
# planned with. A fire that already has its run (its idempotency key, or its trigger and
# instant) is left out by ON CONFLICT, and not counted.
_INSERT_RUNS = text("""
    WITH inserted AS (
        INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key,
                          status, generation, created_at, finished_at, due_at, run_as)
        SELECT gen_random_uuid(), r.trigger_id, r.tenant_id, r.scheduled_for, 'scheduled',
               r.idempotency_key, r.status, :generation, :now,
               CASE WHEN r.status = 'skipped' THEN CAST(:now AS timestamptz) END, r.due_at,
               t.run_as
        FROM unnest(CAST(:trigger_ids AS uuid[]), CAST(:tenant_ids AS text[]),
                    CAST(:fires AS timestamptz[]), CAST(:keys AS text[]),
                    CAST(:statuses AS text[]), CAST(:due AS timestamptz[]))
             AS r (trigger_id, tenant_id, scheduled_for, idempotency_key, status, due_at)
        JOIN triggers t ON t.id = r.trigger_id
        ON CONFLICT DO NOTHING
        RETURNING tenant_id, status
    )
    SELECT tenant_id, count(*) FILTER (WHERE status = 'pending'),
           count(*) FILTER (WHERE status = 'skipped')
    FROM inserted
    GROUP BY tenant_id
""")


@dataclass(frozen=True)
class Inserted:
    """What a batch insert wrote: each tenant's new pending runs, and the skipped ones."""

    pending: dict[str, int]
    skipped: int


def insert_scheduled(
    conn: Connection, rows: Sequence[NewRun], *, generation: int, now: datetime
) -> Inserted:
    """Insert scheduled runs stamped with `generation`, created (a skipped one finished) at
    `now`, in one round trip; return what went in (not a fire that had its run already)."""
    if not rows:
        return Inserted(pending={}, skipped=0)
    columns = [queries.array_literal(column) for column in zip(*rows, strict=True)]
    names = ("trigger_ids", "tenant_ids", "fires", "keys", "statuses", "due")
    params = dict(zip(names, columns, strict=True))
    counts = conn.execute(_INSERT_RUNS, {**params, "generation": generation, "now": now}).all()
    return Inserted(
        pending={tenant: int(pending) for tenant, pending, _ in counts if pending},
        skipped=sum(int(skipped) for _, _, skipped in counts),
    )


_NEW_BY_KEYS = text("""SELECT id, trigger_id, tenant_id FROM runs
    WHERE idempotency_key = ANY(:keys) AND created_at = :now AND status = 'pending'""")


def new_by_keys(conn: Connection, keys: Sequence[str], *, now: datetime) -> list[tuple]:
    """(id, trigger_id, tenant_id) of the pending runs with these keys created at `now` (the
    ones a tick's insert just made, not older duplicates); for traces only."""
    if not keys:
        return []
    return [tuple(row) for row in conn.execute(_NEW_BY_KEYS, {"keys": list(keys), "now": now})]


# One admission round is the SQL function `scheduler_admission_round_v2` (its whole current
# text: app/queries/sql/admission_round_v2.sql): the wake-up number (sequence
# `admission_wakeups`) and the try-lock, the overlap statement, the admitting statement, in
# one round trip (their plans kept for the session). The caller's transaction (autocommit:
# the call's own) holds the lock until it ends.
#
# Its commit does not wait for the WAL flush (synchronous_commit off for this transaction
# alone): an admission lost to a PostgreSQL crash only puts the run back in the queue (its
# message, if any, then finds it not admitted and is dropped), and the claim that follows
# an admission is a synchronous commit, which makes the admission durable before it. A
# fire marked skipped by its overlap policy and lost the same way is pending again, and
# the next round's overlap statement decides it again. The lock is released at the commit,
# so the round also holds it for less time.
_ADMISSION_ROUND = text(
    "SELECT set_config('synchronous_commit', 'off', true); "
    "SELECT ticket, run_id, skipped FROM scheduler_admission_round_v2("
    "CAST(:max_running AS bigint), CAST(:max_per_tenant AS bigint), CAST(:factor AS bigint), "
    "CAST(:seen AS bigint), CAST(:key AS bigint))"
)


@dataclass(frozen=True)
class Round:
    """What one admission round did."""

    ticket: int  # this round's wake-up number
    admitted: list[uuid.UUID]  # to publish
    skipped: int
    # A finish's round (finish_and_admit) may keep one admitted run for the finishing
    # worker, not in `admitted`; `claimed` is (RunRow, TriggerRow) when the plain claim took it.
    kept: uuid.UUID | None = None
    claimed: tuple[RunRow, TriggerRow] | None = None


def admission_round(
    conn: Connection, *, max_running: int, max_per_tenant: int, factor: int, seen: int | None
) -> Round | None:
    """One admission round (app/admission.py); None when there was nothing to do (every
    slot taken, or nobody took a wake-up number since `seen`) or another admitter holds the
    lock. Call it in autocommit: the lock must be released when the round commits."""
    rows = conn.execute(
        _ADMISSION_ROUND,
        {
            "max_running": max_running,
            "max_per_tenant": max_per_tenant,
            "factor": factor,
            "seen": seen,
            "key": ADMISSION_LOCK,
        },
    ).all()
    if not rows:
        return None
    admitted = [row.run_id for row in rows if row.run_id is not None]
    return Round(ticket=int(rows[0].ticket), admitted=admitted, skipped=int(rows[0].skipped))


# A successful finish, an admission round and the kept run's claim: one transaction, one
# round trip (the SQL function `scheduler_finish_and_admit_v2`, migration 0018).
#
# Its commit does not wait for the WAL flush either: the round holds admission's lock until
# the commit, and a flush inside the lock made every finisher collide with the holder more
# often (throughput of no-op runs fell by a fifth). What it would protect is kept all the
# same: the caller's next statement, the look at the wake-up sequence, is a synchronous
# commit (last_wakeup's `flush`; without a round to look after, `flush` itself), and it
# comes before the worker runs the kept run (a claim lost with a crash would let another
# worker run it too) and before the delivery is acknowledged. A finish lost to a
# PostgreSQL crash before then is a worker lost before its finish: the run is retried once
# its heartbeat times out.
_FINISH_AND_ADMIT = text(
    "SELECT set_config('synchronous_commit', 'off', true); "
    f"SELECT fn.*, {RUN_AS_BESIDE} "  # the kept run's, when it is claimed
    "FROM scheduler_finish_and_admit_v2(CAST(:run_id AS uuid), CAST(:attempt AS integer), "
    "CAST(:result AS jsonb), CAST(:max_running AS bigint), CAST(:max_per_tenant AS bigint), "
    "CAST(:factor AS bigint), CAST(:key AS bigint), CAST(:keep_worker AS varchar), "
    "CAST(:waiting AS double precision)) AS fn"
)


def finish_and_admit(
    conn: Connection,
    run_id: uuid.UUID,
    *,
    attempt: int,
    result: str | None,
    max_running: int,
    max_per_tenant: int,
    factor: int,
    keep_worker: str | None,
    waiting_seconds: float,
) -> tuple[bool, Round | None]:
    """running -> succeeded for `attempt` (`result`: JSON text), then an admission round
    that, with `keep_worker`, keeps and claims one admitted run for that worker unless a run
    admitted more than `waiting_seconds` ago has not started. Returns (whether the finish
    was this attempt's, the round); no round when it did nothing (every slot taken) or
    another admitter held the lock. Call it in autocommit: one transaction."""
    row = conn.execute(
        _FINISH_AND_ADMIT,
        {
            "run_id": run_id,
            "attempt": attempt,
            "result": result,
            "max_running": max_running,
            "max_per_tenant": max_per_tenant,
            "factor": factor,
            "key": ADMISSION_LOCK,
            "keep_worker": None if keep_worker is None else keep_worker[:200],
            "waiting": waiting_seconds,
        },
    ).one()
    if row.ticket is None:
        return bool(row.finished), None
    trigger = TriggerRow.of(row)  # None unless the plain claim took the kept run
    claimed = None if trigger is None else (RunRow.of(row), trigger)
    return bool(row.finished), Round(int(row.ticket), list(row.admitted), int(row.skipped),
                                     row.kept, claimed)  # fmt: skip


_LAST_WAKEUP = text("SELECT last_value FROM admission_wakeups")
# A commit waits for the WAL flush only when its transaction wrote WAL: one that merely took
# a transaction id (txid_current(), which this used until a test caught it) writes a commit
# record that is not waited for, and an asynchronous commit before it stays in memory. The
# smallest write that counts is a transactional logical decoding message: a few bytes of
# WAL, no table touched (a logical decoding consumer sees it under this prefix and may
# ignore it), callable by any role.
_FLUSHING = "pg_logical_emit_message(true, 'scheduler.flush', '')"
_LAST_WAKEUP_FLUSHED = text(f"SELECT last_value, {_FLUSHING} FROM admission_wakeups")


def last_wakeup(conn: Connection, *, flush: bool = False) -> int:
    """The last wake-up number taken (sequence `admission_wakeups`). With `flush`, the look
    also waits for the WAL flush of every commit before it, as a synchronous commit that
    wrote WAL does (see `_FLUSHING`). Call it in autocommit, like `flush`."""
    return int(conn.execute(_LAST_WAKEUP_FLUSHED if flush else _LAST_WAKEUP).first()[0])


_FLUSH = text(f"SELECT {_FLUSHING}")


def flush(conn: Connection) -> None:
    """Wait until every commit before this statement is durable (see last_wakeup)."""
    conn.execute(_FLUSH)


_LOOK_AFTER_ROUND = text(
    "SELECT (SELECT last_value FROM admission_wakeups), EXISTS ("
    "SELECT 1 FROM runs WHERE status = 'admitted' "
    "AND enqueued_at < now() - CAST(:seconds AS interval))"
)


def look_after_round(conn: Connection, *, waiting_seconds: float) -> tuple[int, bool]:
    """(The last wake-up number taken, whether a run admitted more than `waiting_seconds`
    ago has not started): such a run's message waits in the broker for a free worker
    process (or was lost, and waits for its lease). By `enqueued_at`: ix_runs_unfinished."""
    params = {"seconds": f"{waiting_seconds} seconds"}
    last, waiting = conn.execute(_LOOK_AFTER_ROUND, params).one()
    return int(last), bool(waiting)


_UNADMIT = text(
    "UPDATE runs SET status = 'pending', enqueued_at = NULL, admitted_at = NULL "
    "WHERE id = ANY(:ids) AND status = 'admitted'"
)


def unadmit(conn: Connection, run_ids: Sequence[uuid.UUID]) -> None:
    """admitted -> pending for runs whose publish failed, taking back the `enqueued_at` stamp."""
    conn.execute(_UNADMIT, {"ids": list(run_ids)})


_BACKLOG = text("""
    SELECT
        (SELECT count(*) FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(
                    GREATEST(created_at, COALESCE(not_before, created_at)))), 0)
         FROM runs
         WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())),
        (SELECT count(*) FROM runs WHERE status IN ('admitted', 'running'))
""")


def backlog(conn: Any) -> tuple[int, float, int]:
    """(runs waiting for a slot that could start now, seconds the oldest has waited, slots
    in use), on PostgreSQL's clock."""
    waiting, oldest, in_use = conn.execute(_BACKLOG).one()
    return int(waiting), float(oldest), int(in_use)


_WAITING_BY_TENANT = text("""
    SELECT tenant_id, count(*) AS waiting FROM runs
    WHERE status = 'pending' AND (not_before IS NULL OR not_before <= now())
    GROUP BY tenant_id ORDER BY waiting DESC, tenant_id LIMIT :top
""")


def waiting_by_tenant(conn: Any, *, top: int) -> list[tuple[str, int]]:
    """The `top` tenants with the most runs waiting for a slot, most first."""
    return [(tenant, int(n)) for tenant, n in conn.execute(_WAITING_BY_TENANT, {"top": top})]


_RECOVER_STALE_RUNNING = text("""
    WITH s AS MATERIALIZED (  -- run once: rerun for each row, it would pass the LIMIT
        SELECT runs.id, t.max_attempts
        FROM runs LEFT JOIN triggers AS t ON t.id = runs.trigger_id
        WHERE runs.status = 'running'
          AND COALESCE(runs.heartbeat_at, runs.started_at, runs.created_at)
              < clock_timestamp() - make_interval(secs => :timeout)
        ORDER BY runs.heartbeat_at
        LIMIT :batch
        FOR UPDATE OF runs SKIP LOCKED
    )
    UPDATE runs AS r
    SET status = CASE
            WHEN s.max_attempts IS NULL THEN 'cancelled'
            WHEN r.attempt >= s.max_attempts THEN 'failed'
            ELSE 'pending' END,
        finished_at = CASE
            WHEN s.max_attempts IS NULL OR r.attempt >= s.max_attempts THEN clock_timestamp()
            END,
        error = CASE
            WHEN s.max_attempts IS NULL THEN 'trigger deleted while its worker was lost'
            WHEN r.attempt >= s.max_attempts
            THEN 'worker lost: no heartbeat for ' || :timeout || ' s; attempts used up'
            ELSE r.error END,
        enqueued_at = NULL, admitted_at = NULL,  -- the older sweep's stamp (until 0019)
        not_before = NULL, worker = NULL
    FROM s
    WHERE r.id = s.id AND r.status || '' = 'running'  -- as locked (by key: not an index's)
    RETURNING r.id, r.status, r.trigger_id, r.tenant_id, r.attempt
""")


def recover_stale_running(conn: Connection, *, timeout_seconds: int, batch: int) -> list[Any]:
    """Take back up to `batch` running runs whose heartbeat is older than `timeout_seconds`
    (pending with attempts left, else failed or cancelled); return (id, status, trigger_id,
    tenant_id, attempt) rows."""
    return conn.execute(_RECOVER_STALE_RUNNING, {"timeout": timeout_seconds, "batch": batch}).all()


_RETURN_STALE_ADMITTED = text("""
    UPDATE runs SET status = 'pending', enqueued_at = NULL, admitted_at = NULL
    WHERE id = ANY(ARRAY(  -- not IN (a rerun subquery passes the LIMIT): run_history.py
        SELECT id FROM runs
        WHERE status = 'admitted'
          AND enqueued_at < clock_timestamp() - make_interval(secs => :lease)
        ORDER BY enqueued_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING id
""")


def return_stale_admitted(conn: Connection, *, lease_seconds: int, batch: int) -> list[Any]:
    """admitted -> pending for up to `batch` runs admitted more than `lease_seconds` ago (a
    lost publish); return their id rows."""
    return conn.execute(_RETURN_STALE_ADMITTED, {"lease": lease_seconds, "batch": batch}).all()
