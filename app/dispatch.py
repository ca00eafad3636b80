"""One dispatch tick: fence -> recover -> claim due batches -> insert runs -> advance -> hand off.

docs/design.md sections 5 and 12; the batches are app/batches.py. The database, not the
broker, is the source of truth: a batch's runs and its triggers' new `next_run_at` commit
together as `pending`, and after that commit admission (app/admission.py) hands to
`publish` (Celery) only the runs that have a free slot; the rest wait in PostgreSQL. The
tick hands off once more at its end, as a safety net for slots that came free without a
hand-off (a worker that died, a lost publish).

Everything that reads the clock takes `now` as an argument, so tests step time by hand.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from app import admission, batches, config, reconcile, recovery, state
from app.queries import runs as runs_q

logger = logging.getLogger(__name__)

Publish = Callable[[Sequence[uuid.UUID]], Any]


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
    capped: int = 0  # of `skipped`: fires past the tenant's waiting-runs cap (app/waiting.py)
    duplicates: int = 0
    parked: int = 0
    reconciled: int = 0
    admitted: int = 0
    enqueued: int = 0
    recovered: int = 0
    failed_stale: int = 0
    batches: int = 0
    budget_exhausted: bool = False
    analyzed: bool = False  # the tick ran ANALYZE runs (batches.refresh_statistics)
    broker_error: str | None = None
    duration_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TickOptions:
    batch_size: int = 500
    # Batches one tick runs at once once a full batch shows a backlog, each on its own
    # connection (app/batches.py, run_batches).
    concurrency: int = 2
    time_budget_seconds: float = 45.0
    tick_seconds: int = 60
    catchup_max_fires: int = 100
    recovery: recovery.RecoveryOptions = field(default_factory=recovery.RecoveryOptions)
    limits: admission.Limits = field(default_factory=lambda: admission.Limits.of(config.Settings()))
    max_waiting_per_tenant: int = config.Settings.max_waiting_runs_per_tenant


_logged_supersessions: set[tuple[str, str | None]] = set()


def database_now(engine: Engine) -> datetime:
    """PostgreSQL's clock, on which a tick decides what is due (docs/design.md section 15)."""
    return runs_q.database_now(engine)


def run_tick(
    engine: Engine,
    *,
    now: datetime,
    release_id: str,
    publish: Publish,
    options: TickOptions | None = None,
    pass_on: admission.PassOn | None = None,
) -> TickStats:
    """Run one tick and return its statistics.

    1. Fencing: a tick whose release is not the recorded deployment does nothing.
    2. Recovery: slots held by dead workers and lost publishes go back to the queue.
       Reconciliation: give a next fire to enabled triggers that lack one (app/reconcile.py).
    3. Batches of due triggers, each in its own transaction (claim with SKIP LOCKED, plan the
       fires, insert runs, advance next_run_at), each followed by a hand-off (admission into
       the free slots, then `publish`), until none is due or the time budget is spent;
       after a full batch, `options.concurrency` batches at once (app/batches.py).
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
    stats.analyzed = batches.refresh_statistics(engine)
    stats.reconciled = reconcile.reconcile(engine, now=now, batch_size=options.batch_size)
    lock = threading.Lock()  # guards the counts in `stats`, which every batch loop adds to

    def hand_off() -> None:
        _hand_off(engine, publish=publish, pass_on=pass_on, options=options, stats=stats, lock=lock)

    tick = batches.Tick(engine, now, release_id, options, stats, lock, hand_off)
    batches.run_batches(tick, started=started)
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
    "capped",
    "reconciled",
    "admitted",
    "analyzed",
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


def _hand_off(
    engine: Engine,
    *,
    publish: Publish,
    pass_on: admission.PassOn | None,
    options: TickOptions,
    stats: TickStats,
    lock: threading.Lock,
) -> None:
    """Admit into the free slots and publish. After a broker failure the tick stops trying:
    the admitted runs wait for the sweep, the rest stay pending."""
    if stats.broker_error:
        return
    result = admission.hand_off(engine, options.limits, publish, pass_on=pass_on)
    with lock:
        stats.admitted += len(result.admitted)
        stats.enqueued += result.published
        stats.skipped += result.skipped
        stats.broker_error = stats.broker_error or result.broker_error


def default_options(settings: config.Settings) -> TickOptions:
    """Tick options from app.config.Settings."""
    return TickOptions(
        batch_size=settings.dispatch_batch_size,
        concurrency=settings.dispatch_concurrency,
        time_budget_seconds=settings.dispatch_time_budget_seconds,
        tick_seconds=settings.dispatch_interval_seconds,
        catchup_max_fires=settings.catchup_max_fires,
        recovery=recovery.RecoveryOptions(
            heartbeat_timeout_seconds=settings.heartbeat_timeout_seconds,
            admitted_lease_seconds=settings.slot_lease_seconds,
            batch_size=settings.dispatch_batch_size,
        ),
        limits=admission.Limits.of(settings),
        max_waiting_per_tenant=settings.max_waiting_runs_per_tenant,
    )
