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
