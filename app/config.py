"""Settings from the environment (12-factor), validated once at start.

A bad value raises :class:`app.errors.ConfigError` whose message names the variable, so
a process fails with one clear line rather than a traceback deep inside a driver.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from app import config_env as read
from app.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql://127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
BROKER_SCHEMES = ("redis", "rediss", "unix", "amqp", "amqps", "pyamqp")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_API_RATE_LIMIT = "1200/minute"
# Failed authentications, restart hook calls and console sign-ins per client address.
DEFAULT_AUTH_RATE_LIMIT = "20/minute"
# A shorter deploy secret can be guessed online; 24 characters of a generated secret cannot.
MIN_RESTART_SECRET_LENGTH = 24


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
    # Pending runs a tenant may have; past it run now and backfill are refused and scheduled
    # fires are recorded as skipped (app/waiting.py).
    max_waiting_runs_per_tenant: int = 10_000
    # How far back a backfill may reach.
    backfill_max_age_days: int = 30
    # Failed authentications (any 401), restart hook calls and console sign-ins per client
    # address (web/ratelimit.py).
    auth_rate_limit: str = DEFAULT_AUTH_RATE_LIMIT
    # Proxies in front of the web process whose X-Forwarded-For entry is trusted (ProxyFix):
    # the client address the limits count by. 0: the peer's address, the header ignored.
    trusted_proxies: int = 0
    # Bearer token /metrics asks for; empty leaves /metrics open (a private network only).
    metrics_token: str = field(default="", repr=False)
    # Tenants labelled in scheduler_runs_waiting{tenant} (0: no tenant label at all).
    metrics_top_tenants: int = 10
    # How long a web process serves /metrics from its last snapshot of the database.
    metrics_cache_seconds: int = 5
    # A developer's machine (`make run` sets it): plain-HTTP console cookies and the demo
    # `echo` handler by default. Never set it in a deployment.
    development: bool = False
    # The console's cookie is Secure even when a request came over plain HTTP (behind a
    # TLS-terminating proxy that does not say so): on by default outside development.
    session_cookie_secure: bool = True
    # Register the demo `echo` handler (it may sleep an hour and store 64 KiB per run):
    # development and tests only, by default only with DEVELOPMENT.
    enable_echo_handler: bool = False
    # Fernet keys that encrypt webhook signing secrets at rest (app/secret_box.py), newest
    # first: the first encrypts, every one decrypts (rotation). Every process needs them.
    secrets_encryption_keys: tuple[str, ...] = field(default=(), repr=False)
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
        redis_url = read.url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix"))
        interval = read.integer(env, "DISPATCH_INTERVAL_SECONDS", 60, minimum=1, maximum=60)
        development = read.boolean(env, "DEVELOPMENT", False)
        if 60 % interval:
            raise ConfigError(f"DISPATCH_INTERVAL_SECONDS must divide 60, got {interval}")
        broker_url = read.url(env, "BROKER_URL", redis_url, BROKER_SCHEMES)
        settings = cls(
            database_url=read.url(
                env, "DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")
            ),
            redis_url=redis_url,
            broker_url=broker_url,
            release_id=read.release(env),
            scheduler_restart_secret=env.get("SCHEDULER_RESTART_SECRET", ""),
            dispatch_interval_seconds=interval,
            dispatch_batch_size=read.integer(
                env, "DISPATCH_BATCH_SIZE", 500, minimum=1, maximum=10_000
            ),
            # Each loop holds a connection of the engine's pool of 5 (app/db.py).
            dispatch_concurrency=read.integer(env, "DISPATCH_CONCURRENCY", 2, minimum=1, maximum=4),
            dispatch_time_budget_seconds=read.integer(
                env, "DISPATCH_TIME_BUDGET_SECONDS", max(1, interval * 3 // 4), minimum=1
            ),
            catchup_max_fires=read.integer(
                env, "CATCHUP_MAX_FIRES", 100, minimum=1, maximum=10_000
            ),
            max_running=read.integer(env, "MAX_RUNNING", 50, minimum=1),
            max_running_per_tenant=read.integer(env, "MAX_RUNNING_PER_TENANT", 10, minimum=1),
            slot_lease_seconds=read.integer(env, "SLOT_LEASE_SECONDS", 60, minimum=5),
            heartbeat_seconds=read.integer(env, "HEARTBEAT_SECONDS", 10, minimum=1),
            heartbeat_timeout_seconds=read.integer(env, "HEARTBEAT_TIMEOUT_SECONDS", 60, minimum=2),
            run_retention_days=read.integer(env, "RUN_RETENTION_DAYS", 30, minimum=1),
            idempotency_retention_hours=read.integer(
                env, "IDEMPOTENCY_RETENTION_HOURS", 24, minimum=1
            ),
            # How long a rotated-out signing secret keeps signing (Svix: 0 to 7 days).
            webhook_secret_grace_hours=read.integer(
                env, "WEBHOOK_SECRET_GRACE_HOURS", 24, minimum=0, maximum=168
            ),
            webhook_allow_private_networks=read.boolean(
                env, "WEBHOOK_ALLOW_PRIVATE_NETWORKS", False
            ),
            log_level=log_level,
            log_format=log_format,
            handler_modules=read.modules(env, "HANDLER_MODULES"),
            worker_shutdown_grace_seconds=read.integer(
                env, "WORKER_SHUTDOWN_GRACE_SECONDS", 20, minimum=0, maximum=3600
            ),
            worker_chain_seconds=read.integer(
                env, "WORKER_CHAIN_SECONDS", 2, minimum=0, maximum=3600
            ),
            max_triggers_per_tenant=read.integer(env, "MAX_TRIGGERS_PER_TENANT", 10_000, minimum=1),
            api_rate_limit=read.rate_limit(env, "API_RATE_LIMIT", DEFAULT_API_RATE_LIMIT),
            secret_key=read.secret_key(env),
            max_waiting_runs_per_tenant=read.integer(
                env, "MAX_WAITING_RUNS_PER_TENANT", 10_000, minimum=1, maximum=1_000_000_000
            ),
            backfill_max_age_days=read.integer(
                env, "BACKFILL_MAX_AGE_DAYS", 30, minimum=1, maximum=36_500
            ),
            auth_rate_limit=read.rate_limit(env, "AUTH_RATE_LIMIT", DEFAULT_AUTH_RATE_LIMIT),
            trusted_proxies=read.integer(env, "TRUSTED_PROXIES", 0, minimum=0, maximum=10),
            metrics_token=read.token(env, "METRICS_TOKEN", min_length=MIN_RESTART_SECRET_LENGTH),
            metrics_top_tenants=read.integer(
                env, "METRICS_TOP_TENANTS", 10, minimum=0, maximum=100
            ),
            metrics_cache_seconds=read.integer(
                env, "METRICS_CACHE_SECONDS", 5, minimum=0, maximum=300
            ),
            development=development,
            session_cookie_secure=read.boolean(env, "SESSION_COOKIE_SECURE", not development),
            enable_echo_handler=read.boolean(env, "ENABLE_ECHO_HANDLER", development),
            secrets_encryption_keys=read.fernet_keys(env, "SECRETS_ENCRYPTION_KEY"),
            redis_tls_verify=read.tls_verify(env, redis_url, broker_url),
            redis_tls_ca_certs=read.ca_file(env, "REDIS_TLS_CA_CERTS"),
            broker_tls_ca_certs=read.ca_file(env, "BROKER_TLS_CA_CERTS"),
            web_workers=read.web_workers(env),
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

    def check_process(self) -> None:
        """Raise ConfigError for a setting a running process needs that has no default:
        SECRETS_ENCRYPTION_KEY (webhook secrets are never stored, nor read, in plaintext).
        Checked at process start (settings_or_exit), not in from_env, so a tool that only
        reads settings needs no key."""
        if not self.secrets_encryption_keys:
            raise ConfigError(
                "SECRETS_ENCRYPTION_KEY must be set (it encrypts webhook secrets at rest); "
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
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
        settings = get_settings()
        settings.check_process()
        return settings
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def set_settings(settings: Settings | None) -> None:
    """Replace the process-wide settings (tests, app factories)."""
    global _settings
    _settings = settings
