"""Migration 0002 gives every tenant that already has webhook triggers its first secret, so
its next delivery is signed (the global secret it replaces is gone)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from tests import support


@pytest.fixture()
def at_0001() -> Iterator[str]:
    url = support.database_at("0001")
    try:
        yield url
    finally:
        support.drop_database(url)


def test_tenants_with_webhook_triggers_get_one_secret_each(at_0001: str) -> None:
    engine = create_engine(support.sqlalchemy_url(at_0001))
    actions = {
        "acme": {"type": "webhook", "url": "https://a.example.com/"},
        "globex": {"type": "task", "name": "echo"},
    }
    try:
        with engine.begin() as conn:
            for tenant, action in [*actions.items(), ("acme", actions["acme"])]:
                conn.execute(
                    text(
                        "INSERT INTO triggers (id, tenant_id, name, cron, action, created_at, "
                        "updated_at) VALUES (:id, :tenant, 'x', '* * * * *', "
                        "CAST(:action AS jsonb), now(), now())"
                    ),
                    {"id": uuid.uuid4(), "tenant": tenant, "action": json.dumps(action)},
                )
        command.upgrade(support.alembic_config(at_0001), "0002")
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT tenant_id, secret, expires_at FROM webhook_secrets")
            ).all()
    finally:
        engine.dispose()

    [(tenant, secret, expires_at)] = rows
    assert (tenant, expires_at) == ("acme", None)
    assert secret.startswith("whsec_") and len(secret) == 50
