"""The migrations build exactly the schema the models describe, and run both ways."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from app import models
from tests import support


@pytest.fixture()
def empty_database() -> Iterator[str]:
    url = support.create_database("sched_migr")
    try:
        yield url
    finally:
        support.drop_database(url)


@pytest.fixture()
def migrated_database() -> Iterator[str]:
    """A database at head: a copy of one the migrations built (support.database_at)."""
    url = support.database_at("head")
    try:
        yield url
    finally:
        support.drop_database(url)


def test_models_and_migrations_agree(migrated_database: str) -> None:
    engine = create_engine(support.sqlalchemy_url(migrated_database))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), models.Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


SCHEMA_FACTS = {
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
    "AND tablename <> 'alembic_version'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
    "FROM pg_constraint WHERE connamespace = 'public'::regnamespace "
    "AND conrelid::regclass::text <> 'alembic_version'",
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = 'public' "
    "AND table_name <> 'alembic_version'",
}


def _facts(url: str) -> dict[str, set[tuple]]:
    engine = create_engine(support.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return {k: {tuple(r) for r in conn.execute(text(q))} for k, q in SCHEMA_FACTS.items()}
    finally:
        engine.dispose()


def test_indexes_constraints_and_defaults_match_the_models_exactly(migrated_database: str) -> None:
    # autogenerate's comparison cannot see CHECK constraints, partial-index predicates or
    # server defaults; PostgreSQL's own definitions of both schemas can.
    from_models = support.create_database("sched_models")
    try:
        engine = create_engine(support.sqlalchemy_url(from_models))
        try:
            models.Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        migrated, modelled = _facts(migrated_database), _facts(from_models)
    finally:
        support.drop_database(from_models)
    for kind in SCHEMA_FACTS:
        assert migrated[kind] == modelled[kind], kind
    assert any("WHERE ((kind)::text = 'scheduled'::text)" in d for _, d in migrated["indexes"])


def test_upgrade_downgrade_upgrade_round_trip(empty_database: str) -> None:
    cfg = support.alembic_config(empty_database)
    command.upgrade(cfg, "head")
    command.downgrade(cfg, "base")
    engine = create_engine(support.sqlalchemy_url(empty_database))
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            state = conn.execute(text("SELECT id, generation FROM scheduler_state")).all()
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert state == [(1, 0)]
    assert {"triggers", "runs", "scheduler_state", "api_keys", "idempotency_records"} <= tables


def _runs_tuples_read(cur) -> int:
    """Tuples of `runs` read so far (sequential scans and index entries), with this
    session's own counts flushed first."""
    cur.execute("SELECT pg_stat_force_next_flush()")
    cur.execute(
        "SELECT (SELECT COALESCE(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relname = 'runs')"
        " + (SELECT COALESCE(sum(idx_tup_read), 0) FROM pg_stat_user_indexes "
        "WHERE relname = 'runs')"
    )
    return int(cur.fetchone()[0])


@contextmanager
def _admission_scene(url: str) -> Iterator[tuple[Any, Callable[[], int]]]:
    """A migrated database with ten triggers of ten tenants and autovacuum off for `runs`:
    (an autocommit cursor to set the scene with, a function that runs one admission round
    in a session of its own, which keeps its plans, and returns the tuples of `runs` it
    read)."""
    admin, session = psycopg2.connect(url), psycopg2.connect(url)
    admin.autocommit = session.autocommit = True
    cur, own = admin.cursor(), session.cursor()

    def round_reads() -> int:
        before = _runs_tuples_read(own)
        own.execute("SELECT run_id FROM scheduler_admission_round_v2(8, 8, 2, NULL, 4242)")
        own.fetchall()
        return _runs_tuples_read(own) - before

    try:
        cur.execute("ALTER TABLE runs SET (autovacuum_enabled = false)")
        cur.execute(
            "INSERT INTO triggers (id, tenant_id, name, run_at, action) "
            "SELECT gen_random_uuid(), 'tenant-' || n % 10, 't' || n, now(), '{}' "
            "FROM generate_series(1, 10) AS n"
        )
        yield cur, round_reads
    finally:
        admin.close()
        session.close()


