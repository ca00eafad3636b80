"""The Flask app: `create_app()` for gunicorn (`web:create_app()`) and `flask --app web`.

Everything lives under /api/v1 except /healthz, /metrics and /openapi.json at the root, and
the console's pages for people under /console.
"""

from __future__ import annotations

from flask import Flask

from app import config, logs, service, tls, tracing
from web import (
    admin,
    cli,
    console,
    context,
    errors,
    health,
    json_input,
    middleware,
    ratelimit,
    runs,
    transport,
    triggers,
    webhook_secrets,
)
from web.fields import PAYLOAD_LIMIT

# The largest body we read: a 64 KiB payload plus room for the other fields. Anything
# bigger is refused with 413 before it is parsed; a smaller body whose payload alone
# exceeds 64 KiB gets the same 413 from the schema.
MAX_CONTENT_LENGTH = PAYLOAD_LIMIT + 32 * 1024


def create_app(settings: config.Settings | None = None) -> Flask:
    """Build the app. Without `settings`, read them from the environment and set up logging
    (a caller passing settings, such as a test, owns the logging setup)."""
    if settings is None:
        settings = config.settings_or_exit()
        logs.configure(settings.log_level, settings.log_format)
        tls.warn_unverified(settings)
    app = Flask(__name__)
    app.config.update(
        API_TITLE="Scheduled triggers",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
    )
    app.json = json_input.StrictJSONProvider(app)
    app.json.sort_keys = False
    app.extensions[context.EXTENSION] = new_scheduler(settings)
    middleware.init_app(app)
    ratelimit.init_app(app, settings)
    api = errors.Api(app, spec_kwargs=SPEC)
    api.spec.components.schemas.pop("PaginationMetadata", None)  # flask-smorest's, unused
    api_blueprints = (triggers.blp, runs.blp, webhook_secrets.blp, admin.blp, health.blp)
    for blueprint in api_blueprints:
        api.register_blueprint(blueprint)
    console.init_app(
        app,
        secret_key=settings.secret_key,
        cookie_secure=settings.session_cookie_secure,
        exempt=api_blueprints,
    )
    transport.init_app(app)
    errors.register(app)
    cli.register(app)
    if tracing.configure("scheduler-web") is not None:
        # Only when OTEL_* asks for traces (app/tracing.py): a span per request.
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,metrics")
    return app


def new_scheduler(settings: config.Settings) -> service.Scheduler:
    """The web process's composition root: publishing through Celery, hand-offs asked of a
    worker."""
    return service.Scheduler(
        settings=settings, publish=context.publish_runs, pass_on=context.request_hand_off
    )


SPEC = {
    "info": {
        "description": (
            "Durable scheduled triggers. Authenticate with `Authorization: Bearer <key>`. "
            'Errors: `{"error": {"code", "message", "fields"?}}`.'
        )
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            # /metrics: the METRICS_TOKEN setting, when the service sets one.
            "metricsToken": {"type": "http", "scheme": "bearer"},
        }
    },
    "security": [{"bearerAuth": []}],
}
