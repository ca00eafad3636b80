"""Admission: PostgreSQL is the queue, the broker carries only what can start.

docs/design.md section 12.

A run waits `pending` in PostgreSQL until admission gives it a slot: at most `max_running`
runs in progress (`admitted` or `running`) overall and `max_per_tenant` per tenant. Only
then is it handed to the broker, so the broker holds about as many run messages as there
are free slots, and nothing is ever re-published for want of a slot.

Who goes next: tenants take turns (fewest in progress first, then the oldest waiting
fire that can start), oldest fire first within a tenant. A run is eligible when it is
pending, not cancelled, its `not_before` (a retry's backoff) has passed on PostgreSQL's
clock, and, for a trigger that runs one at a time (overlap `skip` or `buffer_one`), no
other run of the trigger is in progress (a run between two attempts counts) and no older
fire waits. A retry still in its backoff gives its tenant no place in line; a fire held by
its trigger's overlap policy, or one with a cancel request not yet acted on, still does
(CANDIDATE_FACTOR is for those).

Why an advisory lock: SKIP LOCKED only keeps two admitters from taking the same row. Each
admitter counts the runs in progress in its own snapshot, which cannot see the other's
uncommitted admissions, so two of them would both fill the last slot (or a tenant's cap)
with different rows. A transaction-scoped advisory lock serialises admissions; it is taken
in its own statement so the counting statement after it takes a fresh READ COMMITTED
snapshot that sees every admission committed before the lock was granted.

Why nobody waits for it: every finishing run hands off, so with a blocking lock the
finishers queued behind each other, each admitting one run; the lock's hold time capped
the whole service's throughput. Now a would-be admitter first takes a number from the
sequence `admission_wakeups`, then *tries* the lock; when someone else holds it, it
leaves. The holder, after its commit (and its publish), looks at the sequence: if anyone
took a number since its own, it takes another and admits again, so one holder admits for
every finisher that came by. No wake-up is lost: a finisher takes its number after its finish
committed, so either the holder's counting statement already saw the freed slot, or the
number moved on after the holder took its own and the holder goes round once more.

A successful finish is the exception, for speed: its first round is in the finish's own
transaction (`finish_succeeded`: the finish, the round and the kept run's claim in one
round trip and one commit), so it takes its number before its freed slot is visible to
anyone else. When that round gets the lock, it is the holder and counts its own finish;
when it does not, the finisher hands off again after its commit, by the rule above.

Hand-off points: after a run's finish (the worker), after each dispatch batch commits, on
every tick (safety net), and after a manual run is created. A worker whose run just ended
keeps one of the runs it admitted and runs it itself (app/runs.py, `chain_seconds`): it is
free, and the broker would only bring it another. Publishing comes after the commit; a
publish that is lost leaves an `admitted` run that the recovery sweep returns to the queue
once its lease (`slot_lease_seconds`) has passed.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Generator, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from app import db, tracing
from app.config import Settings
from app.queries import run_queue

logger = logging.getLogger(__name__)

# Candidate tenants probed per free slot: a tenant whose oldest waiting run is not eligible
# (a fire held back by its trigger's overlap policy) must not cost another tenant its turn.
CANDIDATE_FACTOR = 2

Publish = Callable[[Sequence[uuid.UUID]], Any]
# pass_on(): ask another process to hand off (a hand-off message a worker picks up).
PassOn = Callable[[], Any]

# A holder that can pass the duty on goes round at most this many times: while runs keep
# finishing it would otherwise go round for as long as they do, holding whoever it is (a
# tick with batches to dispatch, a worker's pool process, an API request). The hand-off
# message it leaves carries the wake-ups it did not serve, so none is lost.
MAX_ROUNDS = 16


# An admitted run not started after this long waits in the broker for a free worker
# process (a free one takes a message within milliseconds): while one does, a worker whose
# run ended publishes what it admits rather than keep a run, which would go ahead of it.
WAITING_IN_BROKER_SECONDS = 0.5


@dataclass(frozen=True)
class Limits:
    max_running: int  # MAX_RUNNING: slots in all
    max_per_tenant: int  # MAX_RUNNING_PER_TENANT

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits `settings` set (the one place they are read)."""
        return cls(max_running=settings.max_running, max_per_tenant=settings.max_running_per_tenant)


@dataclass
class HandOff:
    """What one hand-off did: runs admitted, published, skipped by their overlap policy."""

    admitted: list[uuid.UUID]
    skipped: int = 0
    published: int = 0
    broker_error: str | None = None
    # With keep=True: the admitted run the caller starts itself (not published), and
    # (RunRow, TriggerRow) when a finish's round claimed it for the caller already.
    kept: uuid.UUID | None = None
    claimed: tuple[Any, Any] | None = None


