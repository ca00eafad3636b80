"""A chunked request body under the real server (gunicorn), where Werkzeug alone would cut
an oversized stream at MAX_CONTENT_LENGTH and hand the view the truncated body."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from sqlalchemy import text

from tests import gunicorn
from tests.integration.api.conftest import trigger_body
from web import MAX_CONTENT_LENGTH

pytestmark = pytest.mark.slow


@pytest.fixture()
def server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(settings, tmp_path / "gunicorn.log") as base:
        yield base


def chunks(body: bytes, size: int = 8192) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_an_oversized_chunked_body_is_413_under_gunicorn(server, make_key, engine):
    headers = {"Authorization": f"Bearer {make_key()}", "Content-Type": "application/json"}
    valid = json.dumps(trigger_body(name="padded")).encode()
    padded = valid + b" " * (MAX_CONTENT_LENGTH + 10 - len(valid))  # valid if cut at limit

    small = requests.post(
        f"{server}/api/v1/triggers", data=chunks(valid), headers=headers, timeout=30
    )
    large = requests.post(
        f"{server}/api/v1/triggers", data=chunks(padded), headers=headers, timeout=30
    )

    assert small.status_code == 201, small.text
    assert small.request.headers.get("Transfer-Encoding") == "chunked"
    assert large.status_code == 413, large.text
    assert large.json()["error"]["code"] == "payload_too_large"
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM triggers")).scalars().all()
    assert names == ["padded"]  # only the small one
