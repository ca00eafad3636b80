"""The 5-field cron grammar: parse and validate an expression into the sets the iterator walks.

The grammar is Debian cron's (and cronsim's, our reference): per field a comma list of
`*`, `N`, `A-B`, each optionally followed by `/STEP`; month and day-of-week also take
names (`JAN`, `MON`), and day-of-week 7 is Sunday. `N/STEP` means `N-max/STEP` (as cronsim
reads it) and `A-A/STEP` means `A` (cronsim reads `A/STEP` there). Macros `@hourly @daily
@midnight @weekly @monthly @yearly @annually` stand for their 5-field form. Quartz and croniter
extensions (`L`, `W`, `#`, `?`, `H`) are rejected.

croniter is deliberately not used for the expansion: croniter 7 expands several valid forms
differently from Debian cron (`6-6` in day-of-week becomes every day, `12-12/11` in month adds
January, `5/2` in day-of-week drops Sunday, `5-2` wraps around instead of being rejected), and
its errors do not say which field is wrong. Parsing here is small, exact and names the field.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from functools import lru_cache

from app.errors import ScheduleError

FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {3: {n: i + 1 for i, n in enumerate(_MONTHS)}, 4: {n: i for i, n in enumerate(_DAYS)}}
_NAME_HINT = {3: " or a month name (JAN-DEC)", 4: " or a day name (SUN-SAT)"}
# The longest month of each month number; February counts its leap day.
_MONTH_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_NUMBER = re.compile(r"[0-9]+")
_ITEM = re.compile(r"^(\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(.*))?$")
# Quartz / croniter extensions that Debian cron does not have.
_UNSUPPORTED_CHARS = re.compile(r"[?#()]")
_UNSUPPORTED_TOKEN = re.compile(r"\d*[LW]|LW|L-\d+|H")


@dataclass(frozen=True, eq=False)
class CronExpr:
    """A parsed expression. Compared and hashed by identity: `parse` hands out one per text."""

    text: str  # the normalised expression (macros kept as written, lower case)
    fields: tuple[str, ...]  # the five fields, macros expanded
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    # Debian cron: when either day field starts with '*', a day must match both; otherwise
    # a day matching either fires ('0 0 1 * MON' is the 1st and every Monday).
    day_and: bool
    # Debian cron treats an expression whose minute and hour fields both do not start with
    # '*' as a wall-clock appointment: a time skipped by a DST gap still fires (once, right
    # after the gap) and a time repeated by a fall-back fires once. Others fire on every real
    # instant whose wall-clock time matches.
    pinned: bool
    seconds_of_day: tuple[int, ...]  # sorted hour*3600 + minute*60 of every matching time

    def month_days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of `month` in `year` that match the day fields, in order."""
        return _month_days(self.day_and, self.days, self.weekdays, year, month)


@lru_cache(maxsize=65536)
def _month_days(
    day_and: bool, days: frozenset[int], weekdays: frozenset[int], year: int, month: int
) -> tuple[int, ...]:
    first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
    matched = []
    for day in range(1, length + 1):
        in_dom = day in days
        in_dow = (first_weekday + day) % 7 in weekdays  # shifted so that Sunday = 0
        if (in_dom and in_dow) if day_and else (in_dom or in_dow):
            matched.append(day)
    return tuple(matched)


def _fail(index: int, text: str, problem: str) -> ScheduleError:
    return ScheduleError(f"{FIELD_NAMES[index]} field '{text}': {problem}", field="cron")


def _unsupported(what: str) -> str:
    return f"'{what}' is not supported (use numbers, names, ranges, lists and steps)"


def _value(index: int, text: str, token: str) -> int:
    low, high = _BOUNDS[index]
    name = token.upper()
    if token.isdigit():
        value = int(token)
    elif name in _NAMES.get(index, {}):
        return _NAMES[index][name]
    elif _UNSUPPORTED_TOKEN.fullmatch(name):
        raise _fail(index, text, _unsupported(token))
    else:
        hint = _NAME_HINT.get(index, "")
        raise _fail(index, text, f"'{token}' is not a number{hint}")
    if not low <= value <= high:
        raise _fail(index, text, f"{value} is out of range {low}-{high}")
    return value


