"""app.json, the Heroku-style manifest, against the Procfile and the settings (section 16)."""

from __future__ import annotations

import json
from pathlib import Path

from app import config

ROOT = Path(__file__).resolve().parents[2]


def manifest() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_the_formation_is_the_procfile_s_long_running_processes() -> None:
    kinds = set(procfile()) - {"release"}
    assert set(manifest()["formation"]) == kinds
    formation = manifest()["formation"]
    assert formation["beat"]["quantity"] == 1  # one beat (two only during a deploy)
    assert formation["web"]["quantity"] >= 1 and formation["worker"]["quantity"] >= 1


def test_the_release_phase_migrates_and_hands_over_dispatch() -> None:
    release = procfile()["release"]
    assert release.startswith("alembic upgrade head")
    assert "scheduler restart" in release


def test_the_add_ons_are_postgresql_and_redis() -> None:
    plans = {addon["plan"].split(":")[0] for addon in manifest()["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}


def test_the_secrets_are_generated_and_long_enough() -> None:
    env = manifest()["env"]
    for name in ("SECRET_KEY", "SCHEDULER_RESTART_SECRET"):
        assert env[name] == {**env[name], "generator": "secret"}
    # Heroku's generator makes 64 hex characters: both settings accept that length.
    generated = "0" * 64
    settings = config.Settings.from_env(
        {"SECRET_KEY": generated, "SCHEDULER_RESTART_SECRET": generated, "WEB_CONCURRENCY": "2"}
    )
    settings.check_web()


def test_every_default_in_the_manifest_is_a_valid_setting() -> None:
    values = {k: v["value"] for k, v in manifest()["env"].items() if "value" in v}
    config.Settings.from_env({**values, "REDIS_URL": "rediss://h:6380/0"})


def test_python_version_is_a_major_line_setup_cfg_allows() -> None:
    version = (ROOT / ".python-version").read_text().strip()
    assert version == "3.11"  # the buildpack then takes each 3.11 security release
