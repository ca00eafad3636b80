"""What the logs of a failing request hold: never the caller's key, a webhook token, a
header value or any SQL parameter (docs/design.md section 15)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from app import logs
from tests.integration.api.conftest import assert_error, trigger_body

URL_TOKEN = "urltoken-5f0e2c9a"
HEADER_VALUE = "headervalue-77b1d3"
PAYLOAD_VALUE = "payloadvalue-0c4e"


@pytest.fixture()
def failing_insert(engine) -> Iterator[None]:
    """Make PostgreSQL refuse the next trigger INSERT with an error whose DETAIL echoes the
    whole row (`Failing row contains (...)`), as a real constraint violation does."""
    with engine.begin() as conn:
        conn.execute(text(
            "ALTER TABLE triggers ADD CONSTRAINT test_refuse_all CHECK (name = '') NOT VALID"
        ))  # fmt: skip
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE triggers DROP CONSTRAINT test_refuse_all"))


def formatted(records: list[logging.LogRecord]) -> str:
    json_lines = [logs.JsonFormatter().format(r) for r in records]
    kv_lines = [logs.KeyValueFormatter().format(r) for r in records]
    return "\n".join(json_lines + kv_lines)


def test_a_failing_insert_logs_no_key_token_header_or_parameter(acme, caplog, failing_insert):
    action = {
        "type": "webhook",
        "url": f"https://hooks.example.com/in?token={URL_TOKEN}",
        "headers": {"X-Api-Token": HEADER_VALUE},
    }
    with caplog.at_level(logging.DEBUG):
        response = acme.post(
            "/triggers",
            json=trigger_body(action=action, payload={"note": PAYLOAD_VALUE}),
            headers={"X-Request-Id": "probe-1"},
        )

    assert_error(response, 500, "internal_error")
    written = formatted(caplog.records)
    assert "CheckViolation" in written and "sqlstate=23514" in written  # the error is logged
    for secret in (acme.key, acme.key[12:], URL_TOKEN, HEADER_VALUE, PAYLOAD_VALUE):
        assert secret not in written
    assert "Bearer" not in written


def test_a_path_with_an_encoded_newline_cannot_forge_a_kv_line(acme, caplog):
    with caplog.at_level(logging.INFO, logger="web.request"):
        # No space and no `=`: a value quoted only for those would stay bare.
        acme.get("/triggers/x%0AERROR:forged-line%0D%0A")

    lines = [logs.KeyValueFormatter().format(r) for r in caplog.records]
    request_lines = [line for line in lines if "event=http_request" in line]
    assert len(request_lines) == 1
    assert "\n" not in request_lines[0] and "\r" not in request_lines[0]
    assert 'path="/api/v1/triggers/x\\nERROR:forged-line\\r\\n"' in request_lines[0]
