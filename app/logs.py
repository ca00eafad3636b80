"""Structured logging: one JSON object (or key=value line) per event.

Callers log events, not prose::

    logger.info("run claimed", extra={"event": "run_claimed", "run_id": ..., "trigger_id": ...})

Context that applies to every line of a request or task (request_id, release, ...) is bound
with :func:`bind` and added by the formatter.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

CONTEXT_FIELDS = (
    "event",
    "tenant_id",
    "trigger_id",
    "run_id",
    "generation",
    "release",
    "request_id",
    "deployment_id",
)
_context: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("log_context")
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields to every log line emitted inside the block (this thread or task only)."""
    token = _context.set({**_context.get({}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def bound(name: str) -> Any:
    """A field bound by :func:`bind` in the current context, or None."""
    return _context.get({}).get(name)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    fields.update(_context.get({}))
    for key, value in vars(record).items():
        if key not in _RESERVED and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, separators=(",", ":"))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_kv(value)}" for key, value in _fields(record).items())


def _kv(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if " " in text or "=" in text else text


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log line of the process to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("sqlalchemy.engine", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
