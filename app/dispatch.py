"""One dispatch tick: fence -> recover -> claim due batches -> insert runs -> advance -> hand off.

DESIGN sections 5 and 12. The database, not the broker, is the source of truth: a batch's
runs and its triggers' new `next_run_at` commit together as `pending`, and after that commit
admission (app/admission.py) hands to `publish` (Celery) only the runs that have a free
slot; the rest wait in PostgreSQL. The tick hands off once more at its end, as a safety net
for slots that came free without a hand-off (a worker that died, a lost publish).

Everything that reads the clock takes `now` as an argument, so tests step time by hand.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Engine

from app import admission, config, reconcile, recovery, schedule, state

logger = logging.getLogger(__name__)

Publish = Callable[[Sequence[uuid.UUID]], Any]

# Bulk statements, one round trip per batch whatever its size.
# `next_run_at` is when the next fire is due (jitter included): the claim and its index use
# it; planning starts from `next_fire_at`, the nominal fire (DESIGN section 11).
CLAIM_DUE_TRIGGERS = """
    SELECT id, tenant_id, cron, timezone, run_at, start_at, end_at, interval_seconds,
           anchor_at, jitter_seconds, COALESCE(next_fire_at, next_run_at), next_run_at,
           catchup_policy, catchup_window_seconds
    FROM triggers
    WHERE enabled AND next_run_at <= %(now)s
    ORDER BY next_run_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
"""
INSERT_RUNS = """
    INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key, status,
                      generation, created_at, finished_at, due_at)
    VALUES %s
    ON CONFLICT DO NOTHING
    RETURNING id, status
"""
INSERT_RUNS_TEMPLATE = (
    "(%s::uuid, %s::uuid, %s, %s::timestamptz, 'scheduled', %s, %s, %s, %s::timestamptz, "
    "%s::timestamptz, %s::timestamptz)"
)
ADVANCE_TRIGGERS = """
    UPDATE triggers AS t
    SET next_run_at = v.next_run_at, next_fire_at = v.next_fire_at,
        last_scheduled_for = COALESCE(v.last, t.last_scheduled_for), enabled = v.enabled
    FROM (VALUES %s) AS v (id, next_run_at, next_fire_at, last, enabled)
    WHERE t.id = v.id
"""
ADVANCE_TEMPLATE = "(%s::uuid, %s::timestamptz, %s::timestamptz, %s::timestamptz, %s::boolean)"
PLAN_CACHE_SIZE = 10_000


def idempotency_key(trigger_id: uuid.UUID | str, scheduled_for: datetime) -> str:
    """`<trigger_id>:<scheduled_for ISO-8601 UTC>`, the run's unique key (DESIGN section 5)."""
    moment = scheduled_for.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return f"{trigger_id}:{moment}"


@dataclass
class TickStats:
    """What one tick did; stored in scheduler_state.last_tick_stats and logged."""

    release_id: str
    accepted: bool = True
    generation: int = 0
    deployment_id: str | None = None
    due: int = 0
    dispatched: int = 0
    skipped: int = 0
    duplicates: int = 0
    parked: int = 0
    reconciled: int = 0
    admitted: int = 0
    enqueued: int = 0
    recovered: int = 0
    failed_stale: int = 0
    batches: int = 0
    budget_exhausted: bool = False
    broker_error: str | None = None
    duration_seconds: float = 0.0
    max_lag_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TickOptions:
    batch_size: int = 500
    time_budget_seconds: float = 45.0
    tick_seconds: int = 60
    catchup_max_fires: int = 100
    recovery: recovery.RecoveryOptions = field(default_factory=recovery.RecoveryOptions)
    limits: admission.Limits = field(
        default_factory=lambda: admission.Limits(max_running=50, max_per_tenant=10)
    )


_logged_supersessions: set[tuple[str, str | None]] = set()


