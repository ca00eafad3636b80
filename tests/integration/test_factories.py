"""The row factories the tests and the benchmarks share (tests/factories.py): defaults the
schema accepts, each kind of column value, ids in the order of the rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests import factories

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _runs(conn, ids) -> list:
    rows = conn.execute(text("SELECT * FROM runs WHERE id = ANY(:ids)"), {"ids": ids})
    by_id = {row.id: row for row in rows}
    return [by_id[run_id] for run_id in ids]


def test_runs_by_default_are_pending_manual_runs_of_tenant_a_due_now(engine) -> None:
    with engine.begin() as conn:
        ids = factories.make_runs(conn, 3)
        now = conn.execute(text("SELECT now()")).scalar_one()
        rows = _runs(conn, ids)
    assert [(r.status, r.kind, r.tenant_id, r.scheduled_for) for r in rows] == [
        ("pending", "manual", "tenant-a", now)
    ] * 3
    assert len({r.idempotency_key for r in rows}) == len({r.trigger_id for r in rows}) == 3


def test_each_kind_of_value_sets_its_column_row_by_row(engine) -> None:
    with engine.begin() as conn:
        ids = factories.make_runs(
            conn,
            status=factories.each(["pending", "running", "succeeded"]),
            scheduled_for=factories.every(T0, timedelta(seconds=1)),
            idempotency_key=factories.sql("'pile:' || n"),
            result={"ok": True},
            attempt=2,
        )
        rows = _runs(conn, ids)
    assert [(r.status, r.scheduled_for, r.idempotency_key) for r in rows] == [
        ("pending", T0, "pile:1"),
        ("running", T0 + timedelta(seconds=1), "pile:2"),
        ("succeeded", T0 + timedelta(seconds=2), "pile:3"),
    ]
    assert {(r.attempt, r.result["ok"]) for r in rows} == {(2, True)}


def test_runs_of_a_trigger_take_its_tenant(engine) -> None:
    with engine.begin() as conn:
        trigger_id = factories.make_trigger(conn, tenant_id="acme", run_at=T0, next_run_at=T0)
        [run] = _runs(conn, [factories.make_run(conn, trigger_id=trigger_id)])
        trigger = conn.execute(
            text("SELECT * FROM triggers WHERE id = :id"), {"id": trigger_id}
        ).one()
    assert (run.trigger_id, run.tenant_id) == (trigger_id, "acme")
    assert (trigger.cron, trigger.run_at, trigger.name, trigger.action["name"]) == (
        None, T0, "t1", "echo"
    )  # fmt: skip


def test_a_run_for_each_trigger_in_one_statement(engine) -> None:
    with engine.begin() as conn:
        factories.make_triggers(conn, 4, tenant_id=factories.sql("'tenant-' || n % 2"))
        factories.make_triggers(conn, 1, tenant_id="other")
        ids = factories.make_runs_for_triggers(
            conn, scheduled_for=T0, key_suffix="x", where="t.tenant_id LIKE 'tenant-%'"
        )
        rows = _runs(conn, ids)
    assert sorted(r.tenant_id for r in rows) == ["tenant-0", "tenant-0", "tenant-1", "tenant-1"]
    assert {r.idempotency_key for r in rows} == {f"{r.trigger_id}:x" for r in rows}


def test_a_taken_slot_is_another_tenants_running_run(engine) -> None:
    with engine.begin() as conn:
        [run] = _runs(conn, [factories.occupy_slot(conn)])
    assert (run.tenant_id, run.status, run.idempotency_key) == ("other", "running", "busy")


def test_columns_of_each_of_different_lengths_or_unknown_are_refused(engine) -> None:
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="different lengths"):
            factories.make_runs(
                conn, status=factories.each(["pending"]), attempt=factories.each([])
            )
        with pytest.raises(ValueError, match="no column 'colour'"):
            factories.make_runs(conn, colour="red")
