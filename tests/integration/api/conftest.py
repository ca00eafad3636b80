"""Fixtures for the API tests: the app, its test client and CLI runner, keys, and helpers.

The app hands runs to the real Celery app, publishing into the test Redis; `published()`
reads back the run ids waiting in the queue.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Engine, text

from app import config, db, keys, service
from tests import apps, factories
from web import context

ECHO = {"type": "task", "name": "echo"}
TABLES = (
    "triggers",
    "runs",
    "api_keys",
    "idempotency_records",
    "scheduler_state",
    "webhook_secrets",
    "waiting_counts",
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def trigger_body(**overrides: Any) -> dict[str, Any]:
    """A valid create body (cron every 5 minutes, echo handler), with overrides."""
    return {"name": "nightly report", "cron": "*/5 * * * *", "action": dict(ECHO), **overrides}


@pytest.fixture()
def published(redis_client: Any) -> Callable[[], list[uuid.UUID]]:
    """The run ids waiting in the broker's runs queue, oldest first."""
    from tasks.celery_app import RUNS_QUEUE

    def read() -> list[uuid.UUID]:
        messages = redis_client.lrange(RUNS_QUEUE, 0, -1)
        return [uuid.UUID(json.loads(m)["headers"]["id"]) for m in reversed(messages)]

    return read


@pytest.fixture()
def app(settings: config.Settings, engine: Engine, celery_app: object) -> Iterator[Flask]:
    yield apps.app_for(settings)


@pytest.fixture()
def services(app: Flask) -> service.Scheduler:
    return app.extensions[context.EXTENSION]


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture()
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture()
def make_key(engine: Engine) -> Callable[..., str]:
    """Create an API key in the database and return its secret."""

    def make(
        tenant: str = "acme", *, admin: bool = False, principal: str = "owner", role: str = "admin"
    ) -> str:
        """A key of `principal` (default a tenant admin, as every key was before principals);
        `admin` makes it an operator key."""
        with db.session_scope(engine) as session:
            return keys.create(
                session, tenant_id=tenant, principal=principal, role=role, is_admin=admin,
                now=datetime.now(UTC),
            ).key  # fmt: skip

    return make


@dataclasses.dataclass
class Caller:
    """A client bound to one API key: `acme.post("/triggers", json=...)`."""

    client: FlaskClient
    key: str | None

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        base = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**base, **(extra or {})}

    def request(self, method: str, path: str, *, headers: dict | None = None, **kw: Any):
        url = path
        if not path.startswith("/api/") and path not in ("/healthz", "/metrics", "/openapi.json"):
            url = "/api/v1" + path
        return self.client.open(url, method=method, headers=self.headers(headers), **kw)

    def get(self, path: str, **kw: Any):
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any):
        return self.request("POST", path, **kw)

    def patch(self, path: str, **kw: Any):
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any):
        return self.request("DELETE", path, **kw)

    def create(self, **overrides: Any) -> dict[str, Any]:
        response = self.post("/triggers", json=trigger_body(**overrides))
        assert response.status_code == 201, response.get_json()
        return response.get_json()


@pytest.fixture()
def acme(client: FlaskClient, make_key: Callable[..., str]) -> Caller:
    return Caller(client, make_key("acme"))


@pytest.fixture()
def globex(client: FlaskClient, make_key: Callable[..., str]) -> Caller:
    return Caller(client, make_key("globex"))


@pytest.fixture()
def admin(client: FlaskClient, make_key: Callable[..., str]) -> Caller:
    return Caller(client, make_key("ops", admin=True))


@pytest.fixture()
def anonymous(client: FlaskClient) -> Caller:
    return Caller(client, None)


@pytest.fixture()
def snapshot(engine: Engine) -> Callable[[], dict[str, str]]:
    """A digest of every row of the product's tables, to assert a request changed nothing.
    One statement for all of them: the hostile-input sweep takes thousands."""
    digests = text(
        "SELECT "
        + ", ".join(
            f"(SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t)"
            for table in TABLES
        )
    )

    def take() -> dict[str, str]:
        with engine.connect() as conn:
            return dict(zip(TABLES, conn.execute(digests).one(), strict=True))

    return take


@pytest.fixture()
def add_run(engine: Engine) -> Callable[..., uuid.UUID]:
    """Insert a run row directly (history the dispatcher or runner would have written)."""

    def add(
        trigger: dict[str, Any],
        *,
        status: str = "pending",
        kind: str = "scheduled",
        scheduled_for: datetime | None = None,
        created_at: datetime | None = None,
        enqueued_at: datetime | None = None,
        finished_at: datetime | None = None,
        result: Any = None,
    ) -> uuid.UUID:
        run_id = uuid.uuid4()
        with engine.begin() as conn:
            factories.make_run(
                conn,
                id=run_id,
                trigger_id=trigger["id"],
                tenant_id=trigger["tenant_id"],
                scheduled_for=scheduled_for or datetime.now(UTC) - timedelta(minutes=1),
                kind=kind,
                idempotency_key=f"{trigger['id']}:{run_id}",
                status=status,
                created_at=created_at or datetime.now(UTC),
                enqueued_at=enqueued_at,
                finished_at=finished_at,
                result=result,
            )
        return run_id

    return add


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is our envelope with this status (and code); return its `error`."""
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    body = response.get_json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) <= {"code", "message", "fields"}
    if code is not None:
        assert error["code"] == code, error
    return error
