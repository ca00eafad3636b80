"""The per-key API rate limit (docs/design.md section 15): Flask-Limiter on the service's Redis.

One budget per API key across every endpoint (`API_RATE_LIMIT`, default 1200/minute);
past it, 429 with `Retry-After` in the error envelope. /healthz, /metrics and
/openapi.json are exempt (probes and scrapers carry no key). A request without a bearer
key (the deploy hook, or a caller that will get a 401) is counted by client address.
The bucket name holds a digest of the key, never the key itself.
"""

from __future__ import annotations

import hashlib

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from app import config, tls

EXEMPT_PATHS = ("/healthz", "/metrics", "/openapi.json")


def caller() -> str:
    """The rate-limit bucket of the request: its API key's digest, else its address."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
        return f"key:{digest[:32]}"
    return f"addr:{get_remote_address()}"


def storage_uri(redis_url: str) -> str:
    """REDIS_URL as the `limits` library spells it (a Unix socket is `redis+unix://`)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


def init_app(app: Flask, settings: config.Settings) -> Limiter:
    limiter = Limiter(
        caller,
        app=app,
        application_limits=[settings.api_rate_limit],
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
    limiter.request_filter(lambda: request.path in EXEMPT_PATHS)
    return limiter
