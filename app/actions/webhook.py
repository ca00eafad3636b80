"""The `webhook` action: an HTTP request carrying the trigger's payload, signed.

Request: the action's method (default POST) to its URL, body = the payload as JSON (UTF-8,
sent for every method), headers:

- `Content-Type: application/json`
- `Idempotency-Key`: the run's idempotency key (`<trigger id>:<scheduled_for>`), the same on
  every attempt and redelivery of a run: delivery is at-least-once, so deduplicate on it;
- `X-Trigger-Id`, `X-Run-Id`, `X-Scheduled-For` (ISO-8601 UTC, `Z`);
- `X-Signature: sha256=<hex>`: HMAC-SHA256 of the exact body bytes keyed with
  WEBHOOK_SIGNING_SECRET (absent when no secret is configured);
- plus the action's own `headers` (they cannot replace the ones above).

Verifying a request, on the receiver: compute the HMAC over the raw body bytes as received,
before any JSON parsing or re-serialisation, and compare in constant time::

    import hashlib
    import hmac

    def verify(raw_body: bytes, signature_header: str, secret: str) -> bool:
        expected = "sha256=" + hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature_header or "")

    # Flask: verify(request.get_data(), request.headers.get("X-Signature", ""), SECRET)

From a shell: `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"` prints the hex part.

Outcome: 2xx succeeds; 408, 429, 5xx, timeouts and network errors are retried (a
`Retry-After` in seconds or as an HTTP date is honoured within the backoff bounds); any other
status fails at once. The response status and the first 4 KiB of its body are stored in the
run's result. Redirects are followed only to the same host (http -> https allowed), at most
MAX_REDIRECTS times, re-sending the same method and body; elsewhere they fail the run.
Errors name the host only: URLs may carry tokens in their query string.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import ipaddress
import json
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from app.actions.registry import Attempt, RunContext, url_problem

MAX_REDIRECTS = 3
MAX_BODY_BYTES = 4096
USER_AGENT = "trigger-scheduler/0.1"


def signature(body: bytes, secret: str) -> str:
    """The X-Signature value of `body`: `sha256=` + hex HMAC-SHA256 keyed with `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode_body(payload: Any) -> bytes:
    """The exact bytes sent (and signed) for a payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request_headers(
    action: dict[str, Any], ctx: RunContext, body: bytes, *, signing_secret: str
) -> dict[str, str]:
    """The action's headers, then the scheduler's own, which always win."""
    headers = {str(k): str(v) for k, v in (action.get("headers") or {}).items()}
    headers = {k: v for k, v in headers.items() if k.lower() not in _OURS}
    headers.update(
        {
            "Content-Type": "application/json",
            "User-Agent": headers.get("User-Agent", USER_AGENT),
            "Idempotency-Key": ctx.idempotency_key,
            "X-Trigger-Id": ctx.trigger_id,
            "X-Run-Id": ctx.run_id,
            "X-Scheduled-For": _iso(ctx.scheduled_for),
        }
    )
    if signing_secret:
        headers["X-Signature"] = signature(body, signing_secret)
    return headers


_OURS = {
    "content-type",
    "idempotency-key",
    "x-trigger-id",
    "x-run-id",
    "x-scheduled-for",
    "x-signature",
}


def call(
    action: dict[str, Any],
    ctx: RunContext,
    *,
    signing_secret: str,
    timeout_seconds: float,
    now: datetime,
    allow_private_networks: bool = False,
) -> Attempt:
    """Send the webhook once (following allowed redirects) and classify the response.

    Never raises for HTTP or network failures: they come back as a failed Attempt. Unless
    `allow_private_networks`, a destination that resolves to a loopback, private,
    link-local (cloud metadata) or otherwise non-public address is refused, on every hop.
    """
    url = action.get("url")
    problem = url_problem(url)
    if problem:
        return Attempt(False, error=f"webhook url {problem}", retryable=False)
    method = str(action.get("method") or "POST").upper()
    body = encode_body(ctx.payload)
    headers = request_headers(action, ctx, body, signing_secret=signing_secret)
    deadline = time.monotonic() + timeout_seconds
    host = urlsplit(url).hostname or "?"
    with requests.Session() as session:
        try:
            for _ in range(MAX_REDIRECTS + 1):
                refused = None if allow_private_networks else destination_problem(url)
                if refused:
                    return Attempt(False, error=f"webhook to {host} refused: {refused}",
                                   retryable=False)  # fmt: skip
                remaining = max(0.001, deadline - time.monotonic())
                response = session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    timeout=(min(remaining, 10.0), remaining),
                    allow_redirects=False,
                    stream=True,
                )
                with response:
                    if not response.is_redirect:
                        text, truncated = _read_capped(response, deadline)
                        return classify(response, text, truncated, host=host, now=now)
                    target = urljoin(url, response.headers.get("Location", ""))
                    if not _same_host(url, target):
                        return Attempt(
                            False,
                            result={"status_code": response.status_code},
                            error=f"HTTP {response.status_code} from {host}: redirect to "
                            "another host not followed",
                            retryable=False,
                        )
                    url = target
            return Attempt(
                False, error=f"more than {MAX_REDIRECTS} redirects from {host}", retryable=False
            )
        except requests.Timeout:
            return Attempt(False, error=f"webhook to {host} timed out after {timeout_seconds} s")
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            return Attempt(
                False, error=f"webhook url rejected: {type(exc).__name__}", retryable=False
            )
        except requests.RequestException as exc:
            # str(exc) would repeat the full URL, query string and all: name the host only.
            return Attempt(False, error=f"webhook to {host} failed: {type(exc).__name__}")


def destination_problem(url: str) -> str | None:
    """Why the scheduler must not call `url`'s host, or None (multi-tenant SSRF guard).

    Tenants choose webhook URLs; without this a URL could reach the service's own network
    (`http://169.254.169.254/` metadata, `http://127.0.0.1:6379/`) and the response body,
    stored in the run's result, would be readable by the tenant. The check resolves the
    host and refuses when any address is not globally routable. A name that resolves to a
    public address here and to a private one at connect time (DNS rebinding) is not caught:
    operators who need that guarantee route webhooks through an egress proxy.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None  # unresolvable: the request fails as a (retryable) network error
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if not (mapped or address).is_global:
            return "its address is not public (set WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow)"
    return None


