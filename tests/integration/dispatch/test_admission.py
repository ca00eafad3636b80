"""Admission on the real PostgreSQL (docs/design.md section 12): fair order, caps under concurrent
admitters, retries waiting for `not_before`, overlap policies that run one fire at a time.

The races are the ones of ../shared/notes/fair-admission-prior-art.md: two admitters with
separate connections released together by a barrier.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from app import admission
from tests import factories

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


class Room:
    """Triggers and runs inserted directly, admission called with given limits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def trigger(self, tenant: str = "a", *, overlap_policy: str = "allow") -> uuid.UUID:
        with self.engine.begin() as conn:
            return factories.make_trigger(
                conn, tenant_id=tenant, name="t", overlap_policy=overlap_policy
            )

    def runs(
        self,
        trigger_id: uuid.UUID,
        count: int = 1,
        *,
        start: datetime = T0,
        status: str = "pending",
        attempt: int = 0,
        not_before: str | None = None,
    ) -> list[uuid.UUID]:
        running = factories.sql("now()") if status == "running" else None
        with self.engine.begin() as conn:
            return factories.make_runs(
                conn,
                count,
                trigger_id=trigger_id,
                scheduled_for=factories.every(start, timedelta(seconds=1)),
                kind="scheduled",
                status=status,
                attempt=attempt,
                not_before=factories.sql("now() + CAST(:nb AS interval)", nb=not_before),
                started_at=running,
                heartbeat_at=running,
            )

    def admit(self, max_running: int, max_per_tenant: int) -> list[uuid.UUID]:
        limits = admission.Limits(max_running=max_running, max_per_tenant=max_per_tenant)
        admitted, _skipped = admission.admit(self.engine, limits)
        return admitted

    def status(self, run_id: uuid.UUID) -> str:
        with self.engine.connect() as conn:
            return conn.execute(
                text("SELECT status FROM runs WHERE id = :id"), {"id": run_id}
            ).scalar_one()

    def in_progress(self) -> Counter:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT tenant_id, count(*) FROM runs "
                    "WHERE status IN ('admitted', 'running') GROUP BY tenant_id"
                )
            )
            return Counter(dict(rows.all()))

    def finish(self, run_ids: list[uuid.UUID]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET status = 'succeeded' WHERE id = ANY(:ids)"), {"ids": run_ids}
            )


@pytest.fixture()
def room(engine: Engine) -> Room:
    return Room(engine)


def test_a_small_tenant_is_admitted_at_the_next_free_slot_despite_a_big_backlog(room) -> None:
    big = room.runs(room.trigger("big"), 500)
    admitted = room.admit(max_running=4, max_per_tenant=4)
    assert admitted and set(admitted) <= set(big[:4])
    # The small tenant's only fire comes a minute after the whole backlog.
    [small] = room.runs(room.trigger("small"), start=T0 + timedelta(minutes=1))

    room.finish(admitted[:1])  # one slot comes free

    assert room.admit(max_running=4, max_per_tenant=4) == [small]


def test_tenants_take_turns_and_each_tenant_goes_oldest_first(room) -> None:
    a = room.runs(room.trigger("a"), 3)
    b = room.runs(room.trigger("b"), 3, start=T0 + timedelta(minutes=1))
    c = room.runs(room.trigger("c"), 1, start=T0 + timedelta(minutes=2))

    first = room.admit(max_running=3, max_per_tenant=3)

    assert set(first) == {a[0], b[0], c[0]}
    room.finish(first)
    assert set(room.admit(max_running=2, max_per_tenant=3)) == {a[1], b[1]}


def test_the_global_and_tenant_caps_count_runs_already_in_progress(room) -> None:
    trigger = room.trigger("a")
    room.runs(trigger, 2, status="running", attempt=1)
    waiting = room.runs(trigger, 5, start=T0 + timedelta(minutes=1))
    other = room.runs(room.trigger("b"), 5, start=T0 + timedelta(minutes=1))

    admitted = room.admit(max_running=5, max_per_tenant=3)

    assert room.in_progress() == Counter({"a": 3, "b": 2})
    assert set(admitted) == {waiting[0], other[0], other[1]}


def test_one_free_slot_and_two_concurrent_admitters_give_exactly_one_admission(room) -> None:
    room.runs(room.trigger("busy"), status="running", attempt=1)
    room.runs(room.trigger("a"), 3)
    room.runs(room.trigger("b"), 3)
    for _ in range(5):
        results = _race(room, 2, max_running=2, max_per_tenant=5)
        assert sorted(len(r) for r in results) == [0, 1]
        room.finish([run_id for r in results for run_id in r])  # the slot is free again


