"""Every statement that changes a run's status makes only moves that app/run_status.py's
TRANSITIONS allows, and no status is spelled outside the enum and the SQL.

The statements are read from the source (no database): the string constants of
app/queries/*.py and the functions in app/queries/sql/*.sql. For each `UPDATE runs`:
- the new statuses come from its SET clause (`status = 'x'`, or each THEN/ELSE of a CASE);
- the old ones from its own WHERE clause (`status = 'x'`, `status IN (...)`). A function
  whose UPDATE finds its rows by primary key, from rows it locked earlier, names its moves
  in a `-- Moves:` line of its file's header instead;
- a status bound as a parameter (`status = :status`) must be checked at run time by
  `check_move(<old>, status)` in the function that runs the statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from app.run_status import TRANSITIONS, RunStatus

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ROOT / "app" / "queries"
# `status`, qualified or not, also as `status || ''` (the claims' form: no partial index is
# defined by it, so their plans find the run by primary key).
STATUS = r"(?:\b\w+\.)?status(?:\s*\|\|\s*'')?"
_LITERAL = re.compile(r"'(\w+)'")


def _statuses(fragment: str) -> set[str]:
    return set(_LITERAL.findall(fragment))


def _clauses(statement: str) -> tuple[str, str]:
    """(SET clause, WHERE clause) of an UPDATE (its FROM, if any, ends the SET clause)."""
    after_set = re.split(r"\bSET\b", statement, maxsplit=1, flags=re.I)[1]
    head, _, where = after_set.partition(" WHERE ")
    return re.split(r"\bFROM\b", head, maxsplit=1, flags=re.I)[0], where


def updates(sql: str) -> list[str]:
    """Each `UPDATE runs ...` of `sql` that sets the status, up to its RETURNING or end."""
    found = []
    for match in re.finditer(r"\bUPDATE\s+runs\b", sql, re.IGNORECASE):
        rest = sql[match.start() :]
        end = re.search(r"\bRETURNING\b|;[ \t]*$", rest, re.IGNORECASE | re.MULTILINE)
        statement = " ".join((rest[: end.start()] if end else rest).split())
        if re.search(r"(?:^|,)\s*status\s*=", _clauses(statement)[0], re.I):
            found.append(statement)
    return found


def moves(statement: str) -> tuple[set[str] | None, set[str] | str]:
    """(old statuses named by the WHERE clause or None, new statuses or the parameter)."""
    set_part, where = _clauses(statement)
    assignment = re.search(
        r"(?:^|,)\s*status\s*=\s*(CASE\b.*?\bEND|'\w+'|:\w+)", set_part, re.I | re.S
    )
    assert assignment is not None, statement
    value = assignment.group(1)
    if value.startswith(":"):
        new: set[str] | str = value[1:]
    elif value.upper().startswith("CASE"):
        new = set(re.findall(r"\b(?:THEN|ELSE)\s+'(\w+)'", value, re.I))
    else:
        new = _statuses(value)
    old = set()
    for equal in re.finditer(STATUS + r"\s*=\s*'(\w+)'", where, re.I):
        old.add(equal.group(1))
    for listed in re.finditer(STATUS + r"\s+IN\s*\(([^)]*)\)", where, re.I):
        old |= _statuses(listed.group(1))
    return (old or None), new


def _python_statements() -> list[tuple[str, str, str]]:
    """(where, enclosing function source or "", statement) for app/queries/*.py."""
    found = []
    for path in sorted(QUERIES.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        owners = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                # Once per function: each call splits the whole file's lines again.
                segment = ast.get_source_segment(source, node) or ""
                for inner in ast.walk(node):
                    owners[id(inner)] = segment
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for statement in updates(node.value):
                    where = f"{path.name}:{node.lineno}"
                    found.append((where, owners.get(id(node), ""), statement))
    return found


def _header_moves(text: str) -> set[tuple[str, str]]:
    pairs = set()
    for line in re.findall(r"^-- Moves: (.*)$", text, re.M):
        for pair in line.split(","):
            old, new = (part.strip() for part in pair.split("->"))
            pairs.add((old, new))
    return pairs


def _allowed(old: str, new: str) -> bool:
    return (RunStatus(old), RunStatus(new)) in TRANSITIONS


PYTHON = _python_statements()
SQL_FILES = sorted((QUERIES / "sql").glob("*.sql"))


def test_the_reader_finds_the_statements_it_checks() -> None:
    # Guards the checks below from passing on nothing after a move or a rename.
    assert len(PYTHON) >= 8  # the claim and the end of an admitted run: claim_v2.sql (0017)
    assert {f.name for f in SQL_FILES if updates(f.read_text())} >= {
        "admission_round.sql",
        "claim_plain.sql",
        "claim_v2.sql",
        "finish_and_admit.sql",
        "admission_round_v2.sql",
        "finish_and_admit_v2.sql",
    }


@pytest.mark.parametrize(("where", "owner", "statement"), PYTHON, ids=[p[0] for p in PYTHON])
def test_each_status_update_in_app_queries_makes_allowed_moves(
    where: str, owner: str, statement: str
) -> None:
    old, new = moves(statement)
    assert old, f"{where}: the WHERE clause must name the status it leaves: {statement}"
    if isinstance(new, str):
        checks = set(re.findall(r"check_move\(RunStatus\.(\w+), " + new + r"\)", owner))
        assert {RunStatus[name].value for name in checks} == old, (
            f"{where}: a status bound as :{new} is checked by check_move(<old>, {new})"
        )
        return
    assert new, statement
    bad = sorted((o, n) for o in old for n in new if not _allowed(o, n))
    assert bad == [], f"{where}: {statement}"


@pytest.mark.parametrize("path", SQL_FILES, ids=[f.name for f in SQL_FILES])
def test_each_status_update_in_the_sql_functions_makes_allowed_moves(path: Path) -> None:
    text = path.read_text()
    declared = _header_moves(text)
    assert all(_allowed(o, n) for o, n in declared), declared
    for statement in updates(text):
        old, new = moves(statement)
        assert isinstance(new, set) and new, statement
        if old is None:  # rows found by primary key: the header says where they come from
            assert new <= {n for _, n in declared}, f"{path.name}: `-- Moves:` for {new}"
        else:
            assert {(o, n) for o in old for n in new} <= declared, f"{path.name}: {statement}"


def test_the_reader_sees_a_move_the_table_forbids() -> None:
    # The detector itself: a finished run brought back, and a CASE that resurrects one.
    assert moves("UPDATE runs SET status = 'pending' WHERE status = 'succeeded'") == (
        {"succeeded"},
        {"pending"},
    )
    case = (
        "UPDATE runs AS r SET status = CASE WHEN x THEN 'failed' ELSE 'running' END "
        "WHERE r.status = 'cancelled'"
    )
    assert moves(case) == ({"cancelled"}, {"failed", "running"})
    assert not _allowed("succeeded", "pending")
    assert not _allowed("cancelled", "running")
    assert moves("UPDATE runs SET status = :status WHERE id = :id AND status = 'admitted'") == (
        {"admitted"},
        "status",
    )
    claim = (
        "UPDATE runs AS r SET status = 'running' WHERE r.id = :id AND r.status || '' = 'admitted'"
    )
    assert moves(claim) == ({"admitted"}, {"running"})


def test_a_parameterised_status_is_refused_at_run_time_outside_the_table() -> None:
    from app.run_status import check_move

    check_move(RunStatus.RUNNING, RunStatus.FAILED)
    with pytest.raises(ValueError, match="succeeded to pending"):
        check_move(RunStatus.SUCCEEDED, RunStatus.PENDING)


STATUS_WORDS = "|".join(s.value for s in RunStatus)


def _status_uses(tree: ast.AST) -> list[ast.expr]:
    """Expressions a status flows through: comparisons, `status=` arguments, `"status":`
    entries and assignments to a `status` name or attribute."""
    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            found += [node.left, *node.comparators]
        elif isinstance(node, ast.keyword) and node.arg == "status":
            found.append(node.value)
        elif isinstance(node, ast.Dict):
            found += [
                v for k, v in zip(node.keys, node.values, strict=True)
                if isinstance(k, ast.Constant) and k.value == "status"
            ]  # fmt: skip
        elif isinstance(node, ast.Assign) and any(
            (isinstance(t, ast.Name) and "status" in t.id)
            or (isinstance(t, ast.Attribute) and t.attr == "status")
            for t in node.targets
        ):
            found.append(node.value)
    return found


def _spelled(node: ast.expr) -> bool:
    return any(
        isinstance(v, ast.Constant)
        and isinstance(v.value, str)
        and re.fullmatch(STATUS_WORDS, v.value) is not None
        for v in ast.walk(node)
    )


def test_no_status_is_spelled_as_a_python_string_outside_the_enum() -> None:
    """Statuses in Python code are RunStatus members. SQL text spells them as SQL does; log
    fields and counters named like a status (a tick's `skipped`) are not statuses."""
    offences = []
    for folder in ("app", "web", "tasks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "run_status.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            offences += [
                f"{path.relative_to(ROOT)}:{node.lineno}"
                for node in _status_uses(tree)
                if _spelled(node)
            ]
    assert offences == []


def test_the_spelling_check_sees_a_status_spelled() -> None:
    tree = ast.parse(
        'if run.status == "admitted": pass\nq.end(status="failed")\nrow = {"status": "pending"}'
    )
    assert [_spelled(node) for node in _status_uses(tree)] == [False, True, True, True]


def test_no_template_compares_a_status_with_a_spelled_word() -> None:
    """The console's templates compare with RunStatus (passed in), never a quoted status."""
    spelled = re.compile(r"status\s*(?:==|!=|in)\s*['\"(]")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "web" / "templates").rglob("*.html"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelled.search(line)
    ]
    assert found == []
    assert spelled.search("{% if run.status == 'pending' %}")  # the check can fail
