"""Helpers shared by the test tiers: throwaway databases (app.dbadmin), an injected clock."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import jinja2
import psycopg2
from psycopg2 import sql

from app.dbadmin import (  # noqa: F401 - re-exported for the tests
    alembic_config,
    create_database,
    drop_database,
    migrate,
    sqlalchemy_url,
    with_database,
)
from app.dbadmin import server_url as admin_url  # noqa: F401
from app.principals import Actor

# A tenant admin, as the domain's writers need one (every key was one before principals).
OWNER = Actor("owner", may_act_for_anyone=True)


# Databases this process migrated once, by revision, that database_at copies.
_TEMPLATES: dict[str, str] = {}


def database_at(revision: str, prefix: str = "sched_migr") -> str:
    """A new database migrated to `revision`; return its libpq URL (drop it with
    drop_database). It is a copy (CREATE DATABASE ... TEMPLATE, about 0.1 s) of a template
    this process migrated to `revision` once (1-2 s each time the migrations run); the
    templates are dropped when the process exits. No one connects to a template after its
    migration, as copying needs."""
    template = _TEMPLATES.get(revision)
    if template is None:
        template = create_database(f"sched_template_{revision}")
        atexit.register(drop_database, template)
        migrate(template, revision)
        _TEMPLATES[revision] = template
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"  # as create_database names them
    conn = psycopg2.connect(with_database(admin_url(), "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(urlsplit(template).path.lstrip("/"))
                )
            )
    finally:
        conn.close()
    return with_database(admin_url(), name)


class CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates kept in memory for every app this process builds: a test builds
    its own app, whose Jinja environment would otherwise parse and compile each page's
    templates again (tens of milliseconds a page). Jinja checks each template's source
    against what it compiled."""

    def __init__(self) -> None:
        self.compiled: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if (code := self.compiled.get(bucket.key)) is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.compiled[bucket.key] = bucket.bytecode_to_string()


COMPILED_TEMPLATES = CompiledTemplates()


@dataclass
class FakeClock:
    """An injected clock: `now()` returns what the test set; `advance()` moves it."""

    current: datetime = field(default_factory=lambda: datetime(2026, 1, 5, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        return self.current

    def set(self, value: datetime) -> None:
        assert value.tzinfo is not None, "the clock holds aware datetimes only"
        self.current = value

    def advance(self, **delta: float) -> datetime:
        self.current = self.current + timedelta(**delta)
        return self.current


def group_alive(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group `pgid` (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def stop_group(proc: subprocess.Popen, *, timeout: float, sig: int = signal.SIGTERM) -> int:
    """Stop a process started with `start_new_session=True` and everything it started: `sig`
    to its group, then SIGKILL to what is left after `timeout`. Returns once no process of
    the group is alive (a worker left consuming after its test takes the next tests'
    messages); returns the leader's exit code."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(proc.pid):
            return proc.returncode
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    code = proc.wait()
    while group_alive(proc.pid) and time.monotonic() < deadline + 10:
        time.sleep(0.1)
    return code
