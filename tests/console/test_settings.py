"""The console's SECRET_KEY setting: named when bad, never echoed or shown in a repr."""

from __future__ import annotations

import pytest

from app import config
from app.errors import ConfigError


def test_a_short_secret_key_is_refused_naming_the_variable_not_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        config.Settings.from_env({"SECRET_KEY": "hunter2"})
    assert "SECRET_KEY must be at least 32 characters" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_secret_key_is_read_and_kept_out_of_the_repr() -> None:
    secret = "s" * 40
    settings = config.Settings.from_env({"SECRET_KEY": secret})
    assert settings.secret_key == secret
    assert secret not in repr(settings)
    assert config.Settings.from_env({}).secret_key == ""


def test_session_cookie_secure_is_on_by_default_and_off_in_development() -> None:
    assert config.Settings.from_env({}).session_cookie_secure is True
    assert config.Settings.from_env({"DEVELOPMENT": "true"}).session_cookie_secure is False
    off = config.Settings.from_env({"SESSION_COOKIE_SECURE": "false"})
    assert (off.development, off.session_cookie_secure) == (False, False)
    on = config.Settings.from_env({"DEVELOPMENT": "1", "SESSION_COOKIE_SECURE": "1"})
    assert on.session_cookie_secure is True
    with pytest.raises(ConfigError, match="DEVELOPMENT must be true or false"):
        config.Settings.from_env({"DEVELOPMENT": "maybe"})
