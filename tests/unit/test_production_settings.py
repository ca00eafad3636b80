"""Settings a deployment hands out (section 16): TLS for Redis, and what the web refuses."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest

from app import config, tls
from app.errors import ConfigError

KEY = "k" * 40


def test_redis_certificates_are_checked_by_default() -> None:
    settings = config.Settings.from_env({"REDIS_URL": "rediss://h:6380/0"})
    assert tls.redis_options(settings) == {"ssl_cert_reqs": "required"}
    assert tls.broker_ssl(settings) == {"ssl_cert_reqs": ssl.CERT_REQUIRED}


@pytest.mark.parametrize(
    "env",
    [
        {"REDIS_URL": "rediss://h:6380/0", "REDIS_TLS_VERIFY": "none"},
        {"REDIS_URL": "rediss://h:6380/0?ssl_cert_reqs=none"},
        {"REDIS_URL": "redis://h/0", "BROKER_URL": "rediss://h:6380/0?ssl_cert_reqs=CERT_NONE"},
    ],
)
def test_the_setting_or_the_url_turns_checking_off_for_every_redis_client(env) -> None:
    settings = config.Settings.from_env(env)
    assert not settings.redis_tls_verify
    assert tls.broker_ssl(settings) == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_a_ca_file_reaches_the_broker_and_the_redis_clients(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = config.Settings.from_env(
        {"REDIS_URL": "rediss://h:6380/0", "REDIS_TLS_CA_CERTS": str(ca)}
    )
    assert tls.redis_options(settings)["ssl_ca_certs"] == str(ca)
    assert tls.broker_ssl(settings)["ssl_ca_certs"] == str(ca)


def test_plain_urls_get_no_tls_options() -> None:
    settings = config.Settings.from_env({"REDIS_URL": "redis://h/0"})
    assert tls.redis_options(settings) == {}
    assert tls.broker_ssl(settings) is None


def test_an_amqps_broker_checks_its_certificate(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    settings = config.Settings.from_env(
        {"BROKER_URL": "amqps://u:p@h:5671//", "BROKER_TLS_CA_CERTS": str(ca)}
    )
    assert tls.broker_ssl(settings) == {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(ca)}


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"REDIS_TLS_VERIFY": "maybe"}, "REDIS_TLS_VERIFY"),
        ({"REDIS_TLS_CA_CERTS": "/nowhere/ca.pem"}, "REDIS_TLS_CA_CERTS"),
        ({"BROKER_TLS_CA_CERTS": "/nowhere/ca.pem"}, "BROKER_TLS_CA_CERTS"),
        ({"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY"),
    ],
)
def test_a_bad_tls_or_web_setting_names_the_variable(env: dict, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.Settings.from_env(env)
    assert str(caught.value).startswith(name)


def test_unchecked_certificates_are_said_once_at_start(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="app.tls")
    checked = config.Settings.from_env({"REDIS_URL": "rediss://h:6380/0"})
    unchecked = config.Settings.from_env(
        {"REDIS_URL": "rediss://h:6380/0", "REDIS_TLS_VERIFY": "none"}
    )
    assert not tls.warn_unverified(checked)
    assert tls.warn_unverified(unchecked)
    assert [r.event for r in caplog.records] == ["redis_tls_unverified"]


@pytest.mark.parametrize(
    ("env", "workers", "named"),
    [
        ({}, 2, "more than one web worker runs (2)"),
        ({"WEB_CONCURRENCY": "3"}, None, "more than one web worker runs (3)"),
        ({"HEROKU_RELEASE_VERSION": "v12"}, 1, "on a release"),
        ({"RELEASE_ID": "abc"}, 1, "on a release"),
    ],
)
def test_the_web_refuses_to_start_without_secret_key(env: dict, workers, named: str) -> None:
    settings = config.Settings.from_env(env)
    with pytest.raises(ConfigError) as caught:
        settings.check_web(workers=workers)
    assert str(caught.value).startswith("SECRET_KEY must be set")
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("env", "workers"),
    [
        ({}, 1),  # one worker, no release: a quick local try
        ({"SECRET_KEY": KEY}, 4),
        ({"SECRET_KEY": KEY, "RELEASE_ID": "v3"}, 2),
    ],
)
def test_the_web_starts_with_a_key_or_alone(env: dict, workers: int) -> None:
    config.Settings.from_env(env).check_web(workers=workers)