def run_tick(
    engine: Engine,
    *,
    now: datetime,
    release_id: str,
    publish: Publish,
    options: TickOptions | None = None,
) -> TickStats:
    """Run one tick and return its statistics.

    1. Fencing: a tick whose release is not the recorded deployment does nothing.
    2. Recovery: slots held by dead workers and lost publishes go back to the queue.
       Reconciliation: give a next fire to enabled triggers that lack one (app/reconcile.py).
    3. Batches of due triggers, each in its own transaction (claim with SKIP LOCKED, plan the
       fires, insert runs, advance next_run_at), each followed by a hand-off (admission into
       the free slots, then `publish`), until none is due or the time budget is spent.
    4. A last hand-off (the safety net), then the tick's statistics are recorded.
    """
    options = options or TickOptions()
    started = time.monotonic()
    stats = TickStats(release_id=release_id)

    with engine.begin() as conn:
        fence = state.check_fence(conn, release_id)
    stats.generation, stats.deployment_id = fence.generation, fence.deployment_id
    if not fence.accepted:
        return _superseded(engine, stats)

    _recover(engine, options=options, stats=stats)
    stats.reconciled = reconcile.reconcile(engine, now=now, batch_size=options.batch_size)
    plans: dict[tuple, schedule.CatchupPlan] = {}

    def hand_off() -> None:
        _hand_off(engine, publish=publish, options=options, stats=stats)

    while True:
        claimed = _dispatch_batch(
            engine,
            now=now,
            release_id=release_id,
            options=options,
            stats=stats,
            hand_off=hand_off,
            plans=plans,
        )
        if claimed is None:  # superseded between batches
            break
        if claimed < options.batch_size:
            break
        if time.monotonic() - started >= options.time_budget_seconds:
            # The rest stays due and the next tick (or a concurrent dispatcher) takes it.
            stats.budget_exhausted = True
            break
    if stats.accepted:
        hand_off()  # the safety net: slots freed without a hand-off of their own

    stats.duration_seconds = round(time.monotonic() - started, 4)
    if stats.accepted:
        # Fenced too: a restart that committed after the last batch makes this the old
        # release's tick, whose stats must not pass for the new deployment's last tick.
        with engine.begin() as conn:
            stats.accepted = state.record_tick(
                conn, release_id=release_id, now=now, stats=stats.as_dict()
            )
    if not stats.accepted:
        return _superseded(engine, stats)
    # An idle tick every few seconds is not news: it logs at debug level.
    busy = stats.due or stats.recovered or stats.failed_stale or stats.broker_error
    logger.log(
        logging.INFO if busy else logging.DEBUG,
        "tick done",
        extra={
            "event": "tick_done",
            "release": release_id,
            "generation": stats.generation,
            **{k: v for k, v in stats.as_dict().items() if k in _LOGGED},
        },
    )
    return stats


_LOGGED = (
    "due",
    "dispatched",
    "skipped",
    "enqueued",
    "recovered",
    "batches",
    "duration_seconds",
    "broker_error",
    "budget_exhausted",
    "parked",
    "reconciled",
    "admitted",
)


def _superseded(engine: Engine, stats: TickStats) -> TickStats:
    stats.accepted = False
    with engine.begin() as conn:
        state.count_superseded_tick(conn)
    pair = (stats.release_id, stats.deployment_id)
    if pair not in _logged_supersessions:
        _logged_supersessions.add(pair)
        logger.warning(
            "tick from a superseded release ignored",
            extra={
                "event": "tick_superseded",
                "release": stats.release_id,
                "deployment_id": stats.deployment_id,
                "generation": stats.generation,
            },
        )
    return stats


def _recover(engine: Engine, *, options: TickOptions, stats: TickStats) -> None:
    """Run the recovery sweep: the slots it frees are filled by the hand-offs that follow."""
    result = recovery.sweep(engine, options=options.recovery)
    stats.recovered = result.requeued
    stats.failed_stale = result.failed


def _hand_off(engine: Engine, *, publish: Publish, options: TickOptions, stats: TickStats) -> None:
    """Admit into the free slots and publish. After a broker failure the tick stops trying:
    the admitted runs wait for the sweep, the rest stay pending."""
    if stats.broker_error:
        return
    result = admission.hand_off(engine, options.limits, publish)
    stats.admitted += len(result.admitted)
    stats.enqueued += result.published
    stats.skipped += result.skipped
    stats.broker_error = result.broker_error


def _dispatch_batch(
    engine: Engine,
    *,
    now: datetime,
    release_id: str,
    options: TickOptions,
    stats: TickStats,
    hand_off: Callable[[], None],
    plans: dict[tuple, schedule.CatchupPlan],
) -> int | None:
    """Dispatch one batch; return how many triggers it claimed, None when superseded."""
    with engine.begin() as conn:
        # Re-checked in every batch transaction (FOR SHARE): a restart that commits while
        # this tick runs stops it at the next batch, so runs created after the restart hook
        # never carry the old generation.
        fence = state.check_fence(conn, release_id)
        if not fence.accepted:
            stats.accepted = False
            return None
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(CLAIM_DUE_TRIGGERS, {"now": now, "batch": options.batch_size})
            rows = cursor.fetchall()
            if not rows:
                return 0
            run_rows, advances = _plan_batch(
                rows,
                now=now,
                generation=fence.generation,
                options=options,
                stats=stats,
                plans=plans,
            )
            inserted = execute_values(
                cursor,
                INSERT_RUNS,
                run_rows,
                template=INSERT_RUNS_TEMPLATE,
                page_size=1000,
                fetch=True,
            )
            execute_values(
                cursor, ADVANCE_TRIGGERS, advances, template=ADVANCE_TEMPLATE, page_size=1000
            )
        finally:
            cursor.close()
    stats.batches += 1
    stats.due += len(rows)
    pending = [run_id for run_id, status in inserted if status == "pending"]
    stats.dispatched += len(pending)
    stats.skipped += sum(1 for _, status in inserted if status == "skipped")
    stats.duplicates += len(run_rows) - len(inserted)
    if pending:
        hand_off()
    return len(rows)


