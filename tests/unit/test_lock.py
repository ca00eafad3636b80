"""The lock (requirements.txt, requirements-dev.txt) against setup.cfg, offline.

`make lock-check` resolves again (it needs the package index); this reads the files only:
every dependency setup.cfg declares is pinned at a version it admits, nothing is pinned as
ours that setup.cfg no longer declares, and every pin carries hashes.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)")
OURS = "trigger-scheduler (setup.cfg)"


def declared(extra: str | None = None) -> dict[str, Requirement]:
    """setup.cfg's install_requires, or one extra's list, by canonical name."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    raw = (
        parser["options"]["install_requires"]
        if extra is None
        else parser["options.extras_require"][extra]
    )
    found = (Requirement(line.strip()) for line in raw.splitlines() if line.strip())
    return {canonicalize_name(req.name): req for req in found}


def pinned(text: str) -> dict[str, dict]:
    """Each pin of a lock file: {name: {"version", "hashes", "via"}} (via: its annotations)."""
    pins: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            current = pins[canonicalize_name(match[1])] = {
                "version": match[2],
                "hashes": 0,
                "via": [],
            }
        elif current is not None and "--hash=sha256:" in line:
            current["hashes"] += 1
        elif current is not None and line.strip().startswith("#"):
            current["via"].append(line.strip("# ").removeprefix("via ").strip())
    return pins


def stale(text: str, wanted: dict[str, Requirement]) -> list[str]:
    """Why a lock does not match `wanted`: one line per problem, empty when it matches."""
    pins = pinned(text)
    problems = []
    for name, req in sorted(wanted.items()):
        pin = pins.get(name)
        if pin is None:
            problems.append(f"{name} is declared but not pinned")
        elif not req.specifier.contains(pin["version"], prereleases=True):
            problems.append(f"{name}=={pin['version']} is outside {req.specifier}")
    for name, pin in sorted(pins.items()):
        if OURS in pin["via"] and name not in wanted:
            problems.append(f"{name} is pinned for us but no longer declared")
        if pin["hashes"] == 0:
            problems.append(f"{name} has no hash")
    return problems


def test_the_runtime_lock_pins_what_setup_cfg_declares() -> None:
    assert stale((ROOT / "requirements.txt").read_text(), declared()) == []


def test_the_dev_lock_pins_runtime_and_dev_alike() -> None:
    text = (ROOT / "requirements-dev.txt").read_text()
    assert stale(text, {**declared(), **declared("dev")}) == []


def test_the_dev_lock_installs_the_runtime_lock_s_versions() -> None:
    runtime = pinned((ROOT / "requirements.txt").read_text())
    dev = pinned((ROOT / "requirements-dev.txt").read_text())
    assert {name: dev[name]["version"] for name in runtime} == {
        name: pin["version"] for name, pin in runtime.items()
    }


def test_requests_is_not_a_runtime_dependency() -> None:
    # Nothing under app/, web/ or tasks/ imports it; it stays a test tool.
    assert "requests" not in declared()


LOCK = """\
flask==3.1.3 \\
    --hash=sha256:aa
    # via trigger-scheduler (setup.cfg)
gunicorn==22.0.0 \\
    --hash=sha256:bb
    # via trigger-scheduler (setup.cfg)
six==1.17.0
    # via
    #   trigger-scheduler (setup.cfg)
"""


@pytest.mark.parametrize(
    ("wanted", "problem"),
    [
        ({"flask": ">=3.0", "gunicorn": ">=23.0"}, "gunicorn==22.0.0 is outside >=23.0"),
        ({"flask": ">=3.0", "gunicorn": ">=22", "redis": ">=5"}, "redis is declared but not"),
        ({"gunicorn": ">=22"}, "flask is pinned for us but no longer declared"),
        ({"flask": ">=3.0", "gunicorn": ">=22"}, "six has no hash"),
    ],
)
def test_the_check_sees_each_kind_of_staleness(wanted: dict[str, str], problem: str) -> None:
    requirements = {name: Requirement(f"{name}{spec}") for name, spec in wanted.items()}
    assert any(line.startswith(problem) for line in stale(LOCK, requirements))


# Releases with known advisories stay out (issue 30): gunicorn's request smuggling (fixed in
# 22.0 and 23.0), urllib3's decompression bombs (fixed in 2.6).
# Each: the last affected release, the first fixed one.
ADVISORY_FLOORS = [("gunicorn", "22.0.0", "23.0.0"), ("urllib3", "2.5.0", "2.6.0")]


@pytest.mark.parametrize(("name", "affected", "fixed"), ADVISORY_FLOORS)
def test_setup_cfg_admits_no_release_below_an_advisory_fix(
    name: str, affected: str, fixed: str
) -> None:
    specifier = declared()[name].specifier
    assert not specifier.contains(affected)
    assert specifier.contains(fixed)
