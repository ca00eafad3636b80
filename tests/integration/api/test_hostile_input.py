"""Hostile input over every endpoint: never a 500, always the envelope, nothing stored.

A property-based sweep (hypothesis) drives each operation of the OpenAPI document with
values the API must refuse (tests/integration/api/hostile.py), placed in every field its
schema declares, anywhere inside the JSON documents it accepts, and in its query, path and
headers. Fields are read from the schemas, so a new field is swept without editing this
file; an operation missing from the tables below fails test_every_operation_is_swept.
A few thousand examples in all, in seconds.
"""

from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import hypothesis
import marshmallow as ma
import pytest
from hypothesis import strategies as st

from tests.integration.api import hostile
from tests.integration.api.conftest import Caller, assert_error, trigger_body
from web import create_app, ops_schemas, webhook_secrets
from web import fields as wf
from web import schemas as s
from web.json_input import MAX_DEPTH

SECRET = "test-restart-secret-0123456789"
REFUSED = {400, 413, 422}
WEBHOOK = {
    "type": "webhook",
    "url": "https://hooks.example.com/in?token=abc",
    "headers": {"X-Tenant-Token": "value"},
}
CREATE = trigger_body(
    description="weekly", timezone="Europe/Paris", start_at="2026-01-01T00:00:00Z",
    end_at="2030-01-01T00:00:00Z", action=WEBHOOK, max_attempts=3,
    payload={"k": "v", "list": [1, "x", {"deep": "y"}], "n": 1.5},
)  # fmt: skip
PREVIEW = {
    "cron": "0 9 * * 1", "timezone": "America/New_York", "start_at": "2026-01-01T00:00:00Z",
    "end_at": "2030-01-01T00:00:00Z", "after": "2026-03-01T00:00:00Z", "count": 5,
}  # fmt: skip
RESTART = {"release": "test-release"}
# A range the backfill accepts (within BACKFILL_MAX_AGE_DAYS of the app's real clock).
_DAY = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")
BACKFILL = {"start": f"{_DAY}T00:00:00Z", "end": f"{_DAY}T06:00:00Z"}

