"""The run state machine on the real PostgreSQL, called in-process: claim, duplicate delivery,
retries waiting in PostgreSQL, exhaustion, timeouts, cancellation, re-checks, overlap, and a
worker whose clock is wrong. Runs are made `admitted` (admission's work) unless a test says
otherwise."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app import db, heartbeats, run_history, runs
from app.actions import registry
from app.errors import ActionError

HIDDEN = "the handler raised an exception (its text is in the operator log)"


def test_a_pending_run_is_claimed_run_and_succeeds_with_its_result(harness) -> None:
    trigger_id = harness.trigger(payload={"hello": "world"})
    run_id = harness.run(trigger_id)

    assert harness.execute(run_id) == "succeeded"

    row = harness.row(run_id)
    assert (row["status"], row["attempt"], row["worker"]) == ("succeeded", 1, "test-worker")
    assert row["started_at"] <= row["finished_at"] == row["heartbeat_at"]
    assert row["result"] == {"hello": "world"}
    assert row["error"] is None
    assert harness.published == []


def test_a_second_delivery_of_a_finished_run_does_nothing(harness) -> None:
    run_id = harness.run(harness.trigger())
    harness.execute(run_id)
    before = harness.row(run_id)

    harness.clock.advance(seconds=5)
    assert harness.execute(run_id) == "duplicate"

    assert harness.row(run_id) == before


def test_two_simultaneous_deliveries_execute_the_action_once(harness) -> None:
    calls: list[str] = []
    gate = threading.Barrier(2)

    @registry.handler("test.count_calls")
    def count_calls(ctx: registry.RunContext) -> int:
        calls.append(ctx.run_id)
        time.sleep(0.2)
        return len(calls)

    run_id = harness.run(harness.trigger(action={"type": "task", "name": "test.count_calls"}))
    outcomes: list[str] = []

    def deliver() -> None:
        gate.wait()
        outcomes.append(harness.execute(run_id))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registry.unregister("test.count_calls")

    assert sorted(outcomes) == ["duplicate", "succeeded"]
    assert calls == [str(run_id)]
    assert harness.row(run_id)["attempt"] == 1


def test_a_failed_attempt_is_retried_after_a_backoff_then_succeeds(harness) -> None:
    trigger_id = harness.trigger(
        payload={"fail_times": 2}, max_attempts=3, retry_backoff_seconds=10
    )
    run_id = harness.run(trigger_id)

    before = datetime.now(UTC)
    assert harness.execute(run_id, rng=_Fixed(0.5)) == "retrying"
    row = harness.row(run_id)
    assert (row["status"], row["attempt"]) == ("pending", 1)
    # 10 * 2^0 with full jitter (here half of it), on PostgreSQL's clock.
    assert (
        before + timedelta(seconds=5)
        <= row["not_before"]
        <= datetime.now(UTC) + timedelta(seconds=5)
    )
    assert "planned failure on attempt 1" in row["error"]
    assert harness.published == [], "a retry waits in PostgreSQL, not in the broker"
    first_start = row["started_at"]

    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "retrying"
    row = harness.row(run_id)
    assert row["attempt"] == 2

    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "succeeded"
    row = harness.row(run_id)
    assert (row["status"], row["attempt"], row["error"]) == ("succeeded", 3, None)
    assert row["started_at"] == first_start  # the first attempt's start: the lag measure


def test_a_retry_waits_in_postgresql_until_its_not_before(harness) -> None:
    run_id = harness.run(harness.trigger(payload={"fail_times": 1}, retry_backoff_seconds=60))
    harness.execute(run_id, rng=_Fixed(0.5))  # uniform(0, 60) -> 30 s
    row = harness.row(run_id)
    assert (row["status"], row["enqueued_at"]) == ("pending", None)

    assert harness.admit() == [], "not due yet: no slot, no message"
    assert harness.execute(run_id) == "duplicate", "a stray delivery does not start it early"
    assert harness.row(run_id)["attempt"] == 1

    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "succeeded"


def test_a_run_that_keeps_failing_ends_failed_with_its_last_error(harness) -> None:
    run_id = harness.run(harness.trigger(payload={"fail_times": 9}, max_attempts=2))

    assert harness.execute(run_id) == "retrying"
    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    assert harness.execute(run_id) == "failed"

    row = harness.row(run_id)
    assert (row["status"], row["attempt"]) == ("failed", 2)
    assert "planned failure on attempt 2" in row["error"]
    assert row["finished_at"] >= row["started_at"]


def test_a_non_retryable_error_fails_at_once(harness) -> None:
    @registry.handler("test.refuse")
    def refuse(ctx: registry.RunContext) -> None:
        raise ActionError("bad input", retryable=False)

    run_id = harness.run(harness.trigger(action={"type": "task", "name": "test.refuse"}))
    assert harness.execute(run_id) == "failed"
    registry.unregister("test.refuse")
    assert (harness.row(run_id)["attempt"], harness.row(run_id)["error"]) == (1, "bad input")


def test_an_unknown_handler_fails_at_once(harness) -> None:
    run_id = harness.run(harness.trigger(action={"type": "task", "name": "nope"}))
    assert harness.execute(run_id) == "failed"
    assert harness.row(run_id)["error"] == "unknown handler 'nope'"


def test_an_attempt_past_its_timeout_is_stopped_and_counts_as_a_failure(harness) -> None:
    trigger_id = harness.trigger(payload={"sleep_seconds": 30}, timeout_seconds=1, max_attempts=2)
    run_id = harness.run(trigger_id)

    started = time.monotonic()
    assert harness.execute(run_id) == "retrying"  # main thread: SIGALRM interrupts the sleep
    assert time.monotonic() - started < 3
    row = harness.row(run_id)
    assert row["error"] == "attempt timed out after 1 s"

    harness.make_due(run_id)
    assert harness.admit() == [run_id]
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(harness.execute(run_id)))
    started = time.monotonic()
    worker.start()  # not the main thread: the attempt thread is abandoned at the deadline
    worker.join()
    assert outcome == ["failed"]
    assert time.monotonic() - started < 3
    assert harness.row(run_id)["error"] == "attempt timed out after 1 s"


def test_cancelling_a_pending_run_cancels_it_at_once_and_it_never_runs(harness) -> None:
    run_id = harness.run(harness.trigger())
    with db.session_scope(harness.engine) as session:
        assert run_history.request_cancel(session, run_id, now=harness.clock.now()) == "cancelled"

    assert harness.execute(run_id) == "duplicate"
    row = harness.row(run_id)
    assert (row["status"], row["attempt"], row["finished_at"]) == (
        "cancelled",
        0,
        harness.clock.now(),
    )


def test_cancelling_a_running_run_stops_it_before_its_next_attempt(harness) -> None:
    @registry.handler("test.cancelled_while_failing")
    def cancelled_while_failing(ctx: registry.RunContext) -> None:
        # The API's cancel arrives while this attempt runs.
        with db.session_scope(harness.engine) as session:
            assert (
                run_history.request_cancel(session, ctx.run_id, now=harness.clock.now())
                == "running"
            )
        raise RuntimeError("boom")

    action = {"type": "task", "name": "test.cancelled_while_failing"}
    run_id = harness.run(harness.trigger(action=action, max_attempts=5))
    assert harness.execute(run_id) == "cancelled"
    registry.unregister("test.cancelled_while_failing")

    row = harness.row(run_id)
    assert (row["status"], row["attempt"]) == ("cancelled", 1)
    assert row["error"] == f"RuntimeError: {HIDDEN}"
    assert harness.published == []  # no further attempt


def test_a_cancel_request_does_not_undo_an_attempt_that_succeeded(harness) -> None:
    @registry.handler("test.cancelled_while_succeeding")
    def cancelled_while_succeeding(ctx: registry.RunContext) -> str:
        with db.session_scope(harness.engine) as session:
            run_history.request_cancel(session, ctx.run_id, now=harness.clock.now())
        return "done"

    action = {"type": "task", "name": "test.cancelled_while_succeeding"}
    run_id = harness.run(harness.trigger(action=action))
    assert harness.execute(run_id) == "succeeded"
    registry.unregister("test.cancelled_while_succeeding")
    assert harness.row(run_id)["result"] == "done"


def test_request_cancel_reports_the_status_and_none_for_an_unknown_run(harness) -> None:
    run_id = harness.run(harness.trigger())
    harness.execute(run_id)
    with db.session_scope(harness.engine) as session:
        assert run_history.request_cancel(session, run_id, now=harness.clock.now()) == "succeeded"
        assert run_history.request_cancel(session, _uuid(), now=harness.clock.now()) is None
        assert run_history.request_cancel(session, "not-a-uuid", now=harness.clock.now()) is None
    assert harness.row(run_id)["cancel_requested_at"] is None


def test_cancel_pending_for_trigger_cancels_only_its_pending_runs(harness) -> None:
    trigger_id = harness.trigger()
    now = harness.clock.now()
    pending = [
        harness.run(trigger_id, scheduled_for=now - timedelta(minutes=m), status=status)
        for m, status in ((1, "pending"), (2, "admitted"))
    ]
    running = harness.run(trigger_id, scheduled_for=now - timedelta(minutes=3), status="running")
    other = harness.run(harness.trigger())

    with db.session_scope(harness.engine) as session:
        assert run_history.cancel_pending_for_trigger(session, trigger_id, now=now) == 2

    assert [harness.row(r)["status"] for r in pending] == ["cancelled", "cancelled"]
    assert harness.row(running)["status"] == "running"
    assert harness.row(other)["status"] == "admitted"


def test_a_run_whose_trigger_was_deleted_is_cancelled(harness) -> None:
    trigger_id = harness.trigger()
    run_id = harness.run(trigger_id)
    with harness.engine.begin() as conn:
        conn.execute(text("DELETE FROM triggers WHERE id = :id"), {"id": trigger_id})

    assert harness.execute(run_id) == "cancelled"
    assert harness.row(run_id)["error"] == "trigger deleted"


def test_a_run_whose_recurring_trigger_was_disabled_is_cancelled(harness) -> None:
    run_id = harness.run(harness.trigger(enabled=False))
    assert harness.execute(run_id) == "cancelled"
    assert (harness.row(run_id)["attempt"], harness.row(run_id)["error"]) == (0, "trigger disabled")


def test_a_run_whose_interval_trigger_was_disabled_is_cancelled(harness) -> None:
    run_id = harness.run(harness.trigger(interval_seconds=600, enabled=False))
    assert harness.execute(run_id) == "cancelled"
    assert harness.row(run_id)["error"] == "trigger disabled"


def test_a_one_time_trigger_disabled_by_its_dispatch_still_runs(harness) -> None:
    # The dispatcher disables a one-time trigger in the transaction that creates its run.
    run_at = harness.clock.now()
    run_id = harness.run(harness.trigger(run_at=run_at, enabled=False), scheduled_for=run_at)
    assert harness.execute(run_id) == "succeeded"


def test_a_manual_run_of_a_trigger_disabled_since_is_cancelled_too(harness) -> None:
    run_id = harness.run(harness.trigger(enabled=False), kind="manual")
    assert harness.execute(run_id) == "cancelled"


def test_overlap_skip_skips_a_fire_while_an_earlier_run_is_running(harness) -> None:
    trigger_id = harness.trigger(overlap_policy="skip")
    now = harness.clock.now()
    harness.run(trigger_id, scheduled_for=now - timedelta(minutes=5), status="running", attempt=1)
    run_id = harness.run(trigger_id, scheduled_for=now)

    assert harness.execute(run_id) == "skipped"
    row = harness.row(run_id)
    assert (row["status"], row["attempt"]) == ("skipped", 0)
    assert row["finished_at"] is not None


def test_overlap_skip_runs_the_fire_when_nothing_else_is_in_progress(harness) -> None:
    trigger_id = harness.trigger(overlap_policy="skip")
    now = harness.clock.now()
    harness.run(trigger_id, scheduled_for=now - timedelta(minutes=5), status="succeeded")
    assert harness.execute(harness.run(trigger_id, scheduled_for=now)) == "succeeded"


def test_overlap_allow_runs_fires_side_by_side(harness) -> None:
    trigger_id = harness.trigger(overlap_policy="allow")
    now = harness.clock.now()
    harness.run(trigger_id, scheduled_for=now - timedelta(minutes=5), status="running", attempt=1)
    assert harness.execute(harness.run(trigger_id, scheduled_for=now)) == "succeeded"


def test_the_heartbeat_stamps_the_run_on_postgresqls_clock_while_the_action_runs(
    harness,
) -> None:
    harness.configure(heartbeat_seconds=1)
    seen: dict[str, object] = {}

    @registry.handler("test.watch_heartbeat")
    def watch(ctx: registry.RunContext) -> None:
        time.sleep(1.6)
        seen["row"] = harness.row(ctx.run_id)
        seen["db_now"] = _db_now(harness)

    run_id = harness.run(harness.trigger(action={"type": "task", "name": "test.watch_heartbeat"}))
    # The worker's clock is ten minutes fast: nothing it stamps may carry its time.
    assert harness.execute(run_id, clock=_skewed(minutes=10)) == "succeeded"
    registry.unregister("test.watch_heartbeat")

    row = seen["row"]
    assert row["status"] == "running"
    assert row["started_at"] < row["heartbeat_at"] <= seen["db_now"]


def test_a_beat_due_sooner_than_the_heartbeat_thread_waits_still_comes_on_time(harness) -> None:
    # The thread sleeps until the soonest beat; a new attempt whose beat is due sooner
    # must wake it, or the sweep would take a live run for dead.
    slow, fast = (harness.run(harness.trigger(), status="running", attempt=1) for _ in range(2))
    with harness.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE runs SET heartbeat_at = now() - interval '1 hour'")

    def stamped(run_id: uuid.UUID) -> bool:
        return harness.row(run_id)["heartbeat_at"] > harness.db_now() - timedelta(minutes=1)

    with heartbeats.watch(harness.engine, slow, 1, interval=30):
        time.sleep(0.2)  # the thread now sleeps until the slow beat, 30 s from now
        with heartbeats.watch(harness.engine, fast, 1, interval=0.3):
            deadline = time.monotonic() + 3
            while not stamped(fast) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert stamped(fast), "the 0.3 s beat came within 3 s"
    assert not stamped(slow)


def test_a_worker_with_a_skewed_clock_neither_steals_a_held_slot_nor_loses_a_run(
    harness,
) -> None:
    from app import recovery

    harness.configure(max_running=1, max_running_per_tenant=1)
    trigger_id = harness.trigger(payload={"fail_times": 1}, retry_backoff_seconds=1)
    held = harness.run(trigger_id, status="running", attempt=1)  # a live run holds the slot
    waiting = harness.run(trigger_id, status="pending", scheduled_for=harness.clock.advance(
        minutes=1))  # fmt: skip
    options = recovery.RecoveryOptions(heartbeat_timeout_seconds=60, admitted_lease_seconds=60)

    # A worker (or tick) whose clock is minutes fast or slow: the sweep and admission read
    # PostgreSQL's clock, so the live run is not taken over and its slot is not taken.
    for skew in (-10, 10):
        rt = harness.runtime(clock=_skewed(minutes=skew))
        assert recovery.sweep(harness.engine, options=options).requeued == 0
        assert runs.hand_off(rt).admitted == []
    assert harness.row(held)["status"] == "running"
    assert harness.row(waiting)["status"] == "pending"

    # Its retry is not lost to the future either: due about a second from now on the
    # database's clock, whatever the worker's clock says.
    with harness.engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'succeeded' WHERE id = :id"), {"id": held})
    assert harness.admit() == [waiting]
    assert harness.execute(waiting, clock=_skewed(minutes=-10)) == "retrying"
    row = harness.row(waiting)
    assert abs((row["not_before"] - _db_now(harness)).total_seconds()) < 5
    harness.make_due(waiting)
    assert harness.admit() == [waiting]
    assert harness.execute(waiting, clock=_skewed(minutes=10)) == "succeeded"


def test_an_attempt_taken_over_by_the_recovery_sweep_leaves_the_run_to_its_new_owner(
    harness,
) -> None:
    @registry.handler("test.taken_over")
    def taken_over(ctx: registry.RunContext) -> str:
        # While this attempt looks dead, the sweep requeues the run and another worker
        # claims it as attempt 2.
        with harness.engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET attempt = attempt + 1, worker = 'other' WHERE id = :id"),
                {"id": ctx.run_id},
            )
        return "late"

    run_id = harness.run(harness.trigger(action={"type": "task", "name": "test.taken_over"}))
    assert harness.execute(run_id) == "lost"
    registry.unregister("test.taken_over")

    row = harness.row(run_id)
    assert (row["status"], row["attempt"], row["worker"], row["result"]) == (
        "running",
        2,
        "other",
        None,
    )


def test_a_run_whose_attempts_are_used_up_is_not_started_again(harness) -> None:
    run_id = harness.run(harness.trigger(max_attempts=2), attempt=2)
    assert harness.execute(run_id) == "failed"
    assert harness.row(run_id)["attempt"] == 2


def test_results_and_errors_are_truncated_to_fit(harness) -> None:
    @registry.handler("test.loud")
    def loud(ctx: registry.RunContext) -> object:
        if ctx.payload["kind"] == "nul":
            return "a\x00b"  # PostgreSQL refuses NUL, in text and in jsonb
        if ctx.payload["kind"] == "big":
            return {"blob": "y" * 100_000}
        raise ActionError("x" * 100_000 + "\x00")

    def run_of(kind: str) -> object:
        trigger_id = harness.trigger(
            action={"type": "task", "name": "test.loud"}, payload={"kind": kind}, max_attempts=1
        )
        return harness.run(trigger_id)

    big, nul, error = run_of("big"), run_of("nul"), run_of("error")
    assert [harness.execute(r) for r in (big, nul, error)] == ["succeeded", "succeeded", "failed"]
    registry.unregister("test.loud")

    result = harness.row(big)["result"]
    assert result["truncated"] is True
    assert len(result["preview"]) <= 16 * 1024
    assert harness.row(nul)["result"] == "a\ufffdb"
    message = harness.row(error)["error"]
    assert len(message) <= 4000 and message.startswith("xxx")
    assert message.endswith("[truncated]")


def test_a_handlers_exception_text_goes_to_the_log_and_only_its_type_is_stored(
    harness, caplog
) -> None:
    @registry.handler("test.leaky")
    def leaky(ctx: registry.RunContext) -> None:
        raise ConnectionError("could not reach db.internal:5432 as admin:hunter2")

    run_id = harness.run(harness.trigger(action={"type": "task", "name": "test.leaky"},
                                         max_attempts=1))  # fmt: skip
    with caplog.at_level("WARNING"):
        assert harness.execute(run_id) == "failed"
    registry.unregister("test.leaky")

    assert harness.row(run_id)["error"] == f"ConnectionError: {HIDDEN}"
    logged = [r for r in caplog.records if getattr(r, "event", None) == "action_raised"]
    assert [r.error_type for r in logged] == ["ConnectionError"]
    assert "hunter2" in str(logged[0].exc_info[1])  # the operator log has the text


def test_a_malformed_or_unknown_run_id_is_ignored(harness) -> None:
    assert harness.execute("not-a-uuid") == "missing"
    assert harness.execute(_uuid()) == "missing"


class _Fixed:
    """A random source whose uniform(a, b) is always the same fraction of the way."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def _skewed(**delta: float):
    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(**delta)

    return clock


def _db_now(harness) -> datetime:
    with harness.engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def _uuid() -> uuid.UUID:
    return uuid.uuid4()
