"""Issue 30's low findings that are HTTP behaviour, over real HTTP (gunicorn serving
`web:create_app()` from the environment, as deployed)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from tests import gunicorn

pytestmark = pytest.mark.slow
WEBHOOK = {"type": "webhook", "url": "https://hooks.example.com/in"}


@pytest.fixture()
def server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(settings, tmp_path / "gunicorn.log") as base:
        yield base


def call(method: str, url: str, key: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return requests.request(method, url, headers=headers, timeout=30, **kwargs)


def test_a_trigger_paused_by_an_admin_shows_a_role_not_the_admins_key(server, make_key):
    tenant, admin = make_key("acme"), make_key("ops", admin=True)
    body = {"name": "nightly", "cron": "0 1 * * *", "action": WEBHOOK}
    created = call("POST", f"{server}/api/v1/triggers", tenant, json=body).json()
    url = f"{server}/api/v1/triggers/{created['id']}"

    paused = call("PATCH", url, admin, json={"enabled": False, "paused_note": "maintenance"})
    shown = call("GET", url, tenant)

    assert paused.status_code == shown.status_code == 200
    assert shown.json()["paused_by"] == "admin"
    assert admin[:12] not in shown.text
    call("PATCH", url, tenant, json={"enabled": True})
    own = call("PATCH", url, tenant, json={"enabled": False}).json()
    assert own["paused_by"] and tenant.startswith(own["paused_by"])  # its own key's prefix


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_a_console_cookie_copied_before_sign_out_is_signed_out_when_replayed(server, make_key):
    browser = requests.Session()
    token = csrf_of(browser.get(f"{server}/console/", timeout=30).text)
    signed_in = browser.post(
        f"{server}/console/", data={"key": make_key("acme"), "csrf_token": token}, timeout=30
    )
    assert signed_in.status_code == 200 and signed_in.url.endswith("/console/triggers")
    copied = browser.cookies.get("console_session")
    token = csrf_of(browser.get(f"{server}/console/triggers", timeout=30).text)
    browser.post(f"{server}/console/sign-out", data={"csrf_token": token}, timeout=30)

    replayed = requests.get(
        f"{server}/console/triggers", cookies={"console_session": copied},
        allow_redirects=False, timeout=30,
    )  # fmt: skip

    assert replayed.status_code == 302
    assert "reason=signed_out" in replayed.headers["Location"]


def test_as_deployed_the_console_cookie_is_secure_pages_are_no_store_and_https_gets_hsts(
    settings, engine, redis_client, tmp_path
):
    # SESSION_COOKIE_SECURE and DEVELOPMENT unset: production's defaults.
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", SESSION_COOKIE_SECURE="", DEVELOPMENT=""
    ) as base:
        page = requests.get(f"{base}/console/", timeout=30)  # its session holds the CSRF token
        over_https = requests.get(
            f"{base}/api/v1/triggers", headers={"X-Forwarded-Proto": "https"}, timeout=30
        )

    assert page.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in page.headers
    cookie = page.headers["Set-Cookie"]
    assert cookie.startswith("console_session=") and "Secure" in cookie
    assert over_https.headers["Strict-Transport-Security"] == "max-age=31536000"


def test_a_deployment_refuses_the_demo_echo_handler(settings, engine, redis_client, tmp_path,
                                                     make_key):  # fmt: skip
    # ENABLE_ECHO_HANDLER and DEVELOPMENT unset: echo (an hour's sleep, 64 KiB stored per
    # run) is no handler of a deployment.
    body = {"name": "demo", "cron": "0 1 * * *", "action": {"type": "task", "name": "echo"}}
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", ENABLE_ECHO_HANDLER="", DEVELOPMENT=""
    ) as base:
        refused = call("POST", f"{base}/api/v1/triggers", make_key("acme"), json=body)

    assert refused.status_code == 422
    assert refused.json()["error"]["fields"]["action.name"].startswith("unknown handler")
