"""Log lines: one line per event whatever the values hold, and no database error text."""

from __future__ import annotations

import json
import logging
import re

import psycopg2
import pytest
from sqlalchemy import exc as sa_exc

from app import logs

SECRET = "token=s3cr3t-in-a-webhook-url"


def record(
    message: str = "request", exc: BaseException | None = None, **extra: object
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    item = logging.LogRecord("web.request", logging.INFO, __file__, 1, message, None, exc_info)
    item.__dict__.update(extra)
    return item


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


# key=value where the value is bare or a JSON string: what a kv log parser reads.
KV_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?: |$)')


def parse_kv(line: str) -> dict[str, str]:
    """The fields of a kv line; fails unless the pairs cover the whole line."""
    pairs = list(KV_PAIR.finditer(line))
    assert "".join(m.group(0) for m in pairs) == line, line
    return {m.group(1): json.loads(m.group(2)) if m.group(2).startswith('"') else m.group(2)
            for m in pairs}  # fmt: skip


FORGERIES = [
    "/api/v1/triggers/x\nlevel=error message=forged event=admin_login",
    "/x\r\nlevel=error",
    "/x\x1b[2Jlevel=error",
    '/x" level=error',
    "/x\u2028level=error",
    "/x\udcffy",
    "",
]


@pytest.mark.parametrize("path", FORGERIES)
def test_a_kv_value_with_control_characters_cannot_forge_a_line(path: str) -> None:
    line = logs.KeyValueFormatter().format(record(path=path, status=200))

    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\u2028" not in line
    fields = parse_kv(line)
    assert list(fields) == ["ts", "level", "logger", "message", "path", "status"]
    assert (fields["level"], fields["path"], fields["status"]) == ("info", path, "200")


@pytest.mark.parametrize("path", FORGERIES)
def test_a_text_line_is_short_and_stays_one_line(path: str) -> None:
    item = record("run claimed", event="run_claimed", run_id="r-1", path=path, data={"x": 1})
    line = logs.TextFormatter().format(item)

    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\u2028" not in line
    assert re.fullmatch(r"\d\d:\d\d:\d\d info run_claimed run_id=r-1 path=\S.*", line), line
    rest = parse_kv(line.split(" ", 3)[3])  # no logger, message or Celery data
    assert list(rest) == ["run_id", "path"] and rest["path"] == path


def test_a_text_line_without_an_event_shows_its_message() -> None:
    line = logs.TextFormatter().format(record("Task run_trigger succeeded", status=200))
    assert line.endswith(' info "Task run_trigger succeeded" status=200'), line


def test_plain_kv_values_stay_bare() -> None:
    line = logs.KeyValueFormatter().format(record(path="/api/v1/triggers", status=201))
    assert " path=/api/v1/triggers status=201" in line


@pytest.mark.parametrize("path", FORGERIES)
def test_a_json_line_stays_one_line(path: str) -> None:
    line = logs.JsonFormatter().format(record(path=path))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert json.loads(line)["path"] == path


def db_error() -> BaseException:
    """A SQLAlchemy error wrapping a driver error whose text echoes a value, as PostgreSQL's
    `DETAIL: Failing row contains (...)` does."""
    driver = psycopg2.errors.CheckViolation(f"violates check\nDETAIL: Failing row ({SECRET})")
    wrapped = sa_exc.IntegrityError("INSERT INTO triggers ...", {"url": SECRET}, driver)
    try:
        try:
            raise driver
        except psycopg2.Error:
            raise wrapped from driver
    except sa_exc.IntegrityError as caught:
        return caught


@pytest.mark.parametrize("formatter", [logs.JsonFormatter(), logs.KeyValueFormatter()])
def test_a_database_error_logs_its_class_and_sqlstate_not_its_text(formatter) -> None:
    line = formatter.format(record("unhandled error", db_error()))

    assert SECRET not in line and "s3cr3t" not in line
    assert "\n" not in line
    assert "sqlalchemy.exc.IntegrityError" in line and "CheckViolation" in line
    assert "Traceback (most recent call last)" in line  # where it failed is still logged


def test_other_errors_keep_their_message_and_chain() -> None:
    error = raised(RuntimeError("the broker is down"))
    text = logs.format_exception(error)
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith("RuntimeError: the broker is down")

    try:
        try:
            raise KeyError("inner")
        except KeyError:
            raise RuntimeError("outer")  # noqa: B904 - the implicit context is the point
    except RuntimeError as chained:
        text = logs.format_exception(chained)
    assert text.index("KeyError: 'inner'") < text.index("RuntimeError: outer")
    assert "During handling of the above exception" in text


def test_a_celery_task_failure_with_a_database_error_is_logged_without_its_text() -> None:
    error = db_error()
    context = {"id": "t1", "name": "run_trigger", "exc": error, "traceback": f"... {SECRET}"}
    item = logging.LogRecord(
        "celery.app.trace", logging.ERROR, __file__, 1,
        "Task %(name)s[%(id)s] raised unexpected: %(exc)s", (context,),
        (type(error), error, error.__traceback__),
    )  # fmt: skip
    item.data = context  # Celery passes the context as `extra={"data": context}` too

    for formatter in (logs.JsonFormatter(), logs.KeyValueFormatter()):
        line = formatter.format(item)
        assert SECRET not in line and "s3cr3t" not in line
        assert "raised unexpected: sqlalchemy.exc.IntegrityError" in line


def test_messages_with_ordinary_arguments_are_formatted_as_usual() -> None:
    item = logging.LogRecord("x", logging.INFO, __file__, 1, "%s of %d", ("one", 2), None)
    assert json.loads(logs.JsonFormatter().format(item))["message"] == "one of 2"
