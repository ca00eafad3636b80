"""The `dispatch_due_triggers` task and a command-line tick: `python -m tasks.dispatch --once`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from app import config, logs
from tasks import celery, composition
from tasks.celery_app import DISPATCH_TASK


def tick(release_id: str | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """One dispatch tick on behalf of `release_id` (default: this process's release).

    What is due is decided on PostgreSQL's clock, not this host's (docs/design.md section 15).
    """
    scheduler = composition.scheduler()
    release = release_id or scheduler.settings.release_id
    with logs.bind(release=release):
        return scheduler.tick(release, now=now).as_dict()


@celery.task(name=DISPATCH_TASK, acks_late=False, ignore_result=True)
def dispatch_due_triggers(release_id: str | None = None) -> dict[str, Any]:
    # Not acks_late: a tick lost with its worker is simply the next tick's work, and a
    # redelivered stale tick would only repeat a (harmless) dispatch.
    return tick(release_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tasks.dispatch", description="Dispatch due triggers from the command line."
    )
    parser.add_argument(
        "--once", action="store_true", required=True, help="run a single tick and exit"
    )
    parser.add_argument("--release", help="release id to tick as (default: RELEASE_ID)")
    args = parser.parse_args(argv)
    settings = config.settings_or_exit()
    logs.configure(settings.log_level, settings.log_format)
    stats = tick(args.release)
    print(json.dumps(stats, default=str))
    return 0 if stats["accepted"] and not stats["broker_error"] else 1


if __name__ == "__main__":
    sys.exit(main())
