"""Rate limits (docs/design.md sections 15 and 17): Flask-Limiter on the service's Redis.

Three budgets, each a shared Flask-Limiter scope (past one: 429 with `Retry-After`):
1. `key`: API_RATE_LIMIT per API key id, counted once the key is known. For the API that is
   after web.auth.require_key has checked it against the database (`charge_key`, this
   limit used as a context manager); for the console, the key id of the session cookie,
   which Flask has checked against its signature. An unknown key never gets a budget.
2. `auth`: AUTH_RATE_LIMIT (stricter) per client address, spent by every failed
   authentication (any 401: API key, restart secret, console sign-in, metrics token) and
   by every call of the two endpoints that authenticate without a key, the restart hook and
   the console's sign-in. It is tested first on every request but /healthz, so an address
   that spent it is refused whatever it sends until its window passes, a valid key too:
   guessing costs a Redis read per try and no database work (Flask-Limiter's
   `deduct_when`: test before the request, deduct after its response).
3. `address`: API_RATE_LIMIT per client address for what carries neither an API key nor a
   console session: /healthz, /metrics, /openapi.json and the console before sign-in.

The client address is the peer's; behind TRUSTED_PROXIES proxies, Werkzeug's ProxyFix
makes it the entry that many proxies from the right of X-Forwarded-For (the one the
outermost trusted proxy saw), so a forged header buys no fresh bucket. Bucket names hold
key ids and addresses, never a key.
"""

from __future__ import annotations

from flask import Flask, Response, current_app, g, request, session
from flask_limiter import ApplicationLimit, Limiter, RouteLimit
from werkzeug.middleware.proxy_fix import ProxyFix

from app import config, tls

EXTENSION = "scheduler_key_limit"
# The endpoints a caller reaches without an API key to prove a secret: each call spends
# the `auth` budget, whatever its outcome.
UNAUTHENTICATED = frozenset({"admin.SchedulerRestart", "console.sign_in"})
SCOPES = {
    "key": "Too many requests for this API key",
    "auth": "Too many failed or unauthenticated attempts from this address",
    "address": "Too many requests from this address",
}


def client_address() -> str:
    """The caller's address (see the module docstring for proxies)."""
    return f"addr:{request.remote_addr or 'unknown'}"


def _principal_key() -> str:
    return f"key:{g.principal.key_id}"


def _console_key() -> str:
    return f"key:{session.get('key_id')}"


def _has_console_session() -> bool:
    return request.path.startswith("/console") and bool(session.get("key_id"))


def _exempt_from_auth() -> bool:
    return request.path == "/healthz"


def _not_anonymous() -> bool:
    return request.path.startswith("/api/") or _has_console_session()


def _spends_auth(response: Response) -> bool:
    if response.status_code == 401:
        return True
    return request.endpoint in UNAUTHENTICATED and request.method == "POST"


def init_app(app: Flask, settings: config.Settings) -> Limiter:
    if settings.trusted_proxies:
        proxied = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies)
        app.wsgi_app = proxied  # type: ignore[method-assign]
    limiter = Limiter(
        client_address,
        app=app,
        application_limits=[
            ApplicationLimit(
                settings.auth_rate_limit,
                scope="auth",
                exempt_when=_exempt_from_auth,
                deduct_when=_spends_auth,
            ),
            ApplicationLimit(
                settings.api_rate_limit,
                scope="key",
                key_function=_console_key,
                exempt_when=lambda: not _has_console_session(),
            ),
            ApplicationLimit(settings.api_rate_limit, scope="address", exempt_when=_not_anonymous),
        ],
        storage_uri=storage_uri(settings.redis_url),
        # rediss:// checks the certificate as every other Redis client does (app/tls.py).
        storage_options=tls.redis_options(settings),
        strategy="moving-window",
        headers_enabled=True,
        retry_after="delta-seconds",
        key_prefix="ratelimit",
        # Redis down (or absent: a PostgreSQL + RabbitMQ deployment) must not take the API
        # down with it: the counters fall back to this process's memory (logged).
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    app.extensions[EXTENSION] = limiter.shared_limit(
        settings.api_rate_limit, scope="key", key_func=_principal_key
    )
    return limiter


def charge_key() -> None:
    """Spend one request of the authenticated key's budget (`g.principal`); raise
    RateLimitExceeded (429) when it is spent."""
    key_limit: RouteLimit = current_app.extensions[EXTENSION]
    with key_limit:
        pass  # entering the limit tests and spends it (Flask-Limiter's context manager)


def message(scope: str | None, limit: str) -> str:
    """The 429 error message for a breached limit of `scope`."""
    return f"{SCOPES.get(scope or '', 'Too many requests')} (limit: {limit})."


def storage_uri(redis_url: str) -> str:
    """REDIS_URL as the `limits` library spells it (a Unix socket is `redis+unix://`)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url
