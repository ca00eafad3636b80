"""The dependency rule of docs/design.md, checked on the source: `web -> app <- tasks`.

Imports are read with `ast` (nothing is imported), so a function-level import counts as much
as a module-level one: a lazy `import flask` inside `app/` would still break the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    """Top-level package names imported anywhere in `path` (relative imports excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _offences(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in _modules(folder):
        for name in sorted(_imports(path)):
            if name.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_the_folders_exist() -> None:
    # Guards the checks below from passing on an empty glob after a move.
    for folder in ("app", "app/schedule", "web", "tasks"):
        assert _modules(folder), folder


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("app", ("flask", "flask_smorest", "flask_wtf", "flask_limiter", "celery", "kombu")),
        ("app", ("web", "tasks")),
        ("app/schedule", ("sqlalchemy", "psycopg2", "redis", "requests", "urllib3", "app.db")),
        ("tasks", ("web", "flask")),
    ],
)
def test_a_layer_imports_nothing_above_it(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _offences(folder, forbidden) == []


def test_the_schedule_engine_imports_only_itself_the_standard_library_and_descriptions() -> None:
    allowed_third_party = {"cron_descriptor"}
    offences = []
    for path in _modules("app/schedule"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "app":
                if not (name.startswith("app.schedule") or name == "app.errors"):
                    offences.append(f"{path.name} imports {name}")
            elif top not in allowed_third_party and top not in _stdlib():
                offences.append(f"{path.name} imports {name}")
    assert offences == []


def test_web_reaches_tasks_through_one_module() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in _modules("web")
        if any(name.split(".")[0] == "tasks" for name in _imports(path))
    }
    assert importers == {"web/context.py"}


def _stdlib() -> frozenset[str]:
    import sys

    return frozenset(sys.stdlib_module_names) | {"__future__"}
