"""The web process as it is deployed: gunicorn serving `web:create_app()` on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from app import config
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve(settings: config.Settings, log: Path, *, workers: int = 1, **env: str) -> Iterator[str]:
    """Start gunicorn on the test database and Redis, wait until it answers, yield its base
    URL, and stop it afterwards. `env` adds or overrides environment variables."""
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RELEASE_ID": settings.release_id,
        # A release refuses to start without one (gunicorn.conf.py).
        "SECRET_KEY": "gunicorn-tests-secret-key-0123456789abcdef",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **env,
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
             "web:create_app()"],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/openapi.json", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError(log.read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
