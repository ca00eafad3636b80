"""Prometheus metrics computed at scrape time from the database.

web, worker and beat are separate processes, so in-process counters would each see a third
of the picture. Instead a custom collector reads the shared truth (scheduler_state and a few
indexed aggregates over runs and triggers) when /metrics is scraped. The read costs about a
second of database time with 500,000 runs waiting, so each web process keeps its last
snapshot for METRICS_CACHE_SECONDS (`SnapshotCache`): scrapers, however many, cost at most
one read per process per period. Tenant labels are bounded to METRICS_TOP_TENANTS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import activity, admission, db, state
from app.run_status import FINISHED

logger = logging.getLogger(__name__)

WINDOW = timedelta(minutes=15)  # recent runs for the lag histogram and finished counts
LAG_BUCKETS = activity.LAG_BUCKETS
TICK_OUTCOMES = ("due", "dispatched", "skipped", "reconciled")
TOP_TENANTS = 10  # tenants shown by scheduler_runs_waiting (the label set stays bounded)


class SnapshotCache:
    """The last snapshot a process read and when; `get` reads a new one when it is older than
    `seconds`, one reader at a time (the others wait for it rather than read too)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._value: dict[str, Any] | None = None
        self._read_at: float | None = None

    def get(self, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """The cached snapshot, or `read()`'s (None: the read failed; kept as long)."""
        with self._lock:
            fresh = self._read_at is not None and time.monotonic() - self._read_at < self._seconds
            if not fresh:
                self._value, self._read_at = read(), time.monotonic()
            return self._value


class SchedulerCollector:
    """Yields the scheduler's metrics from one database read per scrape, or from `cache`."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        clock: Callable[[], datetime],
        *,
        max_running: int | None = None,
        top_tenants: int = TOP_TENANTS,
        cache: SnapshotCache | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._max_running = max_running
        self._top = top_tenants
        self._cache = cache

    def describe(self) -> list[Metric]:
        return []  # no database query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        up = GaugeMetricFamily("scheduler_database_up", "1 if the metrics query succeeded")
        snapshot = self._cache.get(self._read) if self._cache else self._read()
        if snapshot is None:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(snapshot, now=now)
        yield from admission_families(snapshot, max_running=self._max_running, top=self._top)
        yield from webhook_families(snapshot)

    def _read(self) -> dict[str, Any] | None:
        try:
            with db.session_scope(self._engine()) as session:
                return read_snapshot(session, now=self._clock(), top=self._top)
        except Exception:
            logger.exception("metrics query failed", extra={"event": "metrics_failed"})
            return None


def read_snapshot(session: Session, *, now: datetime, top: int = TOP_TENANTS) -> dict[str, Any]:
    """Everything the metrics need, read in one transaction (the `top` tenants with the most
    runs waiting: none when 0)."""
    return activity.snapshot(session, now=now, since=now - WINDOW, top=top, top_hosts=TOP_TENANTS)


def families(snapshot: dict[str, Any], *, now: datetime) -> Iterator[Metric]:
    current: state.State = snapshot["state"]
    stats = current.last_tick_stats or {}

    generation = GaugeMetricFamily("scheduler_generation", "Current scheduler generation")
    generation.add_metric([], current.generation)
    yield generation

    if current.last_tick_at is not None:
        tick = GaugeMetricFamily(
            "scheduler_last_tick_timestamp_seconds", "When the last accepted tick ended"
        )
        tick.add_metric([], current.last_tick_at.timestamp())
        yield tick
        age = GaugeMetricFamily("scheduler_last_tick_age_seconds", "Seconds since the last tick")
        age.add_metric([], max(0.0, (now - current.last_tick_at).total_seconds()))
        yield age

    if "duration_seconds" in stats:
        duration = GaugeMetricFamily(
            "scheduler_last_tick_duration_seconds", "How long the last accepted tick took"
        )
        duration.add_metric([], float(stats["duration_seconds"]))
        yield duration

    outcomes = GaugeMetricFamily(
        "scheduler_last_tick_triggers",
        "Fires the last tick found due, dispatched and skipped; triggers it reconciled",
        labels=["outcome"],
    )
    for outcome in TICK_OUTCOMES:
        outcomes.add_metric([outcome], float(stats.get(outcome) or 0))
    yield outcomes

    superseded = CounterMetricFamily(
        "scheduler_superseded_ticks", "Ticks refused because their release was superseded"
    )
    superseded.add_metric([], float(stats.get("superseded_total", stats.get("superseded")) or 0))
    yield superseded

    due = GaugeMetricFamily(
        "scheduler_due_triggers", "Enabled triggers whose next_run_at has passed (backlog)"
    )
    due.add_metric([], snapshot["due"])
    yield due

    active = GaugeMetricFamily("scheduler_runs_active", "Unfinished runs", labels=["status"])
    for status, count in sorted(snapshot["active"].items()):
        active.add_metric([status], count)
    yield active

    finished = GaugeMetricFamily(
        "scheduler_runs_finished_recent",
        f"Runs finished in the last {int(WINDOW.total_seconds())} s, by status",
        labels=["status"],
    )
    for status in FINISHED:
        finished.add_metric([status], snapshot["finished"].get(status, 0))
    yield finished

    counts, total, lag_sum = snapshot["lag"]
    buckets = [(_bound(b), float(c)) for b, c in zip(LAG_BUCKETS, counts, strict=True)]
    lag = GaugeHistogramMetricFamily(
        "scheduler_dispatch_lag_seconds",
        "enqueued_at - due time (fire + jitter) of runs enqueued in the last "
        f"{int(WINDOW.total_seconds())} s",
        buckets=[*buckets, ("+Inf", float(total))],
        gsum_value=lag_sum,
    )
    yield lag


def admission_families(
    snapshot: dict[str, Any], *, max_running: int | None, top: int = TOP_TENANTS
) -> Iterator[Metric]:
    """The waiting room (docs/design.md section 12): slots, waiting runs, fire-to-start lag."""
    room: admission.Backlog = snapshot["backlog"]
    in_use = GaugeMetricFamily("scheduler_slots_in_use", "Runs holding a slot (admitted, running)")
    in_use.add_metric([], room.in_use)
    yield in_use
    if max_running is not None:
        limit = GaugeMetricFamily("scheduler_slots_limit", "MAX_RUNNING: slots in all")
        limit.add_metric([], max_running)
        yield limit
    waiting = GaugeMetricFamily(
        "scheduler_runs_waiting_total", "Runs that could start now and wait for a slot"
    )
    waiting.add_metric([], room.waiting)
    yield waiting
    oldest = GaugeMetricFamily(
        "scheduler_runs_waiting_oldest_seconds", "How long the longest-waiting run has waited"
    )
    oldest.add_metric([], room.oldest_wait_seconds)
    yield oldest
    by_tenant = GaugeMetricFamily(
        "scheduler_runs_waiting",
        f"Runs waiting for a slot, for the {top} tenants with the most",
        labels=["tenant"],
    )
    for tenant, count in snapshot["waiting_by_tenant"]:
        by_tenant.add_metric([tenant], count)
    yield by_tenant
    counts, total, lag_sum = snapshot["admission_lag"]
    buckets = [(_bound(b), float(c)) for b, c in zip(LAG_BUCKETS, counts, strict=True)]
    yield GaugeHistogramMetricFamily(
        "scheduler_admission_lag_seconds",
        f"started_at - due time (fire + jitter to first start) of runs started in the last "
        f"{int(WINDOW.total_seconds())} s",
        buckets=[*buckets, ("+Inf", float(total))],
        gsum_value=lag_sum,
    )


def webhook_families(snapshot: dict[str, Any]) -> Iterator[Metric]:
    """Webhook runs of the window: their durations, and outcomes per receiver host."""
    window = int(WINDOW.total_seconds())
    counts, total, duration_sum = snapshot["webhook_duration"]
    buckets = [(_bound(b), float(c)) for b, c in zip(LAG_BUCKETS, counts, strict=True)]
    yield GaugeHistogramMetricFamily(
        "scheduler_webhook_run_duration_seconds",
        f"First start to end (retries included) of webhook runs finished in the last {window} s",
        buckets=[*buckets, ("+Inf", float(total))],
        gsum_value=duration_sum,
    )
    failed = GaugeMetricFamily(
        "scheduler_webhook_runs_failed_recent",
        f"Webhook runs failed in the last {window} s, for the {TOP_TENANTS} receiver hosts "
        "with the most failures",
        labels=["host"],
    )
    finished = GaugeMetricFamily(
        "scheduler_webhook_runs_finished_recent",
        f"Webhook runs finished in the last {window} s, for the same hosts",
        labels=["host"],
    )
    for host, failures, count in snapshot["webhook_hosts"]:
        failed.add_metric([host], failures)
        finished.add_metric([host], count)
    yield failed
    yield finished


def _bound(value: float) -> str:
    return repr(value)
