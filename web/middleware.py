"""Request ids and one log line per request.

Every response carries `X-Request-Id` (the caller's, when it looks like an id, else a new
one) and every log line written while serving the request carries it too (app.logs.bind).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import ExitStack

from flask import Flask, Response, g, request

from app import logs

logger = logging.getLogger("web.request")

HEADER = "X-Request-Id"
# Accept only short ids of safe characters: the value is echoed and written to logs.
SANE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def request_id(incoming: str | None) -> str:
    """The caller's id when it is sane, else a fresh one."""
    if incoming and SANE_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_close)


def _start() -> None:
    g.request_id = request_id(request.headers.get(HEADER))
    g.started = time.perf_counter()
    g.log_context = ExitStack()
    ids = {k: str(v) for k, v in (request.view_args or {}).items() if k in ("trigger_id", "run_id")}
    g.log_context.enter_context(logs.bind(request_id=g.request_id, **ids))


def _finish(response: Response) -> Response:
    if "request_id" not in g:  # a failure before _start ran (e.g. in another before hook)
        _start()
    response.headers[HEADER] = g.request_id
    elapsed_ms = (time.perf_counter() - g.started) * 1000
    logger.info(
        "request",
        extra={
            "event": "http_request",
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(elapsed_ms, 2),
        },
    )
    return response


def _close(_exc: BaseException | None) -> None:
    stack = g.pop("log_context", None)
    if stack is not None:
        stack.close()
