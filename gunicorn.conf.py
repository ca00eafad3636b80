"""gunicorn's settings file: gunicorn reads it from the working directory on every start
(the Procfile's `web` line), so its checks run once, in the master, before any worker forks.
"""

from __future__ import annotations

import sys

# Private names: gunicorn takes every public name here for one of its settings (`config` is).
from app import config as _config
from app.errors import ConfigError as _ConfigError


def on_starting(server) -> None:
    """Refuse to start, with one line and exit status 2, on settings the web must not run
    with (app/config.py, `Settings.check_web`), given the real number of workers."""
    settings = _config.settings_or_exit()
    try:
        settings.check_web(workers=server.cfg.workers)
    except _ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
