"""The handler registry for `task` actions, and validation of every action a trigger may hold.

A handler is a function `handler(ctx: RunContext) -> JSON-able`, registered under a name with
the `@handler("name")` decorator or from the entry point group `scheduler.handlers`. The
context says on whose behalf the run acts: `ctx.run_as`, the principal the run recorded
(docs/design.md section 18); a handler that does not read it works as before::

    [options.entry_points]
    scheduler.handlers =
        report = my_package.jobs:report

The demo handler `echo` (app/actions/echo.py) is registered only in development or when
ENABLE_ECHO_HANDLER asks for it: it may sleep an hour and store 64 KiB per run.

Delivery is at-least-once: a handler may run twice for one run (worker killed after the work
but before the result was recorded), so it should use `ctx.idempotency_key` to do its side
effect once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "scheduler.handlers"
# The shipped demo handler (development, ENABLE_ECHO_HANDLER): it uses this module's types.
ECHO_HANDLER = "app.actions.echo:echo"
METHODS = ("POST", "PUT", "PATCH", "GET", "DELETE")
MAX_URL_LENGTH = 2048
MAX_HEADERS = 50
# Set by the runner on every request; an action may not override them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Idempotency-Key",
        "X-Trigger-Id",
        "X-Run-Id",
        "X-Scheduled-For",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "webhook-run-as",
        "Content-Type",
        "Content-Length",
        "Host",
        "Transfer-Encoding",
        "Connection",
    )
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # RFC 9110 field-name


@dataclass(frozen=True)
class RunContext:
    """What a handler gets: enough to make its side effect idempotent."""

    run_id: str
    trigger_id: str
    tenant_id: str
    idempotency_key: str
    scheduled_for: datetime
    attempt: int
    payload: dict[str, Any]
    # The principal the run acts for (its trigger's run_as when it was created).
    run_as: str = ""


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt of an action.

    `error` is a short text safe to store and show (no secrets, no request headers);
    `retryable` says whether another attempt may succeed; `retry_after` is the delay the
    remote side asked for (seconds), if any; `result` is stored on the run either way.
    """

    succeeded: bool
    result: Any = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None


Handler = Callable[[RunContext], Any]

