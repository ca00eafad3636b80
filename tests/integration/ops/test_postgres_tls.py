"""`DATABASE_URL=postgres://...?sslmode=require` as a hosted PostgreSQL hands it out
(section 16), against a second cluster started here that accepts TLS connections only."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy import text

from app import config, db, state
from tests import tls_servers

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with tls_servers.postgres_tls_only() as port:
        yield port


def url(port: int, sslmode: str) -> str:
    return f"postgres://postgres@127.0.0.1:{port}/postgres?sslmode={sslmode}"


def test_the_cluster_refuses_plain_connections(port: int) -> None:
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(url(port, "disable").replace("postgres://", "postgresql://", 1))


def test_the_release_phase_and_the_app_run_over_tls(port: int) -> None:
    env = {**os.environ, "DATABASE_URL": url(port, "require")}
    alembic = Path(sys.executable).parent / "alembic"
    done = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    settings = config.Settings.from_env({"DATABASE_URL": url(port, "require")})
    engine = db.get_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            encrypted = conn.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).scalar_one()
        with db.session_scope(engine) as session:
            assert state.get_state(session).generation == 0
    finally:
        engine.dispose()
    assert encrypted is True
