"""The handler registry and action validation (used by the API schema)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from app import config
from app.actions import echo, registry


@pytest.fixture()
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Load the registry anew under the settings of `env` (restored afterwards)."""
    previous = config._settings

    def load(env: dict[str, str]) -> None:
        config.set_settings(config.Settings.from_env(env))
        monkeypatch.setattr(registry, "_handlers", {})
        monkeypatch.setattr(registry, "_loaded", False)

    yield load
    config.set_settings(previous)


def test_echo_is_not_registered_in_a_deployment(fresh_registry) -> None:
    from importlib import metadata

    fresh_registry({})
    assert registry.get_handler("echo") is None
    assert "echo" not in registry.known_handlers()
    names = {ep.name for ep in metadata.entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert "echo" not in names  # no back door through the package's entry points
    errors = registry.validate_action({"type": "task", "name": "echo"})
    assert errors["action.name"].startswith("unknown handler")


@pytest.mark.parametrize(
    "env", [{"DEVELOPMENT": "true"}, {"ENABLE_ECHO_HANDLER": "true"}], ids=["dev", "setting"]
)
def test_echo_is_registered_in_development_or_when_the_setting_asks(fresh_registry, env) -> None:
    fresh_registry(env)
    assert registry.get_handler("echo") is echo.echo
    assert "echo" in registry.known_handlers()


def test_development_can_still_leave_echo_out(fresh_registry) -> None:
    fresh_registry({"DEVELOPMENT": "true", "ENABLE_ECHO_HANDLER": "false"})
    assert registry.get_handler("echo") is None


def test_the_decorator_registers_a_handler_under_its_name() -> None:
    @registry.handler("test.unit_handler")
    def unit_handler(ctx: registry.RunContext) -> str:
        return "hi"

    try:
        assert registry.get_handler("test.unit_handler") is unit_handler
        assert registry.known_handlers() == sorted(registry.known_handlers())
    finally:
        registry.unregister("test.unit_handler")
    assert registry.get_handler("test.unit_handler") is None


def test_a_second_function_cannot_take_a_registered_name() -> None:
    registry.handler("echo")(lambda ctx: "impostor")
    assert registry.get_handler("echo") is echo.echo


@pytest.mark.parametrize(
    "action",
    [
        {"type": "webhook", "url": "https://example.com/hook"},
        {"type": "webhook", "url": "http://10.0.0.1:8080/x?y=1", "method": "put"},
        {"type": "webhook", "url": "https://e.com", "method": "DELETE", "headers": {"A-B": "c"}},
        {"type": "task", "name": "echo"},
    ],
)
def test_valid_actions_have_no_errors(action: dict) -> None:
    assert registry.validate_action(action) == {}


@pytest.mark.parametrize(
    ("action", "errors"),
    [
        ("nope", {"action": "must be an object"}),
        ({}, {"action.type": "must be 'webhook' or 'task'"}),
        ({"type": "email"}, {"action.type": "must be 'webhook' or 'task'"}),
        ({"type": "webhook"}, {"action.url": "is required"}),
        (
            {"type": "webhook", "url": "ftp://e.com/x"},
            {"action.url": "must be an http or https URL"},
        ),
        (
            {"type": "webhook", "url": "file:///etc/passwd"},
            {"action.url": "must be an http or https URL"},
        ),
        ({"type": "webhook", "url": "https://"}, {"action.url": "must name a host"}),
        (
            {"type": "webhook", "url": "https://e.com/a b"},
            {"action.url": "must not contain whitespace or control characters"},
        ),
        ({"type": "webhook", "url": "https://e.com:99999/"}, {"action.url": "is not a valid URL"}),
        (
            {"type": "webhook", "url": "https://e.com", "method": "TRACE"},
            {"action.method": "must be one of POST, PUT, PATCH, GET, DELETE"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "headers": ["a"]},
            {"action.headers": "must be an object of strings"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "headers": {"X-A": 1}},
            {"action.headers.X-A": "must be a single-line string"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "headers": {"X-A": "a\r\nB: c"}},
            {"action.headers.X-A": "must be a single-line string"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "headers": {"bad name": "x"}},
            {"action.headers": "header names must be HTTP tokens"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "headers": {"webhook-id": "forged"}},
            {"action.headers.webhook-id": "is set by the scheduler and cannot be overridden"},
        ),
        (
            {"type": "webhook", "url": "https://e.com", "timeout": 5},
            {"action.timeout": "unknown field"},
        ),
        ({"type": "task"}, {"action.name": "is required"}),
        ({"type": "task", "name": "echo", "url": "x"}, {"action.url": "unknown field"}),
    ],
)
def test_invalid_actions_name_each_bad_field(action: object, errors: dict) -> None:
    assert registry.validate_action(action) == errors


def test_an_unknown_handler_name_is_rejected_and_the_known_ones_listed() -> None:
    errors = registry.validate_action({"type": "task", "name": "nope"})
    assert errors["action.name"].startswith("unknown handler; known: ")
    assert "echo" in errors["action.name"]


BUG_URL = "http://127.0.0.1:8080\\@example.com/"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (BUG_URL, "must not contain backslashes"),
        ("http://example.com\\@127.0.0.1/", "must not contain backslashes"),
        ("http://user:pass@example.com/", "must not contain credentials"),
        ("http://user@example.com/", "must not contain credentials"),
        ("http://example.com@127.0.0.1/", "must not contain credentials"),
        ("http://%31%32%37.0.0.1/", "must not percent-encode the host"),
        ("http://[::1%25eth0]/", "must not percent-encode the host"),
        ("http://exa\tmple.com/", "must not contain whitespace"),
        ("http://example.com/\n", "must not contain whitespace"),
        ("http://example.com/\x00", "must not contain whitespace"),
        ("http://exämple.com/", "must be ASCII"),
        ("http://example.com:0/", "must not use port 0"),
        ("http:/example.com/", "must be an http or https URL"),
        ("javascript://example.com/", "must be an http or https URL"),
    ],
)
def test_urls_two_parsers_could_read_differently_are_rejected(url: str, message: str) -> None:
    problem = registry.url_problem(url)
    assert problem is not None and problem.startswith(message), problem


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook?token=a%20b#frag",
        "https://hooks.example.com:8443/a/b",
        "http://127.0.0.1:8080/hook",  # judged at send time by its address
        "http://[2606:4700::1111]/",
        "http://2130706433/",  # likewise: resolves to 127.0.0.1, refused at send time
    ],
)
def test_plain_urls_pass_validation(url: str) -> None:
    assert registry.url_problem(url) is None