def _rounds(
    engine: Engine,
    limits: Limits,
    conn: Connection | None = None,
    first: run_queue.Round | None = None,
) -> Generator[run_queue.Round, int | None, None]:
    """Admission rounds, (admitted, skipped) each, on one connection, for as long as this
    caller gets the lock and someone took a wake-up number since its last round (see the
    module docstring). The caller publishes each round's runs before the next round.

    A round is one call of the SQL function `scheduler_admission_round_v2`
    (app/queries/sql/admission_round_v2.sql), in autocommit so that the round is one
    transaction and the lock goes with its commit:
    1. stop when every slot is taken (no lock, nothing more: a dispatch of 100,000 fires
       hands off after each of its 200 batches and pays only this) or, after a first
       round, when no one came by since; else take a wake-up number and try the
       transaction-scoped advisory lock; someone else holds it: stop.
    2. Overlap: pending fires of busy `skip` / `buffer_one` triggers become `skipped` (only
       when such a trigger is busy: a cheap look first saves running the statement).
    3. One statement: count runs in progress per tenant (free = max_running - total); pick
       candidate tenants below their cap, fewest in progress first, then oldest waiting
       fire that can start (found by a walk of the waiting room in fire order, so that a
       round costs what the free slots need, not what the number of tenants waiting
       would: migration 0010); lock each one's oldest eligible runs (LATERAL, SKIP
       LOCKED, MATERIALIZED so the planner cannot run the locking subquery twice); rank
       them by (in progress + place in the tenant's line, fire time, id); keep the first
       `free`; mark them `admitted`.
    Each statement of the function takes a fresh READ COMMITTED snapshot, so 2 and 3 see
    every admission committed before the lock was granted.

    After a round, whether anyone came by is first read from the sequence alone (a simple
    statement, where the function would plan its first statement to find out): most
    hand-offs end there. A caller that has read it already sends it in (`send`).

    `conn`, when given, is an autocommit connection of the caller's (db.statements);
    `first`, a round the caller has done already (a finish's: finish_succeeded).
    """
    seen: int | None = None
    looked: int | None = None
    flush = first is not None  # the look after a finish's round: see finish_succeeded
    with nullcontext(conn) if conn is not None else db.statements(engine) as conn:
        while True:
            if seen is not None:
                last, flush = looked or run_queue.last_wakeup(conn, flush=flush), False
                if last == seen:
                    return
            done, first = first, None
            done = done or run_queue.admission_round(
                conn,
                max_running=limits.max_running,
                max_per_tenant=limits.max_per_tenant,
                factor=CANDIDATE_FACTOR,
                seen=seen,
            )
            if done is None:
                return
            seen = done.ticket
            looked = yield done


def admit(engine: Engine, limits: Limits) -> tuple[list[uuid.UUID], int]:
    """Admit as many waiting runs as there are free slots; return (admitted ids, skipped).
    Returns at once, with nothing, when another admitter holds the lock: that one admits
    again for this caller."""
    admitted: list[uuid.UUID] = []
    skipped = 0
    for done in _rounds(engine, limits):
        admitted += done.admitted
        skipped += done.skipped
    return admitted, skipped


