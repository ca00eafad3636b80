"""`/healthz` and `/metrics` (root level, no API key; docs/design.md section 17).

Health is global and cheap, three checks: the database answers (one row read), the broker
(BROKER_URL: Redis or RabbitMQ) answers, checked at most once per BROKER_CHECK_SECONDS per
process, and the scheduler ticked within three tick periods. A fresh install that has never
ticked is healthy for three tick periods after the later of this process's start and the
last restart hook (so a deploy is not failed before its first tick), then unhealthy: a beat
that never starts must not look healthy forever. The backlog is not a health check (one
tenant's pile would turn it 503 for everyone and get web processes restarted): it is the
admin endpoint /api/v1/admin/backlog (web/admin.py, app/backlog.py).

/metrics needs `Authorization: Bearer <METRICS_TOKEN>` when that is set, and serves each
process's last snapshot of the database for METRICS_CACHE_SECONDS (web/metrics.py).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from flask import Response, current_app, request
from flask.views import MethodView
from kombu import Connection
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from werkzeug.exceptions import Unauthorized

from app import config, state, tls
from web import auth, context, ops_schemas
from web.errors import Blueprint
from web.metrics import SchedulerCollector, SnapshotCache

logger = logging.getLogger(__name__)

blp = Blueprint("health", __name__, description="Health and metrics (no API key)")

# A platform probing every few seconds must not open a broker connection each time.
BROKER_CHECK_SECONDS = 10.0
CACHES = "scheduler_health_caches"


@blp.route("/healthz")
class Health(MethodView):
    @blp.response(200, ops_schemas.HealthOut)
    @blp.alt_response(
        503, schema=ops_schemas.HealthOut, description="A dependency is down or stale"
    )
    @blp.doc(security=[])
    def get(self) -> tuple[dict, int]:
        """Database, broker (checked at most every 10 s) and the age of the scheduler's last
        tick; 503 when unhealthy. Global: no tenant's backlog turns it 503."""
        settings, now = context.settings(), context.now()
        database, current = check_database()
        checks = {
            "database": database,
            "broker": cached_broker_check(settings),
            "scheduler": check_ticks(
                current,
                now=now,
                started_at=context.services().started_at,
                max_age=timedelta(seconds=3 * settings.dispatch_interval_seconds),
            ),
        }
        healthy = all(check["ok"] for check in checks.values())
        return {"status": "ok" if healthy else "unhealthy", "checks": checks}, (
            200 if healthy else 503
        )


@blp.route("/metrics")
class Metrics(MethodView):
    @blp.doc(
        security=[{"metricsToken": []}, {}],
        responses={
            "200": {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            },
            "401": {"description": "METRICS_TOKEN is set and the bearer token is not it"},
        },
    )
    def get(self) -> Response:
        """Scheduler metrics in the Prometheus text format, computed from the database (a
        snapshot at most METRICS_CACHE_SECONDS old). Needs `Authorization: Bearer
        <METRICS_TOKEN>` when the service sets one."""
        settings = context.settings()
        if settings.metrics_token:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not auth.secret_matches(
                token.strip(), settings.metrics_token
            ):
                raise Unauthorized()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            SchedulerCollector(
                context.engine,
                context.services().clock,
                max_running=context.services().limits.max_running,
                top_tenants=settings.metrics_top_tenants,
                cache=_caches()["metrics"],
            )
        )
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)


def _caches() -> dict:
    """This app's caches (one per process): the metrics snapshot and broker checks."""
    caches = current_app.extensions.get(CACHES)
    if caches is None:
        seconds = context.settings().metrics_cache_seconds
        caches = current_app.extensions.setdefault(
            CACHES, {"metrics": SnapshotCache(seconds), "broker": {}, "lock": threading.Lock()}
        )
    return caches


def cached_broker_check(settings: config.Settings) -> dict:
    """check_broker(settings), from this process's last check of the broker when it is less
    than BROKER_CHECK_SECONDS old (a failure too: a dead broker costs a connect timeout)."""
    caches, url = _caches(), settings.broker_url
    with caches["lock"]:  # one check at a time: threads of a worker do not pile up
        checked = caches["broker"].get(url)
        if checked is None or time.monotonic() - checked[0] > BROKER_CHECK_SECONDS:
            checked = caches["broker"][url] = (time.monotonic(), check_broker(settings))
    return checked[1]


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


def _celery_url(url: str) -> str:
    # kombu's spelling of a Redis unix socket, as in tasks/celery_app.py.
    return "redis+socket://" + url[len("unix://") :] if url.startswith("unix://") else url
