"""The history checker: is the recorded history one the design allows?

Pure: it takes plain records (triggers as the workload made them, runs as PostgreSQL holds
them, the receiver's deliveries, the cap samples) and a window, and counts violations. It
never reads a clock or a database (history.py does), so tests feed it crafted histories.

Checks (issue 29):
1. lost: a nominal fire in the window (after the trigger was created, at or before the
   window's end) with no run.
2. doubled: a fire with more than one run (beyond the unique key's guard), or a run at an
   instant that is no nominal fire of its trigger (a spurious fire counts as doubled too).
3. wrong_status: a fire whose final status is not what the action's script says.
4. cap_violations: samples where in-progress runs exceeded MAX_RUNNING, or one tenant's
   exceeded MAX_RUNNING_PER_TENANT.
5. stuck: a run of the window not in a final status when the history was read (the caller
   reads it no sooner than the end of the faults plus one lease).
6. duplicate_deliveries: deliveries of an idempotency key accepted (2xx) after one already
   was: allowed (delivery is at-least-once), counted and reported, never a failure.
   conflicting_payloads: one key delivered with two different bodies: a failure.
7. lag of the small tenants' runs that were due while faults were active: p50 and p99.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

FINAL = frozenset({"succeeded", "failed", "cancelled", "skipped"})


@dataclass(frozen=True)
class TriggerSpec:
    """A trigger as the workload made it, and the final status its script leads to."""

    id: str
    tenant: str
    created_at: datetime
    expected_status: str
    cron_every_minute: bool = False
    interval_seconds: int | None = None
    anchor_at: datetime | None = None
    run_at: datetime | None = None


@dataclass(frozen=True)
class RunRecord:
    id: str
    trigger_id: str
    tenant: str
    scheduled_for: datetime
    status: str
    kind: str = "scheduled"
    attempt: int = 1
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """One request the receiver answered."""

    key: str
    body_sha256: str
    status: int
    at: datetime


@dataclass(frozen=True)
class CapSample:
    at: datetime
    in_progress: int
    per_tenant: dict[str, int]


@dataclass(frozen=True)
class Window:
    """Fires at or before `end` are checked; lag covers runs due in [faults_start, faults_end]."""

    end: datetime
    faults_start: datetime
    faults_end: datetime


@dataclass
class Verdict:
    lost: int = 0
    doubled: int = 0
    cap_violations: int = 0
    stuck: int = 0
    duplicate_deliveries: int = 0
    wrong_status: int = 0
    conflicting_payloads: int = 0
    fires_checked: int = 0
    lag_p50: float | None = None
    lag_p99: float | None = None
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing the design forbids happened (duplicate deliveries are allowed)."""
        return not (
            self.lost
            or self.doubled
            or self.cap_violations
            or self.stuck
            or self.wrong_status
            or self.conflicting_payloads
        )

    def final_line(self, seed: int) -> str:
        return (
            f"chaos: lost={self.lost} doubled={self.doubled} "
            f"cap_violations={self.cap_violations} stuck={self.stuck} "
            f"duplicate_deliveries={self.duplicate_deliveries} seed={seed}"
        )


