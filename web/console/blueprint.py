"""The console's blueprint: pages under /console, templates and static files served by the app."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from flask import Blueprint

from app import errors

WEB = Path(__file__).resolve().parent.parent

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder=str(WEB / "templates"),
    static_folder=str(WEB / "static" / "console"),
    static_url_path="/static",
)

# A one-time form token (create form, run-now button): URL-safe, long enough to be unique.
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def parse_id(value: str, what: str = "trigger") -> uuid.UUID:
    """A uuid from the URL; anything else is the same 404 as an unknown id."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.NotFound(f"{what} not found")
