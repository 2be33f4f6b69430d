"""Each role's main job done with the keyboard alone, in real headless Chromium (PRODUCT §9).

No mouse click anywhere: pages are reached by typing an address (as a bookmark would) or by
following links and submitting forms with Tab, typing and Enter. On every page the first Tab
stop is the "Skip to main content" link, and every element that takes focus along the way
shows a visible focus indicator (an outline of at least 2 px, or a ring). The tests print how
many Tab stops each job took.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from playwright.sync_api import Locator, Page, expect

from crm.extensions import db
from crm.models import Appointment, Call, Lead, LeadSearchTerm, Note
from crm.text import name_terms
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser

NOW = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # Tuesday 2 PM clinic time
MAX_STOPS = 250

FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return {what: 'nothing', shown: false};
  const s = getComputedStyle(el);
  const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
  const ring = s.boxShadow !== 'none';
  const name = (el.getAttribute('aria-label') || el.innerText || el.name || el.id || '').trim().slice(0, 40);
  const what = `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''} "${name}"`;
  return {what: `${what} (outline ${s.outlineStyle} ${s.outlineWidth}, ring ${s.boxShadow})`,
          shown: (el.matches(':focus-visible') || el.matches(':focus-within')) && (outline || ring)};
}"""


def at(base: str, path: str) -> re.Pattern[str]:
    """The address of a page; a "#main" a skip link left on the previous page may follow it.

    (A redirect keeps the fragment of the address it came from: the sign-in page's "#main".)
    """
    return re.compile(re.escape(base + path) + "(#main)?$", re.IGNORECASE)


