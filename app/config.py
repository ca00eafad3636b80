"""Settings from the environment (12-factor), validated once at start.

A bad value raises :class:`app.errors.ConfigError` whose message names the variable, so
a process fails with one clear line rather than a traceback deep inside a driver.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import limits

from app.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_SCHEMES = ("redis", "rediss", "unix", "amqp", "amqps", "pyamqp")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_API_RATE_LIMIT = "1200/minute"
# A shorter deploy secret can be guessed online; 24 characters of a generated secret cannot.
MIN_RESTART_SECRET_LENGTH = 24
RELEASE_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")


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


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter rate string such as `1200/minute` or `20/second;1000/hour`."""
    raw = env.get(name, "").strip() or default
    try:
        parsed = limits.parse_many(raw)
    except ValueError:
        parsed = []
    if not parsed:
        raise ConfigError(f"{name} must be a rate such as 1200/minute, got {raw!r}")
    return raw


def _release(env: Mapping[str, str]) -> str:
    for name in ("RELEASE_ID", "HEROKU_RELEASE_VERSION", "SOURCE_VERSION"):
        value = env.get(name, "").strip()
        if value:
            # The restart hook's body must be able to name it (printable ASCII, no spaces).
            if not RELEASE_PATTERN.match(value):
                raise ConfigError(f"{name} must be 1-200 printable ASCII characters without spaces")
            return value
    return "dev"


def _secret_key(env: Mapping[str, str]) -> str:
    value = env.get("SECRET_KEY", "").strip()
    if value and len(value) < 32:
        # Never echo the value: it is a secret.
        raise ConfigError(f"SECRET_KEY must be at least 32 characters, got {len(value)}")
    return value


def _tls_verify(env: Mapping[str, str], *urls: str) -> bool:
    """Whether Redis clients check the server's certificate: REDIS_TLS_VERIFY (`required`,
    the default, or `none`), or the URL's own `ssl_cert_reqs=none` as hosted Redis hands
    it out; either one turning it off turns it off."""
    raw = env.get("REDIS_TLS_VERIFY", "").strip().lower() or "required"
    if raw not in ("required", "none"):
        raise ConfigError(f"REDIS_TLS_VERIFY must be required or none, got {raw!r}")
    for url in urls:
        in_url = parse_qs(urlsplit(url).query).get("ssl_cert_reqs", [""])[-1].lower()
        if in_url in ("none", "cert_none"):
            return False
    return raw == "required"