def test_the_tenant_cap_holds_under_concurrent_admitters(room) -> None:
    room.runs(room.trigger("a"), 50)
    results = _race(room, 4, max_running=40, max_per_tenant=3)

    assert sum(len(r) for r in results) == 3
    assert room.in_progress() == Counter({"a": 3})


def test_many_concurrent_admitters_never_exceed_the_global_limit(room) -> None:
    for tenant in "abcdefgh":
        room.runs(room.trigger(tenant), 20)
    results = _race(room, 6, max_running=7, max_per_tenant=2)

    admitted = [run_id for r in results for run_id in r]
    assert len(admitted) == len(set(admitted)) == 7
    assert max(room.in_progress().values()) <= 2


def test_a_retry_waits_in_postgresql_until_its_not_before(room) -> None:
    [retry] = room.runs(room.trigger("a"), attempt=1, not_before="30 seconds")
    assert room.admit(max_running=5, max_per_tenant=5) == []

    with room.engine.begin() as conn:
        conn.execute(text("UPDATE runs SET not_before = now() - interval '1 s'"))

    assert room.admit(max_running=5, max_per_tenant=5) == [retry]


def test_retries_waiting_for_their_backoff_do_not_hold_back_a_fire_that_can_start(room) -> None:
    # Twenty tenants whose only waiting run is a retry an hour away, all fired before the
    # small tenant's one fire: none of them has a run that can start, so the small tenant
    # is the first in line (they used to take every candidate place for the hour).
    for n in range(20):
        room.runs(room.trigger(f"retrying-{n:02d}"), attempt=1, not_before="1 hour")
    [fresh] = room.runs(room.trigger("small"), start=T0 + timedelta(minutes=1))

    assert room.admit(max_running=4, max_per_tenant=4) == [fresh]


def test_a_retry_whose_backoff_has_passed_takes_its_turn_by_its_fire_time(room) -> None:
    [retry] = room.runs(room.trigger("a"), attempt=1, not_before="-1 second")
    room.runs(room.trigger("b"), start=T0 + timedelta(minutes=1))
    room.runs(room.trigger("c"), start=T0 + timedelta(minutes=2))

    admitted = room.admit(max_running=1, max_per_tenant=1)

    assert admitted == [retry]


def test_ties_on_the_fire_time_are_broken_by_id_and_nothing_is_admitted_twice(room) -> None:
    ids = [room.runs(room.trigger("a"), start=T0)[0] for _ in range(4)]
    first = room.admit(max_running=2, max_per_tenant=2)
    assert set(first) == set(sorted(ids)[:2])
    room.finish(first)
    assert set(room.admit(max_running=2, max_per_tenant=2)) == set(sorted(ids)[2:])
    assert room.admit(max_running=2, max_per_tenant=2) == []


def test_a_chosen_run_someone_else_holds_is_left_out_of_the_round_and_never_waited_for(
    room,
) -> None:
    # A round locks only the runs it chose (migration 0015). One held by another
    # transaction (a cancel) is skipped, not waited for while the round holds admission's
    # lock, and not replaced in that round; once let go, the next round admits it.
    trigger = room.trigger("a")
    oldest, newer = room.runs(trigger, 2)
    admitted: list[list[uuid.UUID]] = []
    with room.engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM runs WHERE id = :id FOR UPDATE"), {"id": oldest})
        round_ = threading.Thread(
            target=lambda: admitted.append(room.admit(max_running=1, max_per_tenant=1))
        )
        round_.start()
        round_.join(timeout=10)
        assert not round_.is_alive(), "the round waited for the row lock"
        holder.rollback()
    assert admitted == [[]]
    assert room.admit(max_running=1, max_per_tenant=1) == [oldest]
    assert room.status(newer) == "pending"


def test_buffer_one_keeps_one_fire_waiting_and_skips_the_later_ones(room) -> None:
    trigger = room.trigger("a", overlap_policy="buffer_one")
    [long_run] = room.runs(trigger, status="running", attempt=1)
    second, third, fourth = room.runs(trigger, 3, start=T0 + timedelta(minutes=1))

    assert room.admit(max_running=5, max_per_tenant=5) == []  # waits: one is in progress
    assert [room.status(r) for r in (second, third, fourth)] == ["pending", "skipped", "skipped"]

    room.finish([long_run])
    assert room.admit(max_running=5, max_per_tenant=5) == [second]


