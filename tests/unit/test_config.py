from __future__ import annotations

import pytest

from app import config
from app.config import Settings
from app.errors import ConfigError


def test_defaults_are_valid() -> None:
    settings = Settings.from_env({})
    assert settings.dispatch_batch_size == 500
    assert settings.dispatch_concurrency == 2
    assert settings.release_id == "dev"
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg2://")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPATCH_BATCH_SIZE", "lots"),
        ("DISPATCH_BATCH_SIZE", "0"),
        ("DISPATCH_CONCURRENCY", "0"),
        ("DISPATCH_CONCURRENCY", "5"),
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


def test_a_worker_chains_runs_for_two_seconds_unless_told_otherwise() -> None:
    assert Settings.from_env({}).worker_chain_seconds == 2
    assert Settings.from_env({"WORKER_CHAIN_SECONDS": "0"}).worker_chain_seconds == 0
    with pytest.raises(ConfigError, match="^WORKER_CHAIN_SECONDS"):
        Settings.from_env({"WORKER_CHAIN_SECONDS": "-1"})


def test_the_webhook_secret_grace_is_hours_up_to_a_week() -> None:
    assert Settings.from_env({}).webhook_secret_grace_hours == 24
    assert Settings.from_env({"WEBHOOK_SECRET_GRACE_HOURS": "0"}).webhook_secret_grace_hours == 0
    for bad in ("169", "-1", "a day"):
        with pytest.raises(ConfigError, match="^WEBHOOK_SECRET_GRACE_HOURS"):
            Settings.from_env({"WEBHOOK_SECRET_GRACE_HOURS": bad})


def test_tenancy_limits_have_defaults_and_are_validated() -> None:
    settings = Settings.from_env({})
    assert settings.max_triggers_per_tenant == 10_000
    assert settings.api_rate_limit == "1200/minute"
    custom = Settings.from_env({"MAX_TRIGGERS_PER_TENANT": "3", "API_RATE_LIMIT": "5/second"})
    assert (custom.max_triggers_per_tenant, custom.api_rate_limit) == (3, "5/second")
    with pytest.raises(ConfigError, match="^MAX_TRIGGERS_PER_TENANT must be >= 1"):
        Settings.from_env({"MAX_TRIGGERS_PER_TENANT": "0"})


@pytest.mark.parametrize("value", ["fast", "1200", "1200/fortnight", "/minute", "-1/second"])
def test_an_unparseable_rate_limit_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="^API_RATE_LIMIT must be a rate"):
        Settings.from_env({"API_RATE_LIMIT": value})


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"HEARTBEAT_SECONDS": "60", "SLOT_LEASE_SECONDS": "60"}, ("HEARTBEAT", "SLOT_LEASE")),
        ({"HEARTBEAT_SECONDS": "90", "SLOT_LEASE_SECONDS": "120"}, ("HEARTBEAT", "TIMEOUT")),
        ({"HEARTBEAT_SECONDS": "5", "HEARTBEAT_TIMEOUT_SECONDS": "5"}, ("HEARTBEAT", "TIMEOUT")),
    ],
)
def test_inconsistent_heartbeat_settings_name_both_variables(
    env: dict[str, str], names: tuple[str, str]
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    first, second = names
    message = str(info.value)
    assert message.startswith(f"{first}_SECONDS ("), message
    assert f" {second}" in message or f"_{second}" in message, message


def test_a_short_restart_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="^SCHEDULER_RESTART_SECRET") as info:
        Settings.from_env({"SCHEDULER_RESTART_SECRET": "hunter2-is-too-short"})
    assert "hunter2" not in str(info.value)
    long_enough = "x" * 24
    assert Settings.from_env({"SCHEDULER_RESTART_SECRET": long_enough}).scheduler_restart_secret
    assert Settings.from_env({}).scheduler_restart_secret == ""  # unset: the hook is off


@pytest.mark.parametrize("name", ["RELEASE_ID", "HEROKU_RELEASE_VERSION", "SOURCE_VERSION"])
def test_a_release_the_restart_hook_could_not_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be"):
        Settings.from_env({name: "release two"})


