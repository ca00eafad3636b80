"""Request ids, one log line per request, and the body size limit for streamed bodies.

Every response carries `X-Request-Id` (the caller's, when it looks like an id, else a new
one) and every log line written while serving the request carries it too (app.logs.bind).

A body without Content-Length (`Transfer-Encoding: chunked`; gunicorn marks its input
`wsgi.input_terminated`) is read here, up to one byte past MAX_CONTENT_LENGTH: Werkzeug
stops reading such a stream at the limit and hands the view the truncated body, which
could still parse (a payload padded past the limit with spaces) and be stored.
"""

from __future__ import annotations

import io
import logging
import re
import time
import uuid
from contextlib import ExitStack

from flask import Flask, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

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
    app.before_request(_buffer_streamed_body)
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_close)


def _buffer_streamed_body() -> None:
    """Read a body sent without Content-Length whole (413 past the limit), so the view sees
    all of it or none of it."""
    environ = request.environ
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return  # Werkzeug enforces the limit against Content-Length itself
    if not environ.get("wsgi.input_terminated"):
        return  # Werkzeug reads no body at all from an unterminated stream of unknown size
    body = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))


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
