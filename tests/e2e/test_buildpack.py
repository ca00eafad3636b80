"""The app as a Heroku-style platform runs it (section 16), on Redis and on RabbitMQ.

1. Build: a virtualenv of its own gets the locked runtime requirements (`requirements.txt`,
   hashes checked) and nothing else, as the Python buildpack installs them (kept between
   runs by the lock's hash, as a platform keeps its build cache).
2. Release: the Procfile's `release` with the platform's variables (PORT, DATABASE_URL as
   `postgres://`, REDIS_URL, WEB_CONCURRENCY=2, DYNO, HEROKU_RELEASE_VERSION, the secrets
   app.json generates).
3. Run: the Procfile's `web` (two gunicorn workers), `worker` and `beat`.
4. Use: a key from the CLI, a trigger through the API that fires, the deploy hook through
   `scripts/notify-release`, and console sign-ins over new connections that land on both
   gunicorn workers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests import support
from tests.console.conftest import csrf_of
from tests.e2e.test_deploy import procfile
from tests.integration.runner import brokers
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "v7"
ACCESS_LOG = re.compile(r"^pid=<?(\d+)>? (\S+) (\S+) (\d{3})$", re.M)


@pytest.fixture(scope="module")
def slug() -> Path:
    """The virtualenv of step 1; its bin/ goes first on the processes' PATH.

    A build is a function of the lock and the interpreter, so, as a platform keeps its
    build cache from one push to the next, it is kept in the user's cache directory (not the
    checkout: a fresh clone builds from the same cache) by the hash of both, and made again
    when either changes (about 40 s of pip). A build in progress holds a lock; one cut short
    has no `built` mark and is made again."""
    lock = ROOT / "requirements.txt"
    key = hashlib.sha256(
        lock.read_bytes() + sys.version.encode() + sys.base_prefix.encode()
    ).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "scheduler-tests" / f"slug-{key}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"slug-{key}.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not (venv / "built").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", "--require-hashes",
                 "-r", str(lock)],
                check=True, timeout=900,
            )  # fmt: skip
            (venv / "built").touch()
        os.utime(venv / "built")  # its last use
    for old in venv.parent.glob("slug-*/built"):  # builds of older locks, unused for a week
        if time.time() - old.stat().st_mtime > 7 * 86400:
            shutil.rmtree(old.parent, ignore_errors=True)
    return venv


@pytest.fixture(params=["redis", "amqp"])
def platform_env(request, slug, settings, engine, redis_client, tmp_path) -> dict[str, str]:
    broker = settings.redis_url
    if request.param == "amqp":
        brokers.require_rabbitmq()
        broker = brokers.amqp_url()
        brokers.purge(broker)
    return {
        "PATH": f"{slug / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PORT": str(free_port()),
        "DATABASE_URL": settings.database_url.replace("postgresql://", "postgres://", 1),
        "REDIS_URL": settings.redis_url,
        "BROKER_URL": broker,
        "WEB_CONCURRENCY": "2",
        "HEROKU_RELEASE_VERSION": RELEASE,
        "SECRET_KEY": secrets.token_hex(32),  # as app.json's generator makes them
        "SCHEDULER_RESTART_SECRET": secrets.token_hex(32),
        "SECRETS_ENCRYPTION_KEY": secrets.token_hex(32),
        # The trigger below runs the demo handler, which a deployment registers only when
        # asked to.
        "ENABLE_ECHO_HANDLER": "true",
        # The test speaks plain HTTP to gunicorn, where a platform's router would terminate
        # TLS: a Secure cookie (the default) would never come back.
        "SESSION_COOKIE_SECURE": "false",
        "DISPATCH_INTERVAL_SECONDS": "2",
        "WORKER_CONCURRENCY": "2",
        # Each request's gunicorn worker, to see that sign-ins land on both.
        "GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat 'pid=%(p)s %(m)s %(U)s %(s)s'",
    }


@pytest.fixture()
def dynos(platform_env, tmp_path) -> Iterator[dict[str, str]]:
    commands = procfile()
    release = subprocess.run(
        ["bash", "-c", commands["release"]], cwd=ROOT, capture_output=True, text=True,
        env={**platform_env, "DYNO": "release.1"}, timeout=120,
    )  # fmt: skip
    assert release.returncode == 0, release.stderr
    procs = []
    for kind in ("web", "worker", "beat"):
        log = (tmp_path / f"{kind}.log").open("w")
        procs.append(
            subprocess.Popen(
                ["bash", "-c", commands[kind]],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**platform_env, "DYNO": f"{kind}.1"},
                start_new_session=True,
            )  # fmt: skip
        )
    try:
        base = f"http://127.0.0.1:{platform_env['PORT']}"
        _wait_for(lambda: requests.get(f"{base}/healthz", timeout=5).status_code == 200, 60)
        yield {**platform_env, "APP_URL": base}
    finally:
        for proc in procs:  # SIGTERM to every dyno first, as a platform stops a release
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            support.stop_group(proc, timeout=40)


def test_the_locked_build_runs_the_procfile_as_a_platform_does(dynos, tmp_path) -> None:
    base = dynos["APP_URL"]
    made = subprocess.run(
        ["flask", "--app", "web", "keys", "create", "--tenant", "acme", "--principal", "ops",
         "--role", "admin"],
        cwd=ROOT, env={**dynos, "DYNO": "run.1"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    api = {"Authorization": f"Bearer {key}"}

    fire_at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
    body = {"name": "buildpack", "run_at": fire_at, "action": {"type": "task", "name": "echo"}}
    created = requests.post(f"{base}/api/v1/triggers", json=body, headers=api, timeout=30)
    assert created.status_code == 201, created.text
    runs_url = f"{base}/api/v1/triggers/{created.json()['id']}/runs"

    def succeeded() -> bool:
        found = requests.get(runs_url, headers=api, timeout=30).json()
        items = found["items"] if isinstance(found, dict) else found
        return [run["status"] for run in items] == ["succeeded"]

    _wait_for(succeeded, 60)

    hook = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "notify-release")],
        env={**dynos, "NOTIFY_TIMEOUT_SECONDS": "30"}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert hook.returncode == 0, hook.stderr
    assert f'"deployment_id":"{RELEASE}"' in hook.stdout.replace(" ", "")

    for _ in range(10):
        browser = requests.Session()
        browser.headers["Connection"] = "close"  # a new connection each time, as a balancer
        token = csrf_of(browser.get(f"{base}/console/", timeout=30).text)
        answer = browser.post(f"{base}/console/", data={"key": key, "csrf_token": token},
                              allow_redirects=False, timeout=30)  # fmt: skip
        assert answer.status_code == 302, answer.text
        for _ in range(3):
            page = browser.get(f"{base}/console/triggers", allow_redirects=False, timeout=30)
            assert page.status_code == 200 and "buildpack" in page.text
    web_log = (tmp_path / "web.log").read_text()
    served = {pid for pid, _, path, _ in ACCESS_LOG.findall(web_log) if path.startswith("/console")}
    assert len(served) == 2, web_log[-2000:]


def _wait_for(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)
