"""`amqps://` (section 16): a RabbitMQ node that listens for TLS only, started here with a
self-signed certificate. The broker checks the certificate: it connects with the server's
CA (BROKER_TLS_CA_CERTS), and refuses a wrong CA or the system store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu.exceptions import OperationalError

from app import config
from tests import tls_servers
from tests.integration.ops.test_redis_tls import round_trip
from web import health


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[int, Path, Path]]:
    with tls_servers.rabbitmq_tls() as found:
        yield found


def settings(port: int, ca: Path | None) -> config.Settings:
    env = {"BROKER_URL": f"amqps://guest:guest@localhost:{port}//"}
    if ca is not None:
        env["BROKER_TLS_CA_CERTS"] = str(ca)
    return config.Settings.from_env(env)


def test_the_broker_connects_with_the_servers_ca(node) -> None:
    port, cert, _ = node
    assert round_trip(settings(port, cert)) == {"hello": "tls"}
    assert health.check_broker(settings(port, cert))["ok"] is True


@pytest.mark.parametrize("which", ["wrong CA", "system store"])
def test_the_broker_refuses_a_certificate_it_cannot_verify(node, which: str) -> None:
    port, _, other = node
    wanted = settings(port, other if which == "wrong CA" else None)
    with pytest.raises((OperationalError, OSError)) as caught:
        round_trip(wanted)
    assert "CERTIFICATE_VERIFY_FAILED" in repr(caught.value) + repr(caught.value.__cause__)
    assert health.check_broker(wanted)["ok"] is False
