"""Migration 0013 on rows made before it: `paused_by` of an admin key shows the role, not the
key's prefix, and webhook secrets are encrypted at rest (a downgrade restores them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from cryptography.fernet import Fernet
from sqlalchemy import Engine, create_engine, text

from app import config
from tests import support


@pytest.fixture()
def at_0012() -> Iterator[tuple[str, Engine]]:
    url = support.database_at("0012")
    engine = create_engine(support.sqlalchemy_url(url))
    try:
        yield url, engine
    finally:
        engine.dispose()
        support.drop_database(url)


def add_key(conn, tenant: str, prefix: str, *, admin: bool) -> None:
    conn.execute(
        text(
            "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, is_admin, created_at) "
            "VALUES (:id, :tenant, :prefix, :hash, :admin, now())"
        ),
        {"id": uuid.uuid4(), "tenant": tenant, "prefix": prefix, "hash": uuid.uuid4().hex,
         "admin": admin},
    )  # fmt: skip


def test_triggers_paused_by_an_admin_key_show_admin_not_its_prefix(at_0012) -> None:
    url, engine = at_0012
    with engine.begin() as conn:
        add_key(conn, "ops", "tsk_ADMIN123", admin=True)
        add_key(conn, "acme", "tsk_TENANT12", admin=False)
        for name, by in (("a", "tsk_ADMIN123"), ("t", "tsk_TENANT12"), ("c", "cli")):
            conn.execute(
                text(
                    "INSERT INTO triggers (id, tenant_id, name, cron, action, enabled, "
                    "paused_by, created_at, updated_at) VALUES (gen_random_uuid(), 'acme', "
                    ':name, \'* * * * *\', \'{"type": "task", "name": "echo"}\', false, '
                    ":by, now(), now())"
                ),
                {"name": name, "by": by},
            )
    command.upgrade(support.alembic_config(url), "0013")
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, paused_by FROM triggers")).all())
    assert rows == {"a": "admin", "t": "tsk_TENANT12", "c": "cli"}


def add_secret(conn, tenant: str, value: str) -> None:
    conn.execute(
        text(
            "INSERT INTO webhook_secrets (id, tenant_id, secret, created_at) "
            "VALUES (gen_random_uuid(), :tenant, :value, now())"
        ),
        {"tenant": tenant, "value": value},
    )


def test_existing_webhook_secrets_are_encrypted_and_a_downgrade_restores_them(at_0012) -> None:
    url, engine = at_0012
    plain = {"acme": "whsec_" + "A" * 44, "globex": "whsec_" + "B" * 44}
    with engine.begin() as conn:
        for tenant, value in plain.items():
            add_secret(conn, tenant, value)

    command.upgrade(support.alembic_config(url), "0013")
    with engine.connect() as conn:
        stored = dict(conn.execute(text(
            "SELECT tenant_id, secret_ciphertext FROM webhook_secrets")).all())  # fmt: skip
    key = Fernet(config.get_settings().secrets_encryption_keys[0])
    assert {t: key.decrypt(token.encode()).decode() for t, token in stored.items()} == plain
    assert not any(plain[tenant][6:] in token for tenant, token in stored.items())

    command.downgrade(support.alembic_config(url), "0012")
    with engine.connect() as conn:
        restored = dict(conn.execute(text("SELECT tenant_id, secret FROM webhook_secrets")).all())
    assert restored == plain


def test_without_a_key_the_upgrade_stops_rather_than_keep_plaintext(at_0012, monkeypatch) -> None:
    url, engine = at_0012
    with engine.begin() as conn:
        add_secret(conn, "acme", "whsec_" + "A" * 44)
    monkeypatch.setattr(config, "_settings", config.Settings.from_env({}))

    with pytest.raises(RuntimeError, match="SECRETS_ENCRYPTION_KEY must be set to encrypt the 1"):
        command.upgrade(support.alembic_config(url), "0013")
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT secret FROM webhook_secrets"))
            .scalar_one()
            .startswith("whsec_")
        )  # the failed upgrade's transaction left the row as it was
