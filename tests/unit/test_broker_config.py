"""BROKER_URL: one broker setting for every process (docs/design.md section 12)."""

from __future__ import annotations

import pytest

from app import config
from app.errors import ConfigError
from tasks.celery_app import make_celery


def test_the_broker_defaults_to_redis_url() -> None:
    settings = config.Settings.from_env({"REDIS_URL": "redis://cache:6379/2"})
    assert settings.broker_url == "redis://cache:6379/2"


def test_rabbitmq_is_accepted_and_celery_uses_it() -> None:
    settings = config.Settings.from_env({"BROKER_URL": "amqp://guest:guest@rabbit:5672/vh"})
    assert settings.broker_url == "amqp://guest:guest@rabbit:5672/vh"
    assert make_celery(settings).conf.broker_url == "amqp://guest:guest@rabbit:5672/vh"


def test_a_broker_url_of_another_kind_names_the_variable_not_the_url() -> None:
    with pytest.raises(ConfigError) as raised:
        config.Settings.from_env({"BROKER_URL": "http://user:secret@host/"})
    assert "BROKER_URL" in str(raised.value) and "secret" not in str(raised.value)
