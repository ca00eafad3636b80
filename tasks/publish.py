"""Hand runs to Celery: one producer, one pipelined batch, many messages.

`celery.send_task` in a loop spends most of its time rebuilding the same message (repr of
the arguments, queue declaration, retry wrappers): about 2,300 messages/s here. The
dispatcher hands over up to 100,000 runs in a tick, so the message for `run_trigger` is built
once by Celery itself (`amqp.as_task_v2`, so the protocol stays Celery's), copied per run
with its id, and published through kombu's pipelined batch: several times faster.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from kombu.exceptions import ChannelError

from app import tracing
from tasks.celery_app import HAND_OFF_TASK, RUN_TASK, RUNS_QUEUE

BATCH = 500
_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"
# The runs queue is declared at most once a minute per process and broker: a declaration
# costs more than the publish it comes with (a finishing run publishes one message), and
# the workers declare their queues too whenever they connect.
DECLARE_EVERY_SECONDS = 60.0
_declared: dict[str, float] = {}


def _template(celery: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    headers, properties, body, _sent_event = celery.amqp.as_task_v2(
        _TEMPLATE_ID, RUN_TASK, args=(_TEMPLATE_ID,), kwargs={}, ignore_result=True
    )
    return headers, properties, body[2]


def enqueue_runs(run_ids: Iterable[uuid.UUID | str]) -> int:
    """Publish `run_trigger(run_id)` for each id, with the Celery task id set to the run id.

    Returns how many were published. Raises the broker's error if publishing fails (no
    retry here: the runs stay `admitted` in the database and the recovery sweep returns
    them to the queue), so a broker outage costs a hand-off no more than one failed
    connection attempt.
    """
    from tasks import celery

    ids: Sequence[str] = [str(run_id) for run_id in run_ids]
    headers, properties, embed = _template(celery)
    with celery.producer_or_acquire() as producer, _batch(producer, len(ids)):
        broker = producer.connection.as_uri()
        declare = time.monotonic() - _declared.get(broker, -DECLARE_EVERY_SECONDS) >= (
            DECLARE_EVERY_SECONDS
        )
        for n, run_id in enumerate(ids):
            producer.publish(
                ((run_id,), {}, embed),
                exchange="",
                routing_key=RUNS_QUEUE,
                serializer="json",
                headers={
                    **headers,
                    "id": run_id,
                    "root_id": run_id,
                    "argsrepr": repr((run_id,)),
                    **tracing.carrier(run_id),
                },
                delivery_mode=2,
                # Declaring the queue with every message is what makes send_task slow.
                declare=[celery.amqp.queues[RUNS_QUEUE]] if declare and not n else None,
                retry=False,
                **{**properties, "correlation_id": run_id},
            )
    if declare:  # only once the publish that declared the queue went through
        _declared[broker] = time.monotonic()
    return len(ids)


def request_hand_off() -> None:
    """Ask a worker for a hand-off (`hand_off_runs`): how a holder of admission's lock that
    went round MAX_ROUNDS times passes the duty on (app/admission.py)."""
    from tasks import celery

    celery.send_task(HAND_OFF_TASK, retry=False)


def _batch(producer: Any, count: int) -> AbstractContextManager[Any]:
    """kombu's pipelined batch for several messages; none for one (a finishing run's
    hand-off usually admits one run, and building the pipeline costs more than the send)."""
    return producer.batch(max_size=BATCH) if count > 1 else nullcontext()


def queue_depth() -> int:
    """How many run messages wait in the broker's runs queue (not counting ones a worker
    holds for a later ETA). Raises the broker's error when it is unreachable."""
    from tasks import celery

    with celery.connection_for_read() as connection:
        try:
            declared = connection.default_channel.queue_declare(queue=RUNS_QUEUE, passive=True)
        except ChannelError:  # never declared on this broker: nothing can be waiting in it
            return 0
        return int(declared.message_count)
