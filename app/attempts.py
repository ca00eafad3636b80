"""One attempt of a run: what the action sees, the tenant's signing secrets, the heartbeat.

docs/design.md sections 6 and 13.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from app import actions, db, heartbeats, webhook_secrets
from app.config import Settings
from app.queries import run_history
from app.queries.runs import RunRow, TriggerRow


def perform(
    engine: Engine,
    settings: Settings,
    run: RunRow | None,
    trigger: TriggerRow | None,
    attempt: int,
    *,
    now: datetime,
) -> actions.Attempt:
    """Run attempt number `attempt` of a claimed run: the trigger's action within its
    timeout, while a heartbeat thread stamps the run's `heartbeat_at` (PostgreSQL's clock).
    `now` dates what the action sees (a webhook's signature), and the action acts for the
    principal the run records (`run_as`, docs/design.md section 18)."""
    assert run is not None and trigger is not None
    run_as = run.run_as  # read with the claim
    if run_as is None:  # inserted by an older release: its trigger's, recorded once
        with db.statements(engine) as conn:
            run_as = run_history.run_as(conn, run.id)
    run_as = run_as or ""
    ctx = actions.RunContext(
        run_id=str(run.id),
        trigger_id=str(run.trigger_id),
        tenant_id=run.tenant_id,
        idempotency_key=run.idempotency_key,
        scheduled_for=run.scheduled_for,
        attempt=attempt,
        payload=dict(trigger.payload or {}),
        run_as=run_as,
    )
    is_webhook = isinstance(trigger.action, dict) and trigger.action.get("type") == "webhook"
    # Read at attempt time: a rotation or revocation applies to the very next attempt.
    secrets = webhook_secrets.signing_secrets(engine, run.tenant_id, now=now) if is_webhook else []
    with heartbeats.watch(engine, run.id, attempt, interval=settings.heartbeat_seconds):
        return actions.perform(
            trigger.action,
            ctx,
            timeout_seconds=trigger.timeout_seconds,
            signing_secrets=secrets,
            now=now,
            allow_private_networks=settings.webhook_allow_private_networks,
        )
