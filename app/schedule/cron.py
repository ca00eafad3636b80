"""The 5-field cron grammar: parse and validate an expression into the sets the iterator walks.

The grammar is Debian cron's (and cronsim's, our reference): per field a comma list of
`*`, `N`, `A-B`, each optionally followed by `/STEP`; month and day-of-week also take
names (`JAN`, `MON`), and day-of-week 7 is Sunday. `N/STEP` means `N-max/STEP` (as cronsim
reads it) and `A-A/STEP` means `A` (cronsim reads `A/STEP` there). Macros `@hourly @daily
@midnight @weekly @monthly @yearly @annually` stand for their 5-field form.

Extensions, with cronsim's meanings (docs/design.md section 11), as items of a comma list:
- day-of-month `L` (the last day of the month) and `LW` (the last weekday, Monday-Friday, of
  the month);
- day-of-week `D#N` (the Nth such weekday of the month, N 1-5; `D` a number or a name) and
  `DL` (the last such weekday of the month; `D` a number 0-7, as cronsim takes it).
They take no step and no range (cronsim silently ignores a step on `L`; we reject it). They
do not change the day-field rule: `L` does not start with '*', so `0 0 L * MON` is "the last
day or a Monday". Other Quartz and croniter extensions (`W` alone, `?`, `H`, `L-3`) are
rejected.

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
# Quartz / croniter extensions that neither Debian cron nor cronsim has.
_UNSUPPORTED_CHARS = re.compile(r"[?()]")
_UNSUPPORTED_TOKEN = re.compile(r"\d*[LW]|LW|L-\d+|H")
_LAST_DAY, _LAST_WEEKDAY = "L", "LW"
_NTH = re.compile(r"^([0-9A-Za-z]+)#(.*)$")
_LAST_DOW = re.compile(r"^([0-9]+)L$", re.IGNORECASE)


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
    # The extensions: day-of-month `L` / `LW`; day-of-week `D#N` as (D, N) and `DL` as D.
    month_ends: frozenset[str] = frozenset()
    nth_weekdays: frozenset[tuple[int, int]] = frozenset()
    last_weekdays: frozenset[int] = frozenset()

    @property
    def extended(self) -> bool:
        """True when an extension (`L`, `LW`, `#`, `DL`) appears in a day field."""
        return bool(self.month_ends or self.nth_weekdays or self.last_weekdays)

    def month_days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of `month` in `year` that match the day fields, in order."""
        return _month_days(
            _DayRule(self.day_and, self.days, self.weekdays, self.month_ends,
                     self.nth_weekdays, self.last_weekdays),
            year,
            month,
        )  # fmt: skip


@dataclass(frozen=True)
class _DayRule:
    day_and: bool
    days: frozenset[int]
    weekdays: frozenset[int]
    month_ends: frozenset[str]
    nth_weekdays: frozenset[tuple[int, int]]
    last_weekdays: frozenset[int]


def _last_weekday_of_month(first_weekday: int, length: int) -> int:
    """The date of the month's last Monday-Friday (cronsim's `last_weekday`)."""
    last = (first_weekday + length - 1) % 7  # Monday = 0
    return length - {6: 2, 5: 1}.get(last, 0)


