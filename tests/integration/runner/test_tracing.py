"""Traces (section 16), read from the OpenTelemetry SDK's in-memory exporter: one trace per
run, from the tick that created it through admission and a real Celery worker (in this
process, on the test Redis) to the webhook call, whose request carries `traceparent`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import text

from app import dispatch, tracing
from tasks import publish
from tests.integration.runner.receiver import Receiver


@pytest.fixture()
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = tracing.configure("tests", processor=SimpleSpanProcessor(exporter))
    CeleryInstrumentor().instrument(tracer_provider=provider)
    try:
        yield exporter
    finally:
        CeleryInstrumentor().uninstrument()
        tracing.shutdown()


def due_webhook_trigger(harness, receiver: Receiver, now: datetime) -> uuid.UUID:
    trigger_id = harness.trigger(
        action={"type": "webhook", "url": receiver.url("/hook")},
        tenant_id="tenant-traced",
        cron="* * * * *",
    )
    with harness.engine.begin() as conn:
        conn.execute(
            text("UPDATE triggers SET next_run_at = :t, next_fire_at = :t WHERE id = :id"),
            {"t": now, "id": trigger_id},
        )
    return trigger_id


def test_a_run_is_one_trace_from_tick_to_webhook(
    spans, harness, receiver, celery_app, settings
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    trigger_id = due_webhook_trigger(harness, receiver, now)

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        stats = dispatch.run_tick(
            harness.engine, now=now, release_id=settings.release_id, publish=publish.enqueue_runs
        )
        assert stats.dispatched == 1
        [[run_id, status]] = _runs(harness, trigger_id, wait_for_end=True)

    assert status == "succeeded"
    by_name = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    trace_id = uuid.UUID(run_id).int
    fire = by_name["scheduler.fire"][0]
    admission = by_name["scheduler.admission"][0]
    run = by_name["scheduler.run"][0]
    [webhook] = [s for s in spans.get_finished_spans() if s.kind.name == "CLIENT"
                 and s.attributes.get("http.request.method", s.attributes.get("http.method"))
                 == "POST"]  # fmt: skip
    [consumed] = [s for s in spans.get_finished_spans() if s.name == "run/run_trigger"]
    for span in (fire, admission, run, webhook, consumed):
        assert span.context.trace_id == trace_id, span.name
    assert fire.parent is None  # the trace's root
    assert admission.parent.span_id == fire.context.span_id
    assert run.parent.span_id == fire.context.span_id
    assert webhook.parent.span_id == run.context.span_id
    assert dict(run.attributes) == {
        "scheduler.run_id": run_id,
        "scheduler.trigger_id": str(trigger_id),
        "scheduler.tenant_id": "tenant-traced",
        "scheduler.attempt": 1,
        "scheduler.outcome": "succeeded",
    }
    assert fire.attributes["scheduler.tenant_id"] == "tenant-traced"
    # The receiver sees the webhook span as the caller: W3C traceparent with the run's trace.
    headers = {k.lower(): v for k, v in receiver.hits()[0].headers.items()}
    traceparent = headers["traceparent"]
    assert traceparent == f"00-{trace_id:032x}-{webhook.context.span_id:016x}-01"


def test_without_otel_settings_nothing_is_traced(harness, receiver, monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert tracing.configure("tests") is None
    assert not tracing.enabled()
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": receiver.url("/h")}))
    assert harness.execute(run_id) == "succeeded"
    assert "traceparent" not in {k.lower() for k in receiver.hits("/h")[0].headers}
    assert tracing.carrier(run_id) == {}


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
    ],
)
def test_the_standard_variables_ask_for_traces(env: dict, wanted: bool) -> None:
    assert tracing.requested(env) is wanted


def _runs(harness, trigger_id: uuid.UUID, *, wait_for_end: bool) -> list[list[str]]:
    import time

    deadline = time.monotonic() + 30
    while True:
        with harness.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, status FROM runs WHERE trigger_id = :t"), {"t": trigger_id}
            ).all()
        done = rows and all(status in ("succeeded", "failed") for _, status in rows)
        if done or not wait_for_end or time.monotonic() > deadline:
            return [[str(run_id), status] for run_id, status in rows]
        time.sleep(0.1)
