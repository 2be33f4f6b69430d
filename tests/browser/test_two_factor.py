"""Two-factor sign-in in real Chromium: an admin whose role requires it enrols from the QR page,
then signs in again with a code, the way a person with an authenticator app would.

Each page passes axe (no serious or critical finding) with no CSP violation: the QR code is
inline SVG. Screenshots (1366×900) go to ``shots/2fa-*.png``.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from playwright.sync_api import Page, expect

from crm.extensions import db
from tests.browser.test_accessibility import axe_findings, watch
from tests.conftest import DEFAULT_PASSWORD

pytestmark = pytest.mark.browser


@pytest.fixture
def admins_need_2fa(app_config):
    app_config.REQUIRE_2FA_ROLES = ["admin"]


def _password_step(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(DEFAULT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def _check(page: Page, seen) -> None:
    serious, _ = axe_findings(page)
    page.wait_for_timeout(50)  # let a late CSP report arrive
    assert serious == [] and seen.csp == [] and seen.console == [], (serious, seen.csp, seen.console)


def test_an_admin_enrols_by_qr_page_then_signs_in_with_a_code(
    admins_need_2fa, live_server, tab, make_user, shots_dir
):
    page = tab
    page.set_viewport_size({"width": 1366, "height": 900})
    seen = watch(page)
    email = make_user("admin", name="Alicia Moreno").email
    db.session.commit()  # end the test's read: on SQLite it would block the server's writes

    _password_step(page, live_server, email)

    # Enrolment: the QR code (inline SVG) and the key in text; nothing else is open yet.
    expect(page).to_have_url(f"{live_server}/login/setup")
    expect(page.get_by_role("heading", name="Set up two-factor sign-in")).to_be_visible()
    expect(page.get_by_role("img", name="QR code for your authenticator app")).to_be_visible()
    _check(page, seen)
    page.screenshot(path=str(shots_dir / "2fa-enrol.png"))
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    totp = pyotp.TOTP(secret)

    page.get_by_label("6-digit code from your app").fill("000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.locator(".field-error")).to_contain_text("That code doesn't match")
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret  # same key: no rescan

    page.get_by_label("6-digit code from your app").fill(totp.now())
    page.get_by_role("button", name="Turn on two-factor sign-in").click()
    expect(page.get_by_role("heading", name="Two-factor sign-in is on")).to_be_visible()
    expect(page.locator(".recovery-codes li")).to_have_count(10)
    _check(page, seen)
    page.screenshot(path=str(shots_dir / "2fa-recovery-codes.png"))
    page.get_by_role("link", name="I saved them, continue").click()
    expect(page).to_have_url(f"{live_server}/admin")
    page.get_by_role("button", name="Sign out").click()

    # The next sign-in asks for the code after the password.
    _password_step(page, live_server, email)
    expect(page).to_have_url(f"{live_server}/login/code")
    expect(page.get_by_role("heading", name="Enter your sign-in code")).to_be_visible()
    _check(page, seen)
    page.screenshot(path=str(shots_dir / "2fa-code.png"))
    page.goto(f"{live_server}/admin")  # not signed in yet: sent to sign in
    expect(page).to_have_url(f"{live_server}/login?next=%2Fadmin")

    _password_step(page, live_server, email)
    page.get_by_label("Code").fill("123456" if totp.now() != "123456" else "654321")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".field-error")).to_contain_text("That code doesn't match")
    page.screenshot(path=str(shots_dir / "2fa-code-wrong.png"))
    # The enrolment code's time step is spent; the app's next code (30 s on) is inside the window.
    page.get_by_label("Code").fill(totp.at(time.time() + 30))
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/admin")
    expect(page.locator(".whoami-name")).to_have_text("Alicia Moreno")

    page.locator(".whoami-name").click()
    expect(page.get_by_role("heading", name="Account security")).to_be_visible()
    expect(page.get_by_text("Recovery codes left:")).to_be_visible()
    _check(page, seen)
    page.screenshot(path=str(shots_dir / "2fa-account-security.png"))
