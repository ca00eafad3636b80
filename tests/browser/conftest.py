"""The browser tier: Debian's Chromium driven by Playwright against the Procfile's processes.

One real stack per module (gunicorn with two workers sharing SECRET_KEY, a Celery worker and
beat with 2-second ticks) on the test database and Redis DB. Browser downloads are impossible
here, so Playwright launches /usr/bin/chromium by path. Without it the tests skip, except in
CI (CI=true), where a missing browser is a failure (.ci/run installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import text

from app import config, db, keys
from tests import support
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET_KEY = "browser-tests-secret-key-0123456789abcdef"
TABLES = ("runs", "triggers", "api_keys", "idempotency_records")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


def _require_chromium() -> None:
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"browser tests need Chromium in CI: {missing}")
    pytest.skip(missing)


def _procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


@dataclass
class Stack:
    """web (gunicorn, 2 workers), worker and beat from the Procfile, and API/key helpers."""

    env: dict[str, str]
    logs: Path
    settings: config.Settings
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        bin_dir = str(Path(sys.executable).parent)
        env = {**self.env, "PORT": str(self.port), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        for kind, command in _procfile().items():
            if kind not in ("web", "worker", "beat"):
                continue
            out = (self.logs / f"{kind}.log").open("w")
            self.procs[kind] = subprocess.Popen(
                ["bash", "-c", command], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.base}/openapi.json", timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise AssertionError(f"the web process never answered:\n{self.tail('web')}")

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            support.stop_group(proc, timeout=30)

    def tail(self, kind: str, lines: int = 40) -> str:
        path = self.logs / f"{kind}.log"
        return "\n".join(path.read_text().splitlines()[-lines:]) if path.exists() else ""

    def requests_to(self, method: str, path: str) -> int:
        """How many requests the web processes logged for `method path` so far."""
        count = 0
        for line in (self.logs / "web.log").read_text().splitlines():
            if line.startswith("{") and '"http_request"' in line:
                event = json.loads(line)
                count += event.get("method") == method and event.get("path") == path
        return count

    def key(self, tenant: str, *, admin: bool = False) -> str:
        engine = db.get_engine(self.settings.sqlalchemy_url)
        with db.session_scope(engine) as session:
            return keys.create(
                session, tenant_id=tenant, principal="owner", role="admin", is_admin=admin,
                now=datetime.now(UTC),
            ).key  # fmt: skip

    def api(self, method: str, path: str, key: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return requests.request(method, f"{self.base}/api/v1{path}", headers=headers,
                                timeout=10, **kwargs)  # fmt: skip


@pytest.fixture(scope="module")
def stack(settings: config.Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_chromium()
    engine = db.get_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)}"))
        conn.execute(text("UPDATE scheduler_state SET deployment_id = NULL"))
    redis.Redis.from_url(settings.redis_url).flushdb()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("RELEASE_ID",)},
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RELEASE_ID": "browser",
        "SECRET_KEY": SECRET_KEY,
        "DISPATCH_INTERVAL_SECONDS": "2",
        "HEARTBEAT_SECONDS": "1",
        "WEB_CONCURRENCY": "2",  # two gunicorn workers: the session must work on both
        "WORKER_CONCURRENCY": "2",
        "LOG_FORMAT": "json",
        # The walk-through backfills fixed dates of 2026 against the wall clock.
        "BACKFILL_MAX_AGE_DAYS": "36500",
    }
    running = Stack(env=env, logs=tmp_path_factory.mktemp("browser-stack"), settings=settings)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser: Any, stack: Stack, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) per test; `page.shot(name)` saves a screenshot."""
    context = browser.new_context(base_url=stack.base, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")

    def shot(name: str) -> None:
        tab.screenshot(path=str(SCREENSHOTS / f"{test_name}--{name}.png"), full_page=True)

    tab.shot = shot
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"
