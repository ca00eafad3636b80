"""Engine, session and connection scopes. No queries live here: they are in app/queries/."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app import config

_engines: dict[str, Engine] = {}
_autocommit: dict[Engine, Engine] = {}
_factories: dict[Engine, sessionmaker[Session]] = {}

# hide_parameters: SQLAlchemy's error messages would otherwise carry the statement's values
# (payloads, webhook URLs and headers: tenants' secrets) into the logs.
_POOL = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 10, "hide_parameters": True}


def get_engine(url: str | None = None) -> Engine:
    """One pooled engine per URL per process (default: the configured database)."""
    url = url or config.get_settings().sqlalchemy_url
    engine = _engines.get(url)
    if engine is None:
        engine = create_engine(url, **_POOL)
        _engines[url] = engine
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
    """The autocommit pool that goes with `engine` (created on first use)."""
    found = _autocommit.get(engine)
    if found is None:
        found = _autocommit[engine] = create_engine(
            engine.url, isolation_level="AUTOCOMMIT", **_POOL
        )
    return found
