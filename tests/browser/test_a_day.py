"""A Monday morning in real Chromium: the front desk works the queue, a surgeon decides."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect

from crm import clock
from crm.extensions import db
from crm.models import Appointment, Lead
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser


def sign_in(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_the_front_desk_refers_a_failed_pt_patient_and_the_surgeon_accepts(
    live_server, tab, make_user, make_lead, shots_dir
):
    desk = make_user("front_desk", name="Ana López")
    surgeon = make_user("surgeon", name="Dr. Sam Reyes")
    now = clock.now()
    urgent = make_lead(first_name="Dolores", last_name="Whitfield", urgent=True, tags=["red_flag:weakness"])
    overdue = make_lead(
        first_name="Ernesto", last_name="Salinas", first_contact_due_at=now.replace(year=now.year - 1)
    )
    failed_pt = make_lead(
        first_name="Maria",
        last_name="Gomez",
        stage="evaluation",
        owner_id=desk.id,
        tags=["history:failed_pt", "region:lower"],
    )
    ids = (urgent.id, overdue.id, failed_pt.id)
    desk_email, surgeon_email = desk.email, surgeon.email
    db.session.commit()  # release SQLite's write lock before the server needs it

    page = tab
    sign_in(page, live_server, desk_email)
    rows = page.locator("table tbody tr a[href^='/leads/']")
    # The urgent patient comes first, then the one overdue for first contact.
    expect(rows.nth(0)).to_have_text("Dolores Whitfield")
    expect(rows.nth(1)).to_have_text("Ernesto Salinas")
    page.screenshot(path=str(shots_dir / "day-1-queue.png"), full_page=True)

    page.get_by_role("link", name="Maria Gomez").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Maria Gomez")
    page.get_by_label("Move to").select_option("surgical_review")
    page.get_by_role("button", name="Move", exact=True).click()
    expect(page.locator(".stage-box h2")).to_have_text("Stage: Surgical review")
    page.screenshot(path=str(shots_dir / "day-2-lead.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_server, surgeon_email)
    expect(page).to_have_url(f"{live_server}/referrals")
    packet = page.locator(f"article#lead-{ids[2]}")
    expect(packet).to_contain_text("Maria Gomez")
    packet.get_by_label("Consult date and time").fill("2030-01-07T10:30")
    packet.get_by_role("button", name="Accept and book").click()
    expect(page.locator(f"article#lead-{ids[2]}")).to_have_count(0)
    page.screenshot(path=str(shots_dir / "day-3-referrals.png"), full_page=True)
    page.get_by_role("button", name="Sign out").click()

    sign_in(page, live_server, desk_email)
    expect(page.get_by_text("For you (1 unread)")).to_be_visible()
    expect(page.locator(".notifications, [aria-labelledby=notif-h]").first).to_contain_text("Dr. Sam Reyes")

    db.session.expire_all()
    lead = db.session.get(Lead, ids[2])
    assert (lead.stage, lead.surgeon_id) == ("consult_scheduled", surgeon.id)
    consult = db.session.scalars(sa.select(Appointment).where(Appointment.lead_id == ids[2])).one()
    assert consult.kind == "consult"
