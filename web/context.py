"""What a view needs from its app: settings, the clock, a database session, the caller.

The clock and the run publisher live in `app.extensions["scheduler"]` so tests can inject
a fake clock or a failing broker without patching modules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import admission, config, db, keys, principals, run_history
from app.models import Run

EXTENSION = "scheduler"


@dataclass
class Services:
    """Per-app dependencies (replaceable in tests)."""

    settings: config.Settings
    clock: Callable[[], datetime]
    publish: Callable[[Iterable[uuid.UUID]], Any]
    started_at: datetime  # for /healthz's grace period before the first tick
    # Passes admission's duty on to a worker (app/admission.py, MAX_ROUNDS).
    pass_on: Callable[[], Any] | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def publish_runs(run_ids: Iterable[uuid.UUID]) -> Any:
    """Hand runs to Celery (web imports nothing from tasks but this)."""
    from tasks import publish  # built on first use: a web process may never enqueue

    return publish.enqueue_runs(run_ids)


def request_hand_off() -> None:
    """Ask a worker for a hand-off (web imports nothing from tasks but this and the above)."""
    from tasks import publish

    publish.request_hand_off()


def services() -> Services:
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


def backfill_limits() -> dict[str, int]:
    """The limits app.backfill.backfill holds a tenant to, from this app's settings."""
    return {
        "max_waiting": settings().max_waiting_runs_per_tenant,
        "max_age_days": settings().backfill_max_age_days,
    }


def hand_off(*handed: Run) -> None:
    """After new runs commit (run now, backfill): app.run_history.hand_off with this app's
    limits, broker and clock; the API and the CLI both call it."""
    limits = admission.Limits(
        max_running=settings().max_running, max_per_tenant=settings().max_running_per_tenant
    )
    run_history.hand_off(
        engine(),
        handed,
        limits=limits,
        publish=services().publish,
        now=now(),
        pass_on=services().pass_on,
    )