def _plan_batch(
    rows: Sequence[tuple],
    *,
    now: datetime,
    generation: int,
    options: TickOptions,
    stats: TickStats,
    plans: dict[tuple, schedule.CatchupPlan],
) -> tuple[list[tuple], list[tuple]]:
    """Decide each claimed trigger's fires; return the run rows and the trigger advances.

    `plans` memoises the decision per distinct schedule for the tick: 100,000 triggers due
    at midnight share a handful of (expression, zone, next_run_at) combinations, and the
    plan is pure, so each is computed once (most of a tick's CPU otherwise).
    """
    run_rows: list[tuple] = []
    advances: list[tuple] = []
    for row in rows:
        trigger_id, tenant_id = row[:2]
        trigger = str(trigger_id)
        schedule_key = _schedule_key(row)
        plan = plans.get(schedule_key)
        if plan is None:
            if len(plans) >= PLAN_CACHE_SIZE:  # memory stays bounded whatever the mix
                plans.clear()
            try:
                plan = _plan(row, now=now, options=options)
            except Exception:
                # One unplannable row (a zone a tzdata upgrade removed, a row edited by
                # hand) must not roll back its batch: it would lead every later batch and
                # stop dispatch for every tenant. It is parked (no next run) and logged.
                logger.exception(
                    "trigger cannot be scheduled; parked",
                    extra={"event": "trigger_parked", "trigger_id": trigger,
                           "tenant_id": tenant_id},
                )  # fmt: skip
                stats.parked += 1
                advances.append((trigger, None, None, None, True))
                continue
            plans[schedule_key] = plan
        for status, fires in (("pending", plan.run), ("skipped", plan.skipped)):
            finished_at = now if status == "skipped" else None
            run_rows.extend(
                (
                    str(uuid.uuid4()),
                    trigger,
                    tenant_id,
                    fire,
                    idempotency_key(trigger, fire),
                    status,
                    generation,
                    now,
                    finished_at,
                    plan.due_at(fire),
                )
                for fire in fires
            )
        if plan.run:
            lag = (now - plan.run_due[0]).total_seconds()
            stats.max_lag_seconds = max(stats.max_lag_seconds, lag)
        last = max(plan.run + plan.skipped, default=None)
        # A one-time trigger is done once dispatched; a cron or interval trigger past end_at
        # keeps its row enabled but has no next run (DESIGN section 4).
        run_at = schedule_key[2]
        enabled = not (run_at is not None and plan.next_run_at is None)
        advances.append((trigger, plan.next_run_at, plan.next_fire, last, enabled))
    return run_rows, advances


def _schedule_key(row: Sequence) -> tuple:
    """The part of a claimed row the plan depends on. The trigger id is in it only for a
    jittered trigger (its delays are its own); others share plans with their lookalikes."""
    trigger_id, _tenant, cron, timezone, run_at, start_at, end_at, *rest = row
    interval, anchor, jitter, first, first_due_at, policy, window = rest
    key = str(trigger_id) if jitter else ""
    return (cron, timezone, run_at, start_at, end_at, interval, anchor, jitter, key, first,
            first_due_at, policy, window)  # fmt: skip


def _plan(row: Sequence, *, now: datetime, options: TickOptions) -> schedule.CatchupPlan:
    first, first_due_at, policy, window = row[10:14]
    return schedule.plan_catchup(
        reconcile.spec_of_row(row),
        policy=policy,
        window_seconds=window,
        first_due=first,
        now=now,
        tick_seconds=options.tick_seconds,
        max_fires=options.catchup_max_fires,
        first_due_at=first_due_at,
    )


def default_options(settings: config.Settings) -> TickOptions:
    """Tick options from app.config.Settings."""
    return TickOptions(
        batch_size=settings.dispatch_batch_size,
        time_budget_seconds=settings.dispatch_time_budget_seconds,
        tick_seconds=settings.dispatch_interval_seconds,
        catchup_max_fires=settings.catchup_max_fires,
        recovery=recovery.RecoveryOptions(
            heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds,
            admitted_lease_seconds=settings.slot_lease_seconds,
            batch_size=settings.dispatch_batch_size,
        ),
        limits=admission.Limits(
            max_running=settings.max_running, max_per_tenant=settings.max_running_per_tenant
        ),
    )
