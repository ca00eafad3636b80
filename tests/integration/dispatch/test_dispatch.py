"""The dispatcher on the real PostgreSQL and Redis, with an injected clock (docs/design.md
sections 5 and 12). Times that decide ownership (heartbeats, leases) are PostgreSQL's: tests
that need them old move them back in the database."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app import batches, db, dispatch, state
from tasks import publish
from tasks.celery_app import use_broker
from tests import factories
from tests.integration.dispatch.conftest import UNLIMITED, runs, trigger

NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_a_due_trigger_gets_one_run_admitted_and_enqueued_with_the_run_id(
    make_triggers, tick, queued, engine
) -> None:
    [trigger_id] = make_triggers(next_run_at=NOON, cron="*/5 * * * *")

    stats = tick(NOON + timedelta(seconds=2))

    [run] = runs(engine)
    assert run["status"] == "admitted"
    assert run["kind"] == "scheduled"
    assert run["scheduled_for"] == NOON
    assert run["idempotency_key"] == f"{trigger_id}:2026-01-05T12:00:00Z"
    # One fact, one column: admission stamps `enqueued_at` alone (migration 0018).
    assert run["enqueued_at"] is not None and run["admitted_at"] is None
    assert queued() == [str(run["id"])]
    assert trigger(engine, trigger_id)["next_run_at"] == NOON + timedelta(minutes=5)
    assert trigger(engine, trigger_id)["last_scheduled_for"] == NOON
    assert (stats.due, stats.dispatched, stats.admitted, stats.enqueued) == (1, 1, 1, 1)


def test_runs_without_a_free_slot_wait_in_postgresql_not_in_the_broker(
    make_triggers, tick, queued, engine
) -> None:
    make_triggers(30, next_run_at=NOON, cron="*/5 * * * *", tenant_id="big")
    make_triggers(1, next_run_at=NOON, cron="*/5 * * * *", tenant_id="small")
    limits = dispatch.admission.Limits(max_running=4, max_per_tenant=3)

    stats = tick(NOON + timedelta(seconds=2), limits=limits, batch_size=10)

    assert (stats.dispatched, stats.admitted) == (31, 4)
    assert len(queued()) == 4, "the broker holds only what can start now"
    assert len(runs(engine, "status = 'pending'")) == 27
    small = runs(engine, "tenant_id = 'small'")
    assert small[0]["status"] == "admitted", "a small tenant is not behind a backlog"

    again = tick(NOON + timedelta(seconds=3), limits=limits)
    assert (again.admitted, len(queued())) == (0, 4), "nothing re-published for want of a slot"


@pytest.mark.parametrize(
    "tenant_id",
    ['a"b\\c', "x\\", 'a\\"b', "x,y}{z", "NULL", "  spaced  ", "o'brien", "\u00e9t\u00e9 \u2603"],
)
def test_a_batch_carries_any_tenant_string_into_its_runs_unchanged(
    make_triggers, tick, engine, tenant_id
) -> None:
    """A batch's columns go to PostgreSQL as array literals (app.queries.array_literal):
    quotes, backslashes, commas, braces and the word NULL are data, not syntax."""
    make_triggers(2, next_run_at=NOON, cron="*/5 * * * *", tenant_id=tenant_id)
    make_triggers(1, next_run_at=NOON, cron="*/5 * * * *", tenant_id="plain")

    assert tick(NOON + timedelta(seconds=2)).dispatched == 3

    assert sorted(run["tenant_id"] for run in runs(engine)) == sorted([tenant_id] * 2 + ["plain"])


def test_a_trigger_not_yet_due_is_left_alone(make_triggers, tick, queued, engine) -> None:
    make_triggers(next_run_at=NOON + timedelta(minutes=1))
    assert tick(NOON).due == 0
    assert runs(engine) == []
    assert queued() == []


def test_four_dispatchers_at_once_create_and_enqueue_each_run_exactly_once(
    make_triggers, celery_app, queued, engine
) -> None:
    make_triggers(5000, next_run_at=NOON - timedelta(seconds=30), cron="* * * * *")
    now = NOON + timedelta(seconds=1)
    results: list[dispatch.TickStats] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def dispatcher() -> None:
        try:
            start.wait()
            results.append(
                dispatch.run_tick(
                    engine,
                    now=now,
                    release_id="test-release",
                    publish=publish.enqueue_runs,
                    options=dispatch.TickOptions(batch_size=250, limits=UNLIMITED),
                )
            )
        except BaseException as exc:  # surfaced below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar() == 5000
        assert conn.execute(text("SELECT count(DISTINCT trigger_id) FROM runs")).scalar() == 5000
        assert (
            conn.execute(
                text("SELECT count(*) FROM triggers WHERE next_run_at <= :now"), {"now": now}
            ).scalar()
            == 0
        )
        assert (
            conn.execute(text("SELECT count(*) FROM runs WHERE enqueued_at IS NULL")).scalar() == 0
        )
        assert (
            conn.execute(text("SELECT count(*) FROM runs WHERE status <> 'admitted'")).scalar() == 0
        )
    ids = queued()
    assert len(ids) == 5000
    assert len(set(ids)) == 5000
    assert sum(r.dispatched for r in results) == 5000
    assert all(r.duplicates == 0 for r in results)


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


@pytest.fixture()
def batch_threads(monkeypatch) -> list[str]:
    """The name of the thread that claimed each batch (the real claim, observed)."""
    from app.queries import triggers as triggers_q

    names: list[str] = []

    def observing(claim):
        def observed(conn, **kwargs):
            rows = claim(conn, **kwargs)
            if rows:
                names.append(threading.current_thread().name)
            return rows

        return observed

    for name in ("claim_due", "claim_shares"):  # by due time, and a tick's fair shares
        monkeypatch.setattr(triggers_q, name, observing(getattr(triggers_q, name)))
    return names


def _runs_and_due(engine, now: datetime) -> tuple[int, int, int]:
    """(runs, triggers with a run, triggers still due at `now`)."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT count(*), count(DISTINCT trigger_id), "
                    "(SELECT count(*) FROM triggers WHERE next_run_at <= :now) FROM runs"
                ),
                {"now": now},
            ).one()
        )


