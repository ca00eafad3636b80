"""Helpers shared by the test tiers: throwaway databases (app.dbadmin), an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from app.dbadmin import (  # noqa: F401 - re-exported for the tests
    alembic_config,
    create_database,
    drop_database,
    migrate,
    sqlalchemy_url,
    with_database,
)
from app.dbadmin import server_url as admin_url  # noqa: F401
from app.principals import Actor

# A tenant admin, as the domain's writers need one (every key was one before principals).
OWNER = Actor("owner", may_act_for_anyone=True)


@dataclass
class FakeClock:
    """An injected clock: `now()` returns what the test set; `advance()` moves it."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def set(self, value: datetime) -> None:
        assert value.tzinfo is not None, "the clock holds aware datetimes only"
        self.current = value

    def advance(self, **delta: float) -> datetime:
        self.current = self.current + timedelta(**delta)
        return self.current