def _ca_file(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if raw and not Path(raw).is_file():
        raise ConfigError(f"{name} must name a readable PEM file, got {raw!r}")
    return raw


def _web_workers(env: Mapping[str, str]) -> int:
    # The Procfile's web line runs ${WEB_CONCURRENCY:-2} gunicorn workers.
    return _int(env, "WEB_CONCURRENCY", 2, minimum=1, maximum=64)


@dataclass(frozen=True)
class Settings:
    """Every setting the processes read; build it with :meth:`from_env`."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    # The one broker of every process (web, worker, beat): Redis or RabbitMQ (amqp://).
    broker_url: str = DEFAULT_REDIS_URL
    release_id: str = "dev"
    scheduler_restart_secret: str = ""
    dispatch_interval_seconds: int = 60
    dispatch_batch_size: int = 500
    dispatch_concurrency: int = 2
    dispatch_time_budget_seconds: int = 45
    catchup_max_fires: int = 100
    max_running: int = 50
    max_running_per_tenant: int = 10
    slot_lease_seconds: int = 60
    heartbeat_seconds: int = 10
    heartbeat_timeout_seconds: int = 60
    run_retention_days: int = 30
    idempotency_retention_hours: int = 24
    webhook_secret_grace_hours: int = 24
    webhook_allow_private_networks: bool = False
    log_level: str = "INFO"
    log_format: str = "json"
    handler_modules: tuple[str, ...] = ()
    worker_shutdown_grace_seconds: int = 20
    # How long a worker, after a delivered run ends, goes on running admitted runs itself
    # (app/runs.py, Runtime.chain_seconds); 0 publishes every admitted run.
    worker_chain_seconds: int = 2
    max_triggers_per_tenant: int = 10_000
    api_rate_limit: str = DEFAULT_API_RATE_LIMIT
    # Signs the console's session cookie. Every web process must share it, or a session made
    # by one gunicorn worker is refused by the next; empty means a random per-process key
    # (one worker, sessions lost on restart: acceptable for a quick local try only).
    secret_key: str = field(default="", repr=False)
    # TLS for every Redis client (broker, rate limiter, health check) on a rediss:// URL:
    # the server's certificate is checked unless REDIS_TLS_VERIFY=none (or the URL's
    # ssl_cert_reqs=none), against REDIS_TLS_CA_CERTS when set, else the system store.
    redis_tls_verify: bool = True
    redis_tls_ca_certs: str = ""
    # The same for an amqps:// broker (BROKER_TLS_CA_CERTS).
    broker_tls_ca_certs: str = ""
    web_workers: int = 2

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate the settings; raise ConfigError naming the first bad variable
        (or, for settings that only make sense together, every variable of the pair)."""
        env = os.environ if env is None else env
        log_level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if log_level not in LOG_LEVELS:
            raise ConfigError(
                f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}"
            )
        log_format = env.get("LOG_FORMAT", "json").strip().lower() or "json"
        if log_format not in ("json", "kv", "text"):
            raise ConfigError(f"LOG_FORMAT must be json, kv or text, got {log_format!r}")
        redis_url = _url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix"))
        interval = _int(env, "DISPATCH_INTERVAL_SECONDS", 60, minimum=1, maximum=60)
        if 60 % interval:
            raise ConfigError(f"DISPATCH_INTERVAL_SECONDS must divide 60, got {interval}")
        broker_url = _url(env, "BROKER_URL", redis_url, BROKER_SCHEMES)
        settings = cls(
            database_url=_url(
                env, "DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")
            ),
            redis_url=redis_url,
            broker_url=broker_url,
            release_id=_release(env),
            scheduler_restart_secret=env.get("SCHEDULER_RESTART_SECRET", ""),
            dispatch_interval_seconds=interval,
            dispatch_batch_size=_int(env, "DISPATCH_BATCH_SIZE", 500, minimum=1, maximum=10_000),
            # Each loop holds a connection of the engine's pool of 5 (app/db.py).
            dispatch_concurrency=_int(env, "DISPATCH_CONCURRENCY", 2, minimum=1, maximum=4),
            dispatch_time_budget_seconds=_int(
                env, "DISPATCH_TIME_BUDGET_SECONDS", max(1, interval * 3 // 4), minimum=1
            ),
            catchup_max_fires=_int(env, "CATCHUP_MAX_FIRES", 100, minimum=1, maximum=10_000),
            max_running=_int(env, "MAX_RUNNING", 50, minimum=1),
            max_running_per_tenant=_int(env, "MAX_RUNNING_PER_TENANT", 10, minimum=1),
            slot_lease_seconds=_int(env, "SLOT_LEASE_SECONDS", 60, minimum=5),
            heartbeat_seconds=_int(env, "HEARTBEAT_SECONDS", 10, minimum=1),
            heartbeat_timeout_seconds=_int(env, "HEARTBEAT_TIMEOUT_SECONDS", 60, minimum=2),
            run_retention_days=_int(env, "RUN_RETENTION_DAYS", 30, minimum=1),
            idempotency_retention_hours=_int(env, "IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1),
            # How long a rotated-out signing secret keeps signing (Svix: 0 to 7 days).
            webhook_secret_grace_hours=_int(
                env, "WEBHOOK_SECRET_GRACE_HOURS", 24, minimum=0, maximum=168
            ),
            webhook_allow_private_networks=_bool(env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False),
            log_level=log_level,
            log_format=log_format,
            handler_modules=_modules(env, "HANDLER_MODULES"),
            worker_shutdown_grace_seconds=_int(
                env, "WORKER_SHUTDOWN_GRACE_SECONDS", 20, minimum=0, maximum=3600
            ),
            worker_chain_seconds=_int(env, "WORKER_CHAIN_SECONDS", 2, minimum=0, maximum=3600),
            max_triggers_per_tenant=_int(env, "MAX_TRIGGERS_PER_TENANT", 10_000, minimum=1),
            api_rate_limit=_rate_limit(env, "API_RATE_LIMIT", DEFAULT_API_RATE_LIMIT),
            secret_key=_secret_key(env),
            redis_tls_verify=_tls_verify(env, redis_url, broker_url),
            redis_tls_ca_certs=_ca_file(env, "REDIS_TLS_CA_CERTS"),
            broker_tls_ca_certs=_ca_file(env, "BROKER_TLS_CA_CERTS"),
            web_workers=_web_workers(env),
        )
        settings.cross_check()
        return settings

    def cross_check(self) -> None:
        """Raise ConfigError naming the variables of the first pair that cannot work together.

        1. The heartbeat renews the slot lease and proves a run alive: a heartbeat no more
           often than the lease expires loses the slot to another run, and one no more often
           than the timeout makes the sweep take over live runs.
        2. A restart secret short enough to guess is refused (the hook hands over dispatch).
        """
        if self.heartbeat_seconds >= self.slot_lease_seconds:
            raise ConfigError(
                f"HEARTBEAT_SECONDS ({self.heartbeat_seconds}) must be less than "
                f"SLOT_LEASE_SECONDS ({self.slot_lease_seconds})"
            )
        if self.heartbeat_seconds >= self.heartbeat_timeout_seconds:
            raise ConfigError(
                f"HEARTBEAT_SECONDS ({self.heartbeat_seconds}) must be less than "
                f"HEARTBEAT_TIMEOUT_SECONDS ({self.heartbeat_timeout_seconds})"
            )
        secret = self.scheduler_restart_secret
        if secret and len(secret) < MIN_RESTART_SECRET_LENGTH:
            # Never echo the secret, not even its length.
            raise ConfigError(
                f"SCHEDULER_RESTART_SECRET must be at least {MIN_RESTART_SECRET_LENGTH} "
                "characters (or unset to disable the restart hook)"
            )

    def check_web(self, *, workers: int | None = None) -> None:
        """Raise ConfigError when the web process must not start with these settings.

        Without SECRET_KEY each gunicorn worker signs the console's sessions with its own
        random key, so a sign-in made by one worker is refused by the next: refused when
        more than one worker runs (`workers`, else WEB_CONCURRENCY), or on a release (a
        platform deploy), where more may be added at any time.
        """
        workers = self.web_workers if workers is None else workers
        if self.secret_key:
            return
        if workers > 1:
            raise ConfigError(
                f"SECRET_KEY must be set when more than one web worker runs ({workers}); "
                "each would sign console sessions with its own key"
            )
        if self.release_id != "dev":
            raise ConfigError(
                "SECRET_KEY must be set on a release (RELEASE_ID, HEROKU_RELEASE_VERSION or "
                "SOURCE_VERSION is set)"
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