# (method, path, schema of the body, a valid body)
BODIES = [
    ("POST", "/api/v1/triggers", s.TriggerCreate, CREATE),
    ("PATCH", "/api/v1/triggers/{trigger_id}", s.TriggerPatch, CREATE),
    ("POST", "/api/v1/schedules/preview", s.PreviewIn, PREVIEW),
    ("POST", "/api/v1/admin/scheduler/restart", ops_schemas.RestartIn, RESTART),
    ("POST", "/api/v1/triggers/{trigger_id}/backfill", s.BackfillIn, BACKFILL),
]
# (method, path, schema of the query string)
QUERIES = [
    ("GET", "/api/v1/triggers", s.TriggerListQuery),
    ("GET", "/api/v1/triggers/{trigger_id}/runs", s.RunListQuery),
    ("GET", "/api/v1/triggers/{trigger_id}/preview", s.PreviewQuery),
    ("GET", "/api/v1/webhook-secrets", webhook_secrets.SecretQuery),
    ("POST", "/api/v1/webhook-secrets", webhook_secrets.SecretQuery),
]
# Operations whose only inputs are their path and headers.
PATHS = [
    ("GET", "/api/v1/triggers/{trigger_id}"),
    ("DELETE", "/api/v1/triggers/{trigger_id}"),
    ("POST", "/api/v1/triggers/{trigger_id}/run"),
    ("GET", "/api/v1/runs/{run_id}"),
    ("POST", "/api/v1/runs/{run_id}/cancel"),
    ("DELETE", "/api/v1/webhook-secrets/{secret_id}"),
]
NO_INPUT = [
    ("GET", "/api/v1/admin/scheduler"),
    ("GET", "/api/v1/admin/backlog"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
]

SETTINGS = hypothesis.settings(
    deadline=None,
    database=None,
    derandomize=True,  # the same examples every run: CI stays fast and reproducible
    suppress_health_check=list(hypothesis.HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)


def names(schema: type[ma.Schema]) -> list[str]:
    """The input names a schema declares (its fields' data keys)."""
    return [f.data_key or n for n, f in schema().load_fields.items()]


def timestamp_names(schema: type[ma.Schema]) -> list[str]:
    return [f.data_key or n for n, f in schema().load_fields.items() if isinstance(f, wf.Timestamp)]


def body_mutations(schema: type[ma.Schema], base: dict[str, Any]) -> st.SearchStrategy:
    """Bodies that must be refused: `base` with one hostile value somewhere."""
    fields = st.sampled_from(names(schema))
    places = st.sampled_from(hostile.paths(base)[1:])
    objects = st.sampled_from([p for p in hostile.paths(base) if isinstance(_at(base, p), dict)])
    strategies = [
        st.builds(lambda name, value: {**base, name: value}, fields, hostile.hostile_value),
        st.builds(lambda path, value: hostile.replace(base, path, value), places,
                  hostile.hostile_value),
        st.builds(lambda path, key: hostile.replace(base, path, {**_at(base, path), key: 1}),
                  objects, hostile.unstorable_text),
        st.one_of(hostile.non_finite, hostile.too_deep, hostile.unstorable_text),  # the root
    ]  # fmt: skip
    if timestamp_names(schema):
        strategies.append(
            st.builds(lambda name, value: {**base, name: value},
                      st.sampled_from(timestamp_names(schema)), hostile.out_of_range_timestamp)
        )  # fmt: skip
    return st.one_of(strategies)


def _at(document: Any, path: tuple) -> Any:
    for step in path:
        document = document[step]
    return document


def query_mutations(schema: type[ma.Schema]) -> st.SearchStrategy:
    """Query strings that must be refused, as already-encoded text."""
    loaded = schema().load_fields
    per_field = []
    for name, field in loaded.items():
        key = field.data_key or name
        values = [hostile.unstorable_text]
        if name == "cursor":
            values.append(hostile.hostile_cursor)
        if isinstance(field, wf.Timestamp):
            values.append(hostile.out_of_range_timestamp)
        if isinstance(field, ma.fields.Integer):
            values.append(
                st.text(max_size=12).filter(lambda t: not t.strip().lstrip("-+").isdigit())
            )
        if isinstance(field, ma.fields.Boolean):
            values.append(st.text(max_size=8).filter(
                lambda t, f=field: t not in f.truthy | f.falsy
            ))  # fmt: skip
        per_field.append(st.builds(lambda k, v: f"{k}={_q(v)}", st.just(key), st.one_of(values)))
    unknown = st.builds(lambda k, v: f"{_q(k)}={_q(v)}", st.text(min_size=1, max_size=10)
                        .filter(lambda k: k not in loaded), st.text(max_size=10))  # fmt: skip
    return st.one_of(*per_field, unknown)


def _q(text: str) -> str:
    # An attacker sends whatever bytes they like: lone surrogates as their UTF-8 bytes.
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@pytest.fixture()
def app(settings, engine, celery_app):
    """The sweep calls the restart hook hundreds of times a minute from one address: it tries
    inputs, not AUTH_RATE_LIMIT (test_rate_limits_gunicorn.py does)."""
    app = create_app(dataclasses.replace(settings, auth_rate_limit="100000/minute"))
    app.config["TESTING"] = True
    return app


@pytest.fixture()
def world(acme: Caller, add_run, snapshot) -> dict[str, Any]:
    trigger = acme.create(**CREATE)
    run_id = add_run(trigger)
    return {"trigger_id": trigger["id"], "run_id": str(run_id), "before": snapshot()}


def refused(response: Any, allowed: set[int] = REFUSED) -> None:
    assert response.status_code in allowed, (response.status_code, response.get_data())
    assert_error(response, response.status_code)


@pytest.mark.parametrize(
    ("method", "path", "schema", "base"), BODIES, ids=[f"{m} {p}" for m, p, *_ in BODIES]
)
def test_hostile_bodies_are_refused_and_store_nothing(
    acme, admin, client, snapshot, world, method, path, schema, base
):
    url = path.format(**world)
    headers = {**acme.headers(), "X-Scheduler-Secret": SECRET}
    assert client.open(url, method=method, json=base, headers=headers).status_code < 300
    before = snapshot()  # after the valid request: a create or a restart changes state

    @hypothesis.given(body=body_mutations(schema, base))
    @hypothesis.settings(SETTINGS, max_examples=400)
    def check(body: Any) -> None:
        data = hostile.encode(body)
        response = client.open(
            url, method=method, data=data, content_type="application/json", headers=headers
        )
        refused(response)
        assert snapshot() == before

    check()


@pytest.mark.parametrize(
    ("method", "path", "schema", "base"), BODIES[:3], ids=[f"{m} {p}" for m, p, *_ in BODIES[:3]]
)
def test_instants_at_the_edges_of_the_range_never_give_a_500(
    acme, client, method, path, schema, base, world
):
    """Accepted instants near years 1 and 9998: never a 500, and an error names the field
    at fault, never the whole body (the answer to a schedule computation that overflowed)."""
    url = path.format(**world)
    fields = st.sets(st.sampled_from(timestamp_names(schema)), min_size=1)

    @hypothesis.given(chosen=fields, values=st.lists(hostile.edge_timestamp, min_size=4))
    # The first instant as a window's start: computing "one microsecond before" overflowed.
    @hypothesis.example(chosen={"start_at"}, values=["0001-01-01T00:00:00Z"] * 4)
    @hypothesis.settings(SETTINGS, max_examples=50)
    def check(chosen: set[str], values: list[str]) -> None:
        body = {**base, **dict(zip(sorted(chosen), values, strict=False))}
        if "run_at" in chosen:
            body["cron"] = None
        response = client.open(url, method=method, json=body, headers=acme.headers())
        assert response.status_code < 500, (body, response.get_data())
        if response.status_code >= 400:
            error = assert_error(response, response.status_code)
            assert "body" not in (error.get("fields") or {}), (body, error)

    check()


@pytest.mark.parametrize(
    ("method", "path", "schema"), QUERIES, ids=[f"{m} {p}" for m, p, _ in QUERIES]
)
def test_hostile_query_strings_are_refused(acme, client, snapshot, world, method, path, schema):
    url = path.format(**world)

    @hypothesis.given(query=query_mutations(schema))
    @hypothesis.settings(SETTINGS, max_examples=250)
    def check(query: str) -> None:
        response = client.open(f"{url}?{query}", method=method, headers=acme.headers())
        assert response.status_code == 422, query
        refused(response, {422})

    check()
    assert snapshot() == world["before"]


@pytest.mark.parametrize(("method", "path"), PATHS, ids=[f"{m} {p}" for m, p in PATHS])
def test_hostile_paths_and_headers_are_refused(admin, client, snapshot, world, method, path):
    header_text = st.text(st.characters(exclude_characters="\r\n"), max_size=5)
    printable_poison = st.builds(lambda a, b: a + "\x00" + b, header_text, header_text)
    segment = st.text(min_size=1, max_size=40).map(_q)
    non_ascii = st.text(st.characters(exclude_characters="\r\n"), min_size=1, max_size=150)
    idempotency = st.one_of(printable_poison, non_ascii.filter(lambda t: not t.isascii()))

    @hypothesis.given(segment=segment, key=idempotency)
    @hypothesis.settings(SETTINGS, max_examples=60)
    def check(segment: str, key: str) -> None:
        bad_path = path.format(trigger_id=segment, run_id=segment, secret_id=segment)
        refused(client.open(bad_path, method=method, headers=admin.headers()), {404, 405})
        if method == "POST" and "{trigger_id}" in path:
            good_path = path.format(**world)
            headers = admin.headers({"Idempotency-Key": key.encode().decode("latin-1")})
            refused(client.open(good_path, method=method, headers=headers), {422})
        if method == "DELETE" and "{trigger_id}" in path:
            headers = admin.headers({"If-Match": key.encode().decode("latin-1")})
            refused(client.open(path.format(**world), method=method, headers=headers), {412})

    check()
    assert snapshot() == world["before"]


def test_every_operation_is_swept(anonymous):
    """A new operation must join a table above (or NO_INPUT, when it takes no input)."""
    document = anonymous.get("/openapi.json").get_json()
    swept = {(m, p) for m, p, *_ in BODIES + QUERIES} | set(PATHS) | set(NO_INPUT)
    operations = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations - swept == set()
    with_body = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict) and "requestBody" in operation
    }
    assert with_body <= {(m, p) for m, p, *_ in BODIES}


