"""Operator CLI: `flask --app web triggers list|show|run|pause|resume|backfill`, `scheduler
status`, and `demo setup` (the first experience of `make run`).

Each command prints a readable table, or JSON with --json, and exits non-zero with one
clear line on error (click's `Error: ...`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from app import errors, keys, principals, state, triggers
from app.models import PAUSED_NOTE_LENGTH
from web import context
from web import fields as wf
from web import schemas as s

triggers_cli = AppGroup("triggers", help="Inspect and operate triggers (every tenant).")
demo_cli = AppGroup("demo", help="The local demo of `make run`.")

DEMO_TENANT = "demo"
DEMO_TRIGGER = "demo: echo every minute"
DEMO_PRINCIPAL = "demo-user"


def _fails_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Domain errors become one `Error: ...` line and exit status 1, never a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except errors.InvalidTrigger as exc:
            raise click.ClickException(f"{exc.message}: {json.dumps(exc.fields)}")
        except errors.SchedulerError as exc:
            raise click.ClickException(exc.message)

    return wrapper


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return wf.Timestamp()._serialize(value, None, None) or "-"
    return str(value)


def _schedule_cell(trigger: dict[str, Any]) -> str:
    if trigger["cron"]:
        return trigger["cron"]
    if trigger["interval_seconds"]:
        return f"every {trigger['interval_seconds']}s"
    return f"once {trigger['run_at']}"


def _echo(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    click.echo(json.dumps(data, default=str) if as_json else render(data))


def _trigger_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a trigger id (a UUID)", param_hint="ID")


_TIMESTAMP_FORMATS = [
    "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
    "%Y-%m-%d",
]  # fmt: skip
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@triggers_cli.command("list")
@click.option("--tenant", default=None, help="Only this tenant's triggers.")
@click.option("--enabled/--disabled", default=None, help="Only enabled (or disabled) ones.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@JSON
@_fails_cleanly
def list_triggers(tenant: str | None, enabled: bool | None, limit: int, as_json: bool) -> None:
    """List triggers, oldest first."""
    with context.session() as session:
        rows = triggers.list_page(session, scope=tenant, enabled=enabled, limit=limit, after=None)
    data = s.TriggerOut(many=True).dump(rows)
    _echo(data, as_json, lambda items: _table(
        ("id", "tenant", "name", "schedule", "enabled", "next_run_at", "last_run"),
        ((t["id"], t["tenant_id"], t["name"], _schedule_cell(t),
          t["enabled"], t["next_run_at"], (t["last_run"] or {}).get("status"))
         for t in items),
    ))  # fmt: skip


@triggers_cli.command("show")
@click.argument("trigger_id")
@JSON
@_fails_cleanly
def show_trigger(trigger_id: str, as_json: bool) -> None:
    """One trigger with its schedule description, next run and last run."""
    with context.session() as session:
        detail = triggers.get(session, _trigger_id(trigger_id), scope=None)
    data = s.TriggerOut().dump(detail)
    _echo(data, as_json, lambda t: "\n".join(
        f"{k:<24}{json.dumps(v) if isinstance(v, dict | list) else _cell(v)}"
        for k, v in t.items()
    ))  # fmt: skip


@triggers_cli.command("run")
@click.argument("trigger_id")
@JSON
@_fails_cleanly
def run_trigger_now(trigger_id: str, as_json: bool) -> None:
    """Create a manual run now and hand it to the workers."""
    with context.session() as session:
        run, _created = context.services().run_now(
            session, _trigger_id(trigger_id), scope=None, request_key=None, by=CLI
        )
    context.services().hand_off(run)  # admitted and published at once when a slot is free
    data = s.RunOut().dump(run)
    _echo(data, as_json, lambda r: f"run {r['id']} {r['status']} (kind {r['kind']})")


CLI_ACTOR = "cli"  # paused_by for a pause from the operator CLI (no API key)
# The operator CLI acts for every tenant, like an operator key; `cli` is its updated_by.
CLI = principals.Actor(CLI_ACTOR, may_act_for_anyone=True)


def _set_enabled(trigger_id: str, enabled: bool, as_json: bool, *, note: str | None = None) -> None:
    changes: dict[str, Any] = {"enabled": enabled}
    if note is not None:
        changes["paused_note"] = note
    with context.session() as session:
        detail = triggers.update(
            session, _trigger_id(trigger_id), scope=None, changes=changes,
            if_match=None, now=context.now(), by=CLI, actor=CLI_ACTOR,
        )  # fmt: skip
    data = s.TriggerOut().dump(detail)
    word = "resumed" if enabled else "paused"
    _echo(data, as_json, lambda t: f"{word} {t['id']}; next run {_cell(t['next_run_at'])}")


@triggers_cli.command("pause")
@click.argument("trigger_id")
@click.option("--note", default=None, help="Why it is paused (up to 500 characters).")
@JSON
@_fails_cleanly
def pause_trigger(trigger_id: str, note: str | None, as_json: bool) -> None:
    """Disable a trigger; its pending runs are cancelled."""
    if note is not None and len(note) > PAUSED_NOTE_LENGTH:
        raise click.BadParameter(f"at most {PAUSED_NOTE_LENGTH} characters", param_hint="--note")
    _set_enabled(trigger_id, False, as_json, note=note)


@triggers_cli.command("resume")
@click.argument("trigger_id")
@JSON
@_fails_cleanly
def resume_trigger(trigger_id: str, as_json: bool) -> None:
    """Enable a trigger; its next run is computed from now."""
    _set_enabled(trigger_id, True, as_json)


@triggers_cli.command("backfill")
@click.argument("trigger_id")
@click.option(
    "--start",
    required=True,
    type=click.DateTime(_TIMESTAMP_FORMATS),
    help="First instant of the range, inclusive (UTC unless an offset is given).",
)
@click.option(
    "--end",
    required=True,
    type=click.DateTime(_TIMESTAMP_FORMATS),
    help="End of the range, exclusive; not in the future.",
)
@JSON
@_fails_cleanly
def backfill_trigger(trigger_id: str, start: datetime, end: datetime, as_json: bool) -> None:
    """Create a backfill run for every fire in [start, end) that has no run yet."""
    with context.session() as session:
        result = context.services().backfill(
            session, _trigger_id(trigger_id), scope=None, start=_aware(start), end=_aware(end),
            by=CLI,
        )  # fmt: skip
    if result.runs:
        context.services().hand_off(*result.runs)
    data = {"created": result.created, "existing": result.existing}
    _echo(data, as_json, lambda d: f"backfill: {d['created']} run(s) created, "
                                   f"{d['existing']} fire(s) already had one")  # fmt: skip


def _aware(value: datetime) -> datetime:
    """A naive --start/--end is read as UTC (the CLI's timestamps are UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@click.command("status")
@with_appcontext
@JSON
@_fails_cleanly
def scheduler_status(as_json: bool) -> None:
    """Generation, deployment, last tick and its stats."""
    with context.session() as session:
        current = state.get_state(session)
    now = context.now()
    data = {
        "generation": current.generation,
        "deployment_id": current.deployment_id,
        "release_id": context.settings().release_id,
        "restarted_at": current.restarted_at,
        "last_tick_at": current.last_tick_at,
        "last_tick_age_seconds": (
            round((now - current.last_tick_at).total_seconds(), 1) if current.last_tick_at else None
        ),
        "last_tick_stats": current.last_tick_stats,
    }
    _echo(data, as_json, lambda d: "\n".join(
        f"{k:<24}{json.dumps(v, default=str) if isinstance(v, dict) else _cell(v)}"
        for k, v in d.items()
    ))  # fmt: skip


@demo_cli.command("setup")
@click.option("--port", default=5000, show_default=True, help="Port the web process serves.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local file keeping the demo key between runs (never commit it).",
)
@_fails_cleanly
def demo_setup(port: int, key_file: str | None) -> None:
    """Create (once) a demo tenant key and an every-minute echo trigger; print a curl line.

    The database keeps only the key's hash, so later runs can show the key only if
    --key-file kept it (`make run` keeps it under the git-ignored .devdata/).
    """
    now = context.now()
    with context.session() as session:
        has_key = keys.has_active(session, DEMO_TENANT)
        new = None if has_key else keys.create(
            session, tenant_id=DEMO_TENANT, principal=DEMO_PRINCIPAL, role="admin",
            name="make run demo", now=now,
        )  # fmt: skip
        trigger = triggers.find_by_name(session, DEMO_TENANT, DEMO_TRIGGER)
        if trigger is None:
            trigger = context.services().create_trigger(session, tenant_id=DEMO_TENANT, values={
                "name": DEMO_TRIGGER, "cron": "* * * * *", "timezone": "UTC",
                "action": {"type": "task", "name": "echo"}, "payload": {"hello": "world"},
            }, by=principals.Actor(DEMO_PRINCIPAL, may_act_for_anyone=True))  # fmt: skip
    saved = Path(key_file) if key_file else None
    if new is not None and saved is not None:
        saved.write_text(new.key + "\n")
        saved.chmod(0o600)
    key = new.key if new else (saved.read_text().strip() if saved and saved.exists() else None)
    click.echo(f"demo trigger {trigger.id} fires every minute (echo handler)")
    if key is None:
        key = "<your key>"
        click.echo(
            "the demo key was shown when it was created; make another with: "
            f"flask --app web keys create --tenant {DEMO_TENANT} --principal {DEMO_PRINCIPAL} "
            "--role admin"
        )
    click.echo(f"demo key (tenant {DEMO_TENANT}): {key}")
    click.echo("try:")
    click.echo(
        f"  curl -H 'Authorization: Bearer {key}' "
        f"http://localhost:{port}/api/v1/triggers/{trigger.id}/runs"
    )


def register(app: Flask, scheduler_group: AppGroup) -> None:
    app.cli.add_command(triggers_cli)
    app.cli.add_command(demo_cli)
    scheduler_group.add_command(scheduler_status)