def test_buffer_one_counts_a_run_between_two_attempts_as_in_progress(room) -> None:
    trigger = room.trigger("a", overlap_policy="buffer_one")
    [retrying] = room.runs(trigger, attempt=1, not_before="1 hour")
    [fire] = room.runs(trigger, start=T0 + timedelta(minutes=1))

    assert room.admit(max_running=5, max_per_tenant=5) == []
    assert room.status(fire) == "pending"


def test_skip_skips_a_fire_while_another_run_is_in_progress(room) -> None:
    trigger = room.trigger("a", overlap_policy="skip")
    room.runs(trigger, status="running", attempt=1)
    [fire] = room.runs(trigger, start=T0 + timedelta(minutes=1))

    assert room.admit(max_running=5, max_per_tenant=5) == []
    assert room.status(fire) == "skipped"


def test_buffer_one_with_nothing_in_progress_runs_the_oldest_then_skips_the_pile(room) -> None:
    trigger = room.trigger("a", overlap_policy="buffer_one")
    oldest, second, third = room.runs(trigger, 3)

    assert room.admit(max_running=5, max_per_tenant=5) == [oldest]
    assert room.admit(max_running=5, max_per_tenant=5) == []  # the next hand-off
    assert [room.status(r) for r in (second, third)] == ["pending", "skipped"]


def test_a_finisher_that_finds_the_lock_taken_leaves_and_the_holder_admits_for_it(room) -> None:
    from app.queries import run_queue

    running = room.runs(room.trigger("a"), 2, status="running", attempt=1)
    waiting = room.runs(room.trigger("b"), 3, start=T0 + timedelta(minutes=1))
    limits = {"max_running": 3, "max_per_tenant": 3, "factor": admission.CANDIDATE_FACTOR}
    holder = room.engine.connect()  # its round stays open (the lock held) until it commits
    try:
        first = run_queue.admission_round(holder, **limits, seen=None)
        assert first is not None and first.admitted == waiting[:1]
        # Mid-round: a run finishes and its worker hands off. The holder's snapshot cannot
        # see the freed slot; the finisher finds the lock taken and leaves at once.
        room.finish(running[:1])
        finisher = threading.Thread(target=lambda: room.admit(3, 3))
        finisher.start()
        finisher.join(timeout=10)
        assert not finisher.is_alive(), "a finisher must not wait for the lock"
        assert room.in_progress() == Counter({"a": 1})  # the holder has not committed
        holder.commit()

        # The holder's next round sees that someone came by, and fills the slot.
        second = run_queue.admission_round(holder, **limits, seen=first.ticket)
        holder.commit()
        assert second is not None and second.admitted == waiting[1:2]
        # Nobody came by since: the holder stops.
        assert run_queue.admission_round(holder, **limits, seen=second.ticket) is None
        holder.commit()
    finally:
        holder.close()
    assert room.in_progress() == Counter({"a": 1, "b": 2})


@dataclass
class FinisherComesBy:
    """Two runs of tenant a in progress, three of b waiting; during the holder's first round
    one of a's runs finishes and its finisher takes a wake-up number (what the holder finds
    after its commit). Records each round's `seen` and each look at the sequence."""

    waiting: list
    calls: list[int | None] = field(default_factory=list)
    looks: list[int] = field(default_factory=list)


@pytest.fixture()
def finisher_comes_by(room, monkeypatch) -> FinisherComesBy:
    from app.queries import run_queue

    running = room.runs(room.trigger("a"), 2, status="running", attempt=1)
    scene = FinisherComesBy(room.runs(room.trigger("b"), 3, start=T0 + timedelta(minutes=1)))
    real_round, real_look = run_queue.admission_round, run_queue.last_wakeup

    def round_then_a_finisher_comes_by(conn, **kwargs):
        done = real_round(conn, **kwargs)
        scene.calls.append(kwargs["seen"])
        if len(scene.calls) == 1:
            room.finish(running[:1])
            with room.engine.connect() as other:
                other.execute(text("SELECT nextval('admission_wakeups')"))
        return done

    def look(conn, **kwargs):
        scene.looks.append(real_look(conn, **kwargs))
        return scene.looks[-1]

    monkeypatch.setattr(run_queue, "admission_round", round_then_a_finisher_comes_by)
    monkeypatch.setattr(run_queue, "last_wakeup", look)
    return scene


def test_the_holder_goes_round_again_while_wakeups_come_in(room, finisher_comes_by) -> None:
    scene = finisher_comes_by
    admitted = room.admit(max_running=3, max_per_tenant=3)

    assert admitted == scene.waiting[:2]
    # Two rounds, each followed by a look at the sequence: after the first round's number
    # (calls[1]) a finisher took the next one, so the holder went round again and took the
    # one after; the second look finds nobody came by since, and the holder stops.
    first_ticket = scene.calls[1]
    assert scene.calls == [None, first_ticket]
    assert scene.looks == [first_ticket + 1, first_ticket + 2]


