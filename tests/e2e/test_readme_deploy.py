"""The README's "On a VM" deploy, followed from top to bottom in a copy of the repository:
its shell blocks run as they stand, with DATABASE_URL, REDIS_URL and PORT exported as the
README asks (the test database and Redis, a free port)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import support
from tests.ports import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BLOCK = r"<!-- {marker}[^\n]*-->\n```sh\n(.*?)```"


def block(marker: str) -> list[str]:
    """The lines of the README's shell block after `<!-- marker ... -->`."""
    found = re.search(BLOCK.format(marker=re.escape(marker)), (ROOT / "README.md").read_text(),
                      re.S)  # fmt: skip
    assert found, f"README has no block marked {marker}"
    return found.group(1).rstrip("\n").split("\n")


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository's files (tracked and new, not ignored), as a clone has."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split("\0")  # fmt: skip
    target = tmp_path / "scheduler"
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


@pytest.fixture()
def shell_env(settings, engine, redis_client, tmp_path) -> dict[str, str]:
    """A login shell's environment (no virtualenv of the tests on PATH) and the README's
    three exported variables."""
    ours = str(Path(sys.executable).parent)
    path = ":".join(p for p in os.environ["PATH"].split(":") if p != ours)
    return {
        "PATH": path,
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "PORT": str(free_port()),
    }


@pytest.fixture()
def stack(checkout: Path, shell_env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Every line of the VM block; the last (honcho start, in the foreground) in the
    background. Yields (base URL, the key the block printed)."""
    lines = block("deploy-vm:")
    setup = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines[:-1])], cwd=checkout,
        env=shell_env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    [key] = re.findall(r"\btsk_[A-Za-z0-9_-]+", setup.stdout)[-1:]
    log = (checkout / "honcho.log").open("w")
    proc = subprocess.Popen(
        ["bash", "-c", lines[-1]], cwd=checkout, env=shell_env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{shell_env['PORT']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (checkout / "honcho.log").read_text()[-3000:]
            time.sleep(0.3)
        yield base, key
    finally:
        support.stop_group(proc, timeout=40)


def test_the_vm_deploy_runs_as_the_readme_says(stack, checkout, shell_env, tmp_path) -> None:
    base, key = stack
    listed = requests.get(f"{base}/api/v1/triggers", timeout=30,
                          headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert listed.status_code == 200

    [hook] = block("deploy-vm-hook")
    done = subprocess.run(["bash", "-c", hook], cwd=checkout, env=shell_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"deployment_id": "vm-' in done.stdout or '"deployment_id":"vm-' in done.stdout

    # The systemd export, into a folder of the test's instead of /etc/systemd/system (and
    # without sudo or systemctl, which a test cannot use).
    export, _start = block("deploy-vm-systemd")
    units = tmp_path / "units"
    command = export.removeprefix("sudo ").replace("/etc/systemd/system", str(units))
    done = subprocess.run(["bash", "-c", command], cwd=checkout, env=shell_env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    made = {path.name for path in units.iterdir()}
    assert "scheduler.target" in made
    assert {"scheduler-web.target", "scheduler-worker.target", "scheduler-beat.target"} <= made