def hand_off(
    engine: Engine,
    limits: Limits,
    publish: Publish,
    pass_on: PassOn | None = None,
    *,
    conn: Connection | None = None,
    keep: bool = False,
    first: run_queue.Round | None = None,
) -> HandOff:
    """Admit into the free slots and publish the admitted runs (task id = run id), round by
    round: each round's runs go to the broker before the next round. With `pass_on`, stop
    after MAX_ROUNDS rounds and call it (the next process goes on); without, go round for
    as long as wake-ups come in.

    A publish that fails is logged and reported, never raised: the runs go back to the
    queue at once (a message that did get through then finds its run not admitted and is
    dropped). A process that dies before publishing leaves `admitted` runs, which the
    recovery sweep returns to the queue once their lease has passed.

    `conn`: an autocommit connection (db.statements) to admit on, e.g. the one a finishing
    run just committed its finish on; by default one from the engine's autocommit pool.
    `keep`: the caller will run one admitted run itself (a worker whose run just ended):
    one run of the first round that admits is returned as `kept` (and counted in
    `admitted`), not published, unless runs admitted before wait in the broker.
    `first`: the round of a finish (finish_succeeded), done already; its kept run, if any,
    is returned as `kept` (with `claimed`).
    """
    result = HandOff(admitted=[])
    if first is not None and (first.admitted or first.kept):
        keep = False  # the first round that admits decides the keep
    with (
        nullcontext(conn) if conn is not None else db.statements(engine) as conn,
        closing(_rounds(engine, limits, conn, first)) as rounds,
    ):
        looked: int | None = None  # the wake-up sequence, when read here after a round
        for count in itertools.count(1):
            try:
                done = rounds.send(looked)
            except StopIteration:
                break
            result.skipped += done.skipped
            admitted, looked = done.admitted, None
            if done.kept is not None:  # a finish's round kept it (and may have claimed it)
                result.kept, result.claimed = done.kept, done.claimed
                result.admitted.append(done.kept)
            elif keep and admitted:
                keep = False  # one run at most, from the first round that admits
                # One look for two things: the wake-up sequence, and whether a run
                # admitted before waits in the broker (then keep none: see above).
                looked, waiting = run_queue.look_after_round(
                    conn, waiting_seconds=WAITING_IN_BROKER_SECONDS
                )
                if not waiting:
                    result.kept, admitted = admitted[0], admitted[1:]
                    result.admitted.append(result.kept)
            if admitted and not _publish(engine, publish, admitted, result):
                # The broker is down: the tick's hand-off admits them again. (Taking them
                # back is a synchronous commit, so a finish's round is durable before its
                # kept run starts here too.)
                break
            if pass_on is not None and count == MAX_ROUNDS:
                _pass_on(pass_on)
                break
    if result.skipped:
        logger.info("overlapping fires skipped", extra={"event": "runs_skipped_overlap",
                                                        "count": result.skipped})  # fmt: skip
    if result.admitted:
        logger.debug(
            "runs admitted", extra={"event": "runs_admitted", "count": len(result.admitted)}
        )
        tracing.admitted(result.admitted)
    return result


def finish_succeeded(
    conn: Connection,
    limits: Limits,
    run_id: uuid.UUID,
    *,
    attempt: int,
    result: str | None,
    keep_worker: str | None,
) -> tuple[bool, run_queue.Round | None]:
    """A successful attempt's finish and the first round of its hand-off, in one transaction
    on `conn` (autocommit): (whether the finish was this attempt's, the round, for hand_off's
    `first`). With `keep_worker`, the round keeps one admitted run and claims it for that
    worker, under the same rule as hand_off's `keep`.

    No round (None) when it did nothing or another admitter held the lock: the caller must
    then hand off again. The round took its wake-up number before the finish was committed,
    so a holder that went round again for that number may not have seen the freed slot.

    The transaction's commit is asynchronous (app/queries/run_queue.py explains why); the
    look after the round, or here a flush when there is no round, makes it durable before
    the caller goes on."""
    ours, first = run_queue.finish_and_admit(
        conn,
        run_id,
        attempt=attempt,
        result=result,
        max_running=limits.max_running,
        max_per_tenant=limits.max_per_tenant,
        factor=CANDIDATE_FACTOR,
        keep_worker=keep_worker,
        waiting_seconds=WAITING_IN_BROKER_SECONDS,
    )
    if first is None:
        run_queue.flush(conn)
    return ours, first


def _publish(engine: Engine, publish: Publish, admitted: list[uuid.UUID], result: HandOff) -> bool:
    """Publish one round's runs into `result`; on a broker error put them back in the queue
    and return False."""
    try:
        publish(admitted)
    except Exception as exc:
        result.broker_error = f"{type(exc).__name__}: {exc}"[:300]
        logger.error(
            "broker unavailable; admitted runs go back to the queue",
            extra={"event": "enqueue_failed", "runs": len(admitted)},
            exc_info=True,
        )
        with engine.begin() as conn:
            run_queue.unadmit(conn, admitted)
        return False
    result.admitted += admitted
    result.published += len(admitted)
    return True


def _pass_on(pass_on: PassOn) -> None:
    try:
        pass_on()
    except Exception:
        # The tick's hand-off serves these wake-ups anyway, at most a tick later.
        logger.warning("hand-off not passed on", extra={"event": "pass_on_failed"}, exc_info=True)


@dataclass(frozen=True)
class Backlog:
    """The waiting room as /healthz and /metrics see it."""

    waiting: int  # pending runs that could start now (due, not cancelled) but have no slot
    oldest_wait_seconds: float  # how long the longest-waiting of them has waited
    in_use: int  # slots held (admitted + running)


def backlog(conn: Any) -> Backlog:
    """How many runs wait for a slot and for how long (PostgreSQL's clock)."""
    waiting, oldest, in_use = run_queue.backlog(conn)
    return Backlog(waiting=waiting, oldest_wait_seconds=oldest, in_use=in_use)


def waiting_by_tenant(conn: Any, *, top: int) -> list[tuple[str, int]]:
    """The `top` tenants with the most runs waiting for a slot, most first."""
    return run_queue.waiting_by_tenant(conn, top=top)
