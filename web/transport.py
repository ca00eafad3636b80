"""HTTPS as the browser sees it: whether a request came over HTTPS, and HSTS when it did.

The app speaks plain HTTP behind a TLS-terminating proxy (Heroku's router, a load
balancer), which says so in `X-Forwarded-Proto`. That header is trusted only to *add*
protection (the Secure cookie flag, HSTS): a browser ignores HSTS received over plain HTTP,
so a forged header over HTTP changes nothing.
"""

from __future__ import annotations

from flask import Flask, Response, request

# A year, the usual HSTS preload minimum; no includeSubDomains: the operator's other hosts
# under the same domain are not ours to pin.
HSTS = "max-age=31536000"


def came_over_https() -> bool:
    """Whether the current request reached us, or the proxy in front of us, over HTTPS."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"


def init_app(app: Flask) -> None:
    """Send Strict-Transport-Security on every response to a request made over HTTPS."""
    app.after_request(_hsts)


def _hsts(response: Response) -> Response:
    if came_over_https():
        response.headers.setdefault("Strict-Transport-Security", HSTS)
    return response
