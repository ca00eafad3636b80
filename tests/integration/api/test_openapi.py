"""The OpenAPI document: generated from the schemas, valid, and honoured by the app
(a bounded schemathesis run finds no 500 and no response outside the document)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 30  # per operation and mode: about 900 requests, well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def test_the_document_is_valid_openapi(anonymous):
    response = anonymous.get("/openapi.json")

    assert response.status_code == 200
    document = response.get_json()
    # Validated against the OpenAPI 3.0 meta-schema schemathesis ships (jsonschema_rs).
    schemathesis.openapi.from_dict(document).validate()
    broken = {**document, "paths": {"/x": {"get": {"responses": "nope"}}}}
    with pytest.raises(Exception, match="nope"):
        schemathesis.openapi.from_dict(broken).validate()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {
        "/api/v1/triggers", "/api/v1/triggers/{trigger_id}", "/api/v1/triggers/{trigger_id}/run",
        "/api/v1/triggers/{trigger_id}/preview", "/api/v1/schedules/preview",
        "/api/v1/triggers/{trigger_id}/runs", "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/cancel", "/api/v1/admin/scheduler",
        "/api/v1/admin/scheduler/restart", "/api/v1/admin/backlog", "/healthz", "/metrics",
    } <= set(paths)  # fmt: skip
    error = document["components"]["schemas"]["ErrorEnvelope"]
    assert error["required"] == ["error"]
    assert paths["/healthz"]["get"]["security"] == []
    assert paths["/metrics"]["get"]["security"] == [{"metricsToken": []}, {}]
    checks = document["components"]["schemas"]["HealthChecks"]["properties"]
    assert set(checks) == {"database", "broker", "scheduler"}  # the backlog is an ops endpoint
    assert "503" in paths["/api/v1/admin/backlog"]["get"]["responses"]


def test_the_document_describes_the_trigger_fields(anonymous):
    schemas = anonymous.get("/openapi.json").get_json()["components"]["schemas"]
    create = schemas["TriggerCreate"]
    assert set(create["required"]) == {"name", "action"}
    assert create["properties"]["max_attempts"]["maximum"] == 20
    assert create["properties"]["name"]["maxLength"] == 200
    assert create["additionalProperties"] is False
    assert "last_run" in schemas["TriggerOut"]["properties"]


OPERATIONS = [
    ("GET", "/api/v1/triggers"),
    ("POST", "/api/v1/triggers"),
    ("GET", "/api/v1/triggers/{trigger_id}"),
    ("PATCH", "/api/v1/triggers/{trigger_id}"),
    ("DELETE", "/api/v1/triggers/{trigger_id}"),
    ("POST", "/api/v1/triggers/{trigger_id}/run"),
    ("GET", "/api/v1/triggers/{trigger_id}/preview"),
    ("GET", "/api/v1/triggers/{trigger_id}/runs"),
    ("POST", "/api/v1/schedules/preview"),
    ("GET", "/api/v1/runs/{run_id}"),
    ("POST", "/api/v1/runs/{run_id}/cancel"),
    ("GET", "/api/v1/webhook-secrets"),
    ("POST", "/api/v1/webhook-secrets"),
    ("DELETE", "/api/v1/webhook-secrets/{secret_id}"),
    ("GET", "/api/v1/admin/scheduler"),
    ("GET", "/api/v1/admin/backlog"),
    ("POST", "/api/v1/admin/scheduler/restart"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
]


# Operations without inputs that can be made invalid have no negative examples. The
# webhook-secrets collection takes only an optional tenant id, so schemathesis' negatives
# there are mostly a missing Authorization header, which this harness adds back (its
# hostile inputs are swept in test_hostile_input.py).
NO_NEGATIVE = {
    "/healthz", "/metrics", "/api/v1/admin/backlog", "/api/v1/admin/scheduler/restart",
    "/api/v1/webhook-secrets",
}  # fmt: skip
CASES = [
    pytest.param(method, path, mode, id=f"{method} {path} {mode.value}")
    for method, path in OPERATIONS
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or path not in NO_NEGATIVE
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_the_app_honours_its_document(app, admin, add_run, method, path, mode):
    """A bounded schemathesis run per operation: no 500, every response as documented.

    Driven through hypothesis directly (schemathesis' pytest loader does not support
    pytest 9 yet). An admin key reaches every operation; generated ids are random, so
    the item operations mostly exercise their 404 path.
    """
    add_run(admin.create())
    operation = schemathesis.openapi.from_wsgi("/openapi.json", app)[path][method]
    headers = {"Authorization": f"Bearer {admin.key}"}

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
