"""The console's blueprint: pages under /console, templates and static files served by the app."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

WEB = Path(__file__).resolve().parent.parent

bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder=str(WEB / "templates"),
    static_folder=str(WEB / "static" / "console"),
    static_url_path="/static",
)
