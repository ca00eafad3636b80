"""Settings from the environment (12-factor), validated once at start.

A bad value raises :class:`app.errors.ConfigError` whose message names the variable, so
a process fails with one clear line rather than a traceback deep inside a driver.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in schemes or not (parts.hostname or parts.path or parts.query):
        # Never echo the URL itself: it may carry a password.
        raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}")
    return raw


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _modules(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for module in names:
        if not all(piece.isidentifier() for piece in module.split(".")):
            raise ConfigError(f"{name} must be comma-separated module names, got {module!r}")
    return names


def _release(env: Mapping[str, str]) -> str:
    for name in ("RELEASE_ID", "HEROKU_RELEASE_VERSION", "SOURCE_VERSION"):
        value = env.get(name, "").strip()
        if value:
            return value
    return "dev"


def _secret_key(env: Mapping[str, str]) -> str:
    value = env.get("SECRET_KEY", "").strip()
    if value and len(value) < 32:
        # Never echo the value: it is a secret.
        raise ConfigError(f"SECRET_KEY must be at least 32 characters, got {len(value)}")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting the processes read; build it with :meth:`from_env`."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    release_id: str = "dev"
    scheduler_restart_secret: str = ""
    dispatch_interval_seconds: int = 60
    dispatch_batch_size: int = 500
    dispatch_time_budget_seconds: int = 45
    catchup_max_fires: int = 100
    max_running: int = 50
    max_running_per_tenant: int = 10
    slot_lease_seconds: int = 60
    heartbeat_seconds: int = 10
    heartbeat_timeout_seconds: int = 60
    requeue_after_seconds: int = 300
    run_retention_days: int = 30
    idempotency_retention_hours: int = 24
    webhook_signing_secret: str = ""
    webhook_allow_private_networks: bool = False
    log_level: str = "INFO"
    log_format: str = "json"
    handler_modules: tuple[str, ...] = ()
    worker_shutdown_grace_seconds: int = 20
    # Signs the console's session cookie. Every web process must share it, or a session made
    # by one gunicorn worker is refused by the next; empty means a random per-process key
    # (one worker, sessions lost on restart: acceptable for a quick local try only).
    secret_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise ConfigError naming the first bad variable."""
        env = os.environ if env is None else env
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
            )
        log_format = env.get("LOG_FORMAT", "json").strip().lower() or "json"
        if log_format not in ("json", "kv"):
            raise ConfigError(f"LOG_FORMAT must be json or kv, got {log_format!r}")
        interval = _int(env, "DISPATCH_INTERVAL_SECONDS", 60, minimum=1, maximum=60)
        if 60 % interval:
            raise ConfigError(f"DISPATCH_INTERVAL_SECONDS must divide 60, got {interval}")
        return cls(
            database_url=_url(
                env, "DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")
            ),
            redis_url=_url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix")),
            release_id=_release(env),
            scheduler_restart_secret=env.get("SCHEDULER_RESTART_SECRET", ""),
            dispatch_interval_seconds=interval,
            dispatch_batch_size=_int(env, "DISPATCH_BATCH_SIZE", 500, minimum=1, maximum=10_000),
            dispatch_time_budget_seconds=_int(
                env, "DISPATCH_TIME_BUDGET_SECONDS", max(1, interval * 3 // 4), minimum=1
            ),
            catchup_max_fires=_int(env, "CATCHUP_MAX_FIRES", 100, minimum=1, maximum=10_000),
            max_running=_int(env, "MAX_RUNNING", 50, minimum=1),
            max_running_per_tenant=_int(env, "MAX_RUNNING_PER_TENANT", 10, minimum=1),
            slot_lease_seconds=_int(env, "SLOT_LEASE_SECONDS", 60, minimum=5),
            heartbeat_seconds=_int(env, "HEARTBEAT_SECONDS", 10, minimum=1),
            heartbeat_timeout_seconds=_int(env, "HEARTBEAT_TIMEOUT_SECONDS", 60, minimum=2),
            requeue_after_seconds=_int(env, "REQUEUE_AFTER_SECONDS", 300, minimum=1),
            run_retention_days=_int(env, "RUN_RETENTION_DAYS", 30, minimum=1),
            idempotency_retention_hours=_int(env, "IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1),
            webhook_signing_secret=env.get("WEBHOOK_SIGNING_SECRET", ""),
            webhook_allow_private_networks=_bool(env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False),
            log_level=log_level,
            log_format=log_format,
            handler_modules=_modules(env, "HANDLER_MODULES"),
            worker_shutdown_grace_seconds=_int(
                env, "WORKER_SHUTDOWN_GRACE_SECONDS", 20, minimum=0, maximum=3600
            ),
            secret_key=_secret_key(env),
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg2 driver SQLAlchemy should use."""
        url = self.database_url
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg2://" + url[len("postgresql://") :]
        return url


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def settings_or_exit() -> Settings:
    """The settings, or exit with status 2 and one line naming the bad variable.

    For process entry points (web, worker, beat, CLI): an operator sees
    `configuration error: DISPATCH_BATCH_SIZE must be an integer, got 'lots'`, not a
    traceback.
    """
    try:
        return get_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, app factories)."""
    global _settings
    _settings = settings
