"""The dependency rule of docs/design.md, checked on the source: `web -> app <- tasks`.

Imports are read with `ast` (nothing is imported), so a function-level import counts as much
as a module-level one: a lazy `import flask` inside `app/` would still break the rule.
"""

from __future__ import annotations

import ast
import re
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


PURE_APP_MODULES = ("app.errors", "app.run_status")


def test_the_schedule_engine_imports_only_itself_the_standard_library_and_descriptions() -> None:
    allowed_third_party = {"cron_descriptor"}
    offences = []
    for path in _modules("app/schedule"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "app":
                # app.run_status: the statuses the planner labels fires with (stdlib only).
                if not (name.startswith("app.schedule") or name in PURE_APP_MODULES):
                    offences.append(f"{path.name} imports {name}")
            elif top not in allowed_third_party and top not in _stdlib():
                offences.append(f"{path.name} imports {name}")
    assert offences == []


@pytest.mark.parametrize("module", PURE_APP_MODULES)
def test_what_the_schedule_engine_may_import_from_app_is_standard_library_only(
    module: str,
) -> None:
    path = ROOT / (module.replace(".", "/") + ".py")
    assert {name for name in _imports(path) if name.split(".")[0] not in _stdlib()} == set()


def _query_imports(path: Path) -> list[str]:
    """Imports of app.queries in `path`: `import app.queries...`, `from app.queries... import`
    and `from app import queries`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("app.queries")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "app.queries" or node.module.startswith("app.queries."):
                found.append(node.module)
            elif node.module == "app":
                found += [f"app.{a.name}" for a in node.names if a.name == "queries"]
    return found


def test_the_query_import_detector_sees_every_form(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import app.queries.runs\nfrom app.queries import triggers\n"
        "from app.queries.run_history import LAG_BUCKETS\nfrom app import queries, keys\n"
        "from app import triggers as t\nimport app.keys\n"
    )
    assert _query_imports(module) == [
        "app.queries.runs", "app.queries", "app.queries.run_history", "app.queries"
    ]  # fmt: skip


@pytest.mark.parametrize("folder", ["web", "tasks"])
def test_web_and_tasks_reach_the_database_through_the_domain(folder: str) -> None:
    """app/queries is the domain's: the adapters call app's functions, which own the rules
    (the console once created triggers past the cap by skipping them)."""
    found = {
        str(path.relative_to(ROOT)): names
        for path in _modules(folder)
        if (names := _query_imports(path))
    }
    assert found == {}


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


MAX_LINES = 350
# A string literal is SQL when it holds a statement's shape, not merely an SQL word: prose
# ("the update is applied", "select a tenant") never matches these.
_SQL_SHAPES = re.compile(
    r"\bSELECT\b[\s\S]+?\bFROM\b|\bUPDATE\s+\w+(\s+AS\s+\w+)?\s+SET\b|\bINSERT\s+INTO\b"
    r"|\bDELETE\s+FROM\b|\bpg_advisory_xact_lock\s*\(",
)
_SQL_HOMES = ("app/queries", "migrations")


def _code_modules() -> list[Path]:
    return [path for folder in ("app", "web", "tasks") for path in _modules(folder)]


def test_no_module_passes_the_size_that_calls_for_a_split() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in _code_modules()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def _sql_literals(path: Path) -> list[str]:
    """String literals in `path` (docstrings excluded) that hold an SQL statement."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in docstrings:
                continue
            text = node.value
        else:
            continue
        if _SQL_SHAPES.search(text):
            where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append(f"{where}:{node.lineno}")
    return found


def test_sql_lives_only_in_the_query_layer_and_the_migrations() -> None:
    offences = [
        where
        for path in _code_modules()
        if not str(path.relative_to(ROOT)).startswith(_SQL_HOMES)
        for where in _sql_literals(path)
    ]
    assert offences == []


@pytest.mark.parametrize(
    "literal",
    [
        "SELECT id FROM runs WHERE status = 'pending'",
        "UPDATE runs SET status = 'pending'",
        "UPDATE triggers AS t SET next_run_at = v.next_run_at",
        "INSERT INTO runs (id) VALUES (:id)",
        "DELETE FROM runs WHERE id = :id",
        "SELECT pg_advisory_xact_lock(:key)",
    ],
)
def test_the_sql_check_sees_a_statement(tmp_path: Path, literal: str) -> None:
    module = tmp_path / "probe.py"
    module.write_text(f"QUERY = {literal!r}\n", encoding="utf-8")
    assert _sql_literals(module) != []


def test_the_sql_check_leaves_prose_alone(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        '"""Select the runs from the queue; an update sets the status."""\n'
        'MESSAGE = "delete from your list any trigger you no longer need"\n'
        'HINT = "update the settings, then select a tenant"\n',
        encoding="utf-8",
    )
    assert _sql_literals(module) == []


def _app_imports(path: Path, known: set[str]) -> set[str]:
    """The app modules `path` imports at run time (function-level imports included; those
    under `if TYPE_CHECKING:` are for annotations only and left out). `from app.x import y`
    is app.x.y when that is a module, else app.x."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs or {node.module}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_no_import_cycle_in_app() -> None:
    paths = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for path in _modules("app")
    }
    graph = {name: _app_imports(path, set(paths)) for name, path in paths.items()}
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # the reader reads
    assert _cycles(graph) == []


def test_the_cycle_detector_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert _cycles(graph) == [["a", "b", "c"]]
