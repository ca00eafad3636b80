"""The batched sweeps (retention's prunes, recovery's two sweeps) change at most their batch,
whatever plan PostgreSQL picks.

Each picks its rows with `LIMIT :batch FOR UPDATE SKIP LOCKED`. Written as `id IN (...)` or
joined as a subquery in FROM, a nested-loop plan runs that subquery again for each row;
each run skips the rows the statement has just changed (its own) and takes the next ones,
so one statement changed every eligible row: found when retention deleted 5 runs in a batch
of 2 after an earlier test had left the table's statistics describing one row. Here the
statistics describe one row, and the planner is kept from the plans that evaluate the
subquery once (hash and merge joins, materialising, sorting to unique-ify), as such
statistics can make it choose."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, create_engine, text

from app.queries import idempotency_records, run_history, run_queue, webhook_secrets
from tests import factories

NOW = datetime.now(UTC)
ELIGIBLE, BATCH = 10, 3
NESTED_LOOPS = (
    "-c enable_hashjoin=off -c enable_mergejoin=off -c enable_material=off "
    "-c enable_sort=off -c enable_hashagg=off"
)


@pytest.fixture()
def nested(engine: Engine) -> Iterator[Engine]:
    """An engine on the test database whose sessions plan with nested loops only."""
    other = create_engine(engine.url, connect_args={"options": NESTED_LOOPS})
    yield other
    other.dispose()


def _stale_statistics(engine: Engine, table: str, insert: Callable[[Connection, int], object]):
    """One row, ANALYZE, then ELIGIBLE - 1 more: the statistics say the table holds one."""
    with engine.begin() as conn:
        insert(conn, 1)
    with engine.connect() as conn:
        conn.execute(text(f"ANALYZE {table}"))
        conn.commit()
    with engine.begin() as conn:
        insert(conn, ELIGIBLE - 1)


def _runs(engine: Engine, **columns) -> None:
    _stale_statistics(
        engine, "runs", lambda conn, n: factories.make_runs(conn, n, returning=False, **columns)
    )


def _rows(engine: Engine, table: str, insert: str, **params) -> None:
    _stale_statistics(engine, table, lambda conn, n: conn.execute(text(insert), {**params, "n": n}))


def _count(engine: Engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_a_prune_of_runs_deletes_one_batch(engine, nested) -> None:
    _runs(engine, status="succeeded", finished_at=NOW - timedelta(days=40))
    with nested.begin() as conn:
        deleted = run_history.delete_finished(conn, cutoff=NOW - timedelta(days=30), batch=BATCH)
    assert deleted == BATCH
    assert _count(engine, "SELECT count(*) FROM runs") == ELIGIBLE - BATCH


# Each other table retention prunes: its rows, how old they are, its prune.
PRUNES = {
    "idempotency_records": (
        "INSERT INTO idempotency_records (tenant_id, key, request_hash, created_at) "
        "SELECT 'a', gen_random_uuid()::text, 'h', :at FROM generate_series(1, :n)",
        timedelta(days=3),
        idempotency_records.delete_expired,
    ),
    "webhook_secrets": (
        "INSERT INTO webhook_secrets (id, tenant_id, secret_ciphertext, created_at, revoked_at) "
        "SELECT gen_random_uuid(), 'a', 'x', :at, :at FROM generate_series(1, :n)",
        timedelta(days=9),
        webhook_secrets.delete_dead,
    ),
}


@pytest.mark.parametrize("table", PRUNES)
def test_a_prune_of_another_table_deletes_one_batch(engine, nested, table) -> None:
    insert, age, delete = PRUNES[table]
    _rows(engine, table, insert, at=NOW - age)
    with nested.begin() as conn:
        deleted = delete(conn, cutoff=NOW - timedelta(days=1), batch=BATCH)
    assert deleted == BATCH
    assert _count(engine, f"SELECT count(*) FROM {table}") == ELIGIBLE - BATCH


def test_the_sweep_of_lost_publishes_takes_back_one_batch(engine, nested) -> None:
    _runs(engine, status="admitted", enqueued_at=NOW - timedelta(hours=1))
    with nested.begin() as conn:
        returned = run_queue.return_stale_admitted(conn, lease_seconds=60, batch=BATCH)
    assert len(returned) == BATCH
    assert _count(engine, "SELECT count(*) FROM runs WHERE status = 'pending'") == BATCH


def test_the_sweep_of_lost_workers_takes_back_one_batch(engine, nested) -> None:
    _runs(
        engine,
        trigger_id=uuid.uuid4(),  # deleted: its runs are cancelled
        tenant_id="a",
        status="running",
        attempt=1,
        heartbeat_at=NOW - timedelta(hours=1),
    )
    with nested.begin() as conn:
        taken = run_queue.recover_stale_running(conn, timeout_seconds=60, batch=BATCH)
    assert len(taken) == BATCH
    assert _count(engine, "SELECT count(*) FROM runs WHERE status = 'running'") == (
        ELIGIBLE - BATCH
    )
