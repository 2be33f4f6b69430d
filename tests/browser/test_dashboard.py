"""A manager opens the dashboard in real headless Chromium: plotly draws under the strict CSP."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from crm import clock
from crm.extensions import db
from crm.models import Call, Lead, StageChange
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser

# Record every CSP violation the page meets, from before any of its scripts run.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@pytest.fixture
def a_months_work(app, make_user):
    """Leads through the funnel and calls over the week, as a clinic would have."""
    desk = make_user("front_desk", name="Ana López")
    now = clock.now()
    path = ["contacted", "conservative_care", "surgical_review", "consult_scheduled", "surgery_scheduled"]
    for i in range(24):
        at = now - timedelta(days=i % 20, hours=i)
        lead = Lead(
            first_name="Pat",
            last_name=f"Example{i}",
            source=("phone", "web_form", "referral")[i % 3],
            created_at=at,
            stage_entered_at=at,
            first_contact_at=at + timedelta(minutes=5 + 7 * i),
        )
        db.session.add(lead)
        db.session.flush()
        previous = "new"
        for step, stage in enumerate(path[: i % 6]):
            db.session.add(
                StageChange(
                    lead_id=lead.id,
                    from_stage=previous,
                    to_stage=stage,
                    actor_id=desk.id,
                    at=at + timedelta(hours=step + 1),
                )
            )
            previous = stage
        lead.stage = previous
    for i in range(120):
        db.session.add(
            Call(
                direction="inbound" if i % 4 else "outbound",
                status="completed" if i % 5 else "no-answer",
                missed=bool(i % 4 and not i % 5),
                started_at=now - timedelta(hours=3 * i),
                local_weekday=i % 5,
                local_hour=8 + i % 9,
                answered=bool(i % 5),
                handled_by_id=desk.id,
            )
        )
    db.session.commit()


def test_a_manager_sees_the_charts_drawn_and_changes_the_range(
    live_server, tab, make_user, a_months_work, shots_dir
):
    page = tab
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(RECORD_VIOLATIONS)
    manager = make_user("manager", name="Pat Morgan")
    email = manager.email
    db.session.commit()
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/dashboard")

    page.get_by_label("Date range", exact=True).select_option("12m")
    page.get_by_label("Source", exact=True).select_option("phone")
    page.get_by_role("button", name="Apply").click()

    expect(page).to_have_url(f"{live_server}/dashboard?range=12m&from=" + page.url.split("from=")[1])
    assert "source=phone" in page.url
    for name in ("funnel", "sources", "calls", "staff"):
        expect(page.locator(f"#plot-{name} .main-svg").first).to_be_attached()
    expect(page.locator("#plot-funnel .bars path").first).to_be_attached()
    page.get_by_text("Numbers of “Funnel: leads that ever reached each stage”").click()
    expect(page.locator("#h-funnel ~ details table")).to_be_visible()
    page.screenshot(path=str(shots_dir / "dashboard.png"), full_page=True)
    assert page.evaluate("window.__cspViolations") == []
    assert errors == []
    serious = [
        v["id"] for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")
    ]
    assert serious == []
