"""The autocommit pool's ping at checkout (app/db.py, ping_when_idle): skipped for a
connection used a moment ago, and a connection closed while idle is replaced unseen."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app import db


def backend_pid(engine) -> int:
    with db.statements(engine) as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


@pytest.fixture()
def pings(engine, monkeypatch) -> list[int]:
    """The pings sent, one entry each, on a fresh autocommit pool."""
    db.autocommit_engine(engine).dispose()
    sent: list[int] = []
    dialect = db.autocommit_engine(engine).dialect
    real_ping = dialect.do_ping

    def counted(dbapi_connection):
        sent.append(1)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return sent


def test_a_connection_used_a_moment_ago_is_not_pinged(engine, pings) -> None:
    first = backend_pid(engine)
    assert backend_pid(engine) == first, "the same pooled connection"
    assert pings == []


def test_a_connection_idle_for_longer_is_pinged_and_replaced_when_closed(
    engine, pings, monkeypatch
) -> None:
    first = backend_pid(engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", -1.0)  # every checkout counts as idle
    with engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})

    second = backend_pid(engine)  # no error: the ping found the connection closed

    assert len(pings) == 2, "the closed connection's ping, then its replacement's"
    assert second != first
