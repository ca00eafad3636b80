"""Opaque keyset cursors: `(created_at, id)` of the last item, base64url-encoded JSON.

Keyset pagination stays fast at any depth and never skips or repeats a row when rows are
added between pages (an offset would).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from app.triggers import Cursor
from web import fields
from web.errors import InvalidFields

T = TypeVar("T")
INVALID = "is not a cursor this API returned"


def encode(created_at: datetime, item_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(item_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str | None) -> Cursor | None:
    """The position a cursor stands for; InvalidFields naming `cursor` if it is not ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, item_id = json.loads(raw)
        # Ours hold two strings; uuid.UUID fails on an int or a list with AttributeError.
        if not (isinstance(created_at, str) and isinstance(item_id, str)):
            raise ValueError("not two strings")
        position = (datetime.fromisoformat(created_at), uuid.UUID(item_id))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError, RecursionError):
        raise InvalidFields({"cursor": INVALID})
    # Ours hold aware UTC instants the API accepts. A forged one could overflow (year 1
    # with a positive offset) or carry an offset PostgreSQL refuses (beyond +-15:59).
    created_at = position[0]
    if created_at.tzinfo is None or created_at.utcoffset() != timedelta(0):
        raise InvalidFields({"cursor": INVALID})
    if not fields.MIN_YEAR <= created_at.year <= fields.MAX_YEAR:
        raise InvalidFields({"cursor": INVALID})
    return created_at.astimezone(UTC), position[1]


def page(
    rows: Sequence[T], limit: int, position: Callable[[T], tuple[datetime, uuid.UUID]]
) -> dict[str, Any]:
    """`{"items", "next_cursor"}` from `limit + 1` fetched rows (the extra one means "more")."""
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": encode(*position(items[-1])) if more else None}
