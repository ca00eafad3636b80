"""The composition root: one Scheduler per process owns what every adapter used to assemble
for itself (settings, the limits and caps, the clock, publishing and the hand-off).

`web.create_app` builds one for the web process (and the CLI, which runs in its app), and
Celery builds one per worker process after the fork (tasks/celery_app.py). Views, CLI
commands and tasks pass it input only, so the API, the console and the CLI create triggers
and runs by the same path under the same caps (docs/design.md section 17). Tests replace
the clock or the publisher on the object itself.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import admission, backfill, backlog, db, dispatch, principals, run_history, runs
from app import triggers as trigger_rules
from app.config import Settings
from app.models import Run, Trigger


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Scheduler:
    """This process's scheduler: its policies from `settings`, its edges injected."""

    settings: Settings
    # publish(run_ids): hand admitted runs to the broker.
    publish: admission.Publish
    clock: Callable[[], datetime] = utcnow
    # pass_on(): have another process go on handing off (app/admission.py, MAX_ROUNDS).
    pass_on: admission.PassOn | None = None
    # wake(at): ask for a hand-off at `at` (a retry's not_before).
    wake: Callable[[datetime], Any] | None = None
    started_at: datetime = field(default_factory=utcnow)  # /healthz's grace period

    @property
    def engine(self) -> Engine:
        return db.get_engine(self.settings.sqlalchemy_url)

    @property
    def limits(self) -> admission.Limits:
        """The concurrency caps admission holds every hand-off to."""
        return admission.Limits.of(self.settings)

    def now(self) -> datetime:
        """The current instant (aware UTC) from this process's clock."""
        return self.clock()

    # Writes every adapter shares (API, console, CLI): each applies the tenant's caps.

    def create_trigger(
        self,
        session: Session,
        *,
        tenant_id: str,
        values: dict[str, Any],
        by: principals.Actor,
        actor: str | None = None,
    ) -> Trigger:
        """A new trigger, within MAX_TRIGGERS_PER_TENANT (app/triggers.py create)."""
        return trigger_rules.create(
            session, tenant_id=tenant_id, values=values, now=self.now(),
            max_triggers=self.settings.max_triggers_per_tenant, by=by, actor=actor,
        )  # fmt: skip

    def run_now(
        self,
        session: Session,
        trigger_id: uuid.UUID,
        *,
        scope: str | None,
        request_key: str | None,
        by: principals.Actor,
    ) -> tuple[Run, bool]:
        """A manual run, within MAX_WAITING_RUNS_PER_TENANT: (run, created). The caller
        hands a created run off (`hand_off`) once the session has committed."""
        return run_history.run_now(
            session, trigger_id, scope=scope, request_key=request_key, now=self.now(),
            max_waiting=self.settings.max_waiting_runs_per_tenant, by=by,
        )  # fmt: skip

    def backfill(
        self,
        session: Session,
        trigger_id: uuid.UUID,
        *,
        scope: str | None,
        start: datetime,
        end: datetime,
        by: principals.Actor,
    ) -> backfill.BackfillResult:
        """Backfill runs for [start, end), within MAX_WAITING_RUNS_PER_TENANT and
        BACKFILL_MAX_AGE_DAYS. The caller hands the new runs off after commit."""
        return backfill.backfill(
            session, trigger_id, scope=scope, start=start, end=end, now=self.now(),
            max_waiting=self.settings.max_waiting_runs_per_tenant,
            max_age_days=self.settings.backfill_max_age_days, by=by,
        )  # fmt: skip

    def hand_off(self, *handed: Run) -> None:
        """After new runs commit: admit into the free slots and publish; `handed` shows the
        ones admitted as such (app/run_history.py hand_off)."""
        run_history.hand_off(
            self.engine, handed, limits=self.limits, publish=self.publish, now=self.now(),
            pass_on=self.pass_on,
        )  # fmt: skip

    def backlog(self, session: Session) -> backlog.Report:
        """The backlog health report, leaving out tenants held back by their own caps."""
        return backlog.report(
            session,
            max_per_tenant=self.settings.max_running_per_tenant,
            max_waiting=self.settings.max_waiting_runs_per_tenant,
            limit=backlog.max_wait(self.settings.dispatch_interval_seconds),
        )

    # The worker's and the beat's side.

    def runtime(self, worker: str, *, rng: random.Random | None = None) -> runs.Runtime:
        """What the runner needs to deliver runs as `worker` (app/runs.py)."""
        return runs.Runtime(
            engine=self.engine, publish=self.publish, settings=self.settings, worker=worker,
            clock=self.clock, rng=rng or random.Random(), wake=self.wake, pass_on=self.pass_on,
            chain_seconds=float(self.settings.worker_chain_seconds),
        )  # fmt: skip

    def tick(self, release_id: str, *, now: datetime | None = None) -> dispatch.TickStats:
        """One dispatch tick on behalf of `release_id`, at `now` (default: PostgreSQL's
        clock, docs/design.md section 15)."""
        engine = self.engine
        return dispatch.run_tick(
            engine,
            now=now or dispatch.database_now(engine),
            release_id=release_id,
            publish=self.publish,
            options=dispatch.default_options(self.settings),
            pass_on=self.pass_on,
        )
