"""What a view needs from its app: the scheduler (app/service.py, the composition root),
a database session, the caller.

The scheduler lives in `app.extensions["scheduler"]`, built once by create_app, so tests can
inject a fake clock or a failing broker without patching modules.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import config, db, keys, principals, service

EXTENSION = "scheduler"


def publish_runs(run_ids: Iterable[uuid.UUID]) -> Any:
    """Hand runs to Celery (web imports nothing from tasks but this)."""
    from tasks import publish  # built on first use: a web process may never enqueue

    return publish.enqueue_runs(run_ids)


def request_hand_off() -> None:
    """Ask a worker for a hand-off (web imports nothing from tasks but this and the above)."""
    from tasks import publish

    publish.request_hand_off()


def services() -> service.Scheduler:
    """This app's scheduler: views pass it input, it applies the settings' caps."""
    return current_app.extensions[EXTENSION]


def settings() -> config.Settings:
    return services().settings


def now() -> datetime:
    """The current instant (aware UTC) from the app's clock."""
    return services().clock()


def engine() -> Engine:
    return db.get_engine(settings().sqlalchemy_url)


@contextmanager
def session() -> Iterator[Session]:
    """A transaction on the app's database: commits on success, rolls back on error."""
    with db.session_scope(engine()) as value:
        yield value


def principal() -> keys.Principal:
    """The authenticated caller (set by web.auth before the view runs)."""
    return g.principal


def actor() -> principals.Actor:
    """The caller as a writer of triggers: its principal and whether it may act for anyone."""
    return principal().actor


def scope() -> str | None:
    """The caller's tenant, or None for an admin key (every tenant)."""
    return principal().scope