def nominal_fires(trigger: TriggerSpec, end: datetime) -> Iterator[datetime]:
    """The trigger's fires strictly after its creation and at or before `end`, oldest first."""
    start = trigger.created_at
    if trigger.run_at is not None:
        if start < trigger.run_at <= end:
            yield trigger.run_at
        return
    if trigger.cron_every_minute:
        fire = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        step = timedelta(minutes=1)
    elif trigger.interval_seconds:
        anchor = trigger.anchor_at or datetime.fromtimestamp(0, start.tzinfo)
        step = timedelta(seconds=trigger.interval_seconds)
        k = math.floor((start - anchor) / step) + 1
        fire = anchor + k * step
    else:
        raise ValueError(f"trigger {trigger.id} has no schedule the checker knows")
    while fire <= end:
        yield fire
        fire += step


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank percentile `q` (0-100) of `values`, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check(
    triggers: Iterable[TriggerSpec],
    runs: Iterable[RunRecord],
    deliveries: Iterable[Delivery],
    samples: Iterable[CapSample],
    *,
    window: Window,
    max_running: int,
    max_per_tenant: int,
    small_tenants: frozenset[str] = frozenset(),
) -> Verdict:
    """Count every violation of the history (the numbered checks of the module docstring)."""
    verdict = Verdict()
    specs = {t.id: t for t in triggers}
    by_fire: dict[tuple[str, datetime], list[RunRecord]] = defaultdict(list)
    lags: list[float] = []
    for run in runs:
        if run.kind != "scheduled" or run.trigger_id not in specs:
            continue
        by_fire[(run.trigger_id, run.scheduled_for)].append(run)
        due_in_faults = window.faults_start <= run.scheduled_for <= window.faults_end
        if run.tenant in small_tenants and due_in_faults and run.started_at is not None:
            lags.append((run.started_at - run.scheduled_for).total_seconds())

    expected_fires: set[tuple[str, datetime]] = set()
    for spec in specs.values():
        for fire in nominal_fires(spec, window.end):
            expected_fires.add((spec.id, fire))
            verdict.fires_checked += 1
            found = by_fire.get((spec.id, fire), [])
            if not found:
                verdict.lost += 1
                verdict.details.append(f"lost: trigger {spec.id} fire {fire.isoformat()}")
                continue
            if len(found) > 1:
                verdict.doubled += len(found) - 1
                verdict.details.append(
                    f"doubled: trigger {spec.id} fire {fire.isoformat()} has {len(found)} runs"
                )
            for run in found:
                if run.status not in FINAL:
                    verdict.stuck += 1
                    verdict.details.append(f"stuck: run {run.id} {run.status}")
                elif run.status != spec.expected_status:
                    verdict.wrong_status += 1
                    verdict.details.append(
                        f"wrong_status: run {run.id} {run.status}, "
                        f"script says {spec.expected_status}"
                    )

    for (trigger_id, fire), found in by_fire.items():
        if fire <= window.end and (trigger_id, fire) not in expected_fires:
            verdict.doubled += len(found)
            verdict.details.append(
                f"spurious: trigger {trigger_id} ran at {fire.isoformat()}, no nominal fire"
            )

    _check_deliveries(verdict, deliveries)
    _check_caps(verdict, samples, max_running=max_running, max_per_tenant=max_per_tenant)
    verdict.lag_p50 = percentile(lags, 50)
    verdict.lag_p99 = percentile(lags, 99)
    return verdict


def _check_deliveries(verdict: Verdict, deliveries: Iterable[Delivery]) -> None:
    accepted: Counter[str] = Counter()
    bodies: dict[str, set[str]] = defaultdict(set)
    for delivery in deliveries:
        bodies[delivery.key].add(delivery.body_sha256)
        if 200 <= delivery.status < 300:
            accepted[delivery.key] += 1
    for key, count in accepted.items():
        if count > 1:
            verdict.duplicate_deliveries += count - 1
            verdict.details.append(f"duplicate delivery: {key} accepted {count} times")
    for key, shas in bodies.items():
        if len(shas) > 1:
            verdict.conflicting_payloads += 1
            verdict.details.append(f"conflicting payloads: {key} delivered with {len(shas)}")


def _check_caps(
    verdict: Verdict, samples: Iterable[CapSample], *, max_running: int, max_per_tenant: int
) -> None:
    for sample in samples:
        over = [t for t, n in sample.per_tenant.items() if n > max_per_tenant]
        if sample.in_progress > max_running or over:
            verdict.cap_violations += 1
            verdict.details.append(
                f"cap: {sample.at.isoformat()} in progress {sample.in_progress} "
                f"(max {max_running}), tenants over {max_per_tenant}: {over}"
            )
