"""The Celery app: broker from BROKER_URL (default REDIS_URL), JSON only, late acks, beat."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
)
from kombu import Exchange, Queue
from kombu.transport import TRANSPORT_ALIASES

from app import config, db, logs, tls, tracing

DISPATCH_TASK = "dispatch_due_triggers"
RUN_TASK = "run_trigger"
HAND_OFF_TASK = "hand_off_runs"
PRUNE_TASK = "prune_finished_runs"
SCHEDULER_QUEUE = "scheduler"
RUNS_QUEUE = "runs"


# kombu's Redis transport, with one client per channel instead of one per publish and ack
# (tasks/redis_transport.py). `redis+socket://` resolves through the `redis` alias.
TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "tasks.redis_transport:Transport"


def broker_url(url: str) -> str:
    """Celery's spelling of a broker URL (a Redis unix socket is `redis+socket://`)."""
    if url.startswith("unix://"):
        return "redis+socket://" + url[len("unix://") :]
    return url


def make_celery(settings: config.Settings | None = None) -> Celery:
    settings = settings or config.get_settings()
    celery = Celery("scheduler", include=["tasks.dispatch", "tasks.runner", "tasks.maintenance"])
    celery.conf.update(
        broker_url=broker_url(settings.broker_url),
        # rediss:// and amqps:// check the server's certificate (app/tls.py).
        broker_use_ssl=tls.broker_ssl(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        # A run is acknowledged only once it has finished, and given back when the worker
        # process dies, so a killed worker's run is redelivered (docs/design.md section 6).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_queues=[_queue(SCHEDULER_QUEUE), _queue(RUNS_QUEUE)],
        task_default_queue=RUNS_QUEUE,
        task_routes={
            DISPATCH_TASK: {"queue": SCHEDULER_QUEUE},
            PRUNE_TASK: {"queue": SCHEDULER_QUEUE},
            RUN_TASK: {"queue": RUNS_QUEUE},
            HAND_OFF_TASK: {"queue": RUNS_QUEUE},
        },
        broker_transport_options={
            "visibility_timeout": 3600,
            # Publishing fails fast when Redis is down (about half a second, not six):
            # runs are already committed, and the recovery sweep hands them over later, so
            # a tick or an API request has nothing to gain from waiting.
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        # Graceful shutdown within a platform's 30 s grace period: with REMAP_SIGTERM=SIGQUIT
        # (the Procfile sets it) SIGTERM stops consuming, lets in-flight runs finish for up
        # to WORKER_SHUTDOWN_GRACE_SECONDS (20), then gives the rest back to the broker. A
        # given-back run that had started is recovered by the sweep once its heartbeat is
        # stale; none is lost.
        worker_soft_shutdown_timeout=float(settings.worker_shutdown_grace_seconds),
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
    )
    return celery


def _queue(name: str) -> Queue:
    # Each queue on its own direct exchange: a message for one never lands in the other.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def beat_schedule(settings: config.Settings) -> dict[str, dict]:
    """The tick at the start of every minute (or every N seconds, aligned to the clock).

    Each tick carries the beat's own release id, which the dispatcher checks against the
    recorded deployment (docs/design.md section 8).
    """
    from tasks import beat

    tick_options = {"expires": max(settings.dispatch_interval_seconds, 5)}
    return {
        "dispatch-due-triggers": {
            "task": DISPATCH_TASK,
            "schedule": beat.every(settings.dispatch_interval_seconds),
            "args": (settings.release_id,),
            "options": tick_options,
        },
        "prune-finished-runs": {
            "task": PRUNE_TASK,
            "schedule": crontab(minute=17),
            "args": (settings.release_id,),
        },
    }


@after_setup_logger.connect
@after_setup_task_logger.connect
def _structured_logs(logger=None, **_kwargs) -> None:
    global _warned
    settings = config.get_settings()
    logs.configure(settings.log_level, settings.log_format)
    if not _warned:  # both signals fire at start; say it once
        _warned = True
        tls.warn_unverified(settings)


_warned = False


@worker_process_init.connect
def _fresh_pool(**_kwargs) -> None:
    # Connections must never be shared across a fork.
    db.dispose_engines()
    _traces()
    from tasks import composition  # imports this module

    composition.build()


@worker_init.connect
def _traces(**_kwargs) -> None:
    """Traces when OTEL_* asks for them (app/tracing.py): in the worker, and again in each
    pool process after the fork (both calls are idempotent per process)."""
    if tracing.configure("scheduler-worker") is not None:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        instrumentor = CeleryInstrumentor()
        if not instrumentor.is_instrumented_by_opentelemetry:  # a pool process inherits it
            instrumentor.instrument(tracer_provider=tracing.provider())


def use_broker(celery: Celery, url: str) -> None:
    """Point an app at another broker (tests, tools).

    The pools are only dropped, not closed: kombu shares producer pools between equal
    connections process-wide, and a closed one would be handed out again.
    """
    celery.conf.broker_url = broker_url(url)
    celery._pool = None
    if "amqp" in celery.__dict__:
        celery.amqp._producer_pool = None
