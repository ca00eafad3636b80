"""`flask --app web triggers ...`, `scheduler status` and `demo setup`."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import text

from app import state


def test_triggers_list_prints_a_table_and_json(runner, acme, globex):
    mine = acme.create(name="nightly")
    theirs = globex.create(name="hourly", cron="0 * * * *")

    table = runner.invoke(args=["triggers", "list"])
    assert table.exit_code == 0, table.output
    header, *rows = table.output.strip().splitlines()
    assert header.split()[:3] == ["id", "tenant", "name"]
    assert {row.split()[0] for row in rows} == {mine["id"], theirs["id"]}

    only = runner.invoke(args=["triggers", "list", "--tenant", "globex", "--json"])
    assert [t["id"] for t in json.loads(only.output)] == [theirs["id"]]


def test_triggers_show_pause_resume_and_run(runner, acme, engine, published):
    trigger = acme.create()

    shown = json.loads(runner.invoke(args=["triggers", "show", trigger["id"], "--json"]).output)
    assert shown["schedule_description"] and shown["next_run_at"]

    paused = runner.invoke(args=["triggers", "pause", trigger["id"], "--json"])
    assert paused.exit_code == 0, paused.output
    assert (json.loads(paused.output)["enabled"], json.loads(paused.output)["next_run_at"]) == (
        False,
        None,
    )
    refused = runner.invoke(args=["triggers", "run", trigger["id"]])
    assert refused.exit_code == 1
    assert refused.output.strip() == "Error: trigger is disabled"

    resumed = json.loads(runner.invoke(args=["triggers", "resume", trigger["id"], "--json"]).output)
    assert resumed["enabled"] is True and resumed["next_run_at"] is not None

    ran = runner.invoke(args=["triggers", "run", trigger["id"], "--json"])
    assert ran.exit_code == 0, ran.output
    run = json.loads(ran.output)
    assert (run["kind"], run["trigger_id"]) == ("manual", trigger["id"])
    assert published() == [uuid.UUID(run["id"])]


def test_an_unknown_or_malformed_trigger_id_is_one_error_line(runner):
    missing = runner.invoke(args=["triggers", "show", str(uuid.uuid4())])
    assert (missing.exit_code, missing.output.strip()) == (1, "Error: trigger not found")
    malformed = runner.invoke(args=["triggers", "pause", "nope"])
    assert malformed.exit_code == 2
    assert "is not a trigger id" in malformed.output


def test_scheduler_status_shows_generation_and_last_tick(runner, engine, settings):
    with engine.begin() as conn:
        state.restart(conn, release_id="v7", now=datetime(2026, 3, 1, tzinfo=UTC))
    result = runner.invoke(args=["scheduler", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["generation"], status["deployment_id"]) == (1, "v7")
    assert status["release_id"] == settings.release_id
    assert status["last_tick_at"] is None


def test_demo_setup_creates_a_key_and_trigger_once_and_reuses_them(runner, engine, tmp_path):
    key_file = tmp_path / "demo-key"
    first = runner.invoke(args=["demo", "setup", "--port", "5055", "--key-file", str(key_file)])
    second = runner.invoke(args=["demo", "setup", "--key-file", str(key_file)])

    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    key = key_file.read_text().strip()
    assert f"Bearer {key}" in first.output and f"Bearer {key}" in second.output
    assert "localhost:5055" in first.output
    with engine.connect() as conn:
        counts = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM api_keys WHERE tenant_id = 'demo'), "
                "(SELECT count(*) FROM triggers WHERE tenant_id = 'demo' AND cron = '* * * * *' "
                "AND next_run_at IS NOT NULL)"
            )
        ).one()
    assert tuple(counts) == (1, 1)
