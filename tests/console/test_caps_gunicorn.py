"""The console holds a tenant to MAX_TRIGGERS_PER_TENANT as the API does, under gunicorn.

The console's create form used to call the domain's create without the cap: with a limit of
3, a tenant made 3 triggers through the API (the 4th a 409) and 3 more through the console.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests
from sqlalchemy import text

from app import db, keys
from tests import gunicorn
from tests.console.conftest import FORM_TOKEN, csrf_of

pytestmark = pytest.mark.slow
LIMIT = 3
ECHO = {"type": "task", "name": "echo"}


@pytest.fixture()
def server(settings, engine, redis_client, tmp_path) -> Iterator[str]:
    with gunicorn.serve(
        settings, tmp_path / "gunicorn.log", MAX_TRIGGERS_PER_TENANT=str(LIMIT)
    ) as base:
        yield base


def new_key(engine, tenant: str) -> str:
    with db.session_scope(engine) as session:
        return keys.create(
            session, tenant_id=tenant, principal="owner", role="admin", now=datetime.now(UTC)
        ).key


def signed_in(base: str, key: str) -> requests.Session:
    browser = requests.Session()
    token = csrf_of(browser.get(f"{base}/console/", timeout=30).text)
    answer = browser.post(
        f"{base}/console/", data={"key": key, "csrf_token": token}, allow_redirects=False
    )
    assert answer.status_code == 302, answer.text
    return browser


def console_create(browser: requests.Session, base: str, name: str) -> requests.Response:
    form_page = browser.get(f"{base}/console/triggers/new", timeout=30).text
    form = {
        "csrf_token": csrf_of(form_page),
        "form_token": FORM_TOKEN.search(form_page).group(1),
        "name": name, "schedule_kind": "cron", "cron": "30 1 * * *", "timezone": "UTC",
        "enabled": "on", "action.type": "task", "action.name": "echo", "action.method": "POST",
        "payload": "{}", "overlap_policy": "allow", "catchup_policy": "latest",
        "catchup_window_seconds": "3600", "max_attempts": "3", "retry_backoff_seconds": "10",
        "timeout_seconds": "60", "intent": "save",
    }  # fmt: skip
    return browser.post(f"{base}/console/triggers/new", data=form, timeout=30)


def count(engine, tenant: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT count(*) FROM triggers WHERE tenant_id = :t"), {"t": tenant}
        ).scalar_one()


def test_the_console_refuses_a_trigger_past_the_cap_the_api_filled(server, engine):
    key = new_key(engine, "acme")
    api = {"Authorization": f"Bearer {key}"}
    for n in range(LIMIT):
        body = {"name": f"api-{n}", "cron": "*/5 * * * *", "action": ECHO}
        made = requests.post(f"{server}/api/v1/triggers", json=body, headers=api, timeout=30)
        assert made.status_code == 201, made.text
    over = {"name": "api-over", "cron": "*/5 * * * *", "action": ECHO}
    refused = requests.post(f"{server}/api/v1/triggers", json=over, headers=api, timeout=30)
    assert refused.status_code == 409

    answer = console_create(signed_in(server, key), server, "console-over")

    assert answer.status_code == 409, answer.text
    assert f"({LIMIT})" in answer.text  # the message names the cap
    assert count(engine, "acme") == LIMIT


def test_the_api_refuses_a_trigger_past_the_cap_the_console_filled(server, engine):
    key = new_key(engine, "acme")
    browser = signed_in(server, key)
    for n in range(LIMIT):
        assert console_create(browser, server, f"console-{n}").status_code == 200

    over = console_create(browser, server, "console-over")
    body = {"name": "api-over", "cron": "*/5 * * * *", "action": ECHO}
    api = requests.post(
        f"{server}/api/v1/triggers", json=body, headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )  # fmt: skip

    assert over.status_code == 409
    assert api.status_code == 409
    assert count(engine, "acme") == LIMIT