_handlers: dict[str, Handler] = {}
_loaded = False
_lock = threading.Lock()


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the `task` handler called `name`."""

    def register(fn: Handler) -> Handler:
        _register(name, fn)
        return fn

    return register


def get_handler(name: str) -> Handler | None:
    """The handler registered as `name`, or None."""
    _ensure_loaded()
    return _handlers.get(name)


def known_handlers() -> list[str]:
    """The names of every registered handler, sorted."""
    _ensure_loaded()
    return sorted(_handlers)


def unregister(name: str) -> None:
    """Forget a handler (tests that register their own)."""
    _handlers.pop(name, None)


def _register(name: str, fn: Handler) -> None:
    existing = _handlers.get(name)
    if existing is not None and existing is not fn:
        # Two different functions for one name: keep the first, loudly.
        logger.error(
            "handler name already registered",
            extra={"event": "handler_conflict", "handler": name},
        )
        return
    _handlers[name] = fn


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        import importlib

        from app import config

        settings = config.get_settings()
        if settings.enable_echo_handler:  # by name, as a plugin's entry point would be
            module, _, name = ECHO_HANDLER.partition(":")
            _register("echo", getattr(importlib.import_module(module), name))
        # The modules named in HANDLER_MODULES (the "config list" of docs/design.md
        # section 6): importing a module runs its @handler decorators.
        for module in settings.handler_modules:
            importlib.import_module(module)
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                fn = entry.load()
            except Exception:
                # One broken plugin must not take every other handler down with it; its
                # triggers are refused at creation and its runs fail as "unknown handler".
                logger.exception(
                    "handler entry point failed to load",
                    extra={"event": "handler_load_failed", "handler": entry.name},
                )
                continue
            _register(entry.name, fn)
        _loaded = True


def validate_action(action: Any) -> dict[str, str]:
    """Errors of an action as {field path: message}, empty when it is valid.

    Paths are those of the trigger's fields: `action`, `action.type`, `action.url`,
    `action.method`, `action.headers`, `action.headers.<name>`, `action.name`, and
    `action.<key>` for an unknown key.
    """
    if not isinstance(action, dict):
        return {"action": "must be an object"}
    kind = action.get("type")
    if kind == "webhook":
        return _validate_webhook(action)
    if kind == "task":
        return _validate_task(action)
    return {"action.type": "must be 'webhook' or 'task'"}


def _unknown_keys(action: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    return {f"action.{key}": "unknown field" for key in action if key not in allowed}


def _validate_webhook(action: dict[str, Any]) -> dict[str, str]:
    errors = _unknown_keys(action, ("type", "url", "method", "headers"))
    url_error = url_problem(action.get("url"))
    if url_error:
        errors["action.url"] = url_error
    method = action.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        errors["action.method"] = f"must be one of {', '.join(METHODS)}"
    headers = action.get("headers", {})
    if not isinstance(headers, dict):
        errors["action.headers"] = "must be an object of strings"
        return errors
    if len(headers) > MAX_HEADERS:
        errors["action.headers"] = f"at most {MAX_HEADERS} headers"
    for name, value in headers.items():
        if not _TOKEN.match(name):
            errors["action.headers"] = "header names must be HTTP tokens"
        elif name.lower() in RESERVED_HEADERS:
            errors[f"action.headers.{name}"] = "is set by the scheduler and cannot be overridden"
        elif not isinstance(value, str) or len(value) > 8192 or any(c in value for c in "\r\n\0"):
            errors[f"action.headers.{name}"] = "must be a single-line string"
        elif not _latin_1(value):
            # http.client encodes header values as latin-1: anything else would fail at
            # every send, retries included.
            errors[f"action.headers.{name}"] = (
                "must be latin-1 text (ISO-8859-1); percent-encode or base64 other characters"
            )
    return errors


def _latin_1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def url_problem(url: Any) -> str | None:
    """Why `url` is not an acceptable webhook URL, or None when it is.

    The URL is read by `urllib3.util.parse_url`, the parser of the HTTP client that sends
    the request: a second parser that disagrees (`urlsplit` reads
    `http://127.0.0.1:80\\@example.com/` as example.com, urllib3 connects to 127.0.0.1) is how
    the destination check was bypassed. Whatever the two parsers could read differently is
    refused outright: userinfo, backslashes, whitespace and control characters, non-ASCII,
    and `%` in the authority (percent-encoded hosts, IPv6 zone ids). Whether the host may be
    called is decided at send time, from the addresses it resolves to (webhook.py).
    """
    if not isinstance(url, str) or not url:
        return "is required"
    if len(url) > MAX_URL_LENGTH:
        return f"must be at most {MAX_URL_LENGTH} characters"
    if not url.isascii():
        return "must be ASCII (percent-encode the path, punycode the host)"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain whitespace or control characters"
    if "\\" in url:
        return "must not contain backslashes"
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return "must be an http or https URL"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        return "must not contain credentials (user@host); send them in action.headers"
    if "%" in authority:
        return "must not percent-encode the host or name an IPv6 zone"
    try:
        parts = parse_url(url)
    except LocationParseError:
        return "is not a valid URL"
    if parts.auth is not None:
        return "must not contain credentials (user@host); send them in action.headers"
    if not parts.host or parts.host in ("[]", "."):
        return "must name a host"
    if parts.port == 0:
        return "must not use port 0"
    return None


def _validate_task(action: dict[str, Any]) -> dict[str, str]:
    errors = _unknown_keys(action, ("type", "name"))
    name = action.get("name")
    if not isinstance(name, str) or not name:
        errors["action.name"] = "is required"
    elif get_handler(name) is None:
        errors["action.name"] = f"unknown handler; known: {', '.join(known_handlers())}"
    return errors