def test_a_backlog_is_dispatched_by_several_batch_loops_each_trigger_once(
    make_triggers, tick, engine, batch_threads
) -> None:
    make_triggers(3000, next_run_at=NOON, cron="* * * * *")

    stats = tick(NOON + timedelta(seconds=1), batch_size=100, concurrency=3)

    assert (stats.due, stats.dispatched, stats.enqueued) == (3000, 3000, 3000)
    assert stats.batches == len(batch_threads) == 30
    assert batch_threads[0] == "MainThread", "the first batch runs alone"
    assert len(set(batch_threads)) >= 2, batch_threads
    assert _runs_and_due(engine, NOON + timedelta(seconds=1)) == (3000, 3000, 0)


def test_a_tick_with_less_than_a_batch_due_starts_no_other_loop(
    make_triggers, tick, engine, batch_threads
) -> None:
    make_triggers(99, next_run_at=NOON, cron="* * * * *")

    assert tick(NOON + timedelta(seconds=1), batch_size=100, concurrency=3).dispatched == 99
    assert batch_threads == ["MainThread"]


@pytest.mark.parametrize("failing", ["MainThread", "another loop"])
def test_a_failing_batch_loop_stops_the_others_fails_the_tick_and_loses_no_fire(
    make_triggers, tick, engine, monkeypatch, failing
) -> None:
    """One loop's batch fails (rolled back, its triggers still due): the other loops stop
    after the batch in hand, then the tick raises the error. Every trigger has one run or
    is still due, for the next tick."""
    from app.schedule import planner

    make_triggers(2000, next_run_at=NOON, cron="* * * * *")
    plan = planner.plan_batch
    calls: list[str] = []
    failed = threading.Event()

    def plan_or_fail_once(rows, **kwargs):
        name = threading.current_thread().name
        calls.append(name)
        is_main = name == "MainThread"
        # The main loop fails at its second batch, once the other loops have started.
        if not failed.is_set() and (
            (failing == "MainThread" and is_main and calls.count(name) == 2)
            or (failing != "MainThread" and not is_main)
        ):
            failed.set()
            raise RuntimeError("planning failed")
        return plan(rows, **kwargs)

    monkeypatch.setattr(planner, "plan_batch", plan_or_fail_once)

    with pytest.raises(RuntimeError, match="planning failed"):
        tick(NOON + timedelta(seconds=1), batch_size=100, concurrency=2)

    assert failed.is_set()
    made, distinct, due = _runs_and_due(engine, NOON + timedelta(seconds=1))
    assert made == distinct, "no trigger fired twice"
    assert made + due == 2000, "no fire lost"
    assert due >= 100, "the failed batch's triggers are left for the next tick"
    assert len(calls) < 10, "the loops stopped after the failure, not at the end"


