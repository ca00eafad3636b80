"""The pure parts of the webhook action: the address classifier, resolution, Standard
Webhooks signing, headers, Retry-After."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import pathlib
import re
import shutil
import subprocess
import urllib.parse
from datetime import UTC, datetime

import pytest
import standardwebhooks

from app import errors, webhook_secrets
from app.actions import egress, registry, webhook

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CTX = registry.RunContext(
    run_id="7f1c0b7e-0000-4000-8000-000000000001",
    trigger_id="trig-1",
    tenant_id="tenant",
    idempotency_key="trig-1:2026-01-05T12:00:00Z",
    scheduled_for=datetime(2026, 1, 5, 12, tzinfo=UTC),
    attempt=1,
    payload={"b": 1, "a": "é"},
)

DENIED = [
    # IPv4: both edges of every range, and the famous addresses.
    "0.0.0.0", "0.255.255.255",  # noqa: S104 - a table of addresses, nothing binds
    "10.0.0.0", "10.255.255.255",
    "100.64.0.0", "100.64.0.1", "100.127.255.255",
    "127.0.0.0", "127.0.0.1", "127.255.255.255",
    "169.254.0.0", "169.254.169.254", "169.254.255.255",
    "172.16.0.0", "172.31.255.255",
    "192.0.0.0", "192.0.0.255", "192.0.2.0", "192.0.2.255", "192.88.99.1",
    "192.168.0.0", "192.168.255.255",
    "198.18.0.0", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.0", "224.0.0.1", "239.255.255.255",
    "240.0.0.0", "255.255.255.255",
    # IPv6.
    "::", "::1", "::7f00:1", "::a9fe:a9fe", "::ffff:7f00:1", "::ffff:127.0.0.1",
    "::ffff:169.254.169.254", "::ffff:10.0.0.1",
    "64:ff9b::", "64:ff9b::a9fe:a9fe", "64:ff9b::ffff:ffff", "64:ff9b:1::", "64:ff9b:1:ffff::1",
    "100::", "100::ffff:ffff:ffff:ffff",
    "2001::", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::1",
    "2002::", "2002:a9fe:a9fe::1", "2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fc00::", "fd00:ec2::254", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fe80::", "fe80::1", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "fec0::", "fec0::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
]  # fmt: skip
ALLOWED = [
    "1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0",
    "126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0", "172.15.255.255",
    "172.32.0.0", "192.167.255.255", "192.169.0.0", "223.255.255.255",
    "::ffff:8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
    "2001:4860:4860::8888", "2003::1",
]  # fmt: skip


@pytest.mark.parametrize("address", DENIED)
def test_non_public_addresses_are_denied(address: str) -> None:
    assert egress.address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert egress.address_problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0", "localhost"])
def test_numeric_and_local_names_are_judged_by_what_they_resolve_to(host: str) -> None:
    with pytest.raises(errors.Refused):
        egress.resolve(host, 80, resolver=egress.system_resolver, allow_private_networks=False)


def test_one_private_address_in_the_answer_refuses_the_host() -> None:
    def mixed(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    with pytest.raises(errors.Refused, match="10.0.0.7"):
        egress.resolve("example.com", 443, resolver=mixed, allow_private_networks=False)


def test_the_first_address_is_the_one_pinned() -> None:
    def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]

    address = egress.resolve("example.com", 443, resolver=public, allow_private_networks=False)
    assert str(address) == "93.184.215.14"


def test_an_unresolvable_host_is_an_error_not_a_pass() -> None:
    def nothing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(errors.Unresolvable, match="cannot resolve nowhere.invalid"):
        egress.resolve("nowhere.invalid", 80, resolver=nothing, allow_private_networks=True)


def test_the_operator_may_allow_private_networks() -> None:
    address = egress.resolve(
        "127.0.0.1", 80, resolver=egress.system_resolver, allow_private_networks=True
    )
    assert str(address) == "127.0.0.1"


def test_the_body_is_compact_utf8_json() -> None:
    assert webhook.encode_body(CTX.payload) == '{"b":1,"a":"é"}'.encode()


def test_signatures_verify_with_the_standardwebhooks_library_for_every_secret() -> None:
    old, new = webhook_secrets.generate(), webhook_secrets.generate()
    body = webhook.encode_body(CTX.payload)
    headers = webhook.request_headers({}, CTX, body, signing_secrets=[new, old], now=NOW)

    assert headers["webhook-id"] == f"msg_{CTX.run_id}"
    assert headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    expected = standardwebhooks.Webhook(new).sign(headers["webhook-id"], NOW, body.decode())
    assert headers["webhook-signature"].split(" ")[0] == expected
    for secret in (old, new):
        assert _verifies(secret, body, headers)
    assert not _verifies(webhook_secrets.generate(), body, headers)


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    # The library checks the timestamp against the wall clock: verify at NOW by signing
    # the same content it would compute.
    lib = standardwebhooks.Webhook(secret)
    mine = lib.sign(headers["webhook-id"], NOW, body.decode()).split(",", 1)[1]
    return any(sig.split(",", 1)[1] == mine for sig in headers["webhook-signature"].split(" "))


def test_secrets_have_the_standard_webhooks_format() -> None:
    secret = webhook_secrets.generate()
    assert secret.startswith("whsec_")
    assert len(standardwebhooks.Webhook(secret)._whsecret) == 32
    assert secret != webhook_secrets.generate()


def test_the_scheduler_headers_win_over_the_actions() -> None:
    action = {
        "headers": {"idempotency-key": "mine", "X-Custom": "v", "User-Agent": "me", "Host": "x"}
    }
    body = webhook.encode_body(CTX.payload)
    headers = webhook.request_headers(action, CTX, body, signing_secrets=[], now=NOW)
    assert headers["Idempotency-Key"] == CTX.idempotency_key
    assert "idempotency-key" not in headers and "Host" not in headers
    assert headers["X-Custom"] == "v"
    assert headers["User-Agent"] == "me"
    assert headers["X-Scheduled-For"] == "2026-01-05T12:00:00Z"
    assert "webhook-signature" not in headers  # no secrets, no signature


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Mon, 05 Jan 2026 12:05:00 GMT", 300.0),
        ("Mon, 05 Jan 2026 11:00:00 GMT", 0.0),  # in the past: now
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds) -> None:
    assert webhook.retry_after_seconds(value, now=NOW) == seconds


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_the_readme_shell_recipe_computes_the_signature() -> None:
    readme = (pathlib.Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Webhook signing secrets", 1)[1]
    [script] = re.findall(r"```sh\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    secret, body = webhook_secrets.generate(), webhook.encode_body(CTX.payload)
    env = {
        "PATH": os.environ["PATH"],
        "ID": "msg_1",
        "TS": "1767614400",
        "BODY": body.decode(),
        "SECRET": secret,
    }

    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, check=True)

    assert "v1," + out.stdout.decode() == webhook.sign("msg_1", 1767614400, body, [secret])


@pytest.mark.parametrize(
    ("run_as", "header"),
    [
        ("user-42", "user-42"),
        ("auth0|abc@example.com", "auth0|abc@example.com"),
        ("José d'Ávila", "Jos%C3%A9%20d'%C3%81vila"),
        ("100%", "100%25"),
        ("a\u00a0b", "a%C2%A0b"),
    ],
)
def test_the_run_as_header_is_percent_encoded_ascii_that_decodes_back(run_as, header):
    assert webhook.run_as_header(run_as) == header
    assert urllib.parse.unquote(header) == run_as


def test_the_signed_body_carries_run_as_which_wins_over_the_payloads_own():
    ctx = dataclasses.replace(CTX, payload={"run_as": "boss", "n": 1}, run_as="alice")
    body = webhook.encode_body(webhook.signed_payload(ctx))
    secret = webhook_secrets.generate()
    headers = webhook.request_headers({}, ctx, body, signing_secrets=[secret], now=NOW)

    assert body == b'{"run_as":"alice","n":1}'
    assert headers["webhook-run-as"] == "alice"
    # The signature covers the body, and so its run_as (no header is signed).
    signature = webhook.sign(headers["webhook-id"], int(NOW.timestamp()), body, [secret])
    assert signature == headers["webhook-signature"]
