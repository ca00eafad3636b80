"""Typed readers of environment variables for app.config: each returns the value or raises
ConfigError naming the variable (and never echoing a secret or a URL, which may hold a
password)."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import limits

from app.errors import ConfigError

RELEASE_PATTERN = re.compile(r"^[\x21-\x7e]{1,200}$")
HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def integer(
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


def url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in schemes or not (parts.hostname or parts.path or parts.query):
        # Never echo the URL itself: it may carry a password.
        raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}")
    return raw


def boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def modules(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())
    for module in names:
        if not all(piece.isidentifier() for piece in module.split(".")):
            raise ConfigError(f"{name} must be comma-separated module names, got {module!r}")
    return names


def rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter rate string such as `1200/minute` or `20/second;1000/hour`."""
    raw = env.get(name, "").strip() or default
    try:
        parsed = limits.parse_many(raw)
    except ValueError:
        parsed = []
    if not parsed:
        raise ConfigError(f"{name} must be a rate such as 1200/minute, got {raw!r}")
    return raw


def token(env: Mapping[str, str], name: str, *, min_length: int) -> str:
    """A secret compared against a bearer value: empty (unset), or at least `min_length`."""
    value = env.get(name, "").strip()
    if value and len(value) < min_length:
        # Never echo the value: it is a secret.
        raise ConfigError(f"{name} must be at least {min_length} characters (or unset)")
    return value


def release(env: Mapping[str, str]) -> str:
    for name in ("RELEASE_ID", "HEROKU_RELEASE_VERSION", "SOURCE_VERSION"):
        value = env.get(name, "").strip()
        if value:
            # The restart hook's body must be able to name it (printable ASCII, no spaces).
            if not RELEASE_PATTERN.match(value):
                raise ConfigError(f"{name} must be 1-200 printable ASCII characters without spaces")
            return value
    return "dev"


def secret_key(env: Mapping[str, str]) -> str:
    value = env.get("SECRET_KEY", "").strip()
    if value and len(value) < 32:
        # Never echo the value: it is a secret.
        raise ConfigError(f"SECRET_KEY must be at least 32 characters, got {len(value)}")
    return value


def fernet_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys, newest first (the first encrypts, every one decrypts).

    A key is a Fernet key (32 url-safe base64-encoded bytes) or the same 32 bytes as 64
    hexadecimal characters, which `openssl rand -hex 32` and a platform's generated secret
    (app.json's `"generator": "secret"`) give; each comes back as a Fernet key."""
    from cryptography.fernet import Fernet

    found = []
    for position, part in enumerate(env.get(name, "").split(","), start=1):
        key = part.strip()
        if not key:
            continue
        if HEX_KEY.fullmatch(key):
            key = base64.urlsafe_b64encode(bytes.fromhex(key)).decode()
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the value: it is a secret.
            raise ConfigError(
                f"{name} must be Fernet keys (32 url-safe base64-encoded bytes) or 64 "
                f"hexadecimal characters, comma-separated; key {position} is not one"
            ) from None
        found.append(key)
    return tuple(found)


def tls_verify(env: Mapping[str, str], *urls: str) -> bool:
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


def ca_file(env: Mapping[str, str], name: str) -> str:
    raw = env.get(name, "").strip()
    if raw and not Path(raw).is_file():
        raise ConfigError(f"{name} must name a readable PEM file, got {raw!r}")
    return raw


def web_workers(env: Mapping[str, str]) -> int:
    # The Procfile's web line runs ${WEB_CONCURRENCY:-2} gunicorn workers.
    return integer(env, "WEB_CONCURRENCY", 2, minimum=1, maximum=64)