def test_a_restart_during_a_backlog_stops_every_batch_loop(
    make_triggers, tick, engine, batch_threads
) -> None:
    make_triggers(1000, next_run_at=NOON, cron="* * * * *")

    def publish_then_restart(run_ids) -> int:  # the deploy lands during the first hand-off
        with engine.begin() as conn:
            state.restart(conn, release_id="release-b", now=NOON)
        return publish.enqueue_runs(run_ids)

    stats = tick(
        NOON + timedelta(seconds=1), batch_size=100, concurrency=3, publisher=publish_then_restart
    )

    assert stats.accepted is False
    assert len(runs(engine)) == 100, "only the batch committed before the restart"
    assert batch_threads == ["MainThread"], "no loop claimed a batch after the restart"


def test_a_crash_between_admission_and_publish_is_recovered_once_after_the_lease(
    make_triggers, tick, queued, engine
) -> None:
    make_triggers(20, next_run_at=NOON, cron="0 * * * *")

    def dies(run_ids):
        raise Crash

    with pytest.raises(Crash):
        tick(NOON + timedelta(seconds=1), publisher=dies)

    admitted = runs(engine)
    assert len(admitted) == 20
    assert {r["status"] for r in admitted} == {"admitted"}
    assert queued() == []

    stats = tick(NOON + timedelta(minutes=1))
    assert (stats.recovered, queued()) == (0, []), "their slot lease still holds"

    _age(engine, "enqueued_at", seconds=61)  # past SLOT_LEASE_SECONDS on PostgreSQL's clock
    stats = tick(NOON + timedelta(minutes=2))
    assert stats.recovered == 20
    assert sorted(queued()) == sorted(str(r["id"]) for r in admitted)

    tick(NOON + timedelta(minutes=3))
    assert len(queued()) == 20, "a run already handed over is not enqueued again"


def test_redis_unreachable_commits_the_runs_and_the_sweep_enqueues_them_later(
    make_triggers, tick, queued, engine, celery_app, settings
) -> None:
    make_triggers(30, next_run_at=NOON, cron="0 * * * *")
    use_broker(celery_app, "redis://127.0.0.1:1/0")  # nothing listens there
    try:
        stats = tick(NOON + timedelta(seconds=1))
    finally:
        use_broker(celery_app, settings.redis_url)

    assert stats.broker_error
    assert stats.dispatched == 30
    assert stats.enqueued == 0
    # Not published: back in the queue at once, holding no slot.
    assert len(runs(engine, "status = 'pending' AND enqueued_at IS NULL")) == 30

    stats = tick(NOON + timedelta(minutes=1))
    assert stats.broker_error is None
    assert stats.admitted == 30
    assert len(set(queued())) == 30
    assert runs(engine, "enqueued_at IS NULL") == []


@pytest.mark.parametrize(
    ("policy", "window", "expect_run", "expect_skipped"),
    [
        ("latest", 3600, ["2026-01-05T14:45:00Z"], []),
        (
            "all",
            4 * 3600,
            [f"2026-01-05T{h:02d}:{m:02d}:00Z" for h in (12, 13, 14) for m in (0, 15, 30, 45)],
            [],
        ),
        (
            "none",
            3600,
            [],
            [f"2026-01-05T{h:02d}:{m:02d}:00Z" for h in (12, 13, 14) for m in (0, 15, 30, 45)],
        ),
    ],
)
def test_three_hours_of_downtime_under_each_catchup_policy(
    make_triggers, tick, engine, policy, window, expect_run, expect_skipped
) -> None:
    [trigger_id] = make_triggers(
        next_run_at=NOON, cron="*/15 * * * *", catchup_policy=policy, catchup_window_seconds=window
    )
    back = NOON + timedelta(hours=3, seconds=5)  # 15:00:05: the 15:00 fire is on time

    tick(back - timedelta(minutes=1))  # 14:59:05, still down for the 15:00 fire

    by_status: dict[str, list[str]] = {}
    for run in runs(engine):
        by_status.setdefault(run["status"], []).append(iso(run["scheduled_for"]))
    assert by_status.get("admitted", []) == expect_run  # no limits in the way: all admitted
    assert by_status.get("skipped", []) == expect_skipped
    assert trigger(engine, trigger_id)["next_run_at"] == NOON + timedelta(hours=3)


