"""The `webhook` action: one HTTP request carrying the trigger's payload, signed as the
Standard Webhooks specification says, sent only to a public address.

Request: the action's method (default POST) to its URL, body = the payload as JSON (UTF-8,
sent for every method), headers:

- `Content-Type: application/json`
- `webhook-id`: `msg_` + the run id, the same on every attempt of a run;
- `webhook-timestamp`: this attempt's time, integer Unix seconds;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for each of
  the tenant's active secrets, space-separated (two while a rotated-out secret is in its
  grace period); receivers verify with the `standardwebhooks` libraries;
- `Idempotency-Key`: the run's idempotency key (`<trigger id>:<scheduled_for>`), the same on
  every attempt and redelivery of a run: delivery is at-least-once, so deduplicate on it;
- `X-Trigger-Id`, `X-Run-Id`, `X-Scheduled-For` (ISO-8601 UTC, `Z`);
- plus the action's own `headers` (they cannot replace the ones above).

Destination (DESIGN section 13): the URL is parsed by urllib3, the client that sends it
(registry.url_problem). Each attempt resolves the host once; if any address is not public
(see `address_problem`) the attempt fails, otherwise the connection goes to the checked
address itself (pinned: a DNS answer that changes between check and connect cannot move
it), with `Host`, TLS SNI and certificate verification all for the hostname. Environment
proxies are not used, redirects are not followed.

Outcome: 2xx succeeds; 408, 429, 5xx, timeouts, network errors and an unresolvable host are
retried (a `Retry-After` in seconds or as an HTTP date is honoured within the backoff
bounds); a 3xx fails at once naming its `Location`; any other status fails at once. The
response status and the first 4 KiB of its body are stored in the run's result. Errors name
the host only: URLs may carry tokens in their query string.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
from urllib3.util import parse_url

from app.actions.registry import Attempt, RunContext, url_problem

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_LOCATION_CHARS = 300
USER_AGENT = "trigger-scheduler/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}
REFUSED = "its address is not public (set WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow)"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# resolve(host, port) -> every address the name has; raises OSError when it has none.
Resolver = Callable[[str, int], list[str]]

# Refused whatever `is_global` says: CPython's view of some of these has changed between
# patch releases (cpython #119812, gh-117566, CVE-2024-4032), and several are "global" yet
# lead back inside (multicast, site-local, the IPv6 forms that embed an IPv4 address).
DENIED_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches localhost
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/96",  # unspecified, loopback and IPv4-compatible (::7f00:1)
        "::ffff:0:0/96",  # IPv4-mapped (unwrapped and judged as IPv4 before this)
        "64:ff9b::/96",  # NAT64
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/32",  # Teredo
        "2001:db8::/32",
        "2002::/16",  # 6to4
        "fc00::/7",  # unique local (fd00:ec2::254, the AWS metadata address)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)


def address_problem(address: Address) -> str | None:
    """Why the scheduler must not connect to `address`, or None when it is public.

    1. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as its IPv4 address.
    2. The explicit deny-list first, then `is_global` for whatever else is not routable.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for network in DENIED_NETWORKS:
        if address.version == network.version and address in network:
            return f"{address} is in {network}"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (the system resolver: /etc/hosts, then DNS)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def resolve(host: str, port: int, *, resolver: Resolver, allow_private_networks: bool) -> Address:
    """The one address to connect to for `host`, resolved once.

    Raises Unresolvable when the name has no address, Refused when any of its addresses is
    not public (one bad address refuses the whole answer: a receiver that also answers on a
    private address is refused rather than raced), unless `allow_private_networks`.
    Numeric forms (`2130706433`, `0x7f.1`, `127.1`, `0`) are judged by what they resolve
    to, never by the string.
    """
    name = host[1:-1] if host.startswith("[") else host
    try:
        answers = resolver(name, port)
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve {host}") from exc
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in answers]
    if not addresses:
        raise Unresolvable(f"cannot resolve {host}")
    if not allow_private_networks:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                raise Refused(problem)
    return addresses[0]


