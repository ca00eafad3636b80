"""TLS options for every client the product opens, from one set of settings (section 16).

Hosted Redis is often served as `rediss://` with a certificate the system store cannot
verify (self-signed). Each Redis client (Celery's broker, the rate limiter, the health
check) takes its options from here, so they all check the certificate or none does:

- checking is on by default, against REDIS_TLS_CA_CERTS when set, else the system store;
- REDIS_TLS_VERIFY=none, or the URL's own `ssl_cert_reqs=none`, turns it off, and every
  process says so once at start (:func:`warn_unverified`).

Without these options kombu's Redis transport would not check at all ("defaulting to
insecure SSL behaviour") while redis-py would refuse a self-signed certificate: one URL,
two behaviours.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from app import config

logger = logging.getLogger(__name__)


def redis_options(settings: config.Settings, url: str | None = None) -> dict[str, Any]:
    """redis-py keyword arguments for `url` (default REDIS_URL); empty unless `rediss://`."""
    url = settings.redis_url if url is None else url
    if urlsplit(url).scheme != "rediss":
        return {}
    options: dict[str, Any] = {"ssl_cert_reqs": "required" if settings.redis_tls_verify else "none"}
    if settings.redis_tls_ca_certs:
        options["ssl_ca_certs"] = settings.redis_tls_ca_certs
    return options


def broker_ssl(settings: config.Settings, url: str | None = None) -> dict[str, Any] | None:
    """Celery's `broker_use_ssl` for `url` (default BROKER_URL): kombu's Redis transport
    spells the options `ssl_*`, py-amqp as `ssl.wrap_socket` does; None for a plain URL."""
    scheme = urlsplit(settings.broker_url if url is None else url).scheme
    if scheme == "rediss":
        options: dict[str, Any] = {
            "ssl_cert_reqs": ssl.CERT_REQUIRED if settings.redis_tls_verify else ssl.CERT_NONE
        }
        if settings.redis_tls_ca_certs:
            options["ssl_ca_certs"] = settings.redis_tls_ca_certs
        return options
    if scheme == "amqps":
        options = {"cert_reqs": ssl.CERT_REQUIRED}
        if settings.broker_tls_ca_certs:
            options["ca_certs"] = settings.broker_tls_ca_certs
        return options
    return None


def warn_unverified(settings: config.Settings) -> bool:
    """Log one warning when a `rediss://` URL is used without checking its certificate;
    return whether it did."""
    urls = (settings.redis_url, settings.broker_url)
    if settings.redis_tls_verify or not any(urlsplit(u).scheme == "rediss" for u in urls):
        return False
    logger.warning(
        "Redis TLS certificates are not checked (REDIS_TLS_VERIFY=none or ssl_cert_reqs=none)",
        extra={"event": "redis_tls_unverified"},
    )
    return True
