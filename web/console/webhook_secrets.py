"""Console page for a tenant's webhook signing secrets: list, rotate, revoke.

A placeholder until the webhook secrets API exists (DESIGN section 13); its views slot in
here, each calling the same app function the API calls.
"""

from __future__ import annotations

from flask import render_template

from web.console.blueprint import bp


@bp.route("/webhook-secrets")
def webhook_secrets_page() -> str:
    return render_template("console/webhook_secrets.html")
