"""Bodies built to defeat the JSON reader's nesting scan, under gunicorn (docs/design.md §17).

Two such bodies of 96 KiB sent at once used to hold both gunicorn workers until they were
killed (30 s), and every other tenant's requests timed out meanwhile. Each JSON entry point
now refuses the worst bodies of its size limit in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests import gunicorn
from tests.integration.api.conftest import trigger_body
from web import MAX_CONTENT_LENGTH

pytestmark = pytest.mark.slow
SECRET = "test-restart-secret-0123456789"
# What a refused body may take end to end (the quadratic scan: tens of seconds).
BUDGET_SECONDS = 3.0
# One `"` and escaped quotes up to the size limit: no string ever closes.
WORST = ('"' + '\\"' * ((MAX_CONTENT_LENGTH - 2) // 2)).encode()


@pytest.fixture()
def server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(
        settings,
        tmp_path / "gunicorn.log",
        workers=2,
        SCHEDULER_RESTART_SECRET=SECRET,
        API_RATE_LIMIT="100000/minute",
    ) as base:
        yield base


def post(url: str, key: str, body: bytes, **headers: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers}
    return requests.post(url, data=body, headers=headers, timeout=60)


def test_two_worst_bodies_at_once_leave_the_api_answering(server, make_key):
    attacker, neighbour = make_key("mallory"), make_key("acme")
    url = f"{server}/api/v1/triggers"
    with ThreadPoolExecutor(max_workers=2) as pool:
        started = time.monotonic()
        attacks = [pool.submit(post, url, attacker, WORST) for _ in range(2)]
        listing = requests.get(url, headers={"Authorization": f"Bearer {neighbour}"}, timeout=60)
        waited = time.monotonic() - started
        answers = [attack.result() for attack in attacks]

    assert listing.status_code == 200, listing.text
    assert waited < BUDGET_SECONDS
    assert [answer.status_code for answer in answers] == [400, 400]
    assert all(a.json()["error"]["code"] == "bad_request" for a in answers)


def test_every_json_entry_point_refuses_the_worst_body_in_milliseconds(server, make_key):
    key = make_key("mallory")
    created = requests.post(
        f"{server}/api/v1/triggers",
        json=trigger_body(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    trigger = f"{server}/api/v1/triggers/{created.json()['id']}"
    entry_points = [
        ("POST", f"{server}/api/v1/triggers", {}),
        ("PATCH", trigger, {}),
        ("POST", f"{trigger}/backfill", {}),
        ("POST", f"{server}/api/v1/schedules/preview", {}),
        ("POST", f"{server}/api/v1/admin/scheduler/restart", {"X-Scheduler-Secret": SECRET}),
    ]
    for method, url, extra in entry_points:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **extra}
        started = time.monotonic()
        answer = requests.request(method, url, data=WORST, headers=headers, timeout=60)
        took = time.monotonic() - started
        assert answer.status_code == 400, (method, url, answer.text)
        assert took < BUDGET_SECONDS, (method, url, took)
