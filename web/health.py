"""`/healthz` and `/metrics` (root level, no API key).

Health is four checks: the database answers, the broker (BROKER_URL: Redis or RabbitMQ)
answers, the scheduler ticked within three tick periods, and the waiting room is not
growing. A fresh install that has never ticked is healthy for three tick periods after the
later of this process's start and the last restart hook (so a deploy is not failed before
its first tick), then unhealthy: a beat that never starts must not look healthy forever.

The backlog check fails when a run that could start has waited for a slot longer than
`backlog_max_wait(settings)`: slots are not coming free (workers dead or too few for
MAX_RUNNING, runs as long as their timeout) and the queue grows. Runs waiting for a retry's
`not_before` or behind a `buffer_one` run do not count as waiting until they could start.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from flask import Response
from flask.views import MethodView
from kombu import Connection
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from app import admission, config, state, tls
from web import context, ops_schemas
from web.errors import Blueprint
from web.metrics import SchedulerCollector

logger = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Health and metrics (no API key)")


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, ops_schemas.HealthOut)
    @blp.alt_response(
        503, schema=ops_schemas.HealthOut, description="A dependency is down or stale"
    )
    @blp.doc(security=[])
    def get(self) -> tuple[dict, int]:
        """Database, broker, the age of the scheduler's last tick and the waiting room;
        503 when unhealthy."""
        settings, now = context.settings(), context.now()
        database, current = check_database()
        checks = {
            "database": database,
            "broker": check_broker(settings),
            "scheduler": check_ticks(
                current,
                now=now,
                started_at=context.services().started_at,
                max_age=timedelta(seconds=3 * settings.dispatch_interval_seconds),
            ),
            "backlog": check_backlog(max_wait=backlog_max_wait(settings.dispatch_interval_seconds)),
        }
        healthy = all(check["ok"] for check in checks.values())
        return {"status": "ok" if healthy else "unhealthy", "checks": checks}, (
            200 if healthy else 503
        )


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(
        security=[],
        responses={
            "200": {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    def get(self) -> Response:
        """Scheduler metrics in the Prometheus text format, computed from the database."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            SchedulerCollector(
                context.engine, context.services().clock, max_running=context.settings().max_running
            )
        )
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def check_database() -> tuple[dict, state.State | None]:
    try:
        with context.session() as session:
            current = state.get_state(session)
    except Exception:
        logger.exception("health: database check failed", extra={"event": "health_database"})
        return {"ok": False, "detail": "database unreachable"}, None
    return {"ok": True}, current


def check_broker(settings: config.Settings) -> dict:
    url, ssl = settings.broker_url, tls.broker_ssl(settings)
    try:
        with Connection(_celery_url(url), connect_timeout=2, ssl=ssl or False,
                        transport_options={"max_retries": 0}) as connection:  # fmt: skip
            connection.ensure_connection(max_retries=1)
    except Exception:
        logger.exception("health: broker check failed", extra={"event": "health_broker"})
        return {"ok": False, "detail": "broker unreachable"}
    return {"ok": True}


def check_ticks(
    current: state.State | None, *, now: datetime, started_at: datetime, max_age: timedelta
) -> dict:
    """Whether the scheduler ticked recently enough (see the module docstring)."""
    report: dict = {"last_tick_at": None, "age_seconds": None}
    report["max_age_seconds"] = max_age.total_seconds()
    if current is None:
        return {**report, "ok": False, "detail": "unknown: database unreachable"}
    if current.last_tick_at is not None:
        age = (now - current.last_tick_at).total_seconds()
        report.update(last_tick_at=current.last_tick_at, age_seconds=round(age, 3))
        if age > max_age.total_seconds():
            return {**report, "ok": False, "detail": "the scheduler's last tick is too old"}
        return {**report, "ok": True}
    since = max(t for t in (started_at, current.restarted_at) if t is not None)
    if now - since > max_age:
        return {**report, "ok": False, "detail": "the scheduler has never ticked"}
    return {**report, "ok": True, "detail": "the scheduler has not ticked yet"}


def backlog_max_wait(tick_seconds: int) -> timedelta:
    """How long a run that could start may wait for a slot before the backlog is reported
    as growing: ten tick periods, at least ten minutes."""
    return timedelta(seconds=max(600, 10 * tick_seconds))


def check_backlog(*, max_wait: timedelta) -> dict:
    report: dict = {"max_wait_seconds": max_wait.total_seconds()}
    try:
        with context.session() as session:
            room = admission.backlog(session)
    except Exception:
        logger.exception("health: backlog check failed", extra={"event": "health_backlog"})
        return {**report, "ok": False, "detail": "unknown: database unreachable"}
    report.update(
        waiting=room.waiting,
        oldest_wait_seconds=round(room.oldest_wait_seconds, 3),
        slots_in_use=room.in_use,
    )
    if room.waiting and room.oldest_wait_seconds > max_wait.total_seconds():
        return {**report, "ok": False, "detail": "runs wait for a slot longer than allowed"}
    return {**report, "ok": True}


def _celery_url(url: str) -> str:
    # kombu's spelling of a Redis unix socket, as in tasks/celery_app.py.
    return "redis+socket://" + url[len("unix://") :] if url.startswith("unix://") else url
