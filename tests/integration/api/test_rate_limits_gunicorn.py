"""Rate limits over real HTTP (gunicorn), docs/design.md section 17.

The limit used to be keyed on the bearer string before it was checked: every random
`tsk_...` token got a fresh bucket, so unknown tokens were never limited, nor were the
restart hook and the console's sign-in; behind a proxy, every caller without a key shared
the proxy's address bucket.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests

from tests import gunicorn
from tests.console.conftest import csrf_of

pytestmark = pytest.mark.slow
AUTH_LIMIT = 3
SECRET = "restart-secret-of-the-rate-limit-tests"


@pytest.fixture()
def serve(settings, engine, redis_client, tmp_path):
    """Start gunicorn with these settings (a fresh Redis database: empty buckets)."""

    def start(**env: str):
        return gunicorn.serve(
            settings, tmp_path / "gunicorn.log", SCHEDULER_RESTART_SECRET=SECRET, **env
        )

    return start


@pytest.fixture()
def server(serve) -> Iterator[str]:
    with serve(AUTH_RATE_LIMIT=f"{AUTH_LIMIT}/minute", API_RATE_LIMIT="1000/minute") as base:
        yield base


def random_token() -> str:
    return "tsk_" + secrets.token_urlsafe(32)


def test_unknown_keys_share_their_address_budget_of_failed_authentications(server, make_key):
    statuses = [
        requests.get(f"{server}/api/v1/triggers", timeout=30,
                     headers={"Authorization": f"Bearer {random_token()}"}).status_code
        for _ in range(AUTH_LIMIT + 1)
    ]  # fmt: skip

    assert statuses == [401] * AUTH_LIMIT + [429]
    # The address is refused before its key is looked at, a valid one too, until the
    # window passes: guessing keys costs a Redis read per try and no database work.
    valid = {"Authorization": f"Bearer {make_key('acme')}"}
    refused = requests.get(f"{server}/api/v1/triggers", headers=valid, timeout=30)
    assert refused.status_code == 429
    assert "address" in refused.json()["error"]["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 60


def test_the_restart_hook_is_limited_by_address(server):
    def call(token: str) -> int:
        return requests.post(
            f"{server}/api/v1/admin/scheduler/restart", json={"release": "test-release"},
            headers={"X-Scheduler-Secret": "wrong", "Authorization": f"Bearer {token}"},
            timeout=30,
        ).status_code  # fmt: skip

    assert [call(random_token()) for _ in range(AUTH_LIMIT + 1)] == [401] * AUTH_LIMIT + [429]


def test_console_sign_in_is_limited_by_address(server):
    browser = requests.Session()
    token = csrf_of(browser.get(f"{server}/console/", timeout=30).text)

    def sign_in() -> int:
        form = {"key": random_token(), "csrf_token": token}
        return browser.post(f"{server}/console/", data=form, timeout=30).status_code

    assert [sign_in() for _ in range(AUTH_LIMIT + 1)] == [401] * AUTH_LIMIT + [429]


def test_a_valid_key_has_its_own_budget_whatever_others_send(serve, make_key):
    with serve(AUTH_RATE_LIMIT="1000/minute", API_RATE_LIMIT="3/minute") as base:
        mine = {"Authorization": f"Bearer {make_key('acme')}"}
        theirs = {"Authorization": f"Bearer {make_key('acme')}"}
        statuses = [
            requests.get(f"{base}/api/v1/triggers", headers=mine, timeout=30).status_code
            for _ in range(4)
        ]
        for _ in range(5):  # unknown keys spend nobody's key budget
            requests.get(f"{base}/api/v1/triggers", timeout=30,
                         headers={"Authorization": f"Bearer {random_token()}"})  # fmt: skip
        other = requests.get(f"{base}/api/v1/triggers", headers=theirs, timeout=30)

    assert statuses == [200, 200, 200, 429]
    assert other.status_code == 200


def test_behind_a_trusted_proxy_each_client_has_its_own_address(serve):
    with serve(TRUSTED_PROXIES="1", AUTH_RATE_LIMIT="3/minute", API_RATE_LIMIT="3/minute") as base:

        def from_client(address: str) -> int:
            return requests.get(
                f"{base}/api/v1/triggers", headers={"X-Forwarded-For": address}, timeout=30
            ).status_code

        abuser = [from_client("203.0.113.7") for _ in range(4)]
        neighbour = from_client("198.51.100.23")

    assert abuser == [401, 401, 401, 429]
    assert neighbour == 401  # not locked out by the abuser behind the same proxy


def test_without_trusted_proxies_x_forwarded_for_is_ignored(serve):
    with serve(AUTH_RATE_LIMIT="3/minute", API_RATE_LIMIT="1000/minute") as base:
        statuses = [
            requests.get(f"{base}/api/v1/triggers", timeout=30,
                         headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
            for n in range(4)
        ]  # fmt: skip

    assert statuses == [401, 401, 401, 429]  # a forged header buys no fresh bucket


def test_healthz_is_limited_by_address(serve):
    with serve(AUTH_RATE_LIMIT="1000/minute", API_RATE_LIMIT="3/minute") as base:
        statuses = [requests.get(f"{base}/healthz", timeout=30).status_code for _ in range(4)]

    assert statuses[:3] != [429] * 3 and statuses[3] == 429