def _parse_field(index: int, text: str) -> set[int]:
    """The values of field `index`; `text` is as the user wrote it (named in errors)."""
    low, high = _BOUNDS[index]
    found = _UNSUPPORTED_CHARS.search(text)
    if found:
        raise _fail(index, text, _unsupported(found.group()))
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not item or match is None:
            raise _fail(index, text, f"'{item}' is not a value, a range or a step")
        base, step_text = match.groups()
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, last = base.split("-")
            start, end = _value(index, text, first), _value(index, text, last)
            if end < start:
                raise _fail(index, text, f"range '{base}' ends before it starts")
        else:
            start = _value(index, text, base)
            # 'N/STEP' runs from N to the end of the field, as in Debian cron and cronsim.
            end = high if step_text is not None else start
        step = 1
        if step_text is not None:
            if not _NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise _fail(index, text, f"step '{step_text}' is not a positive number")
            step = int(step_text)
        values.update(range(start, end + 1, step))
    return values


def _check_fires(fields: tuple[str, ...], days: set[int], months: set[int], day_and: bool) -> None:
    """Reject an expression whose day-of-month never occurs in its months ('0 0 30 2 *').

    Only the AND case can be empty: any (month, day) pair that exists falls on every weekday
    over the years, and in the OR case the day-of-week alone fires.
    """
    if day_and and min(days) > max(_MONTH_DAYS[month] for month in months):
        names = ",".join(_MONTHS[month - 1] for month in sorted(months))
        raise ScheduleError(
            f"never fires: day-of-month '{fields[2]}' does not exist in month '{fields[3]}' "
            f"({names})",
            field="cron",
        )


def _split(expr: str) -> tuple[str, tuple[str, ...]]:
    """Return (normalised text, the five fields as written), macros expanded in the fields."""
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError("the cron expression is empty", field="cron")
    parts = expr.split()
    if len(parts) == 1 and parts[0].startswith("@"):
        macro = parts[0].lower()
        if macro not in MACROS:
            raise ScheduleError(
                f"unknown macro '{parts[0]}' (supported: {' '.join(MACROS)})",
                field="cron",
            )
        return macro, tuple(MACROS[macro].split())
    if len(parts) != 5:
        extra = {
            6: "; a seconds (or year) field is not supported",
            7: "; seconds and year fields are not supported",
        }.get(len(parts), "")
        raise ScheduleError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), got "
            f"{len(parts)}{extra}",
            field="cron",
        )
    return " ".join(parts).upper(), tuple(parts)


@lru_cache(maxsize=4096)
def parse(expr: str) -> CronExpr:
    """Parse `expr` (cached: one CronExpr per distinct text); raise ScheduleError(field='cron')."""
    text, fields = _split(expr)
    minutes, hours, days, months, weekdays = (
        _parse_field(index, field) for index, field in enumerate(fields)
    )
    day_and = fields[2].startswith("*") or fields[4].startswith("*")
    _check_fires(fields, days, months, day_and)
    return CronExpr(
        text=text,
        fields=tuple(field.upper() for field in fields),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(day % 7 for day in weekdays),
        day_and=day_and,
        pinned=not fields[0].startswith("*") and not fields[1].startswith("*"),
        seconds_of_day=tuple(h * 3600 + m * 60 for h in sorted(hours) for m in sorted(minutes)),
    )


def names_to_numbers(index: int, text: str) -> str:
    """Field `index` as written, with month and day names replaced by their numbers."""
    names = _NAMES.get(index, {})
    return re.sub(r"[A-Za-z]+", lambda m: str(names.get(m.group().upper(), m.group())), text)


def validate(expr: str) -> str:
    """Return the normalised expression, or raise ScheduleError naming the faulty field."""
    return parse(expr).text