@lru_cache(maxsize=65536)
def _month_days(rule: _DayRule, year: int, month: int) -> tuple[int, ...]:
    first_weekday, length = calendar.monthrange(year, month)  # Monday = 0
    dom_days = set(rule.days)
    if _LAST_DAY in rule.month_ends:
        dom_days.add(length)
    if _LAST_WEEKDAY in rule.month_ends:
        dom_days.add(_last_weekday_of_month(first_weekday, length))
    matched = []
    for day in range(1, length + 1):
        in_dom = day in dom_days
        weekday = (first_weekday + day) % 7  # shifted so that Sunday = 0
        in_dow = (
            weekday in rule.weekdays
            or (weekday, (day + 6) // 7) in rule.nth_weekdays
            or (weekday in rule.last_weekdays and day + 7 > length)
        )
        if (in_dom and in_dow) if rule.day_and else (in_dom or in_dow):
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


def _extension(index: int, text: str, item: str, found: dict[str, set]) -> bool:
    """Record `item` in `found` if it is an extension of its field; False if it is not one."""
    upper = item.upper()
    if index == 2 and upper in (_LAST_DAY, _LAST_WEEKDAY):
        found["month_ends"].add(upper)
        return True
    if index == 2 and upper.split("/")[0] in (_LAST_DAY, _LAST_WEEKDAY):
        raise _fail(index, text, f"'{item}': '{upper.split('/')[0]}' takes no step")
    if index != 4:
        if "#" in item:
            raise _fail(index, text, "'#' is only allowed in the day-of-week field")
        return False
    nth = _NTH.match(item)
    if nth is not None:
        weekday, count = nth.groups()
        if "-" in weekday or "/" in count:
            raise _fail(index, text, f"'{item}': '#' takes one weekday and no range or step")
        if not _NUMBER.fullmatch(count) or not 1 <= int(count) <= 5:
            raise _fail(index, text, f"'{item}': the week number after '#' must be 1-5")
        found["nth_weekdays"].add((_value(index, text, weekday) % 7, int(count)))
        return True
    last = _LAST_DOW.match(item)
    if last is not None:
        found["last_weekdays"].add(_value(index, text, last.group(1)) % 7)
        return True
    if "#" in item or (upper.endswith("L") and "/" in upper) or re.search(r"L/", upper):
        raise _fail(index, text, f"'{item}' is not a valid '#' or 'L' item (e.g. 1#2, 5L)")
    return False


def _parse_field(index: int, text: str, found: dict[str, set] | None = None) -> set[int]:
    """The values of field `index`; `text` is as the user wrote it (named in errors).

    Extension items (see the module docstring) go into `found` instead of the values.
    """
    low, high = _BOUNDS[index]
    found_char = _UNSUPPORTED_CHARS.search(text)
    if found_char:
        raise _fail(index, text, _unsupported(found_char.group()))
    found = found if found is not None else {k: set() for k in _EXTENSION_KINDS}
    values: set[int] = set()
    for item in text.split(","):
        if item and _extension(index, text, item, found):
            continue
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


_EXTENSION_KINDS = ("month_ends", "nth_weekdays", "last_weekdays")
# The weekday calendar repeats every 28 years between 1901 and 2099: if an expression fires
# in none of these months, it never fires.
_CYCLE = range(2001, 2029)


def _check_extended_fires(expr: CronExpr) -> None:
    """Reject an expression with extensions whose day fields never meet ('*/30 * 1#2')."""
    if any(expr.month_days(year, month) for year in _CYCLE for month in sorted(expr.months)):
        return
    raise ScheduleError(
        f"never fires: no day matches day-of-month '{expr.fields[2]}' and day-of-week "
        f"'{expr.fields[4]}' in month '{expr.fields[3]}'",
        field="cron",
    )


def _check_fires(fields: tuple[str, ...], days: set[int], months: set[int], day_and: bool) -> None:
    """Reject an expression whose day-of-month never occurs in its months ('0 0 30 2 *').

    Only the AND case can be empty: any (month, day) pair that exists falls on every weekday
    over the years, and in the OR case the day-of-week alone fires.
    """
    if day_and and days and min(days) > max(_MONTH_DAYS[month] for month in months):
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
    found: dict[str, set] = {kind: set() for kind in _EXTENSION_KINDS}
    minutes, hours, days, months, weekdays = (
        _parse_field(index, field, found) for index, field in enumerate(fields)
    )
    day_and = fields[2].startswith("*") or fields[4].startswith("*")
    if not found["month_ends"]:  # 'L' exists in every month
        _check_fires(fields, days, months, day_and)
    parsed = CronExpr(
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
        month_ends=frozenset(found["month_ends"]),
        nth_weekdays=frozenset(found["nth_weekdays"]),
        last_weekdays=frozenset(found["last_weekdays"]),
    )
    if parsed.extended:
        _check_extended_fires(parsed)
    return parsed


def names_to_numbers(index: int, text: str) -> str:
    """Field `index` as written, with month and day names replaced by their numbers."""
    names = _NAMES.get(index, {})
    return re.sub(r"[A-Za-z]+", lambda m: str(names.get(m.group().upper(), m.group())), text)


def validate(expr: str) -> str:
    """Return the normalised expression, or raise ScheduleError naming the faulty field."""
    return parse(expr).text
