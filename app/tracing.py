"""Traces with OpenTelemetry (docs/design.md section 16): one trace per run.

Off unless the standard variables ask for it (OTEL_EXPORTER_OTLP_ENDPOINT, or
OTEL_TRACES_EXPORTER other than `none`); then every process exports its spans over OTLP
(the SDK reads OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_* and OTEL_TRACES_SAMPLER itself).

A run's trace id is its run id, so the processes that handle a run at different times
(the tick that creates it, an admission round, the worker, its webhook call) put their
spans in one trace without storing a context anywhere:

1. `scheduler.fire` (the tick): the trace's root, with the id derived from the run id and
   a link to the tick's own span;
2. `scheduler.admission`: the run was admitted into a slot (child of the root);
3. `scheduler.run`: one attempt in a worker (child of the root), with the outcome; the
   Celery message carries the run's `traceparent`, so Celery's own consume span joins too;
4. the webhook's HTTP span (urllib3's instrumentation, child of the run span), whose
   request carries `traceparent`.

Attributes: `scheduler.tenant_id`, `scheduler.trigger_id`, `scheduler.run_id`,
`scheduler.attempt`, `scheduler.outcome`. SQLAlchemy's and urllib3's instrumentations are
turned on here; Flask's and Celery's by the web and tasks adapters.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

TRACER = "scheduler"
_provider: TracerProvider | None = None
# The ids the next root span takes (a run's fire), else random ones.
_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "scheduler_forced_ids", default=None
)


class _RunIds(RandomIdGenerator):
    """Random ids, except for a run's root span, whose ids come from the run id."""

    def generate_trace_id(self) -> int:
        forced = _forced.get()
        return forced[0] if forced else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced.get()
        if forced:
            _forced.set(None)  # the root span's id only; its children get random ones
            return forced[1]
        return super().generate_span_id()


def requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the OTEL_* variables ask for traces."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def configure(
    service: str, *, exporter: SpanExporter | None = None, processor: SpanProcessor | None = None
) -> TracerProvider | None:
    """Turn tracing on for this process when asked (or when given an exporter or processor:
    tests), with the SQLAlchemy and urllib3 instrumentations; return the provider, or None
    when tracing stays off. Calling it again returns the first provider."""
    global _provider
    if _provider is not None:
        return _provider
    if exporter is None and processor is None and not requested():
        return None
    if processor is None:
        processor = BatchSpanProcessor(exporter or _exporter())
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource, id_generator=_RunIds())
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    SQLAlchemyInstrumentor().instrument(tracer_provider=provider)
    URLLib3Instrumentor().instrument(tracer_provider=provider)
    _provider = provider
    return provider


def _exporter() -> SpanExporter:
    """OTEL_TRACES_EXPORTER's exporter: `console` (stdout) or OTLP over HTTP (the default;
    the SDK reads OTEL_EXPORTER_OTLP_* itself)."""
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def shutdown() -> None:
    """Flush and stop this process's tracing, and take the instrumentations off (tests)."""
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    SQLAlchemyInstrumentor().uninstrument()
    URLLib3Instrumentor().uninstrument()
    _provider.shutdown()
    _provider = None


def enabled() -> bool:
    return _provider is not None


def provider() -> TracerProvider | None:
    return _provider


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer(TRACER)


def _root_ids(run_id: uuid.UUID | str) -> tuple[int, int]:
    """(trace id, root span id) of a run: the run id, and 8 bytes of its digest."""
    rid = uuid.UUID(str(run_id))
    span_id = int.from_bytes(hashlib.sha256(rid.bytes).digest()[:8], "big") or 1
    return rid.int, span_id


def run_context(run_id: uuid.UUID | str) -> otel_context.Context:
    """A context whose parent is the run's root span (`scheduler.fire`)."""
    trace_id, span_id = _root_ids(run_id)
    parent = trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


def _attributes(**fields: Any) -> dict[str, Any]:
    return {f"scheduler.{k}": str(v) if k.endswith("_id") else v for k, v in fields.items()}


def fires(runs: Iterable[tuple[uuid.UUID, uuid.UUID, str]], *, started: datetime) -> None:
    """Record `scheduler.fire`, the root of each new run's trace, (run id, trigger id,
    tenant) each, from `started` (the batch's start) to now, linked to the current span."""
    if _provider is None:
        return
    tracer = _tracer()
    tick = trace.get_current_span().get_span_context()
    links = [trace.Link(tick)] if tick.is_valid else []
    start_ns = int(started.timestamp() * 1e9)
    for run_id, trigger_id, tenant_id in runs:
        token = _forced.set(_root_ids(run_id))
        try:
            span = tracer.start_span(
                "scheduler.fire",
                context=otel_context.Context(),  # a root: no parent
                links=links,
                start_time=start_ns,
                attributes=_attributes(run_id=run_id, trigger_id=trigger_id, tenant_id=tenant_id),
            )
        finally:
            _forced.reset(token)
        span.end()


def admitted(run_ids: Iterable[uuid.UUID]) -> None:
    """Record `scheduler.admission` in each admitted run's trace."""
    if _provider is None:
        return
    tracer = _tracer()
    for run_id in run_ids:
        tracer.start_span(
            "scheduler.admission",
            context=run_context(run_id),
            attributes=_attributes(run_id=run_id),
        ).end()


def carrier(run_id: uuid.UUID | str) -> dict[str, str]:
    """W3C trace headers (`traceparent`) that put a message's consumer in the run's trace;
    empty when tracing is off."""
    headers: dict[str, str] = {}
    if _provider is not None:
        inject(headers, context=run_context(run_id))
    return headers


@contextmanager
def run_span(*, run_id: Any, trigger_id: Any, tenant_id: str, attempt: int) -> Iterator[Any]:
    """`scheduler.run` for one attempt, current for the block (the webhook's HTTP span is
    its child); the caller sets the outcome with :func:`outcome`. A no-op span when off."""
    if _provider is None:
        yield trace.INVALID_SPAN
        return
    attributes = _attributes(
        run_id=run_id, trigger_id=trigger_id, tenant_id=tenant_id, attempt=attempt
    )
    span = _tracer().start_span("scheduler.run", context=run_context(run_id), attributes=attributes)
    with trace.use_span(span, end_on_exit=True):
        yield span


def outcome(span: Any, value: str) -> None:
    span.set_attribute("scheduler.outcome", value)