def test_a_holder_that_keeps_a_run_reads_the_sequence_once_and_goes_round_for_others(
    room, finisher_comes_by
) -> None:
    # A worker whose run ended keeps one run (app/runs.py); its look after the round also
    # reads the wake-up sequence, so a finisher that came by is still served.
    scene = finisher_comes_by
    published: list = []
    limits = admission.Limits(max_running=3, max_per_tenant=3)
    done = admission.hand_off(room.engine, limits, published.extend, keep=True)

    assert done.kept == scene.waiting[0], "the first round's run, for the caller"
    assert published == [scene.waiting[1]], "the finisher's slot, filled by a second round"
    assert done.admitted == scene.waiting[:2]
    first_ticket = scene.calls[1]
    assert scene.calls == [None, first_ticket]
    # The look after the first round read the sequence; only the second round needed one.
    assert scene.looks == [first_ticket + 2]


def test_a_holder_that_could_go_round_forever_passes_the_duty_on(room, monkeypatch) -> None:
    """While runs keep finishing, a holder with somewhere to pass the duty stops after
    MAX_ROUNDS rounds (a tick must get back to dispatching) and leaves a hand-off request."""
    from app.queries import run_queue

    running = room.runs(room.trigger("a"), 10, status="running", attempt=1)
    waiting = room.runs(room.trigger("b"), 10, start=T0 + timedelta(minutes=1))
    real_round = run_queue.admission_round
    rounds: list[object] = []

    def round_while_another_run_finishes(conn, **kwargs):
        done = real_round(conn, **kwargs)
        rounds.append(done)
        room.finish(running[len(rounds) : len(rounds) + 1])
        with room.engine.connect() as finisher:
            finisher.execute(text("SELECT nextval('admission_wakeups')"))
        return done

    monkeypatch.setattr(run_queue, "admission_round", round_while_another_run_finishes)
    monkeypatch.setattr(admission, "MAX_ROUNDS", 3)
    room.finish(running[:1])
    passed: list[bool] = []
    published: list[uuid.UUID] = []

    result = admission.hand_off(
        room.engine,
        admission.Limits(max_running=10, max_per_tenant=10),
        published.extend,
        pass_on=lambda: passed.append(True),
    )

    assert len(rounds) == 3 and passed == [True]
    assert result.admitted == published == waiting[:3]


def test_finishers_racing_to_hand_off_never_leave_a_slot_empty(room) -> None:
    """Many workers finish and hand off at once; whoever finds the lock taken leaves. The
    caps hold throughout, and once they stop every slot is taken while runs still wait.
    (A race this loose rarely hits the window of a lost wake-up; the two holder tests
    above pin that window down.)"""
    for tenant in "abcd":
        room.runs(room.trigger(tenant), 60)
    limits = {"max_running": 6, "max_per_tenant": 3}
    room.admit(**limits)
    peak: list[int] = []

    def worker() -> None:
        for _ in range(25):
            with room.engine.begin() as conn:
                finished = conn.execute(
                    text(
                        "UPDATE runs SET status = 'succeeded' WHERE id = (SELECT id FROM "
                        "runs WHERE status = 'admitted' LIMIT 1 FOR UPDATE SKIP LOCKED) "
                        "RETURNING id"
                    )
                ).all()
            if finished:
                room.admit(**limits)
            peak.append(sum(room.in_progress().values()))

    _in_threads(8, worker)

    with room.engine.connect() as conn:
        waiting = conn.execute(text("SELECT count(*) FROM runs WHERE status = 'pending'"))
        assert waiting.scalar_one() > 0
    in_progress = room.in_progress()
    assert sum(in_progress.values()) == 6, in_progress
    assert max(in_progress.values()) <= 3
    assert max(peak) <= 6


def _race(room: Room, admitters: int, **limits: int) -> list[list[uuid.UUID]]:
    """`admitters` threads, each with its own connection, released together."""
    barrier = threading.Barrier(admitters)
    results: list[list[uuid.UUID]] = []

    def admit() -> None:
        barrier.wait()
        results.append(room.admit(**limits))

    _in_threads(admitters, admit)
    return results


def _in_threads(count: int, target: Callable[[], None]) -> None:
    """Run `target` in `count` threads at once; fail with the first error any of them met."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # surfaced below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
