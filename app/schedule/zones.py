"""IANA time zones by name: validated once, then cached.

Triggers store the zone as its IANA name, never as an offset: the offset changes twice a
year, the rules are what the cron expression is evaluated against.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from functools import lru_cache

from app.errors import ScheduleError

# Files of the zone directory that are not zones: `localtime` is the host's own zone (on
# Debian a link to /etc/localtime, and listed by available_timezones), so a trigger in it
# would fire by whatever zone the machine that plans it is set to.
NOT_ZONES = frozenset({"localtime", "posixrules"})


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - NOT_ZONES


@lru_cache(maxsize=1024)
def get(name: str) -> zoneinfo.ZoneInfo:
    """The zone called `name`; raise ScheduleError(field='timezone') for an unknown one."""
    problem = f"unknown time zone {name!r} (expected an IANA name such as 'Europe/Paris')"
    if not isinstance(name, str) or not name:
        raise ScheduleError(
            "the time zone is empty (expected an IANA name such as 'UTC')", field="timezone"
        )
    known = _known()
    # When the platform cannot list its zones, loading is the only test left.
    if name in NOT_ZONES or (known and name not in known):
        raise ScheduleError(problem, field="timezone")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(problem, field="timezone")


def validate(name: str) -> str:
    """Return `name` if it is a known IANA zone, else raise ScheduleError(field='timezone')."""
    get(name)
    return name


def iso_utc(moment: datetime) -> str:
    """ISO-8601 in UTC with a `Z` (`2026-03-29T01:00:00Z`): how every instant is written
    (API bodies, idempotency keys, webhook headers, descriptions)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
