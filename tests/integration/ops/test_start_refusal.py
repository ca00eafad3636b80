"""Bad or unsafe settings stop each Procfile process at start: one line naming the setting,
status 2, never a traceback (section 16). The processes are the Procfile's own commands."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests import gunicorn

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
GUNICORN = [str(BIN / "gunicorn"), "--bind", "127.0.0.1:0", "web:create_app()"]
COMMANDS = {
    "web": GUNICORN,
    "worker": [str(BIN / "celery"), "-A", "tasks", "worker", "-Q", "runs", "--concurrency=1"],
    "beat": [str(BIN / "celery"), "-A", "tasks", "beat"],
    "release": [str(BIN / "alembic"), "upgrade", "head"],
    "hook": [str(BIN / "flask"), "--app", "web", "scheduler", "restart"],
}


def start_env(**env: str) -> dict[str, str]:
    """This environment less anything that says "a release" or sets the console's key."""
    unset = ("SECRET_KEY", "RELEASE_ID", "HEROKU_RELEASE_VERSION", "SOURCE_VERSION")
    base = {k: v for k, v in os.environ.items() if k not in (*unset, "WEB_CONCURRENCY")}
    return {**base, **env}


def start(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, env=start_env(**env), capture_output=True, text=True, timeout=60
    )


def assert_refused(done: subprocess.CompletedProcess, line: str) -> None:
    errors = [x for x in done.stderr.splitlines() if x.startswith("configuration error: ")]
    assert done.returncode == 2, done.stderr
    assert errors == [f"configuration error: {line}"]
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_a_bad_setting_stops_each_process_with_one_line(kind: str) -> None:
    done = start(COMMANDS[kind], DISPATCH_BATCH_SIZE="lots")
    assert_refused(done, "DISPATCH_BATCH_SIZE must be an integer, got 'lots'")


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            ["--workers", "2"],
            {},
            "SECRET_KEY must be set when more than one web worker runs (2); each would sign "
            "console sessions with its own key",
        ),
        (
            ["--workers", "1"],
            {"HEROKU_RELEASE_VERSION": "v7"},
            "SECRET_KEY must be set on a release (RELEASE_ID, HEROKU_RELEASE_VERSION or "
            "SOURCE_VERSION is set)",
        ),
    ],
)
def test_the_web_refuses_to_start_without_secret_key(args, env, line) -> None:
    assert_refused(start([*GUNICORN, *args], **env), line)


def test_one_web_worker_with_no_settings_still_starts() -> None:
    # A quick local try needs no settings (`make run` sets SECRET_KEY itself besides).
    port = gunicorn.free_port()
    base = start_env()
    command = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    proc = subprocess.Popen([*command, "web:create_app()"], cwd=ROOT, env=base)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).ok
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_short_restart_secret_stops_the_release_phase() -> None:
    done = start(COMMANDS["release"], SCHEDULER_RESTART_SECRET="short")
    assert_refused(
        done,
        "SCHEDULER_RESTART_SECRET must be at least 24 characters (or unset to disable the "
        "restart hook)",
    )
