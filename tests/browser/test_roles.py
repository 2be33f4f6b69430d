"""Each role signs in through the real form in Chromium, sees its own navigation and home
page, and the pages pass an axe-core scan with no serious or critical violation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from crm import clock
from crm.extensions import db
from crm.models import Lead
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser

NAV = {
    "front_desk": ["Leads", "My tasks"],
    "surgeon": ["Referrals", "Dashboard"],
    "manager": ["Leads", "My tasks", "Referrals", "Dashboard"],
    "admin": ["Leads", "My tasks", "Dashboard", "Admin"],
}
HOME = {"front_desk": "/leads", "surgeon": "/referrals", "manager": "/dashboard", "admin": "/admin"}
HEADING = {"front_desk": "Leads", "surgeon": "Referral", "manager": "Dashboard", "admin": "Admin"}


def _serious(page: Page) -> list[str]:
    result = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in result.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def some_leads(app) -> None:
    """A few believable leads, so the home pages show what staff would see."""
    now = clock.now()
    rows = [
        ("Dolores", "Whitfield", "+19725550142", "web_form", "new", True, 3),
        ("Ernesto", "Salinas", "+12145550188", "phone", "contacted", False, 50),
        ("Priya", "Raman", "+14695550117", "referral", "surgical_review", False, 300),
        ("Harold", "Benton", "+19725550163", "phone", "surgical_review", True, 900),
    ]
    for first, last, phone, source, stage, urgent, minutes in rows:
        at = now - timedelta(minutes=minutes)
        db.session.add(
            Lead(
                first_name=first,
                last_name=last,
                phone=phone,
                phone_last7=phone[-7:],
                phone_last4=phone[-4:],
                source=source,
                stage=stage,
                urgent=urgent,
                created_at=at,
                stage_entered_at=at,
            )
        )
    db.session.commit()


def test_the_sign_in_page_passes_axe(live_server, tab, shots_dir):
    page = tab
    page.goto(f"{live_server}/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.screenshot(path=str(shots_dir / "login.png"), full_page=True)
    assert _serious(page) == []


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager", "admin"])
def test_each_role_signs_in_and_sees_its_own_navigation(
    live_server, tab, make_user, some_leads, shots_dir, role
):
    page = tab
    user = make_user(
        role,
        name={
            "front_desk": "Ana López",
            "surgeon": "Dr. Sam Reyes",
            "manager": "Pat Morgan",
            "admin": "Lee Chen",
        }[role],
    )
    email, name = user.email, user.name
    db.session.commit()  # release SQLite's write lock (BEGIN IMMEDIATE) before the server needs it
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server}{HOME[role]}")
    nav = page.locator("nav[aria-label=Main] a")
    assert nav.all_inner_texts() == NAV[role]
    expect(page.get_by_role("heading", level=1)).to_contain_text(HEADING[role])
    expect(page.locator(".whoami-name")).to_have_text(name)
    page.screenshot(path=str(shots_dir / f"{role}-home.png"), full_page=True)
    assert _serious(page) == []

    # Keyboard: the skip link is the first stop and takes focus to the main content.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{live_server}/login")
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def test_a_wrong_role_sees_a_plain_403_page(live_server, tab, make_user, shots_dir):
    page = tab
    user = make_user("front_desk")
    email = user.email
    db.session.commit()
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/leads")

    response = page.goto(f"{live_server}/admin")

    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not open to your role")
    expect(page.get_by_text("This page is for admin staff. Your role does not include it.")).to_be_visible()
    page.screenshot(path=str(shots_dir / "forbidden.png"), full_page=True)
    assert _serious(page) == []