def test_a_one_time_trigger_is_dispatched_once_and_disabled(
    make_triggers, tick, engine, queued
) -> None:
    at = NOON + timedelta(seconds=30)
    [trigger_id] = make_triggers(next_run_at=at, cron=None, run_at=at)

    tick(NOON)
    assert runs(engine) == []
    tick(NOON + timedelta(minutes=1))
    tick(NOON + timedelta(minutes=2))

    [run] = runs(engine)
    assert run["scheduled_for"] == at
    assert queued() == [str(run["id"])]
    row = trigger(engine, trigger_id)
    assert row["enabled"] is False
    assert row["next_run_at"] is None


def test_a_trigger_disabled_while_a_tick_runs_is_not_dispatched_after_the_change_commits(
    make_triggers, tick, engine
) -> None:
    [kept, disabled, deleted] = make_triggers(3, next_run_at=NOON, cron="* * * * *")
    # The API's PATCH and DELETE hold the row while their transactions are open.
    with engine.connect() as api:
        api.execute(text("UPDATE triggers SET enabled = false WHERE id = :id"), {"id": disabled})
        api.execute(text("DELETE FROM triggers WHERE id = :id"), {"id": deleted})
        stats = tick(NOON + timedelta(seconds=1))
        assert stats.due == 1  # the locked rows were skipped, not waited for
        api.commit()
    tick(NOON + timedelta(minutes=1, seconds=1))

    assert {r["trigger_id"] for r in runs(engine)} == {kept}


def test_a_tick_from_a_superseded_release_creates_no_run(
    make_triggers, tick, engine, caplog
) -> None:
    make_triggers(5, next_run_at=NOON, cron="* * * * *")
    with engine.begin() as conn:
        assert state.restart(conn, release_id="release-b", now=NOON) == (0, 1)

    with caplog.at_level(logging.WARNING, logger="app.dispatch"):
        old = tick(NOON + timedelta(seconds=1), release="release-a")
        tick(NOON + timedelta(seconds=2), release="release-a")

    assert old.accepted is False
    assert runs(engine) == []
    superseded = [r for r in caplog.records if getattr(r, "event", "") == "tick_superseded"]
    assert len(superseded) == 1, "logged once, not every tick"
    assert superseded[0].release == "release-a"
    assert superseded[0].deployment_id == "release-b"
    with engine.connect() as conn:
        assert state.get_state(conn).last_tick_stats["superseded_total"] == 2

    new = tick(NOON + timedelta(seconds=3), release="release-b")
    assert new.accepted is True
    assert {r["generation"] for r in runs(engine)} == {1}


def test_the_tick_records_its_stats_in_scheduler_state(make_triggers, tick, engine) -> None:
    make_triggers(3, next_run_at=NOON, cron="* * * * *")
    tick(NOON + timedelta(seconds=1))
    with engine.connect() as conn:
        current = state.get_state(conn)
    assert current.last_tick_at == NOON + timedelta(seconds=1)
    assert current.last_tick_stats["due"] == 3
    assert current.last_tick_stats["dispatched"] == 3
    assert current.last_tick_stats["superseded_total"] == 0


def test_batches_and_the_time_budget_bound_one_tick(make_triggers, tick, engine) -> None:
    make_triggers(25, next_run_at=NOON, cron="* * * * *")

    first = tick(NOON + timedelta(seconds=1), batch_size=10, time_budget_seconds=0)
    assert (first.batches, first.due, first.budget_exhausted) == (1, 10, True)

    # One loop: with several, how the last 15 split into batches depends on timing.
    rest = tick(NOON + timedelta(seconds=2), batch_size=10, concurrency=1)
    assert (rest.batches, rest.due) == (2, 15)
    assert len(runs(engine)) == 25


def test_a_stale_running_run_is_retried_or_failed_by_its_attempts(
    make_triggers, tick, engine, queued
) -> None:
    [trigger_id] = make_triggers(next_run_at=NOON + timedelta(days=1), cron="0 0 * * *")
    thirty_seconds_ago = factories.sql("now() - interval '30 s'")
    with engine.begin() as conn:
        factories.make_runs(
            conn, trigger_id=trigger_id, tenant_id="tenant-a", scheduled_for=NOON,
            idempotency_key=factories.each(["retry", "exhausted"]), status="running",
            attempt=factories.each([1, 3]), started_at=thirty_seconds_ago,
            heartbeat_at=thirty_seconds_ago, enqueued_at=NOON,
        )  # fmt: skip

    # The tick's own clock is two hours fast: heartbeats are judged on PostgreSQL's.
    tick(NOON + timedelta(hours=2))  # heartbeat 30 s old: still alive
    assert {r["status"] for r in runs(engine)} == {"running"}

    _age(engine, "heartbeat_at", seconds=90)
    stats = tick(NOON + timedelta(minutes=2))
    by_key = {r["idempotency_key"]: r for r in runs(engine)}
    assert by_key["retry"]["status"] == "admitted"  # back in the queue, then handed off
    assert queued() == [str(by_key["retry"]["id"])]
    assert by_key["exhausted"]["status"] == "failed"
    assert "heartbeat" in by_key["exhausted"]["error"]
    assert (stats.recovered, stats.failed_stale) == (1, 1)


