"""Structured logging: one JSON object (or a key=value line, or a short text line) per event.

Callers log events, not prose::

    logger.info("run claimed", extra={"event": "run_claimed", "run_id": ..., "trigger_id": ...})

Context that applies to every line of a request or task (request_id, release, ...) is bound
with :func:`bind` and added by the formatter.

Every line is one line whatever it holds: JSON escapes control characters, and the kv format
quotes (and escapes) any value that is not plain printable ASCII, so a request path with
`%0A` cannot forge a line. A database error's text is never logged: PostgreSQL echoes the
offending values (`LINE 1: ...`, `DETAIL: Key (..)=(..)`), which can be a tenant's webhook
token or a header value; its class and SQLSTATE are logged instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg2
from sqlalchemy import exc as sa_exc

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


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": _message(record),
    }
    fields.update(_context.get({}))
    for key, value in vars(record).items():
        if key not in _RESERVED and not key.startswith("_"):
            fields[key] = _safe(value)
    if record.exc_info and record.exc_info[1] is not None:
        fields["exc"] = format_exception(record.exc_info[1])
    return fields


def _message(record: logging.LogRecord) -> str:
    """record.getMessage() with database errors among its arguments described safely
    (Celery logs a failed task as `... raised unexpected: %(exc)s`)."""
    args = record.args
    if not args:
        return str(record.msg)
    safe_args = (
        {key: _safe(value) for key, value in args.items()}
        if isinstance(args, Mapping)
        else tuple(_safe(value) for value in args)
    )
    return str(record.msg) % safe_args


def _safe(value: Any) -> Any:
    """`value` with database errors replaced by their description; a mapping holding one
    loses its `traceback` text too (Celery's failure context carries both)."""
    if isinstance(value, BaseException):
        return _describe(value) if _withheld(value) else value
    if isinstance(value, Mapping):
        leaky = any(isinstance(v, BaseException) and _withheld(v) for v in value.values())
        return {
            key: "(withheld)" if leaky and key == "traceback" else _safe(item)
            for key, item in value.items()
        }
    return value


def _withheld(error: BaseException) -> bool:
    """Whether the error's text may echo SQL parameters (a driver or SQLAlchemy error)."""
    return isinstance(error, psycopg2.Error | sa_exc.StatementError)


def _describe(error: BaseException) -> str:
    if not _withheld(error):
        return "".join(traceback.format_exception_only(error)).rstrip("\n")
    name = f"{type(error).__module__}.{type(error).__qualname__}"
    driver = getattr(error, "orig", None) or error
    sqlstate = getattr(driver, "pgcode", None)
    return f"{name}: (message withheld: it may echo SQL parameters) sqlstate={sqlstate}"


def format_exception(error: BaseException) -> str:
    """A traceback like the interpreter's, chained causes first, with the text of database
    errors replaced by their class and SQLSTATE."""
    parts: list[str] = []
    seen: set[int] = set()

    def walk(current: BaseException) -> None:
        seen.add(id(current))
        if current.__cause__ is not None and id(current.__cause__) not in seen:
            walk(current.__cause__)
            parts.append("\nThe above exception was the direct cause of the following:\n\n")
        elif (
            current.__context__ is not None
            and not current.__suppress_context__
            and id(current.__context__) not in seen
        ):
            walk(current.__context__)
            parts.append("\nDuring handling of the above exception, another occurred:\n\n")
        if current.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(current.__traceback__))
        parts.append(_describe(current))

    walk(error)
    return "".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, separators=(",", ":"))


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_kv(value)}" for key, value in _fields(record).items())


# Printable ASCII other than the characters that delimit or quote a kv line.
_KV_PLAIN = re.compile(r"^[\x21-\x7e]+$")
_KV_SPECIAL = re.compile(r'["=\\]')


def _kv(value: Any) -> str:
    """The value as written on a kv line: bare when plain, else a JSON string (whose escapes
    keep control characters, quotes and non-ASCII text from breaking the line)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if _KV_PLAIN.match(text) and not _KV_SPECIAL.search(text):
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """A short line for a person at a terminal (`make run`): `HH:MM:SS level what k=v ...`.

    `what` is the event name when there is one, else the message. The timestamp's date, the
    logger name, the message of an event and Celery's bulky `data` are left out; the values
    are escaped as on a kv line, so a line stays one line.
    """

    _OMITTED = frozenset({"ts", "level", "logger", "message", "event", "data"})

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        clock = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        what = fields.get("event") or fields["message"]
        rest = " ".join(
            f"{key}={_kv(value)}" for key, value in fields.items() if key not in self._OMITTED
        )
        return " ".join(part for part in (clock, fields["level"], _kv(what), rest) if part)


FORMATTERS = {"json": JsonFormatter, "kv": KeyValueFormatter, "text": TextFormatter}


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log line of the process to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("sqlalchemy.engine", "urllib3", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
