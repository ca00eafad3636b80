"""A tick's batches: claim due triggers, plan their fires, insert the runs, advance, hand off.

docs/design.md section 5. `run_batches` is step 3 of app/dispatch.py's tick: batch after
batch, each one transaction, several loops at once when there is a backlog. It also keeps
the planner's statistics of `runs` fresh after a burst (`refresh_statistics`), which the
admission rounds that follow the batches plan from.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from app import shares, state, tracing, waiting
from app.queries import run_queue, run_statistics
from app.queries import triggers as triggers_q
from app.run_status import RunStatus
from app.schedule import planner

if TYPE_CHECKING:
    from app.dispatch import TickOptions, TickStats

logger = logging.getLogger(__name__)


# Admission rounds keep their plans for the session (migration 0008), made from the
# statistics of `runs`, and plan again when those change. Stale statistics make worse plans:
# after a burst they say that a handful of runs wait when thousands do, and a round walks
# the wrong index (2.6 ms a round instead of 1.3 ms with 1,000 waiting, planned at every
# call). Autovacuum refreshes them only after a minute or so, so the tick looks too:
# - at its start, analyze when the table has changed by more rows since its last ANALYZE
#   than it had then (and by at least STATISTICS_CHECK_RUNS): growth a tick at a time;
# - once it has dispatched STATISTICS_CHECK_RUNS runs, analyze when at least half as many
#   are pending and the planner's estimate of them is under half: a burst, seen after its
#   first batches (runs that found a slot at once do not count: they wait for nothing).
STATISTICS_CHECK_RUNS = 500


def refresh_statistics(engine: Engine, *, burst: bool = False) -> bool:
    """Analyze `runs` when its statistics miss most of the pending runs (after a burst) or
    (otherwise) most of the table; return whether it asked PostgreSQL to."""
    with engine.begin() as conn:
        if burst:
            pending = run_statistics.pending_count(conn)
            stale = pending * 2 >= STATISTICS_CHECK_RUNS and (
                run_statistics.pending_estimate(conn) < pending // 2
            )
        else:
            changed, rows = run_statistics.changed_since_analyze(conn)
            stale = changed >= max(STATISTICS_CHECK_RUNS, rows)
        if not stale:
            return False
        run_statistics.analyze(conn)
    logger.info(
        "statistics of runs refreshed",
        extra={"event": "runs_analyzed", "burst": burst},
    )
    return True


@dataclass(frozen=True)
class Tick:
    """What every batch of one tick shares. `lock` guards `stats`, whose counts and flags
    every batch loop writes; `hand_off` admits into the free slots and publishes."""

    engine: Engine
    now: datetime
    release_id: str
    options: TickOptions
    stats: TickStats
    lock: threading.Lock
    hand_off: Callable[[], None]


def run_batches(tick: Tick, *, started: float) -> None:
    """Dispatch batches until none is due, the tick is superseded or its budget is spent.

    Batches are fair across tenants (docs/design.md section 17): the tick first reads how
    many triggers each tenant has due, and its batches claim the shares of a round robin
    over them (app/shares.py: every tenant's earliest before any tenant's next), so a
    tenant's one fire due with another tenant's burst goes in the first batch. Once the
    shares are handed out, batches claim by due time alone until none is due: that picks
    up what a share missed (rows another dispatcher held, triggers due again after a capped
    catch-up, or made due during the tick).

    The first batch runs alone: most ticks have less than a batch due. When it comes back
    full there is a backlog (a midnight burst), and `options.concurrency` loops run batches
    at once, each in its own thread on its own connection, the way several dispatchers
    share a tick: SKIP LOCKED gives each batch triggers no other batch holds, and the unique
    keys absorb a repeat. PostgreSQL writes one batch while this process plans the next, and
    two batches' writes use two cores: 100,000 due triggers in about half the time of one
    loop here (bench/burst.py's triggers, no worker running).

    A loop that fails (its batch rolled back, its triggers still due) stops the others after
    the batch each has in hand; once every loop has ended, the first error is raised and any
    other is logged. The batches that committed stay committed and counted, and the next
    tick takes the rest.
    """
    engine, options, stats, lock = tick.engine, tick.options, tick.stats, tick.lock
    with engine.begin() as conn:
        fair = shares.TenantShares(triggers_q.due_by_tenant(conn, now=tick.now))
    looked_at_statistics = False
    stopping = threading.Event()  # a loop failed: the others stop after the batch in hand

    def loop() -> None:
        nonlocal looked_at_statistics
        plans: planner.PlanCache = {}
        while stats.accepted and not stats.budget_exhausted and not stopping.is_set():
            share = fair.take(options.batch_size)
            claimed = _dispatch_batch(tick, plans, share)
            if claimed is None:  # superseded between batches: every loop stops
                return
            with lock:
                look = not looked_at_statistics and stats.dispatched >= STATISTICS_CHECK_RUNS
                looked_at_statistics |= look
            if look:
                analyzed = refresh_statistics(engine, burst=True)
                with lock:
                    stats.analyzed |= analyzed
            if claimed < options.batch_size and not share:
                return  # a claim by due time alone came back short: nothing more is due
            if time.monotonic() - started >= options.time_budget_seconds:
                # The rest stays due and the next tick (or a concurrent dispatcher) takes it.
                with lock:
                    stats.budget_exhausted = True
                return
            backlog = claimed >= options.batch_size  # a full batch: more loops may help
            if backlog and not extra_loops_started.is_set() and options.concurrency > 1:
                extra_loops_started.set()
                for _ in range(options.concurrency - 1):
                    # Each thread its own copy of this one's context: the log fields bound
                    # for the tick (logs.bind); one context cannot be entered twice at once.
                    extra.append(pool.submit(contextvars.copy_context().run, guarded))

    def guarded() -> None:
        try:
            loop()
        except BaseException:
            stopping.set()
            raise

    extra_loops_started = threading.Event()
    extra: list[Future[None]] = []
    errors: list[BaseException] = []
    with ThreadPoolExecutor(
        max_workers=max(1, options.concurrency - 1), thread_name_prefix="dispatch-batch"
    ) as pool:
        try:
            guarded()
        except BaseException as exc:
            errors.append(exc)
        for future in extra:  # every loop has ended once each has its outcome
            if (error := future.exception()) is not None:
                errors.append(error)
    if errors:
        for error in errors[1:]:
            logger.error(
                "batch loop failed too",
                extra={"event": "dispatch_loop_failed"},
                exc_info=(type(error), error, error.__traceback__),
            )
        raise errors[0]


def _dispatch_batch(
    tick: Tick, plans: planner.PlanCache, share: list[tuple[str, int]]
) -> int | None:
    """Dispatch one batch, the tenants' `share` of it (app/shares.py), or when there is
    none the triggers due first; return how many triggers it claimed, None when
    superseded."""
    now, options, stats = tick.now, tick.options, tick.stats
    with tick.engine.begin() as conn:
        # Re-checked in every batch transaction (FOR SHARE): a restart that commits while
        # this tick runs stops it at the next batch, so runs created after the restart hook
        # never carry the old generation.
        fence = state.check_fence(conn, tick.release_id)
        if not fence.accepted:
            with tick.lock:
                stats.accepted = False
            return None
        if share:
            rows = triggers_q.claim_shares(conn, now=now, shares=share)
        else:
            rows = triggers_q.claim_due(conn, now=now, batch=options.batch_size)
        if not rows:
            return 0
        batch = planner.plan_batch(
            rows,
            now=now,
            tick_seconds=options.tick_seconds,
            max_fires=options.catchup_max_fires,
            plans=plans,
        )
        inserted = run_queue.insert_scheduled(
            conn, batch.run_rows, generation=fence.generation, now=now
        )
        triggers_q.advance(conn, batch.advances)
        # Last, so the tenants' waiting counts are locked only until the commit that follows
        # (and, with traces on, the fire spans of the runs the cap left pending).
        over_cap = waiting.skip_over_cap(
            conn, inserted.pending, _pending_keys(batch.run_rows),
            limit=options.max_waiting_per_tenant, now=now,
        )  # fmt: skip
        if inserted.pending and tracing.enabled():  # each new run's trace starts at its fire
            keys = [r.idempotency_key for r in batch.run_rows if r.status == RunStatus.PENDING]
            tracing.fires(run_queue.new_by_keys(conn, keys, now=now), started=now)
    capped = sum(over_cap.values())
    pending = sum(inserted.pending.values()) - capped
    with tick.lock:
        _log_parked(batch.parked, stats)
        stats.batches += 1
        stats.due += len(rows)
        stats.dispatched += pending
        stats.skipped += inserted.skipped + capped
        stats.capped += capped
        stats.duplicates += len(batch.run_rows) - pending - inserted.skipped - capped
    if capped:
        logger.warning(
            "fires past the waiting-runs cap recorded as skipped",
            extra={"event": "fires_capped", "count": capped, "tenants": sorted(over_cap)},
        )  # fmt: skip
    if pending:
        tick.hand_off()
    return len(rows)


def _pending_keys(run_rows: list[planner.NewRun]) -> dict[str, list[str]]:
    """The idempotency keys of a batch's pending fires, by tenant."""
    keys: dict[str, list[str]] = {}
    for run in run_rows:
        if run.status == RunStatus.PENDING:
            keys.setdefault(run.tenant_id, []).append(run.idempotency_key)
    return keys


def _log_parked(parked: list[tuple[str, str, Exception]], stats: TickStats) -> None:
    """Log each trigger the planner parked (no next run) with the error that stopped it."""
    for trigger, tenant_id, exc in parked:
        logger.error(
            "trigger cannot be scheduled; parked",
            extra={"event": "trigger_parked", "trigger_id": trigger, "tenant_id": tenant_id},
            exc_info=exc,
        )
        stats.parked += 1