NEW_YORK_FALL_BACK = {
    # 2026-11-01: 02:00 EDT (06:00Z) becomes 01:00 EST; 01:00-02:00 local happens twice.
    "0 * * * *": ["04:00", "05:00", "06:00", "07:00", "08:00"],
    "30 1 * * *": ["05:30"],
}


@pytest.mark.parametrize("cron", sorted(NEW_YORK_FALL_BACK))
def test_fall_back_in_new_york_dispatched_minute_by_minute(
    make_triggers, tick, engine, cron
) -> None:
    start = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    from app import schedule

    first = schedule.first_fire(schedule.TriggerSpec(cron=cron, timezone="America/New_York"), start)
    make_triggers(next_run_at=first, cron=cron, timezone="America/New_York")

    now = start
    while now <= datetime(2026, 11, 1, 8, 30, tzinfo=UTC):
        tick(now + timedelta(seconds=1))
        now += timedelta(minutes=1)

    fired = [iso(r["scheduled_for"])[11:16] for r in runs(engine)]
    assert fired == NEW_YORK_FALL_BACK[cron]
    assert {r["status"] for r in runs(engine)} == {"admitted"}


def test_an_unplannable_trigger_is_parked_and_does_not_stop_the_others(
    make_triggers, tick, engine, caplog
) -> None:
    [broken] = make_triggers(next_run_at=NOON - timedelta(seconds=1), cron="* * * * *",
                             timezone="Mars/Olympus_Mons")  # fmt: skip
    healthy = make_triggers(5, next_run_at=NOON, cron="* * * * *")

    with caplog.at_level(logging.ERROR, logger="app.dispatch"):
        stats = tick(NOON + timedelta(seconds=1))

    assert {r["trigger_id"] for r in runs(engine)} == set(healthy)
    assert stats.parked == 1
    assert trigger(engine, broken)["next_run_at"] is None
    assert [
        r.trigger_id for r in caplog.records if getattr(r, "event", "") == "trigger_parked"
    ] == [str(broken)]


def test_a_published_run_not_started_is_published_again_only_after_its_lease(
    make_triggers, tick, engine, queued, redis_client
) -> None:
    make_triggers(next_run_at=NOON, cron="0 * * * *")
    tick(NOON + timedelta(seconds=1))
    [run] = runs(engine)
    assert queued() == [str(run["id"])]

    stats = tick(NOON + timedelta(minutes=10))  # the tick's clock alone does not expire it
    assert stats.recovered == 0
    assert queued() == [str(run["id"])]

    redis_client.delete("runs")  # the message was lost (or consumed and dropped)
    _age(engine, "enqueued_at", seconds=61)
    stats = tick(NOON + timedelta(minutes=11))
    assert (stats.recovered, stats.admitted) == (1, 1)
    assert queued() == [str(run["id"])]


def _age(engine, column: str, *, seconds: int) -> None:
    """Move a time that PostgreSQL stamped into the past, as waiting that long would."""
    with engine.begin() as conn:
        conn.execute(
            text(f"UPDATE runs SET {column} = {column} - make_interval(secs => :s)"),
            {"s": seconds},
        )


def test_a_restart_after_the_last_batch_keeps_the_old_ticks_stats_out(engine) -> None:
    with engine.begin() as conn:
        assert state.record_tick(conn, release_id="a", now=NOON, stats={"due": 1})
        state.restart(conn, release_id="b", now=NOON)
        assert not state.record_tick(conn, release_id="a", now=NOON, stats={"due": 2})
        assert state.get_state(conn).last_tick_stats["due"] == 1


FINISHED = 20_000


