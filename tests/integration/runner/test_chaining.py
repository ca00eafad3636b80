"""A worker whose run ended runs the next admitted run itself (app/runs.py,
`Runtime.chain_seconds`), called in-process on the real PostgreSQL with a recording
publisher: which runs it keeps, which still go to the broker, and a kept run it cannot
claim. Real workers chaining: tests/integration/runner/test_admission_workers.py."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app import runs
from app.actions import registry
from app.queries import run_queue
from app.queries.run_queue import ADMISSION_LOCK


def one_slot(harness, count: int, **trigger) -> tuple[uuid.UUID, list]:
    """One slot (in all and per tenant), a trigger with its run due now (to deliver) and
    `count` runs waiting behind it: (the run due now, the waiting runs)."""
    harness.configure(max_running=1, max_running_per_tenant=1)
    trigger_id = harness.trigger(**trigger)
    first = harness.run(trigger_id, scheduled_for=harness.clock.now())
    return first, waiting(harness, trigger_id, count)


def waiting(harness, trigger_id: uuid.UUID, count: int) -> list:
    """`count` pending runs of the trigger, one minute apart, oldest first."""
    start = harness.clock.now()
    return [
        harness.run(trigger_id, status="pending", scheduled_for=start + timedelta(minutes=n + 1))
        for n in range(count)
    ]


def test_a_worker_whose_run_ended_runs_the_next_admitted_runs_itself(harness) -> None:
    first, later = one_slot(harness, 3)

    assert harness.execute(first, chain_seconds=60) == "succeeded"  # the delivery's own run

    rows = [harness.row(run_id) for run_id in [first, *later]]
    assert [row["status"] for row in rows] == ["succeeded"] * 4
    assert harness.published == [], "nothing went through the broker"
    assert {row["worker"] for row in rows} == {"test-worker"}
    assert [row["attempt"] for row in rows] == [1] * 4
    for before, after in zip(rows, rows[1:], strict=False):
        assert after["started_at"] >= before["finished_at"], "one slot: one run at a time"


def test_without_chaining_the_next_admitted_run_goes_to_the_broker(harness) -> None:
    first, [second] = one_slot(harness, 1)

    assert harness.execute(first) == "succeeded"  # chain_seconds defaults to 0

    assert harness.published == [second]
    assert harness.row(second)["status"] == "admitted"


def test_past_its_time_the_chain_ends_and_the_next_run_is_published(harness) -> None:
    first, (second, third) = one_slot(harness, 2, payload={"sleep_seconds": 0.3})

    # The first run alone outlasts the chain's 0.2 s: its hand-off publishes.
    assert harness.execute(first, chain_seconds=0.2) == "succeeded"
    assert harness.published == [second]
    assert harness.row(third)["status"] == "pending"


def test_a_run_that_ends_without_running_hands_its_slot_to_the_next_run_too(harness) -> None:
    harness.configure(max_running=1, max_running_per_tenant=1)
    first = harness.run(harness.trigger(enabled=False), scheduled_for=harness.clock.now())
    [second] = waiting(harness, harness.trigger(), 1)

    assert harness.execute(first, chain_seconds=60) == "cancelled"  # trigger disabled

    assert harness.row(second)["status"] == "succeeded"
    assert harness.published == []


@pytest.mark.parametrize(("admitted_ago", "kept"), [(10.0, False), (0.0, True)])
def test_no_run_is_kept_while_a_run_admitted_earlier_waits_in_the_broker(
    harness, admitted_ago: float, kept: bool
) -> None:
    # More slots than worker processes: an admitted run's message waits in the broker for
    # a free process. The process that comes free must not put a newer run ahead of it.
    # A message published a moment ago is not waiting: a free process is taking it.
    harness.configure(max_running=3, max_running_per_tenant=3)
    trigger_id = harness.trigger()
    first = harness.run(trigger_id, scheduled_for=harness.clock.now())
    in_broker = harness.run(trigger_id, scheduled_for=harness.clock.now() + timedelta(seconds=1))
    with harness.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE runs SET enqueued_at = now() - make_interval(secs => :ago) WHERE id = :id"
            ),
            {"ago": admitted_ago, "id": in_broker},
        )
    newer = waiting(harness, trigger_id, 2)

    assert harness.execute(first, chain_seconds=60) == "succeeded"

    assert harness.row(in_broker)["status"] == "admitted", "left to its message"
    if kept:  # one newer run went through this process, the other to the broker
        assert len(harness.published) == 1
        statuses = sorted(harness.row(run_id)["status"] for run_id in newer)
        assert statuses == ["admitted", "succeeded"]
    else:
        assert sorted(harness.published) == sorted(newer), "admitted into the free slots"
        assert {harness.row(run_id)["status"] for run_id in newer} == {"admitted"}


def test_a_kept_run_that_cannot_be_claimed_is_left_to_its_lease(
    harness, monkeypatch, caplog
) -> None:
    harness.configure(max_running=1, max_running_per_tenant=1)
    trigger_id = harness.trigger()
    first = harness.run(trigger_id, scheduled_for=harness.clock.now())
    # A disabled trigger's run: the finish's round keeps it but its plain claim declines,
    # so the worker decides it itself, and loses the database there.
    [second] = waiting(harness, harness.trigger(enabled=False), 1)
    claims = []
    real_claim = runs.q.claim

    def claim_then_lose_the_database(conn, run_id, **kwargs):
        claims.append(run_id)
        if run_id == second:
            raise OperationalError("UPDATE runs", {}, Exception("server closed the connection"))
        return real_claim(conn, run_id, **kwargs)

    monkeypatch.setattr(runs.q, "claim", claim_then_lose_the_database)

    assert harness.execute(first, chain_seconds=60) == "succeeded"  # its outcome stands

    assert claims == [first, second]
    assert harness.row(second)["status"] == "admitted", "the recovery sweep's, after its lease"
    assert harness.published == []
    assert any(getattr(r, "event", None) == "chain_failed" for r in caplog.records)


@pytest.mark.parametrize("chain_seconds", [0, 60])
def test_a_finish_whose_round_found_admission_taken_hands_off_again_once_committed(
    harness, monkeypatch, chain_seconds
) -> None:
    # A successful finish does the first round of its hand-off in its own transaction, so
    # its wake-up number is taken before the freed slot is visible: a holder that goes
    # round again for that number may not see the slot. Then the finisher hands off again.
    first, [second] = one_slot(harness, 1)
    finish_and_admit = run_queue.finish_and_admit
    rounds = []

    def while_another_admitter_holds_the_lock(conn, *args, **kwargs):
        with harness.engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADMISSION_LOCK})
            done = finish_and_admit(conn, *args, **kwargs)
        rounds.append(done)
        return done

    monkeypatch.setattr(run_queue, "finish_and_admit", while_another_admitter_holds_the_lock)
    flushes = []
    flush = run_queue.flush
    monkeypatch.setattr(run_queue, "flush", lambda conn: flushes.append(flush(conn)))

    assert harness.execute(first, chain_seconds=chain_seconds) == "succeeded"

    # Each finish was recorded and its round found the lock taken (the second run's too),
    # and with no round to look after, each finish was flushed to disk by itself.
    assert rounds == [(True, None)] * (2 if chain_seconds else 1)
    assert len(flushes) == len(rounds)
    if chain_seconds:  # kept by the hand-off after the commit, and run by this process
        assert harness.published == []
        assert harness.row(second)["status"] == "succeeded"
    else:
        assert harness.published == [second]
        assert harness.row(second)["status"] == "admitted"


def test_a_finish_claims_the_run_it_keeps_in_the_same_transaction(harness, monkeypatch) -> None:
    first, [second] = one_slot(harness, 1)
    separate_claims = []
    claim = runs.q.claim

    def recorded(conn, run_id, **kwargs):
        separate_claims.append(run_id)
        return claim(conn, run_id, **kwargs)

    monkeypatch.setattr(runs.q, "claim", recorded)

    assert harness.execute(first, chain_seconds=60) == "succeeded"

    assert separate_claims == [first], "the second was claimed by the finish of the first"
    row = harness.row(second)
    assert (row["status"], row["attempt"], row["worker"]) == ("succeeded", 1, "test-worker")


_RECORD_STATUSES = """
    CREATE TABLE status_changes (id uuid, old varchar, new varchar);
    CREATE FUNCTION record_status_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO status_changes VALUES (NEW.id, OLD.status, NEW.status);
        RETURN NEW;
    END $$;
    CREATE TRIGGER record_status_change AFTER UPDATE ON runs
        FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
        EXECUTE FUNCTION record_status_change();