class Keyboard:
    """Moves focus with Tab only, checking each stop's focus indicator; counts the stops."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.stops = 0

    def tab(self) -> str:
        self.page.keyboard.press("Tab")
        self.stops += 1
        focus = self.page.evaluate(FOCUS)
        assert focus["shown"], f"no visible focus indicator on {focus['what']} at {self.page.url}"
        return str(focus["what"])

    def to(self, target: Locator) -> None:
        """Tab forward until ``target`` has focus."""
        met = []
        for _ in range(MAX_STOPS):
            met.append(self.tab())
            if target.evaluate("el => el === document.activeElement"):
                return
        raise AssertionError(f"Tab never reached {target}; met {met[:40]}…")

    def enter(self) -> None:
        """Press Enter on a link or a form's button and wait for the next page (tagging a call's
        words may take a few seconds the first time)."""
        with self.page.expect_navigation():
            self.page.keyboard.press("Enter")

    def skip_to_main(self) -> None:
        """On a freshly loaded page: the first Tab stop is the skip link; Enter takes focus to main."""
        self.page.wait_for_load_state("load")
        self.tab()
        skip = self.page.get_by_role("link", name="Skip to main content")
        first = skip.evaluate("el => el === document.activeElement")
        assert first, f"the first Tab stop is not the skip link at {self.page.url}"
        self.page.keyboard.press("Enter")
        expect(self.page.locator("main")).to_be_focused()

    def choose(self, group: Locator, option: str) -> None:
        """Pick a radio button as a keyboard user does: Tab into the group, arrows to the option."""
        self.to(group.get_by_role("radio").first)
        target = group.get_by_label(option, exact=True)
        for _ in range(group.get_by_role("radio").count()):
            if target.is_checked():
                return
            self.page.keyboard.press("ArrowDown")
        expect(target).to_be_checked()

    def tick(self, box: Locator) -> None:
        """Tab to a checkbox and tick it with the space bar."""
        self.to(box)
        self.page.keyboard.press("Space")
        expect(box).to_be_checked()

    def sign_in(self, base: str, email: str) -> None:
        self.page.goto(f"{base}/login")
        self.skip_to_main()
        self.to(self.page.get_by_label("Email"))
        self.page.keyboard.type(email)
        self.to(self.page.get_by_label("Password"))
        self.page.keyboard.type(DEFAULT_PASSWORD)
        self.enter()  # Argon2 takes its time on a busy machine


@pytest.fixture
def app_config(app_config: Any) -> Any:
    # The public form refuses a send quicker than any person types (2 s, tested in tests/public).
    app_config.PUBLIC_FORM_MIN_SECONDS = 0
    return app_config


@pytest.fixture
def keys(tab: Page, frozen_clock: Any) -> Keyboard:
    frozen_clock(NOW)
    tab.set_viewport_size({"width": 1366, "height": 900})
    return Keyboard(tab)


def test_front_desk_finds_a_lead_logs_a_call_and_adds_a_note_by_keyboard(
    live_server, keys, make_user, make_lead
):
    page = keys.page
    desk = make_user("front_desk", name="Ana Delgado")
    for n in range(30):
        make_lead(first_name="Other", last_name=f"Patient{n}", phone=f"+1972555{n:04d}")
    lead = make_lead(first_name="Dolores", last_name="Whitfield", phone="+19725550142", owner_id=desk.id)
    for term in name_terms(lead.first_name, lead.last_name):  # stored as intake stores them
        db.session.add(LeadSearchTerm(lead_id=lead.id, term=term))
    lead_id, email = lead.id, desk.email
    db.session.commit()  # release SQLite's write lock (BEGIN IMMEDIATE) before the server needs it

    keys.sign_in(live_server, email)
    expect(page).to_have_url(at(live_server, "/leads"))

    # The queue: search by name.
    keys.skip_to_main()
    keys.to(page.get_by_label("Search", exact=True))
    page.keyboard.type("whitfield")
    keys.enter()
    expect(page).to_have_url(re.compile(r"/leads\?q=whitfield&"))
    expect(page.locator("#queue-rows tr")).to_have_count(1)

    # Open the lead.
    keys.skip_to_main()
    keys.to(page.get_by_role("link", name="Dolores Whitfield"))
    keys.enter()
    expect(page).to_have_url(at(live_server, f"/leads/{lead_id}"))

    # Log a call: the patient called and we spoke.
    keys.skip_to_main()
    keys.to(page.get_by_label("Direction"))
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Direction")).to_have_value("inbound")
    keys.to(page.get_by_label("Call notes"))
    page.keyboard.type("Lower back pain for 3 months, physical therapy did not help.")
    keys.to(page.get_by_role("button", name="Log call"))
    keys.enter()
    expect(page.locator(".flash")).to_have_text("Call logged.")

    # The page comes back at its activity, with the call on top; Tab goes on from there.
    expect(page).to_have_url(re.compile(rf"/leads/{lead_id}#timeline-h$"))
    expect(page.locator(".timeline li.tl-call")).to_contain_text("Inbound call")

    # Add a note.
    keys.to(page.get_by_label("Note", exact=True))
    page.keyboard.type("Asked for the MRI report from Plano Imaging.")
    keys.to(page.get_by_role("button", name="Add note"))
    keys.enter()
    note_item = page.locator(".timeline li.tl-note")
    expect(note_item).to_contain_text("Asked for the MRI report from Plano Imaging.")

    db.session.commit()
    call = db.session.scalar(sa.select(Call).where(Call.lead_id == lead_id))
    assert call is not None and call.direction == "inbound"
    note = db.session.scalar(sa.select(Note).where(Note.lead_id == lead_id))
    assert note is not None and note.body == "Asked for the MRI report from Plano Imaging."
    db.session.commit()
    print(f"\nfront desk: search, open, log a call, add a note in {keys.stops} Tab stops")


def test_surgeon_accepts_a_referral_with_a_consult_by_keyboard(live_server, keys, make_user, make_lead):
    page = keys.page
    surgeon = make_user("surgeon", name="Dr. Michael Chen")
    make_lead(first_name="Harold", last_name="Benton", stage="surgical_review", stage_entered_at=NOW)
    lead = make_lead(
        first_name="Priya",
        last_name="Raman",
        stage="surgical_review",
        stage_entered_at=NOW,
        surgeon_id=surgeon.id,
        imaging_type="MRI",
        imaging_finding="L4-L5 herniated disc",
        tags=["condition:herniated_disc"],
    )
    lead_id, email = lead.id, surgeon.email
    db.session.commit()

    keys.sign_in(live_server, email)
    expect(page).to_have_url(at(live_server, "/referrals"))

    # The packet is on the queue; the decision is made there.
    keys.skip_to_main()
    packet = page.locator(f"#lead-{lead_id}")
    keys.to(packet.get_by_label("Consult date and time"))
    # Chromium's date-time box: month, day, year, hour, minute, AM/PM, typed in turn (a year may
    # have six digits, so the right arrow moves on from it).
    page.keyboard.type("03172026")
    page.keyboard.press("ArrowRight")
    page.keyboard.type("0930AM")
    expect(packet.get_by_label("Consult date and time")).to_have_value("2026-03-17T09:30")
    keys.to(packet.get_by_label("Note for the front desk (optional)"))
    page.keyboard.type("Bring the MRI disc.")
    keys.to(packet.get_by_role("button", name="Accept and book"))
    keys.enter()
    expect(page.locator(".flash")).to_contain_text("Accepted: consult booked — Priya Raman.")

    db.session.commit()
    assert db.session.get(Lead, lead_id).stage == "consult_scheduled"
    consult = db.session.scalar(sa.select(Appointment).where(Appointment.lead_id == lead_id))
    assert consult is not None and consult.kind == "consult"
    assert consult.starts_at == datetime(2026, 3, 17, 14, 30, tzinfo=UTC)  # 9:30 AM Central (CDT)
    db.session.commit()
    print(f"\nsurgeon: accept a referral with a consult in {keys.stops} Tab stops")


def test_manager_changes_the_dashboard_range_by_keyboard(live_server, keys, make_user):
    page = keys.page
    email = make_user("manager", name="Karen Whitfield").email
    db.session.commit()

    keys.sign_in(live_server, email)
    expect(page).to_have_url(at(live_server, "/dashboard"))

    keys.skip_to_main()
    keys.to(page.get_by_label("Date range"))
    expect(page.get_by_label("Date range")).to_have_value("30d")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Date range")).to_have_value("12m")
    keys.to(page.get_by_role("button", name="Apply"))
    keys.enter()

    expect(page).to_have_url(re.compile(r"/dashboard\?range=12m&"))
    expect(page.get_by_label("Date range")).to_have_value("12m")
    expect(page.locator(".dash-filters")).to_contain_text("Mar 11, 2025 – Mar 10, 2026")
    print(f"\nmanager: change the dashboard range in {keys.stops} Tab stops")


def test_a_patient_sends_the_public_form_by_keyboard(live_server, keys):
    page = keys.page
    page.goto(f"{live_server}/request-appointment")
    keys.skip_to_main()
    for label, text in (
        ("First name", "Maria"),
        ("Last name", "Gonzalez"),
        ("Phone", "(469) 231-4567"),
        ("Email", "maria.gonzalez@example.com"),
        ("Describe your symptoms", "My lower back locks up and the pain shoots down my left leg."),
    ):
        keys.to(page.get_by_label(label, exact=True))
        page.keyboard.type(text)
    keys.tick(page.get_by_role("group", name="Where does it hurt?").get_by_label("Lower back"))
    keys.tick(page.get_by_role("group", name="Which side?").get_by_label("Left"))
    keys.choose(page.get_by_role("group", name="Have you tried physical therapy?"), "Yes, it did not help")
    keys.choose(page.get_by_role("group", name=re.compile("trouble controlling your bladder")), "No")
    keys.choose(page.get_by_role("group", name="Any new weakness in a leg or foot?"), "No")
    keys.to(page.get_by_label("Best time to call"))
    page.keyboard.type("Morning")
    expect(page.get_by_label("Best time to call")).to_have_value(re.compile("morning", re.IGNORECASE))
    keys.tick(page.get_by_label("Phone calls"))
    keys.to(page.get_by_role("button", name="Send my request"))
    keys.enter()

    expect(page.get_by_role("heading", name="Thank you, we have your request")).to_be_visible()
    lead = db.session.scalar(sa.select(Lead).where(Lead.last_name == "Gonzalez"))
    assert lead is not None and lead.phone == "+14692314567"
    codes = {t.code for t in lead.tags}
    assert {"region:lower", "side:left", "history:failed_pt"} <= codes
    db.session.commit()
    print(f"\npatient: the appointment request form in {keys.stops} Tab stops")
