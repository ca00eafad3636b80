"""Fixtures for the console's Flask-client tests: the app with a fake clock, keys, sign-in."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app import config, db, keys
from tests import apps, support
from web import context

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


@pytest.fixture()
def clock() -> support.FakeClock:
    return support.FakeClock(NOW)


@pytest.fixture()
def app(
    settings: config.Settings, engine: Engine, celery_app: object, clock: support.FakeClock
) -> Iterator[Flask]:
    app = apps.app_for(settings)
    app.extensions[context.EXTENSION].clock = clock.now
    app.jinja_env.bytecode_cache = support.COMPILED_TEMPLATES
    yield app


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def make_key(engine: Engine) -> Callable[..., keys.NewKey]:
    def make(
        tenant: str = "acme", *, admin: bool = False, principal: str = "owner", role: str = "admin"
    ) -> keys.NewKey:
        with db.session_scope(engine) as session:
            return keys.create(
                session, tenant_id=tenant, principal=principal, role=role, is_admin=admin, now=NOW
            )

    return make


@pytest.fixture()
def sign_in(client: FlaskClient, make_key: Callable[..., keys.NewKey]) -> Callable[..., str]:
    """Sign `client` in with a new key of `tenant`; return the CSRF token of the session."""

    def do(
        tenant: str = "acme", *, admin: bool = False, principal: str = "owner", role: str = "admin"
    ) -> str:
        key = make_key(tenant, admin=admin, principal=principal, role=role).key
        token = csrf_of(client.get("/console/").get_data(as_text=True))
        response = client.post("/console/", data={"key": key, "csrf_token": token})
        assert response.status_code == 302, response.get_data(as_text=True)
        return csrf_of(
            client.get("/console/triggers/new", follow_redirects=True).get_data(as_text=True)
        )

    return do


def new_form(client: FlaskClient, **overrides: str) -> dict[str, str]:
    """The create form as the page renders it (tokens included), with fields overridden."""
    html = client.get("/console/triggers/new", follow_redirects=True).get_data(as_text=True)
    form = {
        "csrf_token": csrf_of(html),
        "form_token": FORM_TOKEN.search(html).group(1),
        "name": "nightly report",
        "schedule_kind": "cron",
        "cron": "30 1 * * *",
        "timezone": "America/New_York",
        "enabled": "on",
        "action.type": "task",
        "action.name": "echo",
        "action.method": "POST",
        "payload": '{"hello": "world"}',
        "overlap_policy": "allow",
        "catchup_policy": "latest",
        "catchup_window_seconds": "3600",
        "max_attempts": "3",
        "retry_backoff_seconds": "10",
        "timeout_seconds": "60",
        "intent": "save",
    }
    form.update(overrides)
    return form


@pytest.fixture()
def published(redis_client: Any) -> Callable[[], list[str]]:
    """The run ids waiting in the broker's runs queue."""
    from tasks.celery_app import RUNS_QUEUE

    def read() -> list[str]:
        return [json.loads(m)["headers"]["id"] for m in redis_client.lrange(RUNS_QUEUE, 0, -1)]

    return read
