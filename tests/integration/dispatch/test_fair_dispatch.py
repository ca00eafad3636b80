"""Dispatch is fair across tenants within a tick (docs/design.md section 17).

Among fires due by the tick's instant, every tenant's earliest is claimed before any
tenant's next: a tenant's one fire due with another tenant's burst is in the tick's first
batch, so it starts with the first runs instead of after the whole burst.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tasks import publish

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def tenant_of(engine, run_ids: list[uuid.UUID]) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, tenant_id FROM runs WHERE id = ANY(:ids)"), {"ids": list(run_ids)}
        ).all()
    by_id = dict(rows)
    return [by_id[run_id] for run_id in run_ids]


class Recorder:
    """A publisher that records each hand-off's runs (one per batch here) and publishes."""

    def __init__(self) -> None:
        self.calls: list[list[uuid.UUID]] = []

    def __call__(self, run_ids) -> int:
        ids = list(run_ids)
        self.calls.append(ids)
        return publish.enqueue_runs(ids)


def test_small_tenants_due_with_a_burst_go_in_the_first_batch(make_triggers, tick, engine):
    make_triggers(1000, next_run_at=NOON, tenant_id="burst")
    for n in range(10):  # inserted after the burst: last in due order and on disk
        make_triggers(1, next_run_at=NOON, tenant_id=f"small-{n}")
    recorder = Recorder()

    stats = tick(NOON + timedelta(seconds=1), batch_size=100, concurrency=1, publisher=recorder)

    assert stats.dispatched == 1010
    first = Counter(tenant_of(engine, recorder.calls[0]))
    assert first == {"burst": 90, **{f"small-{n}": 1 for n in range(10)}}


def test_with_more_tenants_than_a_batch_every_tenants_first_goes_before_any_second(
    make_triggers, tick, engine
):
    for n in range(250):  # the later a tenant was inserted, the more overdue its triggers
        make_triggers(2, next_run_at=NOON - timedelta(seconds=n), tenant_id=f"t{n:03d}")
    recorder = Recorder()

    stats = tick(NOON + timedelta(seconds=1), batch_size=100, concurrency=1, publisher=recorder)

    assert stats.dispatched == 500
    order = [t for call in recorder.calls for t in tenant_of(engine, call)]
    assert [len(call) for call in recorder.calls] == [100] * 5
    assert len(set(order[:250])) == 250  # one of every tenant first
    assert set(order[:100]) == {f"t{n:03d}" for n in range(150, 250)}  # most overdue first


def test_a_share_held_by_another_dispatcher_is_left_to_it_and_dispatched_once(
    make_triggers, tick, engine
):
    held = make_triggers(5, next_run_at=NOON, tenant_id="a")
    make_triggers(5, next_run_at=NOON, tenant_id="a")
    make_triggers(3, next_run_at=NOON, tenant_id="b")
    locked, release = threading.Event(), threading.Event()

    def another_dispatcher() -> None:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT 1 FROM triggers WHERE id = ANY(CAST(:ids AS uuid[])) FOR UPDATE"),
                {"ids": [str(i) for i in held]},
            )
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=another_dispatcher)
    holder.start()
    assert locked.wait(30)
    try:
        first = tick(NOON + timedelta(seconds=1), batch_size=100)
    finally:
        release.set()
        holder.join()
    second = tick(NOON + timedelta(seconds=2), batch_size=100)

    assert (first.dispatched, second.dispatched) == (8, 5)
    with engine.connect() as conn:
        per_trigger = conn.execute(
            text("SELECT count(*), count(DISTINCT trigger_id) FROM runs")
        ).one()
    assert tuple(per_trigger) == (13, 13)