class Unresolvable(Exception):
    """The host has no address (retryable: DNS may recover)."""


class Refused(Exception):
    """The host resolves to an address the scheduler must not call."""


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The `webhook-signature` value: one `v1,<base64>` per secret, space-separated.

    Each is the HMAC-SHA256, keyed with the secret's bytes (`whsec_` + base64), of
    `{msg_id}.{timestamp}.{body}`: binding the id and time stops a signed body from being
    replayed later or as another message.
    """
    content = f"{msg_id}.{timestamp}.".encode() + body
    values = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, content, hashlib.sha256).digest()
        values.append("v1," + base64.b64encode(digest).decode("ascii"))
    return " ".join(values)


def encode_body(payload: Any) -> bytes:
    """The exact bytes sent (and signed) for a payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def message_id(ctx: RunContext) -> str:
    """`msg_` + the run id: stable across a run's attempts, never tenant-chosen, no `.`."""
    return f"msg_{ctx.run_id}"


def request_headers(
    action: dict[str, Any],
    ctx: RunContext,
    body: bytes,
    *,
    signing_secrets: Sequence[str],
    now: datetime,
) -> dict[str, str]:
    """The action's headers, then the scheduler's own, which always win."""
    headers = {str(k): str(v) for k, v in (action.get("headers") or {}).items()}
    headers = {k: v for k, v in headers.items() if k.lower() not in _OURS}
    msg_id, timestamp = message_id(ctx), int(now.timestamp())
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": headers.get("User-Agent", USER_AGENT),
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "Idempotency-Key": ctx.idempotency_key,
            "X-Trigger-Id": ctx.trigger_id,
            "X-Run-Id": ctx.run_id,
            "X-Scheduled-For": _iso(ctx.scheduled_for),
        }
    )
    if signing_secrets:
        headers["webhook-signature"] = sign(msg_id, timestamp, body, signing_secrets)
    return headers


_OURS = {
    "content-type",
    "idempotency-key",
    "x-trigger-id",
    "x-run-id",
    "x-scheduled-for",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "host",
}


