"""A patient fills in the appointment form on a phone, in real headless Chromium.

The app runs on the test's own database in a werkzeug server thread; the front desk then
signs in through the real sign-in form and finds the lead with its tags.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import make_server

from crm.extensions import db
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
SHOTS = Path(__file__).resolve().parents[2] / "shots"
BLADDER = (
    "Since this started, any new trouble controlling your bladder or bowels, or numbness between your legs?"
)
WEAKNESS = "Any new weakness in a leg or foot?"


@pytest.fixture
def app_config(app_config: Any) -> Any:
    # A script fills the form in well under the two seconds no person could; that check is
    # covered by tests/public. Everything else (token, Origin, honeypot) runs as in production.
    app_config.PUBLIC_FORM_MIN_SECONDS = 0
    return app_config


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """Serve the test's app (and its database) on a free local port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@pytest.fixture
def chromium(chromium_browser: Browser) -> Browser:
    """The suite's one Chromium: a second sync Playwright in the same process is refused."""
    return chromium_browser


@pytest.fixture
def phone_page(chromium: Browser) -> Iterator[Page]:
    """A phone-sized page (an iPhone 12–15 viewport), with touch."""
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def no_serious_violations(page: Page) -> None:
    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert not serious, results.generate_report()


def fill_as_a_patient(page: Page, *, bladder: str = "No", weakness: str = "No") -> None:
    """Fill the form by its visible labels, as a person would."""
    page.get_by_label("First name").fill("Maria")
    page.get_by_label("Last name").fill("Gonzalez")
    page.get_by_label("Phone", exact=True).fill("(469) 231-4567")
    page.get_by_label("Email", exact=True).fill("maria.gonzalez@example.com")
    page.get_by_label("Describe your symptoms").fill(
        "My lower back locks up every morning and the pain shoots down my left leg. "
        "I did 6 weeks of PT and I'm no better."
    )
    page.get_by_role("group", name="Where does it hurt?").get_by_label("Lower back").check()
    page.get_by_role("group", name="Which side?").get_by_label("Left").check()
    page.get_by_role("group", name="Have you tried physical therapy?").get_by_label(
        "Yes, it did not help"
    ).check()
    page.get_by_role("group", name=BLADDER).get_by_label(bladder, exact=True).check()
    page.get_by_role("group", name=WEAKNESS).get_by_label(weakness, exact=True).check()
    page.get_by_label("Best time to call").select_option(label="Morning (8 am – noon)")
    page.get_by_label("Preferred language").select_option(label="Spanish (Español)")
    page.get_by_label("Phone calls").check()
    page.get_by_label("Text messages (SMS)").check()


def sign_in_as_front_desk(page: Page, live_server: str, make_user: Any) -> None:
    """Create a front-desk user and sign in through the real sign-in form."""
    email = make_user("front_desk").email
    db.session.commit()  # reading the email opened a transaction: SQLite would lock the server out
    page.goto(f"{live_server}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_the_form_is_labelled_accessible_and_fits_a_phone(live_server, phone_page):
    page = phone_page
    page.goto(
        f"{live_server}/request-appointment?landing_page=https://www.advancedspinecenter.example/back-spasms"
    )
    expect(page.get_by_role("heading", name="Request an appointment", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="Call (972) 499-5457")).to_be_visible()
    no_serious_violations(page)
    # Nothing is wider than the phone (no sideways scrolling).
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    # The honeypot is out of sight.
    assert not page.locator("#website").is_visible() or page.locator("#website").bounding_box()["x"] < 0
    fill_as_a_patient(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "public-form-mobile.png"), full_page=True)


def test_a_bad_answer_is_explained_beside_the_field(live_server, phone_page):
    page = phone_page
    page.goto(f"{live_server}/request-appointment")
    fill_as_a_patient(page)
    page.get_by_label("Phone", exact=True).fill("12")
    page.get_by_role("button", name="Send my request").click()
    expect(page.get_by_text("We couldn't read this phone number.")).to_be_visible()
    expect(page.get_by_label("Phone", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("First name")).to_have_value("Maria")
    expect(page.get_by_role("group", name="Which side?").get_by_label("Left")).to_be_checked()
    no_serious_violations(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "public-form-errors.png"), full_page=True)


def test_a_patient_sends_the_form_and_the_front_desk_finds_the_tagged_lead(
    live_server, phone_page, make_user
):
    page = phone_page
    page.goto(f"{live_server}/request-appointment?utm_source=facebook&utm_campaign=back-spasms")
    fill_as_a_patient(page)
    page.get_by_role("button", name="Send my request").click()

    expect(page.get_by_role("heading", name="Thank you, we have your request")).to_be_visible()
    expect(page.get_by_text("We call you within one business day")).to_be_visible()
    expect(page.locator("main").get_by_role("link", name="(972) 499-5457")).to_have_attribute(
        "href", "tel:+19724995457"
    )
    expect(page.get_by_role("alert")).to_have_count(0)
    no_serious_violations(page)

    sign_in_as_front_desk(page, live_server, make_user)
    page.goto(f"{live_server}/leads")
    row = page.get_by_role("row").filter(has_text="Maria Gonzalez")
    expect(row).to_have_count(1)
    for code in ("region:lower", "side:left", "history:failed_pt"):
        expect(row.locator(f'.tag[title="{code}"]')).to_have_count(1)
    expect(row.get_by_text("Urgent")).to_have_count(0)


def test_a_red_flag_yes_puts_the_emergency_advice_first(live_server, phone_page, make_user):
    page = phone_page
    page.goto(f"{live_server}/request-appointment")
    fill_as_a_patient(page, weakness="Yes")
    page.get_by_role("button", name="Send my request").click()

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Please go to an emergency room or call 911 now.")
    # First thing on the page: above the clinic's header and the thank-you.
    first = page.locator("body > *").first
    expect(first).to_contain_text("call 911 now")
    assert alert.bounding_box()["y"] < page.locator(".clinic-head").bounding_box()["y"]
    assert (
        alert.bounding_box()["y"] + alert.bounding_box()["height"] <= PHONE["height"]
    )  # seen without scrolling
    expect(page.get_by_role("link", name="Call 911")).to_have_attribute("href", "tel:911")
    no_serious_violations(page)
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "public-thanks-urgent.png"), full_page=True)

    sign_in_as_front_desk(page, live_server, make_user)
    page.goto(f"{live_server}/leads")
    row = page.get_by_role("row").filter(has_text="Maria Gonzalez")
    expect(row.get_by_text("Urgent")).to_be_visible()
