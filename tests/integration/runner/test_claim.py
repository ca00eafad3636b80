"""The claim decides, acts and says what it did, in one call (`scheduler_claim_v2`,
app/queries/runs.py `claim`): each decision it returns, against the real database, with
the row it leaves behind; the one-fire-at-a-time case under the trigger's lock; and the
cost of each path in tuples of `runs` read."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from app import db
from app.queries import runs as q
from app.run_status import Delivery
from tests import factories

WORKER = "claim-test"


def claim(harness, run_id: uuid.UUID) -> q.Claim:
    with db.statements(harness.engine) as conn:
        return q.claim(conn, run_id, worker=WORKER)


def set_columns(harness, run_id: uuid.UUID, assignments: str) -> None:
    with harness.engine.begin() as conn:
        conn.execute(text(f"UPDATE runs SET {assignments} WHERE id = :id"), {"id": run_id})


def test_a_plain_admitted_run_is_claimed_and_returned_as_claimed(harness) -> None:
    trigger_id = harness.trigger(max_attempts=4, timeout_seconds=12)
    run_id = harness.run(trigger_id, attempt=1)

    got = claim(harness, run_id)

    assert (got.decision, got.detail) == (Delivery.RUNNING, None)
    assert (got.run.id, got.run.status, got.run.attempt) == (run_id, "running", 2)
    assert (got.trigger.id, got.trigger.max_attempts, got.trigger.timeout_seconds) == (
        trigger_id,
        4,
        12,
    )
    row = harness.row(run_id)
    assert (row["status"], row["attempt"], row["worker"]) == ("running", 2, WORKER)
    assert row["started_at"] is not None and row["heartbeat_at"] is not None


def test_the_claim_brings_the_principal_the_run_recorded(harness) -> None:
    # The attempt acts for it with no statement of its own; None (an older release's
    # insert) is left for the attempt to fill from the trigger (test_run_as.py).
    trigger_id = harness.trigger()
    recorded, legacy = harness.run(trigger_id), harness.run(trigger_id, kind="manual")
    set_columns(harness, recorded, "run_as = 'alice'")

    assert claim(harness, recorded).run.run_as == "alice"
    assert claim(harness, legacy).run.run_as is None
    assert claim(harness, uuid.uuid4()).run is None


@pytest.mark.parametrize("status", ["pending", "running", "succeeded", "cancelled"])
def test_a_run_that_is_not_admitted_is_a_duplicate_and_left_as_it_is(harness, status) -> None:
    run_id = harness.run(harness.trigger(), status=status, attempt=1)
    before = harness.row(run_id)

    got = claim(harness, run_id)

    assert (got.decision, got.detail) == (Delivery.DUPLICATE, status)
    assert got.run is not None and got.run.id == run_id
    assert harness.row(run_id) == before


def test_a_run_that_does_not_exist_is_missing(harness) -> None:
    got = claim(harness, uuid.uuid4())
    assert (got.decision, got.run, got.trigger) == (Delivery.MISSING, None, None)


@pytest.mark.parametrize(
    ("scene", "detail"),
    [
        ("cancel", "cancel requested"),
        ("delete", "trigger deleted"),
        ("disable", "trigger disabled"),
        ("disable_interval", "trigger disabled"),
    ],
)
def test_an_admitted_run_with_a_reason_to_stop_is_cancelled(harness, scene, detail) -> None:
    trigger_id = harness.trigger(
        **({"interval_seconds": 600} if scene == "disable_interval" else {})
    )
    run_id = harness.run(trigger_id)
    with harness.engine.begin() as conn:
        if scene == "cancel":
            conn.execute(
                text("UPDATE runs SET cancel_requested_at = now() WHERE id = :id"), {"id": run_id}
            )
        elif scene == "delete":
            conn.execute(text("DELETE FROM triggers WHERE id = :id"), {"id": trigger_id})
        else:
            conn.execute(text("UPDATE triggers SET enabled = false WHERE id = :id"),
                         {"id": trigger_id})  # fmt: skip

    got = claim(harness, run_id)

    assert (got.decision, got.detail) == (Delivery.CANCELLED, detail)
    assert (got.trigger is None) == (scene == "delete")
    row = harness.row(run_id)
    assert (row["status"], row["error"], row["attempt"]) == ("cancelled", detail, 0)
    assert row["finished_at"] is not None and row["worker"] is None


def test_a_one_time_trigger_disabled_by_its_own_dispatch_is_claimed(harness) -> None:
    run_at = harness.clock.now()
    run_id = harness.run(harness.trigger(run_at=run_at, enabled=False), scheduled_for=run_at)
    assert claim(harness, run_id).decision == Delivery.RUNNING
    assert harness.row(run_id)["status"] == "running"


def test_an_admitted_run_with_its_attempts_used_up_fails_keeping_its_error(harness) -> None:
    run_id = harness.run(harness.trigger(max_attempts=2), attempt=2)
    set_columns(harness, run_id, "error = 'boom on attempt 2'")

    got = claim(harness, run_id)

    assert (got.decision, got.detail) == (Delivery.FAILED, "attempts used up")
    row = harness.row(run_id)
    assert (row["status"], row["error"], row["attempt"]) == ("failed", "boom on attempt 2", 2)
    assert row["finished_at"] is not None


def test_a_cancel_request_comes_before_attempts_used_up(harness) -> None:
    # The order of the rules: the cancel is what the tenant asked for, and it says so.
    run_id = harness.run(harness.trigger(max_attempts=1), attempt=1)
    set_columns(harness, run_id, "cancel_requested_at = now()")
    assert claim(harness, run_id).decision == Delivery.CANCELLED


@pytest.mark.parametrize("policy", ["skip", "buffer_one"])
@pytest.mark.parametrize(
    ("other_status", "other_attempt", "decision"),
    [
        ("running", 1, Delivery.SKIPPED),
        ("admitted", 0, Delivery.SKIPPED),
        ("pending", 1, Delivery.SKIPPED),  # between two attempts: still in progress
        ("pending", 0, Delivery.RUNNING),  # a later fire waiting: not in progress
        ("succeeded", 1, Delivery.RUNNING),
    ],
)
def test_a_one_at_a_time_first_attempt_is_skipped_only_while_another_run_is_in_progress(
    harness, policy, other_status, other_attempt, decision
) -> None:
    trigger_id = harness.trigger(overlap_policy=policy)
    now = harness.clock.now()
    harness.run(trigger_id, scheduled_for=now - timedelta(minutes=5), status=other_status,
                attempt=other_attempt)  # fmt: skip
    run_id = harness.run(trigger_id, scheduled_for=now)

    got = claim(harness, run_id)

    assert got.decision == decision
    row = harness.row(run_id)
    if decision == Delivery.SKIPPED:
        detail = "an earlier run of the trigger was still in progress"
        assert got.detail == detail
        assert (row["status"], row["error"], row["attempt"]) == ("skipped", detail, 0)
        assert row["finished_at"] is not None
    else:
        assert (row["status"], row["attempt"]) == ("running", 1)


def test_a_one_at_a_time_retry_is_claimed_whatever_else_is_in_progress(harness) -> None:
    # Only a first attempt is decided by the policy: a retry already started its fire.
    trigger_id = harness.trigger(overlap_policy="skip")
    harness.run(trigger_id, status="running", attempt=1)
    run_id = harness.run(trigger_id, scheduled_for=harness.clock.now() + timedelta(minutes=5),
                         attempt=1)  # fmt: skip
    assert claim(harness, run_id).decision == Delivery.RUNNING


def _waiting_for_a_lock(harness, pid: int) -> bool:
    with harness.engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": pid},
            ).scalar()
        )


def test_the_overlap_decision_waits_for_the_triggers_lock_and_reads_again_under_it(
    harness,
) -> None:
    # The lock an older release's runner takes for the same check (app/queries/sql/
    # claim_v2.sql, step 2): while it holds it, the claim waits; what that runner committed
    # under it (here: another run of the trigger started) decides the claim.
    trigger_id = harness.trigger(overlap_policy="skip")
    run_id = harness.run(trigger_id)
    other = harness.run(trigger_id, scheduled_for=harness.clock.now() - timedelta(minutes=5))
    results: list[q.Claim] = []
    with harness.engine.connect() as holder:
        holder.execute(
            text("SELECT pg_advisory_xact_lock(1381322323, hashtext(:tid))"),
            {"tid": str(trigger_id)},
        )
        with harness.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            set_columns(harness, other, "status = 'succeeded'")  # nothing in progress yet
            thread = threading.Thread(
                target=lambda: results.append(q.claim(conn, run_id, worker=WORKER))
            )
            thread.start()
            deadline = time.monotonic() + 10
            while not _waiting_for_a_lock(harness, pid):
                assert time.monotonic() < deadline, "the claim never waited for the lock"
                time.sleep(0.01)
            assert results == [] and harness.row(run_id)["status"] == "admitted"
            holder.execute(
                text("UPDATE runs SET status = 'running', attempt = 1 WHERE id = :id"),
                {"id": other},
            )
            holder.commit()  # releases the lock
            thread.join(timeout=10)
    assert [r.decision for r in results] == [Delivery.SKIPPED]
    assert harness.row(run_id)["status"] == "skipped"


def _runs_tuples_read(conn) -> int:
    """Tuples of `runs` read so far (sequential scans and index entries), this session's own
    counts flushed first."""
    conn.execute(text("SELECT pg_stat_force_next_flush()"))
    return int(
        conn.execute(
            text(
                "SELECT (SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables "
                "WHERE relname = 'runs') + (SELECT COALESCE(sum(idx_tup_read), 0) "
                "FROM pg_stat_user_indexes WHERE relname = 'runs')"
            )
        ).scalar_one()
    )


@pytest.mark.parametrize("scene", ["plain", "not_admitted", "cancel", "skip", "claim_locked"])
def test_each_path_of_the_claim_reads_a_few_tuples_of_runs_however_many_there_are(
    harness, scene
) -> None:
    # Every statement of the function finds the run by primary key, and the look for
    # another run in progress probes two partial indexes by tenant and by trigger: a
    # sequential scan, a walk of the trigger's history or of every run in progress would
    # read thousands here. The runs in progress come after the statistics, as after a
    # burst: a plan that trusts them to be few walks them all (ix_runs_in_progress).
    policy = "skip" if scene in ("skip", "claim_locked") else "allow"
    trigger_id = harness.trigger(overlap_policy=policy)
    now = harness.clock.now()
    with harness.engine.begin() as conn:
        factories.make_runs(conn, 3000, returning=False, trigger_id=trigger_id,
                            tenant_id="tenant-a", status="succeeded", attempt=1,
                            scheduled_for=factories.every(now - timedelta(days=30),
                                                          timedelta(minutes=1)))  # fmt: skip
        conn.execute(text("ANALYZE runs"))
        factories.make_runs(conn, 3000, returning=False, tenant_id="burst", status="running",
                            attempt=1)  # fmt: skip
    if scene == "skip":
        harness.run(trigger_id, scheduled_for=now - timedelta(minutes=1), status="running",
                    attempt=1)  # fmt: skip
    run_id = harness.run(trigger_id, status="pending" if scene == "not_admitted" else "admitted")
    if scene == "cancel":
        set_columns(harness, run_id, "cancel_requested_at = now()")
    expected = {"plain": Delivery.RUNNING, "not_admitted": Delivery.DUPLICATE,
                "cancel": Delivery.CANCELLED, "skip": Delivery.SKIPPED,
                "claim_locked": Delivery.RUNNING}[scene]  # fmt: skip

    with db.statements(harness.engine) as conn:
        before = _runs_tuples_read(conn)
        assert q.claim(conn, run_id, worker=WORKER).decision == expected
        read = _runs_tuples_read(conn) - before

    assert read < 30, read