# -- the cases of issue 11, each spelled out --------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": "n", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}, '
        '"payload": {"x": NaN}}',
        '{"name": "n", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}, '
        '"payload": {"x": -Infinity}}',
        '{"name": "n", "cron": "* * * * *", "action": {"type": "task", "name": "echo"}, '
        '"payload": {"x": 1e999}}',
        '{"payload": ' + "[" * 50_000 + "]" * 50_000 + "}",  # RecursionError before the fix
        '{"payload": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}",
        b'{"name": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
    ],
    ids=["nan", "infinity", "overflow", "recursion", "depth-33", "utf8-surrogate"],
)
def test_non_json_values_and_deep_nesting_are_400(acme, snapshot, world, raw):
    response = acme.post("/triggers", data=raw, content_type="application/json")
    error = assert_error(response, 400 if len(raw) < 96 * 1024 else 413)
    assert "nternal" not in error["message"]
    assert snapshot() == world["before"]


def test_nesting_up_to_the_limit_is_accepted(acme):
    payload: Any = []
    for _ in range(MAX_DEPTH - 3):  # the body, payload and the innermost list: three more
        payload = [payload]
    response = acme.post("/triggers", json=trigger_body(payload={"deep": payload}))
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("name", "a\x00b", "name"),
        ("description", "\ud800", "description"),
        ("cron", "* * * * *\x00", "cron"),
        ("timezone", "UTC\x00", "timezone"),
        ("action", {**WEBHOOK, "url": "https://x.example.com/\x00"}, "action.url"),
        ("action", {**WEBHOOK, "headers": {"X-A": "\udfff"}}, "action.headers.X-A"),
        ("action", {**WEBHOOK, "headers": {"X-\x00": "v"}}, "action.headers"),
        ("payload", {"k\x00": 1}, "payload"),
        ("payload", {"k": ["ok", "bad\x00"]}, "payload.k.1"),
    ],
)
def test_nul_and_lone_surrogates_are_422_naming_the_field(
    acme, snapshot, world, field, value, named
):
    response = acme.post(
        "/triggers",
        data=hostile.encode(trigger_body(**{field: value})),
        content_type="application/json",
    )
    error = assert_error(response, 422, "validation_failed")
    assert named in error["fields"], error
    assert snapshot() == world["before"]


