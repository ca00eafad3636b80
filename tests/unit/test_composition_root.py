"""One composition root (app/service.py): the adapters pass the scheduler input only.

Read from the source with `ast`: no view, CLI command or task reads a cap from the settings
or calls the domain's capped writes itself (the console once created triggers past
MAX_TRIGGERS_PER_TENANT by assembling the call on its own), and the limits are built in one
place.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What only app/service.py assembles: the caps (settings read) and the calls they go into.
CAPS = {
    "max_running",
    "max_running_per_tenant",
    "max_triggers_per_tenant",
    "max_waiting_runs_per_tenant",
    "backfill_max_age_days",
}
CAPPED_CALLS = {
    ("triggers", "create"),
    ("run_history", "run_now"),
    ("run_history", "hand_off"),
    ("backfill", "backfill"),
    ("backlog", "report"),
    ("dispatch", "run_tick"),
    ("runs", "Runtime"),
    ("admission", "Limits"),
}


def _is_settings(node: ast.expr) -> bool:
    """`settings`, `x.settings`, `settings()` or `x.settings()`."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    return name == "settings"


def _offences(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in CAPS and _is_settings(node.value):
            found.append(f"{node.lineno}: reads .{node.attr}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and (node.func.value.id, node.func.attr) in CAPPED_CALLS
        ):
            found.append(f"{node.lineno}: calls {node.func.value.id}.{node.func.attr}")
    return found


@pytest.mark.parametrize("folder", ["web", "tasks"])
def test_adapters_pass_the_scheduler_input_only(folder: str) -> None:
    found = {
        str(path.relative_to(ROOT)): offences
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (offences := _offences(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_detector_sees_a_cap_assembled_in_a_view() -> None:
    view = (
        "trigger = triggers.create(session, values=v, "
        "max_triggers=context.settings().max_triggers_per_tenant)\n"
        "context.services().create_trigger(session, values=v)\n"
        "shown = context.services().limits.max_running + settings.max_running\n"
    )
    assert sorted(_offences(view)) == [
        "1: calls triggers.create", "1: reads .max_triggers_per_tenant", "3: reads .max_running"
    ]  # fmt: skip


def test_the_limits_are_built_in_one_place() -> None:
    builders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((ROOT / "app").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) == "Limits"
    ]
    assert builders == []  # only Limits.of(settings), in app/admission.py, builds them
