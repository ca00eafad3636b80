"""The console in a real browser (Chromium via Playwright) against gunicorn, worker and beat.

Each test signs in by pasting a key, as a person would, and saves a screenshot per page under
.artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.slow]

DST_CHANGE = "DST change: UTC offset -05:00 (EST) -> -04:00 (EDT)"


def sign_in(page, key: str) -> None:
    page.goto("/console/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.shot("sign-in")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Triggers")).to_be_visible()


def fill_new_trigger(page, *, name: str, cron: str, timezone: str) -> None:
    page.get_by_role("link", name="New trigger").first.click()
    expect(page.get_by_role("heading", name="New trigger")).to_be_visible()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Time zone").fill(timezone)
    page.get_by_label("Cron expression").fill(cron)


def trigger_names(stack, key: str) -> list[str]:
    response = stack.api("GET", "/triggers", key)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def test_a_person_signs_in_creates_runs_pauses_edits_and_signs_out(page, stack) -> None:
    key = stack.key("browser-acme")
    sign_in(page, key)
    page.shot("triggers-empty")

    # Create: monthly at 09:00 in New York; the live preview marks the March 2027 change.
    fill_new_trigger(page, name="monthly report", cron="0 9 1 * *", timezone="America/New_York")
    preview = page.locator("#preview")
    expect(preview).to_contain_text("At 09:00")
    expect(preview).to_contain_text(DST_CHANGE)
    page.shot("new-trigger")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.get_by_role("heading", name=re.compile("monthly report"))).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("created")
    fires = page.locator("table.fires")
    expect(fires).to_contain_text("Thu 2027-04-01 09:00 EDT")
    expect(fires.locator("tr.dst-change")).to_have_count(1)
    expect(fires.locator("tr.dst-change")).to_contain_text(DST_CHANGE)
    page.shot("trigger")

    # Run now: the run page refreshes itself until the worker has run it.
    page.get_by_role("button", name="Run now").click()
    expect(page.get_by_role("heading", name=re.compile("^Run"))).to_be_visible()
    expect(page.locator("h1")).to_contain_text("succeeded", timeout=30_000)
    page.shot("run")
    page.get_by_role("link", name=re.compile(r"^[0-9a-f-]{36}$")).click()
    runs = page.locator("#runs ~ table")
    expect(runs).to_contain_text("manual")
    expect(runs).to_contain_text("succeeded")
    expect(page.locator("svg.chart")).to_be_visible()
    page.shot("trigger-with-run")

    # Backfill three past fires (1 Sep, 1 Oct, 1 Nov): a bad range first, named by field.
    page.get_by_label("Backfill start").fill("2026-09-01T00:00:00Z")
    page.get_by_label("Backfill end").fill("2026-08-01T00:00:00Z")
    page.get_by_role("button", name="Backfill").click()
    expect(page.locator("#end-error")).to_contain_text("end: must be after start")
    page.get_by_label("Backfill end").fill("2026-11-02T00:00:00Z")
    page.get_by_role("button", name="Backfill").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Backfill: 3 runs created, 0 fires already had a run."
    )
    expect(page.locator("#runs ~ table")).to_contain_text("backfill")
    page.shot("backfilled")

    # Pause with a note, and see the note in the list filtered by state.
    page.get_by_label("Pause note (optional)").fill("Finance closes the books this week")
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("status").first).to_contain_text("paused")
    expect(page.locator("#paused-note")).to_contain_text("Finance closes the books this week")
    page.get_by_role("link", name="Triggers", exact=True).click()
    page.get_by_label("State").select_option("paused")
    page.get_by_role("button", name="Filter").click()
    row = page.get_by_role("row", name=re.compile("monthly report"))
    expect(row).to_contain_text("paused")
    expect(row).to_contain_text("Finance closes the books this week")
    page.shot("triggers-paused")

    # Edit with a bad cron: the API's field error next to the field; nothing saved.
    row.get_by_role("link", name="monthly report").click()
    page.get_by_role("link", name="Edit").click()
    page.get_by_label("Cron expression").fill("61 * * * *")
    page.get_by_role("button", name="Save changes").click()
    expect(page.locator("#cron-error")).to_contain_text("cron:")
    expect(page.get_by_label("Cron expression")).to_have_attribute("aria-invalid", "true")
    page.shot("edit-error")
    assert stack.api("GET", "/triggers", key).json()["items"][0]["cron"] == "0 9 1 * *"

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status").first).to_contain_text("You are signed out.")
    page.goto("/console/triggers")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status").first).to_contain_text("Sign in to see this page.")


def test_a_tenant_cannot_see_another_tenants_trigger(page, stack) -> None:
    owner = stack.key("browser-owner")
    created = stack.api("POST", "/triggers", owner, json={
        "name": "owner's secret trigger", "cron": "0 * * * *",
        "action": {"type": "task", "name": "echo"},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    sign_in(page, stack.key("browser-intruder"))
    expect(page.locator("main")).not_to_contain_text("owner's secret trigger")
    response = page.goto(f"/console/triggers/{created.json()['id']}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Trigger not found.")
    page.shot("not-found")
    assert page.goto(f"/console/triggers/{uuid.uuid4()}/edit").status == 404


def test_a_post_without_the_csrf_token_is_refused(page, stack) -> None:
    key = stack.key("browser-csrf")
    sign_in(page, key)
    # The browser sends the session cookie, but no token: what a forged cross-site form does.
    response = page.request.post(
        "/console/triggers/new",
        form={"name": "forged", "cron": "* * * * *", "action.type": "task",
              "action.name": "echo", "form_token": "x" * 32},
    )  # fmt: skip
    assert response.status == 400
    assert "This form expired or was not sent from the console" in response.text()
    assert trigger_names(stack, key) == []


def test_a_create_form_submitted_twice_makes_one_trigger(page, stack) -> None:
    key = stack.key("browser-twice")
    sign_in(page, key)
    fill_new_trigger(page, name="clicked twice", cron="*/5 * * * *", timezone="UTC")
    posts_before = stack.requests_to("POST", "/console/triggers/new")
    # Two clicks 300 ms apart, the second while the first is in flight: the route sends the
    # first POST to the server but holds its answer, so the page is still the form when the
    # second click sends it again (whatever the machine's speed). Both reach the server.
    held: list = []

    def hold_first_answer(route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        response = route.fetch(max_redirects=0)  # the server handles it now; 303 kept
        if not held:
            held.append(route)  # never answered: the second click replaces this navigation
            return
        route.fulfill(response=response)

    page.route("**/console/triggers/new?*", hold_first_answer)
    page.get_by_role("button", name="Create trigger").evaluate(
        "button => { button.click(); setTimeout(() => button.click(), 300); }"
    )
    expect(page.get_by_role("heading", name=re.compile("clicked twice"))).to_be_visible()
    page.unroute_all(behavior="ignoreErrors")
    assert len(held) == 1
    deadline = time.monotonic() + 10  # the log line of a request may trail the page
    while stack.requests_to("POST", "/console/triggers/new") - posts_before < 2:
        assert time.monotonic() < deadline, "the second submission never reached the server"
        time.sleep(0.2)
    assert trigger_names(stack, key) == ["clicked twice"]
    first_url = page.url
    # The back button, then the same form sent again: the first trigger, not a second one.
    page.go_back()
    expect(page.get_by_label("Name", exact=True)).to_have_value("clicked twice")
    page.get_by_role("button", name="Create trigger").click()
    expect(page.locator("main")).to_contain_text("already submitted")
    assert page.url == first_url
    page.shot("resubmitted")
    assert trigger_names(stack, key) == ["clicked twice"]


def test_the_scheduler_page_shows_the_ticks_to_an_admin(page, stack) -> None:
    sign_in(page, stack.key("browser-ops", admin=True))
    page.get_by_role("link", name="Scheduler").click()
    expect(page.get_by_role("heading", name="Scheduler")).to_be_visible()
    expect(page.locator("main")).to_contain_text("browser")  # this process's release
    expect(page.locator("main")).to_contain_text("Due backlog")
    page.shot("scheduler")


def test_the_trigger_page_shows_new_runs_without_a_reload(page, stack) -> None:
    key = stack.key("browser-live")
    created = stack.api("POST", "/triggers", key, json={
        "name": "watched", "cron": "0 0 1 1 *", "action": {"type": "task", "name": "echo"},
    })  # fmt: skip
    assert created.status_code == 201, created.text
    sign_in(page, key)
    page.goto(f"/console/triggers/{created.json()['id']}")
    expect(page.locator("#runs-section")).to_contain_text("No runs yet.")
    expect(page.locator("[data-live-note]")).to_be_visible()
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    run = stack.api("POST", f"/triggers/{created.json()['id']}/run", key)
    assert run.status_code == 202, run.text
    expect(page.locator("#runs-section table")).to_contain_text("succeeded", timeout=30_000)
    assert navigations == []  # the section was swapped in place, the page never reloaded
