"""`rediss://` as hosted Redis hands it out (section 16): a redis-server that speaks TLS only,
started here with a self-signed certificate. Every Redis client (Celery's broker, the rate
limiter, the health check) checks the certificate: it connects with the right CA, refuses
a wrong CA or none, and connects unchecked only when told (REDIS_TLS_VERIFY=none)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from kombu.exceptions import OperationalError

from app import config, tls
from tasks.celery_app import make_celery
from tests import tls_servers
from web import create_app, health


@dataclass
class Server:
    port: int
    ca: Path  # the server's own self-signed certificate
    other_ca: Path  # a certificate from elsewhere

    def settings(self, **env: str) -> config.Settings:
        return config.Settings.from_env({"REDIS_URL": f"rediss://localhost:{self.port}/0", **env})

    def client(self) -> redis.Redis:
        return redis.Redis(host="localhost", port=self.port, ssl=True, ssl_ca_certs=str(self.ca))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("redis-tls")
    cert, key = tls_servers.self_signed(folder, "redis")
    other, _ = tls_servers.self_signed(folder, "elsewhere")
    with tls_servers.redis_tls(folder, cert, key) as port:
        yield Server(port=port, ca=cert, other_ca=other)


@pytest.fixture(autouse=True)
def _empty(server: Server) -> None:
    server.client().flushall()


def round_trip(settings: config.Settings) -> dict:
    """Publish one message on the broker with the product's Celery settings and read it back."""
    celery = make_celery(settings)
    with celery.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)
        queue = connection.SimpleQueue("tls-probe")
        try:
            queue.put({"hello": "tls"})
            return queue.get(timeout=5).payload
        finally:
            queue.close()


def test_the_broker_connects_with_the_servers_ca(server: Server) -> None:
    assert round_trip(server.settings(REDIS_TLS_CA_CERTS=str(server.ca))) == {"hello": "tls"}


@pytest.mark.parametrize("which", ["wrong CA", "system store"])
def test_the_broker_refuses_a_certificate_it_cannot_verify(server: Server, which: str) -> None:
    env = {"REDIS_TLS_CA_CERTS": str(server.other_ca)} if which == "wrong CA" else {}
    with pytest.raises((OperationalError, OSError)) as caught:
        round_trip(server.settings(**env))
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value) + repr(caught.value.__cause__)


def test_verification_off_connects_and_says_so(server: Server, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="app.tls")
    for env in ({"REDIS_TLS_VERIFY": "none"}, {}):
        settings = (
            server.settings(**env)
            if env
            else config.Settings.from_env(
                {"REDIS_URL": f"rediss://localhost:{server.port}/0?ssl_cert_reqs=none"}
            )
        )
        assert round_trip(settings) == {"hello": "tls"}
        assert tls.warn_unverified(settings)
    assert [r.event for r in caplog.records] == ["redis_tls_unverified"] * 2


def limited_requests(settings: config.Settings, count: int = 3) -> None:
    client = create_app(settings).test_client()
    for _ in range(count):
        # No key: a 401, counted by client address like any other request.
        assert client.get("/api/v1/triggers").status_code == 401


def test_the_rate_limiter_counts_in_the_tls_redis(server: Server) -> None:
    limited_requests(server.settings(REDIS_TLS_CA_CERTS=str(server.ca)))
    assert server.client().keys("*ratelimit*"), "the limiter fell back to process memory"


def test_the_rate_limiter_does_not_trust_a_wrong_ca(server: Server, caplog) -> None:
    limited_requests(server.settings(REDIS_TLS_CA_CERTS=str(server.other_ca)))
    assert server.client().keys("*ratelimit*") == []
    assert "Rate limit storage unreachable" in caplog.text


@pytest.mark.parametrize(("ca", "ok"), [("ca", True), ("other_ca", False)])
def test_the_health_check_checks_the_certificate(server: Server, ca: str, ok: bool) -> None:
    settings = server.settings(REDIS_TLS_CA_CERTS=str(getattr(server, ca)))
    assert health.check_broker(settings)["ok"] is ok
