from __future__ import annotations

import pytest

from app.config import Settings
from app.errors import ConfigError


def test_defaults_are_valid() -> None:
    settings = Settings.from_env({})
    assert settings.dispatch_batch_size == 500
    assert settings.release_id == "dev"
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg2://")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPATCH_BATCH_SIZE", "lots"),
        ("DISPATCH_BATCH_SIZE", "0"),
        ("MAX_RUNNING", "-1"),
        ("DISPATCH_INTERVAL_SECONDS", "7"),
        ("DATABASE_URL", "mysql://secret@host/db"),
        ("REDIS_URL", "http://example"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    assert str(info.value).startswith(name)


def test_a_bad_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"DATABASE_URL": "mysql://user:hunter2@host/db"})
    assert "hunter2" not in str(info.value)


def test_release_falls_back_to_platform_variables() -> None:
    assert Settings.from_env({"HEROKU_RELEASE_VERSION": "v42"}).release_id == "v42"
    assert Settings.from_env({"RELEASE_ID": "r1", "SOURCE_VERSION": "abc"}).release_id == "r1"
    assert Settings.from_env({"SOURCE_VERSION": "abc"}).release_id == "abc"


def test_postgres_scheme_is_normalised() -> None:
    url = Settings.from_env({"DATABASE_URL": "postgres://u@h:5432/d"}).sqlalchemy_url
    assert url == "postgresql+psycopg2://u@h:5432/d"


def test_handler_modules_are_a_comma_separated_list_of_module_names() -> None:
    settings = Settings.from_env({"HANDLER_MODULES": "acme.handlers, acme.more"})
    assert settings.handler_modules == ("acme.handlers", "acme.more")
    with pytest.raises(ConfigError, match="^HANDLER_MODULES"):
        Settings.from_env({"HANDLER_MODULES": "acme/handlers.py"})


def test_the_webhook_secret_grace_is_hours_up_to_a_week() -> None:
    assert Settings.from_env({}).webhook_secret_grace_hours == 24
    assert Settings.from_env({"WEBHOOK_SECRET_GRACE_HOURS": "0"}).webhook_secret_grace_hours == 0
    for bad in ("169", "-1", "a day"):
        with pytest.raises(ConfigError, match="^WEBHOOK_SECRET_GRACE_HOURS"):
            Settings.from_env({"WEBHOOK_SECRET_GRACE_HOURS": bad})
