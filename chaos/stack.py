"""The Procfile's processes, each group in its own namespace.

Each process is `ip netns exec NS bash -c '<Procfile line>'` in a session of its own, so a
signal to its process group (stop, SIGSTOP, SIGCONT) reaches the Celery main process and
its pool children alike. Logs go to one file per process, appended across restarts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from chaos import net

ROOT = Path(__file__).resolve().parent.parent
RECEIVER_PORT = 8080
WEB_PORT = 5000

# Which Procfile entries run on which host (namespace). The beat host also runs `scheduler`.
LAYOUT = {
    "web": ("web", "web"),
    "worker1": ("w1", "worker"),
    "worker2": ("w2", "worker"),
    "beat": ("beat", "beat"),
    "scheduler": ("beat", "scheduler"),
    "beat2": ("beat2", "beat"),
}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)


def faketime_env(offset_seconds: int) -> dict[str, str]:
    """libfaketime's variables that shift a process's clock (and its children's)."""
    libs = glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1")
    if not libs:
        raise RuntimeError("libfaketime not found: apt-get install -y faketime")
    sign = "+" if offset_seconds >= 0 else "-"
    return {
        "LD_PRELOAD": libs[0],
        # A constant offset: the monotonic clock moves by it too, so intervals stay true.
        # Not FAKETIME_DONT_FAKE_MONOTONIC=1: with it, libfaketime 0.9.10 (Debian 12) makes
        # clock_nanosleep fail with EINVAL, so every time.sleep raised OSError (the first
        # long run's 24 failed runs; a harness artefact, not the product's).
        "FAKETIME": f"{sign}{abs(offset_seconds)}s",
        "FAKETIME_NO_CACHE": "1",
    }


@dataclass
class Proc:
    name: str
    host: str
    command: str
    env: dict[str, str]
    logs: Path
    popen: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.log"

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})
        out = self.log_path.open("a")
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", net.ns(self.host), "bash", "-c", f"exec env {self.command}"],
            cwd=ROOT, env={**self.env, **self.extra_env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 25) -> None:
        """SIGCONT (a frozen process cannot stop), SIGTERM, then SIGKILL after `timeout`."""
        if self.popen is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.popen.wait()
        # Pool children left behind by a killed main process.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen = None


def make(logs: Path, env: dict[str, str]) -> dict[str, Proc]:
    """Every process of the stack (not started), and the receiver."""
    commands = procfile()
    bin_dir = str(Path(sys.executable).parent)
    full_env = {**env, "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    procs = {
        name: Proc(name, host, commands[kind], full_env, logs)
        for name, (host, kind) in LAYOUT.items()
    }
    receiver = (
        f"{sys.executable} -m chaos.receiver --bind {net.HOSTS['recv']} "
        f"--port {RECEIVER_PORT} --log {logs / 'deliveries.jsonl'}"
    )
    procs["receiver"] = Proc("receiver", "recv", receiver, full_env, logs)
    return procs