def test_the_limits_and_metrics_settings_have_defaults_and_are_validated() -> None:
    settings = Settings.from_env({})
    assert (settings.auth_rate_limit, settings.trusted_proxies) == ("20/minute", 0)
    assert (settings.metrics_token, settings.metrics_top_tenants) == ("", 10)
    assert settings.metrics_cache_seconds == 5
    custom = Settings.from_env(
        {"AUTH_RATE_LIMIT": "5/minute", "TRUSTED_PROXIES": "1", "METRICS_TOP_TENANTS": "0"}
    )
    assert (custom.auth_rate_limit, custom.trusted_proxies, custom.metrics_top_tenants) == (
        "5/minute", 1, 0,
    )  # fmt: skip
    for name, bad in (
        ("AUTH_RATE_LIMIT", "often"),
        ("TRUSTED_PROXIES", "-1"),
        ("TRUSTED_PROXIES", "yes"),
        ("METRICS_TOP_TENANTS", "101"),
        ("METRICS_CACHE_SECONDS", "soon"),
    ):
        with pytest.raises(ConfigError, match=f"^{name} must"):
            Settings.from_env({name: bad})


def test_a_short_metrics_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="^METRICS_TOKEN must be at least 24") as info:
        Settings.from_env({"METRICS_TOKEN": "scrape-me-please"})
    assert "scrape-me" not in str(info.value)
    token = "m" * 24
    settings = Settings.from_env({"METRICS_TOKEN": token})
    assert settings.metrics_token == token
    assert token not in repr(settings)


FERNET_KEYS = ("QPVOf_vYNOxj2zyxa9ktj0odAe2SJQCS-yp25X1xUcU=",
               "H8mNaMlc5sANYT2rdpJOPXoQk3z1daa0i-yXW39szMA=")  # fmt: skip


def test_secrets_encryption_keys_are_read_newest_first_and_kept_out_of_the_repr() -> None:
    settings = config.Settings.from_env({"SECRETS_ENCRYPTION_KEY": " , ".join(FERNET_KEYS)})
    assert settings.secrets_encryption_keys == FERNET_KEYS
    assert FERNET_KEYS[0] not in repr(settings)


def test_a_generated_hex_secret_is_a_secrets_encryption_key() -> None:
    # app.json's generated secrets and `openssl rand -hex 32` are 64 hexadecimal characters.
    from cryptography.fernet import Fernet

    hex_key = "0123456789abcdef" * 4
    settings = config.Settings.from_env({"SECRETS_ENCRYPTION_KEY": f"{hex_key},{FERNET_KEYS[0]}"})
    newest = settings.secrets_encryption_keys[0]
    assert Fernet(newest).decrypt(Fernet(newest).encrypt(b"s")) == b"s"
    assert newest == "ASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4mrze8="
    assert settings.secrets_encryption_keys[1] == FERNET_KEYS[0]


@pytest.mark.parametrize(
    "value", ["hunter2", FERNET_KEYS[0] + ",not-a-key", "x" * 44, "0f" * 31, "0g" * 32]
)
def test_a_bad_secrets_encryption_key_is_named_not_echoed(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.Settings.from_env({"SECRETS_ENCRYPTION_KEY": value})
    assert "SECRETS_ENCRYPTION_KEY" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "not-a-key" not in str(caught.value)


def test_a_process_does_not_start_without_a_secrets_encryption_key(monkeypatch, capsys) -> None:
    # Never plaintext: every process (web, worker, beat, CLI) stops with one line.
    monkeypatch.setattr(config, "_settings", config.Settings.from_env({"DEVELOPMENT": "true"}))
    with pytest.raises(SystemExit) as caught:
        config.settings_or_exit()
    assert caught.value.code == 2
    assert "configuration error: SECRETS_ENCRYPTION_KEY must be set" in capsys.readouterr().err
    monkeypatch.setattr(config, "_settings", config.Settings.from_env({
        "SECRETS_ENCRYPTION_KEY": FERNET_KEYS[0]}))  # fmt: skip
    assert config.settings_or_exit().secrets_encryption_keys == FERNET_KEYS[:1]