def call(
    action: dict[str, Any],
    ctx: RunContext,
    *,
    signing_secrets: Sequence[str],
    timeout_seconds: float,
    now: datetime,
    allow_private_networks: bool = False,
    resolver: Resolver = system_resolver,
    ca_certs: str | None = None,
) -> Attempt:
    """Send the webhook once to the address its host resolves to, and classify the answer.

    Never raises for HTTP or network failures: they come back as a failed Attempt.
    `resolver` and `ca_certs` (a CA bundle instead of the system's) exist for tests.
    """
    url = action.get("url")
    problem = url_problem(url)
    if problem:
        return Attempt(False, error=f"webhook url {problem}", retryable=False)
    parts = parse_url(url)
    host, scheme = parts.host or "", parts.scheme or "http"
    port = parts.port or DEFAULT_PORTS[scheme]
    try:
        address = resolve(
            host, port, resolver=resolver, allow_private_networks=allow_private_networks
        )
    except Unresolvable as exc:
        return Attempt(False, error=f"webhook to {host} failed: {exc}", retryable=True)
    except Refused as exc:
        # Which private address a name has stays in the operator's log: telling the tenant
        # would let it map the internal network through error messages.
        logger.warning(
            "webhook destination refused",
            extra={"event": "webhook_refused", "host": host, "detail": str(exc)},
        )
        return Attempt(False, error=f"webhook to {host} refused: {REFUSED}", retryable=False)
    method = str(action.get("method") or "POST").upper()
    body = encode_body(ctx.payload)
    headers = request_headers(action, ctx, body, signing_secrets=signing_secrets, now=now)
    # The Host header carries a non-default port; the TLS name never does.
    headers["Host"] = host if parts.port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    deadline = time.monotonic() + timeout_seconds
    pool = _pool(scheme, address, port, host=host, timeout=timeout_seconds, ca_certs=ca_certs)
    try:
        response = pool.urlopen(
            method,
            parts.request_uri,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            if 300 <= response.status < 400:
                return _redirect(response, host)
            text, truncated = _read_capped(response, deadline)
            return classify(response, text, truncated, host=host, now=now)
        finally:
            response.release_conn()
    except (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
        # NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError in urllib3 2.
        if not isinstance(exc, urllib3.exceptions.NewConnectionError):
            return Attempt(False, error=f"webhook to {host} timed out after {timeout_seconds} s")
        return Attempt(False, error=f"webhook to {host} failed: {type(exc).__name__}")
    except urllib3.exceptions.HTTPError as exc:
        # str(exc) may repeat the URL, query string and all: name the host and kind only.
        return Attempt(False, error=f"webhook to {host} failed: {type(exc).__name__}")
    finally:
        pool.close()


def _pool(
    scheme: str,
    address: Address,
    port: int,
    *,
    host: str,
    timeout: float,
    ca_certs: str | None,
) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked `address`, speaking TLS for `host` when https.

    `server_hostname` sends SNI for the hostname and verifies the certificate against it;
    `assert_hostname` keeps the check on the hostname rather than the address we dialled.
    """
    limits = urllib3.Timeout(connect=min(timeout, 10.0), read=timeout)
    common: dict[str, Any] = {"port": port, "timeout": limits, "maxsize": 1, "retries": False}
    if scheme == "https":
        name = host.rstrip(".")
        return urllib3.HTTPSConnectionPool(
            str(address), server_hostname=name, assert_hostname=name,
            cert_reqs="CERT_REQUIRED", ca_certs=ca_certs, **common,
        )  # fmt: skip
    return urllib3.HTTPConnectionPool(str(address), **common)


def _redirect(response: urllib3.BaseHTTPResponse, host: str) -> Attempt:
    """A 3xx fails the attempt for good: the tenant should update the URL (Standard
    Webhooks); following it would let a receiver point the scheduler anywhere."""
    location = response.headers.get("Location", "")
    location = "".join(c if c.isprintable() else "?" for c in location)[:MAX_LOCATION_CHARS]
    return Attempt(
        False,
        result={"status_code": response.status},
        error=f"HTTP {response.status} from {host}: redirects are not followed "
        f"(Location: {location or 'none'})",
        retryable=False,
    )


def classify(
    response: urllib3.BaseHTTPResponse, text: str, truncated: bool, *, host: str, now: datetime
) -> Attempt:
    """2xx succeeds; 408, 429 and 5xx are retryable; any other status fails at once."""
    status = response.status
    result = {"status_code": status, "body": text, "body_truncated": truncated}
    if 200 <= status < 300:
        return Attempt(True, result=result)
    retryable = status in (408, 429) or status >= 500
    return Attempt(
        False,
        result=result,
        error=f"HTTP {status} from {host}",
        retryable=retryable,
        retry_after=retry_after_seconds(response.headers.get("Retry-After"), now=now)
        if retryable
        else None,
    )


def retry_after_seconds(value: str | None, *, now: datetime) -> float | None:
    """A Retry-After header (delta seconds or HTTP date) as seconds from `now`, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _read_capped(response: urllib3.BaseHTTPResponse, deadline: float) -> tuple[str, bool]:
    """The first MAX_BODY_BYTES of the body, and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.stream(1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES or time.monotonic() > deadline:
                break
    except urllib3.exceptions.HTTPError:
        # The status line has arrived and decides the outcome; a body cut short only
        # shortens what is stored.
        return b"".join(chunks)[:MAX_BODY_BYTES].decode("utf-8", "replace"), True
    data = b"".join(chunks)
    return data[:MAX_BODY_BYTES].decode("utf-8", "replace"), size > MAX_BODY_BYTES


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