def classify(
    response: requests.Response, text: str, truncated: bool, *, host: str, now: datetime
) -> Attempt:
    """2xx succeeds; 408, 429 and 5xx are retryable; any other status fails at once."""
    status = response.status_code
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


def _read_capped(response: requests.Response, deadline: float) -> tuple[str, bool]:
    """The first MAX_BODY_BYTES of the body, and whether more was left unread."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES or time.monotonic() > deadline:
                break
    except requests.RequestException:
        # The status line has arrived and decides the outcome; a body cut short only
        # shortens what is stored.
        return b"".join(chunks)[:MAX_BODY_BYTES].decode("utf-8", "replace"), True
    data = b"".join(chunks)
    return data[:MAX_BODY_BYTES].decode("utf-8", "replace"), size > MAX_BODY_BYTES


def _same_host(origin: str, target: str) -> bool:
    a, b = urlsplit(origin), urlsplit(target)
    if b.scheme not in ("http", "https") or not b.hostname:
        return False
    if (a.scheme, b.scheme) == ("https", "http"):
        return False  # never downgrade
    if a.hostname.lower() != b.hostname.lower():  # type: ignore[union-attr]
        return False
    default = {"http": 80, "https": 443}
    # http -> https on the same host changes the port from 80 to 443 by nature.
    a_port = a.port or default[a.scheme]
    b_port = b.port or default[b.scheme]
    return a_port == b_port or (a.scheme, b.scheme) == ("http", "https")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
