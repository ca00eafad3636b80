"""Where a webhook may go (docs/design.md section 13): never inward, to the very address checked,
with TLS for the hostname, no redirects, no environment proxies.

The suite runs with WEBHOOK_ALLOW_PRIVATE_NETWORKS=true (its receivers listen on
127.0.0.1); the refusal tests turn it off.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import trustme

from app.actions import registry, webhook
from tests.integration.runner.receiver import Receiver, Reply

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CTX = registry.RunContext(
    run_id="7f1c0b7e-0000-4000-8000-000000000001",
    trigger_id="trig-1",
    tenant_id="tenant-a",
    idempotency_key="trig-1:2026-01-05T12:00:00Z",
    scheduled_for=NOW,
    attempt=1,
    payload={"a": 1},
)


@pytest.fixture()
def canary() -> Iterator[socket.socket]:
    """A listener on 127.0.0.1 that never accepts: any connection waits in its backlog."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def connected(canary: socket.socket) -> bool:
    try:
        conn, _ = canary.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


@pytest.mark.parametrize("allow_private", [False, True])
def test_the_parser_mismatch_url_in_the_database_never_reaches_the_internal_listener(
    harness, canary, allow_private
) -> None:
    harness.configure(webhook_allow_private_networks=allow_private)
    port = canary.getsockname()[1]
    url = f"http://127.0.0.1:{port}\\@example.com/"
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": url}))

    assert harness.execute(run_id) == "failed"

    row = harness.row(run_id)
    assert row["error"] == "webhook url must not contain backslashes"
    assert row["result"] is None
    assert not connected(canary)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]",
        "2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0", "169.254.169.254", "10.1.2.3",
    ],
)  # fmt: skip
def test_a_non_public_destination_is_refused_unless_the_operator_allows_it(
    harness, receiver, host
) -> None:
    harness.configure(webhook_allow_private_networks=False)
    url = f"http://{host}:{receiver.port}/hook"
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": url}, max_attempts=3))

    assert harness.execute(run_id) == "failed"  # not retried: the answer will not change

    row = harness.row(run_id)
    assert row["error"] == f"webhook to {url.split('/')[2].rsplit(':', 1)[0]} refused: " + (
        "its address is not public (set WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow)"
    )
    assert row["result"] is None
    assert receiver.hits("/hook") == []


def test_an_unresolvable_host_fails_the_attempt_and_is_retried(harness) -> None:
    harness.configure(webhook_allow_private_networks=False)
    action = {"type": "webhook", "url": "https://nowhere.invalid/hook?token=s3cr3t"}
    run_id = harness.run(harness.trigger(action=action))

    assert harness.execute(run_id) == "retrying"

    assert harness.row(run_id)["error"] == (
        "webhook to nowhere.invalid failed: cannot resolve nowhere.invalid"
    )


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_fails_without_retry_or_a_second_connection(harness, receiver, status) -> None:
    receiver.plan("/hook", Reply(status, headers={"Location": "http://127.0.0.1:6379/"}))
    action = {"type": "webhook", "url": receiver.url("/hook")}
    run_id = harness.run(harness.trigger(action=action, max_attempts=5))

    assert harness.execute(run_id) == "failed"

    row = harness.row(run_id)
    assert row["error"] == (
        f"HTTP {status} from 127.0.0.1: redirects are not followed "
        "(Location: http://127.0.0.1:6379/)"
    )
    assert row["result"] == {"status_code": status}
    assert len(receiver.requests) == 1
    assert harness.published == []


def test_environment_proxies_are_ignored(harness, receiver, canary, monkeypatch) -> None:
    proxy = f"http://127.0.0.1:{canary.getsockname()[1]}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    run_id = harness.run(harness.trigger(action={"type": "webhook", "url": receiver.url()}))

    assert harness.execute(run_id) == "succeeded"

    assert len(receiver.hits()) == 1
    assert not connected(canary)


def test_the_host_is_resolved_once_and_the_connection_goes_to_that_address(receiver) -> None:
    answers = iter([["127.0.0.1"], ["192.0.2.1"]])  # a rebinding DNS: another answer next time
    lookups: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    action = {"type": "webhook", "url": f"http://hooks.example.test:{receiver.port}/hook?x=1"}
    outcome = webhook.call(
        action, CTX, signing_secrets=[], timeout_seconds=5, now=NOW,
        allow_private_networks=True, resolver=rebinding,
    )  # fmt: skip

    assert outcome.succeeded, outcome.error
    assert lookups == ["hooks.example.test"]
    [request] = receiver.hits()
    assert request.path == "/hook?x=1"
    assert request.headers["Host"] == f"hooks.example.test:{receiver.port}"


# -- TLS: a local server with certificates from a test CA --------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture()
def ca_file(ca: trustme.CA, tmp_path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def tls_receiver(ca: trustme.CA, name: str, server_names: list[str]) -> Receiver:
    server = Receiver()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    context.sni_callback = lambda _sock, sni, _ctx: server_names.append(sni)
    server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
    return server.start()


def local(_host: str, _port: int) -> list[str]:
    return ["127.0.0.1"]


def send_to_hooks_example(server, ca_file: str):
    """One delivery to https://hooks.example.test:<port>/hook, resolved to `server` on
    127.0.0.1 and verified against the test CA; the server is stopped afterwards."""
    try:
        action = {"type": "webhook", "url": f"https://hooks.example.test:{server.port}/hook"}
        return webhook.call(
            action, CTX, signing_secrets=[], timeout_seconds=5, now=NOW,
            allow_private_networks=True, resolver=local, ca_certs=ca_file,
        )  # fmt: skip
    finally:
        server.stop()


def test_tls_carries_the_hostname_in_sni_host_and_certificate_check(ca, ca_file) -> None:
    names: list[str] = []
    server = tls_receiver(ca, "hooks.example.test", names)
    outcome = send_to_hooks_example(server, ca_file)

    assert outcome.succeeded, outcome.error
    assert names == ["hooks.example.test"]
    [request] = server.hits()
    assert request.headers["Host"] == f"hooks.example.test:{server.port}"


def test_a_certificate_for_another_name_fails_without_sending(ca, ca_file) -> None:
    names: list[str] = []
    server = tls_receiver(ca, "other.example.test", names)
    outcome = send_to_hooks_example(server, ca_file)

    assert not outcome.succeeded
    assert outcome.error == "webhook to hooks.example.test failed: SSLError"
    assert names == ["hooks.example.test"]
    assert server.hits() == []


def test_a_certificate_from_an_unknown_ca_fails(ca) -> None:
    names: list[str] = []
    server = tls_receiver(ca, "hooks.example.test", names)
    try:
        action = {"type": "webhook", "url": f"https://hooks.example.test:{server.port}/hook"}
        outcome = webhook.call(
            action, CTX, signing_secrets=[], timeout_seconds=5, now=NOW,
            allow_private_networks=True, resolver=local,
        )  # fmt: skip
    finally:
        server.stop()

    assert outcome.error == "webhook to hooks.example.test failed: SSLError"
    assert server.hits() == []
