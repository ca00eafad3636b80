"""The `webhook` action: one HTTP request carrying the trigger's payload, signed as the
Standard Webhooks specification says, sent only to a public address.

Request: the action's method (default POST) to its URL, body = the payload as JSON (UTF-8,
sent for every method) with one more top-level member, `"run_as"`: the principal the run
acts for (docs/design.md section 18; it replaces a `run_as` of the payload's own), headers:

- `Content-Type: application/json`
- `webhook-id`: `msg_` + the run id, the same on every attempt of a run;
- `webhook-timestamp`: this attempt's time, integer Unix seconds;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` for each of
  the tenant's active secrets, space-separated (two while a rotated-out secret is in its
  grace period); receivers verify with the `standardwebhooks` libraries;
- `Idempotency-Key`: the run's idempotency key (`<trigger id>:<scheduled_for>`), the same on
  every attempt and redelivery of a run: delivery is at-least-once, so deduplicate on it;
- `X-Trigger-Id`, `X-Run-Id`, `X-Scheduled-For` (ISO-8601 UTC, `Z`);
- `webhook-run-as`: the run's `run_as`, percent-encoded UTF-8 (RFC 3986; printable ASCII
  other than `%` stays as it is, so `user-42` reads `user-42`);
- plus the action's own `headers` (they cannot replace the ones above).

What the signature covers: exactly what the Standard Webhooks specification signs, the
`webhook-id`, the `webhook-timestamp` and the body, and no header. So `run_as` is also in the
body, where the signature covers it: a receiver that verified the request (the
`standardwebhooks` library's `verify` returns the parsed body) trusts the body's `run_as`,
and trusts the `webhook-run-as` header only once it has checked it equals that (percent-
decoded). A tenant cannot forge either: the scheduler writes the body's `run_as` last, and a
trigger's own headers cannot set `webhook-run-as`.

Destination (docs/design.md section 13): the URL is parsed by urllib3, the client that sends it
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
import json
import logging
import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import urllib3
from urllib3.util import parse_url

from app import errors, schedule
from app.actions import egress
from app.actions.registry import Attempt, RunContext, url_problem

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
MAX_LOCATION_CHARS = 300
USER_AGENT = "trigger-scheduler/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}
REFUSED = "its address is not public (set WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow)"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret


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


def signed_payload(ctx: RunContext) -> dict[str, Any]:
    """The body's object: the trigger's payload and the run's `run_as`, which wins over a
    `run_as` of the payload's own (so the signed body always says whom the run acts for)."""
    return {**ctx.payload, "run_as": ctx.run_as}


# Every printable ASCII character but `%` stays as it is in the header (quote() escapes the rest).
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def run_as_header(run_as: str) -> str:
    """`run_as` as the `webhook-run-as` value: percent-encoded UTF-8 (spaces, `%`, non-ASCII),
    so any principal fits a header and `urllib.parse.unquote` gives it back."""
    return urllib.parse.quote(run_as, safe=_HEADER_SAFE)


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
            "X-Scheduled-For": schedule.iso_utc(ctx.scheduled_for),
            "webhook-run-as": run_as_header(ctx.run_as),
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
    "webhook-run-as",
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
    resolver: egress.Resolver = egress.system_resolver,
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
        address = egress.resolve(
            host, port, resolver=resolver, allow_private_networks=allow_private_networks
        )
    except errors.Unresolvable as exc:
        return Attempt(False, error=f"webhook to {host} failed: {exc}", retryable=True)
    except errors.Refused as exc:
        # Which private address a name has stays in the operator's log: telling the tenant
        # would let it map the internal network through error messages.
        logger.warning(
            "webhook destination refused",
            extra={"event": "webhook_refused", "host": host, "detail": str(exc)},
        )
        return Attempt(False, error=f"webhook to {host} refused: {REFUSED}", retryable=False)
    method = str(action.get("method") or "POST").upper()
    body = encode_body(signed_payload(ctx))
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
    address: egress.Address,
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