"""


def test_the_round_of_a_finish_starts_the_run_it_keeps_without_admitting_it_first(
    harness,
) -> None:
    # One row version fewer per kept run (migration 0015): each run this process keeps goes
    # from pending straight to running, in the round of the finish before it.
    first, later = one_slot(harness, 2)
    with harness.engine.begin() as conn:
        conn.exec_driver_sql(_RECORD_STATUSES)

    assert harness.execute(first, chain_seconds=60) == "succeeded"

    with harness.engine.connect() as conn:
        changes = conn.execute(text("SELECT id, old, new FROM status_changes")).all()
    for run_id in later:
        steps = [(old, new) for changed, old, new in changes if changed == run_id]
        assert steps == [("pending", "running"), ("running", "succeeded")]
        row = harness.row(run_id)
        assert (row["attempt"], row["worker"]) == (1, "test-worker")
        assert row["enqueued_at"] is not None and row["admitted_at"] is None
    assert harness.published == []


def test_a_round_with_nobody_keeping_admits_even_on_a_connection_that_kept_before(
    harness,
) -> None:
    # The finish names the worker it keeps for in a setting of its own transaction: a
    # later round on the same connection (the hand-off after a finish) starts nothing.
    first, [second, third] = one_slot(harness, 2)
    harness.configure(max_running=2, max_running_per_tenant=2)
    with harness.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("UPDATE runs SET status = 'running', attempt = 1 WHERE id = :id"),
                     {"id": first})  # fmt: skip
        ours, done = run_queue.finish_and_admit(
            conn, first, attempt=1, result=None, max_running=1, max_per_tenant=1, factor=2,
            keep_worker="test-worker", waiting_seconds=0.5,
        )  # fmt: skip
        assert ours and done is not None and done.kept == second and done.claimed is not None
        again = run_queue.admission_round(conn, max_running=2, max_per_tenant=2, factor=2,
                                          seen=None)  # fmt: skip
    assert again is not None and again.admitted == [third]
    assert (harness.row(second)["status"], harness.row(third)["status"]) == ("running", "admitted")


_FINISH_ALIKE = text(
    "SELECT set_config('synchronous_commit', 'off', true); "
    "UPDATE runs SET result = CAST('{}' AS jsonb) WHERE id = :id"
)
_WAL = text(
    "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0'), "
    "pg_wal_lsn_diff(pg_current_wal_flush_lsn(), '0/0')"
)


def wal(conn) -> tuple[int, int]:
    """(Where the WAL is written up to, where it is flushed up to), as byte positions."""
    written, flushed = conn.execute(_WAL).one()
    return int(written), int(flushed)


@pytest.mark.parametrize(
    "look",
    [run_queue.flush, lambda conn: run_queue.last_wakeup(conn, flush=True)],
    ids=["flush", "look after a round"],
)
def test_the_look_after_a_finish_puts_its_asynchronous_commit_on_disk(harness, look) -> None:
    # What the finish's transaction leaves to the statement after it: its own commit does
    # not wait for the WAL flush (set_config('synchronous_commit', 'off', true)).
    first = harness.run(harness.trigger(), scheduled_for=harness.clock.now())
    with harness.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(_FINISH_ALIKE, {"id": first})  # one transaction, committed in memory
        written, _ = wal(conn)
        look(conn)  # in autocommit, as the runner's connections (db.statements) are
        _, flushed = wal(conn)

    assert flushed >= written, "the finish is still only in memory"


def test_a_finish_is_durable_before_the_run_it_kept_starts(harness, monkeypatch) -> None:
    # The finish's transaction commits without waiting for the WAL flush: the look at the
    # wake-up sequence after it is a synchronous commit, and it must come before the kept
    # run's action (and before the delivery ends).
    events = []

    @registry.handler("test.recorded")
    def recorded(ctx: registry.RunContext) -> None:
        events.append(("action", uuid.UUID(ctx.run_id)))

    first, [second] = one_slot(harness, 1, action={"type": "task", "name": "test.recorded"})
    finish_and_admit, last_wakeup = run_queue.finish_and_admit, run_queue.last_wakeup

    def finish(conn, run_id, **kwargs):
        events.append(("finish", run_id))
        return finish_and_admit(conn, run_id, **kwargs)

    def look(conn, *, flush=False):
        events.append(("look", "flushed" if flush else "not flushed"))
        return last_wakeup(conn, flush=flush)

    monkeypatch.setattr(run_queue, "finish_and_admit", finish)
    monkeypatch.setattr(run_queue, "last_wakeup", look)
    try:
        assert harness.execute(first, chain_seconds=60) == "succeeded"
    finally:
        registry.unregister("test.recorded")

    assert events == [
        ("action", first),
        ("finish", first),
        ("look", "flushed"),
        ("action", second),
        ("finish", second),
        ("look", "flushed"),
    ]
