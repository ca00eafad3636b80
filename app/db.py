"""Engine, session and connection scopes. No queries live here: they are in app/queries/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app import config

_engines: dict[str, Engine] = {}
_autocommit: dict[Engine, Engine] = {}
_factories: dict[Engine, sessionmaker[Session]] = {}
# Engines are made on first use, and a tick's batch loops (app/batches.py) may be first at once.
_making = threading.Lock()

# hide_parameters: SQLAlchemy's error messages would otherwise carry the statement's values
# (payloads, webhook URLs and headers: tenants' secrets) into the logs.
_POOL = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10, "hide_parameters": True}


def get_engine(url: str | None = None) -> Engine:
    """One pooled engine per URL per process (default: the configured database)."""
    url = url or config.get_settings().sqlalchemy_url
    engine = _engines.get(url)
    if engine is None:
        with _making:
            engine = _engines.get(url)
            if engine is None:
                engine = _engines[url] = create_engine(url, **_POOL)
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (after fork, at shutdown, between tests)."""
    for engine in [*_engines.values(), *_autocommit.values()]:
        engine.dispose()
    _engines.clear()
    _autocommit.clear()
    _factories.clear()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    engine = engine or get_engine()
    factory = _factories.get(engine)
    if factory is None:
        factory = _factories[engine] = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction: committed on success, rolled back on an exception."""
    with engine.begin() as conn:
        yield conn


@contextmanager
def statements(engine: Engine) -> Iterator[Connection]:
    """A connection in autocommit, for steps that are one conditional statement each: no
    BEGIN and COMMIT round trips on the runner's hot path.

    It comes from a second pool of the same database whose connections are in autocommit
    from the start: switching a pooled connection to autocommit and back costs a round trip
    each way with psycopg2, as much as the statement itself."""
    with autocommit_engine(engine).connect() as conn:
        yield conn


def autocommit_engine(engine: Engine) -> Engine:
    """The autocommit pool that goes with `engine` (created on first use). Its connections
    are pinged at checkout only after sitting idle (`ping_when_idle`)."""
    found = _autocommit.get(engine)
    if found is None:
        with _making:
            found = _autocommit.get(engine)
            if found is None:
                found = create_engine(
                    engine.url, isolation_level="AUTOCOMMIT", **{**_POOL, "pool_pre_ping": False}
                )
                ping_when_idle(found)
                _autocommit[engine] = found
    return found


# A connection back in the pool for less than this is taken out again without a ping.
PING_AFTER_IDLE_SECONDS = 1.0


def ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only when it has been idle for more than
    PING_AFTER_IDLE_SECONDS; replace it when the ping fails.

    A ping is a round trip: with `pool_pre_ping` a worker chaining short runs pinged before
    every finish, a connection it had used a few milliseconds before, and spent about a
    seventh of its time waiting for pings. What a ping finds is a connection closed while
    it sat in the pool: a server restarted or an idle timeout (PgBouncer, a firewall), which
    do not happen to a connection used a moment ago; a restart within that moment fails the
    statement, as it fails a statement in flight. SQLAlchemy's documented custom ping:
    raising DisconnectionError at checkout makes the pool discard the connection and take
    another."""

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def idle_from_now(dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        if time.monotonic() - record.info.get("idle_since", 0.0) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"ping failed: {type(exc).__name__}") from exc