def _wait(cur: Any, count: int) -> None:
    """`count` runs waiting, spread over the ten triggers."""
    cur.execute(
        "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key)"
        " SELECT gen_random_uuid(), t.id, t.tenant_id, clock_timestamp(), 'manual', "
        "gen_random_uuid()::text "
        "FROM triggers AS t, generate_series(1, %s)",
        (count // 10,),
    )


@pytest.mark.parametrize("analyzed", [False, True], ids=["never analyzed", "analyzed tiny"])
def test_an_admission_round_planned_before_a_burst_reads_a_few_runs_after_it(
    migrated_database: str, analyzed: bool
) -> None:
    """The round keeps its plan for the session (migration 0008), made here while 20 runs
    waited. After a burst it must read a few runs, not the waiting room: 0006's statement,
    with such a plan, read a tenant's waiting runs for each candidate (4,054 tuples here;
    5 ms a candidate with 20,000 waiting), and with statistics of the tiny table the plan
    scanned the whole table three times (6,072)."""
    with _admission_scene(migrated_database) as (cur, round_reads):

        def round_() -> int:
            cur.execute(
                "UPDATE runs SET status = 'succeeded', finished_at = now() WHERE id = "
                "(SELECT id FROM runs WHERE status = 'admitted' LIMIT 1)"
            )
            reads = round_reads()
            cur.execute("SELECT count(*) FROM runs WHERE status = 'admitted'")
            assert cur.fetchone()[0] == 8, "the freed slot went to a waiting run"
            return reads

        _wait(cur, 20)
        if analyzed:
            cur.execute("ANALYZE runs")
        round_reads()  # the plan is made now, with 20 runs waiting: 8 of them admitted
        cur.execute("SELECT count(*) FROM runs WHERE status = 'admitted'")
        assert cur.fetchone()[0] == 8
        round_()
        _wait(cur, 2000)
        assert round_() < 200


def test_an_admission_round_skips_the_dead_entries_of_runs_that_went_through(
    migrated_database: str,
) -> None:
    """Runs pass through `admitted` and `running` in moments, and each leaves dead index
    entries until VACUUM. The round counts the runs in progress at every call: by bitmap
    scans it visited every dead entry's heap page at every call (8,000 tuples here, at each
    of them); by plain index scans (migration 0009) the first scan marks them dead and the
    next ones skip them."""
    with _admission_scene(migrated_database) as (cur, round_reads):
        _wait(cur, 2000)
        for status in ("admitted", "running", "succeeded"):  # 2,000 runs went through
            cur.execute("UPDATE runs SET status = %s", (status,))
            if status == "admitted":  # statistics taken while many runs were in progress
                cur.execute("ANALYZE runs")

        # An entry is marked dead only once no transaction on the server could still see
        # its row (another test's session, an autovacuum worker), so the rounds visit them
        # until then; after it, nothing waits and nothing runs, and no round reads them
        # again. By bitmap scans every round read them all, however long this waited.
        deadline = time.monotonic() + 30
        while (reads := round_reads()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [reads] + [round_reads() for _ in range(3)] == [0, 0, 0, 0]


def test_an_admission_round_planned_on_a_new_table_probes_one_at_a_time_triggers(
    migrated_database: str,
) -> None:
    """A round planned before the table's first ANALYZE, then 20,000 fires of 2,000
    `buffer_one` triggers waiting. With ix_runs_pending_fire in place (migration 0010), such
    a plan ran the test "another fire of the trigger waits ahead" as a hashed subplan over
    every waiting run, for every candidate run (millions of index entries, 3 s a round);
    OFFSET 0 keeps it a probe of the trigger's own line."""
    with _admission_scene(migrated_database) as (cur, round_reads):
        cur.execute("DELETE FROM triggers")
        round_reads()  # planned now: nothing waits, and no statistics
        cur.execute(
            "INSERT INTO triggers (id, tenant_id, name, cron, action, overlap_policy) "
            "SELECT md5('t' || n)::uuid, 'tenant-' || n, 't', '* * * * *', '{}', 'buffer_one' "
            "FROM generate_series(1, 2000) AS n"
        )
        cur.execute(
            "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key)"
            " SELECT gen_random_uuid(), md5('t' || (n % 2000 + 1))::uuid, "
            "'tenant-' || (n % 2000 + 1), timestamptz '2026-01-01' + (n / 2000) * interval '1 min',"
            " 'manual', n::text FROM generate_series(0, 19999) AS n"
        )

        reads = round_reads()

        cur.execute("SELECT count(*) FROM runs WHERE status = 'admitted'")
        assert cur.fetchone()[0] == 8
        assert reads < 5000, reads


@pytest.mark.parametrize("analyzed", [False, True], ids=["planned before", "analyzed"])
def test_an_admission_round_reads_what_a_retry_pile_can_use_not_the_pile(
    migrated_database: str, analyzed: bool
) -> None:
    """One tenant's 50,000 retries whose backoff has passed (failing runs, a backfill) and
    ten tenants with 2,000 fires each waiting. The round holds the global admission lock: it used
    to read every due retry of every tenant (195 ms at 200,000, 800 ms at 1,000,000). Now it
    reads, per tenant, what its free slots could use times the factor (migration 0012), and
    the others still get their turns."""
    with _admission_scene(migrated_database) as (cur, round_reads):
        if not analyzed:
            round_reads()  # planned now: nothing waits, and no statistics
        _wait(cur, 20_000)  # statistics where no one tenant's runs stand out
        cur.execute("SELECT id, tenant_id FROM triggers ORDER BY tenant_id")
        (pile_trigger, pile_tenant), *others = cur.fetchall()
        cur.execute(
            "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, idempotency_key,"
            " attempt, not_before) SELECT gen_random_uuid(), %s, %s, "
            "now() - interval '2 days' + n * interval '1 s', 'manual', n::text, 1, "
            "now() - interval '1 day' + n * interval '1 s' FROM generate_series(1, 50000) AS n",
            (pile_trigger, pile_tenant),
        )
        for trigger_id, tenant_id in others:
            cur.execute(
                "INSERT INTO runs (id, trigger_id, tenant_id, scheduled_for, kind, "
                "idempotency_key) VALUES (gen_random_uuid(), %s, %s, now(), 'manual', %s)",
                (trigger_id, tenant_id, tenant_id),
            )
        if analyzed:
            cur.execute("ANALYZE runs")

        reads = round_reads()

        cur.execute(
            "SELECT tenant_id, count(*), min(scheduled_for) FROM runs "
            "WHERE status = 'admitted' GROUP BY tenant_id"
        )
        admitted = {tenant: (n, oldest) for tenant, n, oldest in cur.fetchall()}
        assert sum(n for n, _ in admitted.values()) == 8
        assert set(admitted) <= {pile_tenant} | {tenant for _, tenant in others}
        assert admitted.get(pile_tenant, (0,))[0] == 1, "one turn each, the pile included"
        cur.execute(
            "SELECT min(scheduled_for) FROM runs WHERE tenant_id = %s AND attempt = 1",
            (pile_tenant,),
        )
        assert admitted[pile_tenant][1] == cur.fetchone()[0], "the pile's oldest fire first"
        assert reads < 2000, reads  # 450,963 when each tenant walked every due retry


def test_each_database_function_is_its_file_in_app_queries_sql(migrated_database: str) -> None:
    """What runs in production is what app/queries/sql/ says: every function of the
    migrated schema has a file there, and running the file changes nothing of its
    definition (body, arguments, results, SET options)."""
    folder = Path(__file__).resolve().parents[2] / "app" / "queries" / "sql"
    with closing(psycopg2.connect(migrated_database)) as conn, conn.cursor() as cur:
        conn.autocommit = True

        def definitions() -> dict[str, str]:
            cur.execute(
                "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc AS p "
                "JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = 'public'"
            )
            return dict(cur.fetchall())

        migrated = definitions()
        files = sorted(folder.glob("*.sql"))
        assert sorted(f"scheduler_{f.stem}" for f in files) == sorted(migrated)
        for file in files:
            cur.execute(file.read_text())
        assert definitions() == migrated


def test_no_migration_loads_another() -> None:
    """A migration carries the whole text of what it defines (and of what its downgrade
    restores), frozen: replaying several files in one's head is not how to read a function.
    Tests and benchmarks that compare older definitions read tests/fixtures."""
    versions = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    loaders = ("importlib", "spec_from_file_location", "ScriptDirectory", "_migration(")
    found = {
        path.name: word
        for path in sorted(versions.glob("*.py"))
        for word in loaders
        if word in path.read_text()
    }
    assert found == {}
