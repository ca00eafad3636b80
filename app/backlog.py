"""Backlog health (docs/design.md section 17): do runs wait for a slot longer than allowed?

A run that could start and waits for a slot longer than `max_wait(tick)` means slots are
not coming free (workers dead or too few for MAX_RUNNING, runs as long as their timeout)
and the queue grows. A tenant held back by its own cap is left out: its runs wait because
it has MAX_RUNNING_PER_TENANT runs in progress, or MAX_WAITING_RUNS_PER_TENANT waiting,
which is that tenant's doing and not the service's (it used to turn the global /healthz 503
for everyone). Runs waiting for a retry's `not_before` do not count until they could start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from app.queries import run_history

RUNNING_CAP = "MAX_RUNNING_PER_TENANT"
HELD_SHOWN = 100  # held tenants listed, most waiting first (all are counted)
WAITING_CAP = "MAX_WAITING_RUNS_PER_TENANT"


@dataclass(frozen=True)
class HeldTenant:
    """A tenant left out of the report, and the cap of its own that holds it back."""

    tenant_id: str
    cap: str
    waiting: int
    in_progress: int
    pending: int


@dataclass(frozen=True)
class Report:
    ok: bool
    waiting: int  # runs of the tenants not held back that could start and wait for a slot
    oldest_wait_seconds: float
    slots_in_use: int  # every tenant's
    max_wait_seconds: float
    held_count: int = 0
    held_tenants: list[HeldTenant] = field(default_factory=list)


def max_wait(tick_seconds: int) -> timedelta:
    """How long a run that could start may wait for a slot before the backlog is reported
    as growing: ten tick periods, at least ten minutes."""
    return timedelta(seconds=max(600, 10 * tick_seconds))


def report(session: Any, *, max_per_tenant: int, max_waiting: int, limit: timedelta) -> Report:
    """The backlog without the tenants held back by their own cap; `ok` is False when one of
    the rest's runs has waited longer than `limit`."""
    held, waiting, oldest, in_use = [], 0, 0.0, 0
    for (
        tenant,
        tenant_waiting,
        tenant_oldest,
        in_progress,
        pending,
    ) in run_history.unfinished_by_tenant(session):
        in_use += in_progress
        cap = RUNNING_CAP if in_progress >= max_per_tenant else None
        cap = WAITING_CAP if cap is None and pending >= max_waiting else cap
        if cap is not None and tenant_waiting:
            held.append(HeldTenant(tenant, cap, tenant_waiting, in_progress, pending))
        elif cap is None:
            waiting += tenant_waiting
            oldest = max(oldest, float(tenant_oldest) if tenant_waiting else 0.0)
    late = bool(waiting) and oldest > limit.total_seconds()
    return Report(
        ok=not late,
        waiting=waiting,
        oldest_wait_seconds=round(oldest, 3),
        slots_in_use=in_use,
        max_wait_seconds=limit.total_seconds(),
        held_count=len(held),
        held_tenants=sorted(held, key=lambda t: (-t.waiting, t.tenant_id))[:HELD_SHOWN],
    )
