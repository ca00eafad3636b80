"""queries.array_literal: a batch's column as one PostgreSQL array literal. Round trips through
PostgreSQL are in tests/integration/dispatch/test_dispatch.py (tenant strings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.queries import array_literal


def test_strings_are_quoted_with_their_quotes_and_backslashes_escaped() -> None:
    assert array_literal(['a"b', "c\\", "NULL", "x,{y}"]) == ('{"a\\"b","c\\\\","NULL","x,{y}"}')


def test_none_booleans_and_instants() -> None:
    noon = datetime(2026, 1, 5, 12, tzinfo=UTC)
    paris = (noon + timedelta(hours=1)).astimezone(timezone(timedelta(hours=1)))
    assert array_literal([None, True, False, noon, paris]) == (
        '{NULL,t,f,"2026-01-05T12:00:00+00:00","2026-01-05T14:00:00+01:00"}'
    )


def test_equal_values_of_other_types_are_not_mixed_up() -> None:
    assert array_literal([1, True, 0, False]) == '{"1",t,"0",f}'


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        array_literal([datetime(2026, 1, 5, 12)])