@pytest.mark.parametrize("value", ["€ 5", "日本", "café 😀"])
def test_header_values_that_are_not_latin_1_are_422_at_create_and_update(
    acme, snapshot, world, value
):
    # http.client encodes header values as latin-1: anything else failed at every send.
    action = {**WEBHOOK, "headers": {"X-Note": value}}
    created = acme.post("/triggers", json=trigger_body(action=action))
    patched = acme.patch(f"/triggers/{world['trigger_id']}", json={"action": action})

    for response in (created, patched):
        error = assert_error(response, 422, "validation_failed")
        assert "latin-1" in error["fields"]["action.headers.X-Note"], error
    assert snapshot() == world["before"]


def test_latin_1_header_values_are_accepted(acme):
    action = {**WEBHOOK, "headers": {"X-Note": "café ± 1"}}
    assert acme.post("/triggers", json=trigger_body(action=action)).status_code == 201


@pytest.mark.parametrize(
    "value",
    ["9999-12-31T23:59:59Z", "9999-01-01T00:00:00-01:00", "0001-01-01T00:00:00+00:01"],
)
@pytest.mark.parametrize("field", ["run_at", "start_at", "end_at"])
def test_instants_outside_years_1_to_9998_are_422(acme, snapshot, world, field, value):
    body = trigger_body(**{field: value})
    if field == "run_at":
        body.pop("cron")
    created = acme.post("/triggers", json=body)
    patched = acme.patch(f"/triggers/{world['trigger_id']}", json={field: value})
    previewed = acme.post("/schedules/preview", json={"cron": "0 0 1 1 *", field: value})

    for response in (created, patched, previewed):
        assert assert_error(response, 422)["fields"].get(field), response.get_json()
    assert snapshot() == world["before"]


def test_a_preview_after_the_last_supported_instant_is_422(acme, world):
    response = acme.get(
        f"/triggers/{world['trigger_id']}/preview", query_string={"after": "9999-06-01T00:00:00Z"}
    )
    assert "after" in assert_error(response, 422)["fields"]
    late = acme.post(
        "/schedules/preview", json={"cron": "0 0 1 1 *", "after": "9998-12-31T00:00:00Z"}
    )
    assert late.status_code in (200, 422), late.get_json()


@pytest.mark.parametrize(
    "cursor",
    [
        "WzEsMl0",  # [1,2]
        "eyJhIjoxLCJiIjoyfQ",  # {"a":1,"b":2}
        "IjIwMjYtMDEtMDFUMDA6MDA6MDBaIg",  # a single string
        "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzA1OjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIl0",
        "!!!", "%00",
        # A well-formed instant and an id that is not a string (an int, a list, an object).
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiw1XQ",
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIixbImEiXV0",
        "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIix7ImEiOjF9XQ",
        "WzUsIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJd",  # [5, a uuid]
    ],
)  # fmt: skip
def test_malformed_cursors_are_422_naming_the_cursor(acme, world, cursor):
    for path in ("/triggers", f"/triggers/{world['trigger_id']}/runs"):
        response = acme.get(path, query_string={"cursor": cursor})
        assert "cursor" in assert_error(response, 422)["fields"]


def chunked(client: Any, caller: Caller, body: bytes) -> Any:
    """POST /triggers as gunicorn hands a chunked body to the app: no Content-Length, the
    stream marked terminated."""
    return client.post(
        "/api/v1/triggers",
        input_stream=io.BytesIO(body),
        headers={**caller.headers(), "Content-Type": "application/json",
                 "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )  # fmt: skip


def test_a_chunked_body_over_the_limit_is_413_not_cut_off_and_stored(acme, client, world, snapshot):
    from web import MAX_CONTENT_LENGTH

    valid = json.dumps(trigger_body()).encode()
    padded = valid + b" " * (MAX_CONTENT_LENGTH + 10 - len(valid))  # valid JSON if cut at limit

    assert_error(chunked(client, acme, padded), 413, "payload_too_large")
    assert snapshot() == world["before"]


def test_a_chunked_body_within_the_limit_is_read_whole(acme, client):
    response = chunked(client, acme, json.dumps(trigger_body(name="streamed")).encode())
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == "streamed"