@pytest.fixture()
def runs_statistics(engine, make_triggers):
    """Statistics of `runs` that say none is pending (FINISHED finished runs, analyzed),
    autovacuum kept off the table; yields the planner's estimate of pending runs, as a
    function. A backend reports its changes to the statistics system up to seconds later:
    the finished runs keep the growth rule's threshold (the table's size) well above what
    earlier tests' connections may still report after the ANALYZE."""
    from app.queries import run_statistics

    [finished] = make_triggers(next_run_at=None, enabled=False)
    with db.statements(engine) as conn:
        factories.make_runs(
            conn, FINISHED, trigger_id=finished, tenant_id="tenant-a",
            scheduled_for=NOON - timedelta(days=1), status="succeeded",
            finished_at=NOON - timedelta(days=1),
        )  # fmt: skip
        conn.execute(text("SELECT pg_stat_force_next_flush()"))  # counted before the ANALYZE
        conn.execute(text("ALTER TABLE runs SET (autovacuum_enabled = false)"))
        conn.execute(text("ANALYZE runs"))

    def estimate() -> int:
        with engine.connect() as conn:
            return run_statistics.pending_estimate(conn)

    try:
        assert estimate() <= 1
        yield estimate
    finally:
        with db.statements(engine) as conn:
            conn.execute(text("ALTER TABLE runs RESET (autovacuum_enabled)"))


SLOTS = dispatch.admission.Limits(max_running=4, max_per_tenant=4)


def _runs_added_by_hand(engine, make_triggers, count: int) -> None:
    """`count` pending runs (an import, a backfill: not this tick's), their changes
    counted by the statistics system at once."""
    [trigger_id] = make_triggers(next_run_at=None, enabled=False)
    with db.statements(engine) as conn:
        factories.make_runs(
            conn, count, trigger_id=trigger_id, tenant_id="tenant-a",
            scheduled_for=factories.sql("clock_timestamp()"),
        )  # fmt: skip
        conn.execute(text("SELECT pg_stat_force_next_flush()"))


@pytest.mark.parametrize("added, analyzed", [(FINISHED, True), (100, False)])
def test_a_tick_refreshes_statistics_that_missed_the_tables_growth(
    engine, make_triggers, tick, runs_statistics, added, analyzed
) -> None:
    _runs_added_by_hand(engine, make_triggers, added)

    stats = tick(NOON, limits=SLOTS)

    assert stats.due == 0
    assert stats.analyzed is analyzed
    assert (runs_statistics() >= added // 2) is analyzed


def test_a_burst_whose_runs_all_found_a_slot_leaves_the_statistics_alone(
    make_triggers, tick, runs_statistics
) -> None:
    make_triggers(batches.STATISTICS_CHECK_RUNS + 100, next_run_at=NOON, cron="*/5 * * * *")

    stats = tick(NOON + timedelta(seconds=1))  # every run admitted at once: none waits

    assert stats.dispatched == stats.admitted == batches.STATISTICS_CHECK_RUNS + 100
    assert not stats.analyzed


def test_a_burst_refreshes_the_planners_statistics_of_runs_once(
    make_triggers, tick, runs_statistics
) -> None:
    make_triggers(batches.STATISTICS_CHECK_RUNS + 100, next_run_at=NOON, cron="*/5 * * * *")

    stats = tick(NOON + timedelta(seconds=1), limits=SLOTS)

    assert stats.analyzed
    assert runs_statistics() >= batches.STATISTICS_CHECK_RUNS // 2, "the waiting room is seen"


def test_a_small_tick_leaves_the_statistics_to_autovacuum(
    make_triggers, tick, runs_statistics
) -> None:
    make_triggers(batches.STATISTICS_CHECK_RUNS - 1, next_run_at=NOON, cron="*/5 * * * *")

    stats = tick(NOON + timedelta(seconds=1), limits=SLOTS)

    assert not stats.analyzed
    assert runs_statistics() <= 1


def test_statistics_that_already_see_the_waiting_room_are_not_refreshed(
    engine, make_triggers, tick, runs_statistics
) -> None:
    make_triggers(3 * batches.STATISTICS_CHECK_RUNS, next_run_at=NOON, tenant_id="first")
    tick(NOON + timedelta(seconds=1), limits=SLOTS)
    with db.statements(engine) as conn:
        conn.execute(text("ANALYZE runs"))  # as autovacuum would, after that burst
    make_triggers(batches.STATISTICS_CHECK_RUNS + 100, next_run_at=NOON, tenant_id="second")

    # The statistics see 1,496 waiting; 1,992 wait when the tick looks: no need.
    assert not tick(NOON + timedelta(seconds=2), limits=SLOTS).analyzed
