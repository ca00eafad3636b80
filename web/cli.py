"""Flask CLI: `flask --app web keys create|list|revoke` and `flask --app web scheduler restart`.

A new key is printed once, alone on the last line (or as JSON with --json); only its SHA-256
hash is stored.
"""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from app import errors, keys, principals, state
from web import cli_ops, context

keys_cli = AppGroup("keys", help="Create, list and revoke API keys.")
scheduler_cli = AppGroup("scheduler", help="Scheduler operations.")


@keys_cli.command("create")
@click.option("--tenant", required=True, help="Tenant the key acts for.")
@click.option(
    "--principal",
    required=True,
    help="Whom the key belongs to in the tenant: an opaque id such as the tenant's user id "
    "(1-200 characters, no control characters).",
)
@click.option(
    "--role",
    type=click.Choice(principals.ROLES),
    default=principals.MEMBER,
    show_default=True,
    help="The key's role in its tenant: a member writes only triggers that run as its own "
    "principal; an admin writes any trigger of the tenant, for any principal.",
)
@click.option("--admin", is_flag=True, help="An operator key: sees every tenant and /admin.")
@click.option("--name", default="", help="A label to tell keys apart.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {key, prefix, tenant_id, is_admin, principal, role}.",
)
def create_key(
    tenant: str, principal: str, role: str, admin: bool, name: str, as_json: bool
) -> None:
    """Create a key and print it (it is shown only this once)."""
    try:
        keys.validate_principal(principal)
    except errors.ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--principal")
    try:
        with context.session() as session:
            new = keys.create(
                session, tenant_id=tenant, principal=principal, role=role, name=name,
                is_admin=admin, now=context.now(),
            )  # fmt: skip
    except errors.ConfigError as exc:
        raise click.BadParameter(exc.message, param_hint="--tenant")
    if as_json:
        fields = {"key": new.key, "prefix": new.prefix, "tenant_id": new.tenant_id}
        more = {"is_admin": new.is_admin, "principal": new.principal, "role": new.role}
        click.echo(json.dumps({**fields, **more}))
        return
    kind = "operator key" if new.is_admin else "key"
    click.echo(
        f"Created {kind} {new.prefix} (id {new.id}) for principal {new.principal!r}, "
        f"{new.role} of tenant {new.tenant_id}."
    )
    click.echo("Store it now: it will not be shown again.")
    click.echo(new.key)


@keys_cli.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def list_keys(tenant: str | None) -> None:
    """List keys (never the secrets): prefix, id, tenant, operator or tenant, principal, role,
    name, created, revoked."""
    with context.session() as session:
        rows = keys.list_keys(session, tenant_id=tenant)
    for row in rows:
        revoked = row.revoked_at.isoformat() if row.revoked_at else "active"
        admin = "admin" if row.is_admin else "tenant"
        click.echo(
            f"{row.prefix}\t{row.id}\t{row.tenant_id}\t{admin}\t{row.principal!r}\t{row.role}\t"
            f"{row.name or '-'}\t"
            f"{row.created_at.isoformat()}\t{revoked}"
        )


@keys_cli.command("revoke")
@click.argument("prefix_or_id")
def revoke_key(prefix_or_id: str) -> None:
    """Revoke the active key with this id or prefix (requests with it get 401 at once)."""
    try:
        with context.session() as session:
            row = keys.revoke(session, prefix_or_id, now=context.now())
    except (errors.NotFound, errors.Conflict) as exc:
        raise click.ClickException(exc.message)
    click.echo(f"Revoked {row.prefix} (id {row.id}) of tenant {row.tenant_id}.")


@scheduler_cli.command("restart")
@click.option(
    "--release",
    default=None,
    help="The release deployed (default: this process's RELEASE_ID); refused if it differs.",
)
def restart_scheduler(release: str | None) -> None:
    """What the deploy hook does, for a Procfile `release:` phase: bump the generation."""
    release_id = context.settings().release_id
    try:
        with context.session() as session:
            previous, generation = state.restart(
                session,
                release_id=release_id,
                requested_release=release or release_id,
                now=context.now(),
            )
    except errors.ReleaseMismatch as exc:
        raise click.ClickException(exc.message)
    click.echo(
        json.dumps(
            {
                "generation": generation,
                "deployment_id": release_id,
                "previous_generation": previous,
            }
        )
    )


def register(app: Flask) -> None:
    app.cli.add_command(keys_cli)
    app.cli.add_command(scheduler_cli)
    cli_ops.register(app, scheduler_cli)
