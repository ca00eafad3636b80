"""The migrations build exactly the schema the models describe, and run both ways."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_models_and_migrations_agree(empty_database: str) -> None:
    support.migrate(empty_database)
    engine = create_engine(support.sqlalchemy_url(empty_database))
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


def test_indexes_constraints_and_defaults_match_the_models_exactly(empty_database: str) -> None:
    # autogenerate's comparison cannot see CHECK constraints, partial-index predicates or
    # server defaults; PostgreSQL's own definitions of both schemas can.
    support.migrate(empty_database)
    from_models = support.create_database("sched_models")
    try:
        engine = create_engine(support.sqlalchemy_url(from_models))
        try:
            models.Base.metadata.create_all(engine)
        finally:
            engine.dispose()
        migrated, modelled = _facts(empty_database), _facts(from_models)
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


def test_admission_rounds_are_planned_at_every_call(empty_database: str) -> None:
    # A plan cached while `runs` was nearly empty went stale as the waiting room grew: a
    # session that kept it took 300 ms a round instead of 3 ms (bench.peers_e2e at 10,000).
    support.migrate(empty_database)
    engine = create_engine(support.sqlalchemy_url(empty_database))
    try:
        with engine.connect() as conn:
            config = conn.execute(
                text("SELECT proconfig FROM pg_proc WHERE proname = 'scheduler_admission_round'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert "plan_cache_mode=force_custom_plan" in config
