"""Human text for a schedule: cron (through cron-descriptor), interval, one-time, window, jitter."""

from __future__ import annotations

from functools import lru_cache

import cron_descriptor

from app.schedule import cron as cron_grammar
from app.schedule import interval, zones
from app.schedule import spec as schedule_spec

EPOCH = interval.EPOCH


def describe(spec: schedule_spec.TriggerSpec) -> str:
    """Human text: "At 02:30 AM, America/New_York"; "Once at 2026-12-01T09:00:00Z";
    "Every 1 hour 30 minutes, counted from 2026-01-01T00:15:00Z" (no anchor phrase for the
    epoch); a window adds ", from <start_at>" and ", until <end_at>"; jitter adds ", delayed
    by up to N seconds of jitter"."""
    if spec.run_at is not None:
        text = f"Once at {zones.iso_utc(spec.run_at)}"
    elif spec.interval_seconds is not None:
        text = f"Every {interval.describe(spec.interval_seconds)}"
        if spec.anchor != EPOCH:
            text += f", counted from {zones.iso_utc(spec.anchor)}"
    else:
        assert spec.cron is not None
        text = f"{_describe_cron(cron_grammar.parse(spec.cron))}, {spec.timezone}"
    if spec.start_at is not None:
        text += f", from {zones.iso_utc(spec.start_at)}"
    if spec.end_at is not None:
        text += f", until {zones.iso_utc(spec.end_at)}"
    if spec.jitter_seconds:
        text += f", delayed by up to {interval.describe(spec.jitter_seconds)} of jitter"
    return text


_FULL = (set(range(60)), set(range(24)), set(range(1, 32)), set(range(1, 13)), set(range(7)))
_DESCRIBE_ERRORS = (cron_descriptor.FormatError, cron_descriptor.MissingFieldError, ValueError)


def _describe_cron(expr: cron_grammar.CronExpr) -> str:
    """cron-descriptor's text for `expr`, fed a form it reads correctly.

    It fails on some valid fields ('*,5', 'FEB-3', '3-FRI,*/4'), so a field covering its
    whole range is given as '*' and names as numbers; if it still fails, the restricted
    fields are spelled out as value lists. Debian's day rule is kept: with OR, one full day
    field means every day; with AND its "or on" is corrected.
    """
    if expr.extended:
        return _describe_extended(expr)
    sets = (expr.minutes, expr.hours, expr.days, expr.months, expr.weekdays)
    fields = [
        "*" if set(values) == full else cron_grammar.names_to_numbers(index, text)
        for index, (values, full, text) in enumerate(zip(sets, _FULL, expr.fields, strict=True))
    ]
    if not expr.day_and and "*" in (fields[2], fields[4]):
        fields[2] = fields[4] = "*"
    try:
        text = _cron_descriptor_text(" ".join(fields))
    except _DESCRIBE_ERRORS:
        fields = [
            text if text == "*" else ",".join(str(v) for v in sorted(values))
            for values, text in zip(sets, fields, strict=True)
        ]
        text = _cron_descriptor_text(" ".join(fields))
    if expr.day_and and fields[2] != "*" and fields[4] != "*":
        # cron-descriptor always reads two day fields as "or"; with a '*'-led field Debian
        # cron requires both ('0 0 */2 * MON': Mondays that are odd days).
        text = text.replace(", or on ", ", and only on ")
    return text


@lru_cache(maxsize=4096)
def _cron_descriptor_text(expression: str) -> str:
    """cron-descriptor's description, memoised: it reads and parses its translation file
    from disk at every call (0.7 ms), which made a page of 100 triggers cost 70 ms."""
    return cron_descriptor.get_description(expression)


_ORDINALS = ("", "first", "second", "third", "fourth", "fifth")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _describe_extended(expr: cron_grammar.CronExpr) -> str:
    """Text for an expression using `L`, `LW`, `#` or `DL`.

    cron-descriptor reads a lone extension well but garbles lists ('15,L': "day 15 and L";
    'MON#2,FRI#1': "the  Monday and Friday") and joins the two day fields with a comma where
    Debian's rule means "or". So it describes the time and the months only (day fields '*'),
    and the day phrase is written here, in its words.
    """
    plain = cron_grammar.parse(" ".join([*expr.fields[:2], "*", expr.fields[3], "*"]))
    base = _describe_cron(plain)
    time_only = _describe_cron(cron_grammar.parse(" ".join([*expr.fields[:2], "* * *"])))
    months = base[len(time_only) :] if base.startswith(time_only) else ""
    dom_parts = [f"day {', '.join(str(d) for d in sorted(expr.days))}"] if expr.days else []
    if expr.days and not expr.month_ends:  # cron-descriptor reads plain days well ('*/2')
        plain_days = _describe_cron(cron_grammar.parse(f"0 0 {expr.fields[2]} * *"))
        dom_parts = [plain_days.removeprefix("At 12:00 AM, ").removeprefix("on ")]
    dom_parts += [
        {"L": "the last day", "LW": "the last weekday"}[end] for end in sorted(expr.month_ends)
    ]
    dow_parts = [_WEEKDAYS[d] for d in sorted(expr.weekdays)]
    dow_parts += [f"the {_ORDINALS[n]} {_WEEKDAYS[d]}" for d, n in sorted(expr.nth_weekdays)]
    dow_parts += [f"the last {_WEEKDAYS[d]}" for d in sorted(expr.last_weekdays)]
    of_month = " of the month" if expr.nth_weekdays or expr.last_weekdays else ""
    dom = " and ".join(dom_parts)
    if dom and not dom.endswith("of the month") and not dom.startswith("every"):
        dom += " of the month"
    dom = f"on {dom}" if dom.startswith(("day", "the")) else dom
    dow = f"on {' and '.join(dow_parts)}{of_month}" if dow_parts else ""
    full_dom = expr.fields[2].startswith("*") and set(expr.days) == set(range(1, 32))
    full_dow = expr.fields[4].startswith("*") and set(expr.weekdays) == set(range(7))
    if full_dom or not dom:
        days = dow
    elif full_dow or not dow:
        days = dom
    else:
        days = f"{dom}, and only {dow}" if expr.day_and else f"{dom}, or {dow}"
    return f"{time_only}, {days}{months}"
