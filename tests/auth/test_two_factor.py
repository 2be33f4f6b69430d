"""Two-factor sign-in (PRODUCT §7, §9): enrolment, the code step, replay, recovery codes, throttling.

Codes are computed here with pyotp from the secret the page shows, as an authenticator app
would. The clock is frozen, so which 30-second step a code belongs to is known.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa

from crm import clock, twofactor
from crm.extensions import db
from crm.models import AuditEvent, Lead, RecoveryCode, ThrottleHit, User, UserSession
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in, utc

NOW = utc(2026, 3, 9, 15, 0, 10)  # 10 s into a 30-second step
SECRET_RE = re.compile(r'id="totp-secret">([A-Z2-7 ]+)</code>')
TOKEN_RE = re.compile(r'name="token" type="hidden" value="([^"]+)"')
RECOVERY_RE = re.compile(r"<li><code>([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})</code></li>")


@pytest.fixture(autouse=True)
def _frozen(frozen_clock):
    frozen_clock(NOW)


def _audits(action: str) -> int:
    return db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == action))


def _code(secret: str, steps: int = 0) -> str:
    """The code an authenticator app shows ``steps`` 30-second steps from now."""
    return pyotp.TOTP(secret).at(clock.now() + timedelta(seconds=30 * steps))


def _post(client, path: str, **data: str):
    """Post a form as a browser would, with the token of the page that shows the form."""
    form_page = "/account/security" if path.startswith("/account/security/") else path
    token = csrf_token(client.get(form_page).get_data(as_text=True))
    return client.post(path, data={**data, "csrf_token": token})


def _enrol_through_page(client, path: str = "/account/security/setup") -> tuple[str, list[str], str]:
    """Open the setup page, read the secret as a person would, confirm a code; return all."""
    page = client.get(path).get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    token = TOKEN_RE.search(page).group(1)
    response = client.post(path, data={"token": token, "code": _code(secret), "csrf_token": csrf_token(page)})
    html = response.get_data(as_text=True)
    return secret, RECOVERY_RE.findall(html), html


@pytest.fixture
def enrolled(app, make_user):
    """A front-desk user with 2FA on; returns (user, secret, recovery codes)."""

    def make(role: str = "front_desk") -> tuple[User, str, list[str]]:
        user = make_user(role)
        secret = twofactor.new_secret()
        # Enrolled five minutes ago: the code of that step is spent, the current ones are not.
        clock.set_now(NOW - timedelta(minutes=5))
        codes = twofactor.enrol(user, secret, pyotp.TOTP(secret).at(clock.now()), ip=None)
        clock.set_now(NOW)
        db.session.commit()
        return user, secret, codes

    return make


@pytest.fixture
def patient(app) -> Lead:
    lead = Lead(first_name="Maria", last_name="Delgado", source="phone", stage="new")
    db.session.add(lead)
    db.session.commit()
    return lead


# --------------------------------------------------------------------------- enrolment


def test_enrolment_shows_a_qr_code_and_the_secret_and_a_real_code_turns_it_on(client, login_as):
    user = login_as("front_desk")
    page = client.get("/account/security/setup").get_data(as_text=True)
    assert '<svg role="img" aria-label="QR code for your authenticator app"' in page
    assert "data:" not in page and "<img" not in page  # inline SVG: nothing for the CSP to allow
    assert SECRET_RE.search(page)

    secret, codes, html = _enrol_through_page(client)

    assert "Two-factor sign-in is on" in html and "shown only this once" in html
    assert len(codes) == 10 and len(set(codes)) == 10
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert user.totp_enabled is True
    assert secret not in (user.totp_secret or "")  # stored encrypted
    assert twofactor.decrypt_secret(user.totp_secret) == secret
    stored = set(db.session.scalars(sa.select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)))
    assert len(stored) == 10 and not stored & set(codes)  # hashes only
    assert _audits("2fa_enrol") == 1
    again = client.get("/account/security").get_data(as_text=True)
    assert secret not in again and not any(c in again for c in codes)  # never shown again


def test_a_wrong_enrolment_code_is_refused_and_nothing_is_saved(client, login_as):
    user = login_as("front_desk")
    page = client.get("/account/security/setup").get_data(as_text=True)
    secret = SECRET_RE.search(page).group(1).replace(" ", "")
    wrong = f"{(int(_code(secret)) + 1) % 1_000_000:06d}"

    response = client.post(
        "/account/security/setup",
        data={"token": TOKEN_RE.search(page).group(1), "code": wrong, "csrf_token": csrf_token(page)},
    )

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "That code doesn" in html and 'aria-invalid="true"' in html
    assert SECRET_RE.search(html).group(1).replace(" ", "") == secret  # same secret, scan once
    db.session.expire_all()
    user = db.session.get(User, user.id)
    assert (user.totp_enabled, user.totp_secret) == (False, None)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    assert _audits("2fa_enrol") == 0


def test_a_forged_enrolment_token_is_refused(client, login_as):
    login_as("front_desk")
    page = client.get("/account/security/setup").get_data(as_text=True)
    chosen = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    response = client.post(
        "/account/security/setup",
        data={"token": f"{chosen}.forged", "code": _code(chosen), "csrf_token": csrf_token(page)},
    )
    assert "This setup has expired" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).where(User.totp_enabled.is_(True))) == 0


# --------------------------------------------------------------------------- the code step


def test_sign_in_needs_the_code_and_no_patient_page_opens_before_it(client, enrolled, patient):
    user, secret, _ = enrolled()

    first = sign_in(client, user.email)

    assert first.status_code == 302 and first.headers["Location"] == "/login/code"
    for path in ("/leads", f"/leads/{patient.id}", "/account/security"):
        blocked = client.get(path)
        assert blocked.status_code == 302 and blocked.headers["Location"].startswith("/login"), path
    assert "Delgado" not in client.get("/login/code").get_data(as_text=True)
    assert _audits("sign_in") == 0

    done = _post(client, "/login/code", code=_code(secret))

    assert done.status_code == 302 and done.headers["Location"] == "/"
    assert "Delgado" in client.get(f"/leads/{patient.id}").get_data(as_text=True)
    assert _audits("sign_in") == 1
    live = db.session.scalars(sa.select(UserSession).where(UserSession.ended_at.is_(None))).all()
    assert [s.pending for s in live] == [None]  # the pending row ended; a new id was issued


def test_a_replayed_code_is_refused(client, enrolled):
    user, secret, _ = enrolled()
    sign_in(client, user.email)
    code = _code(secret)
    assert _post(client, "/login/code", code=code).status_code == 302
    client.delete_cookie("crm_session")

    sign_in(client, user.email)
    replay = _post(client, "/login/code", code=code)  # same step, same code

    assert replay.status_code == 200
    assert "That code doesn" in replay.get_data(as_text=True)
    assert client.get("/leads").status_code == 302
    # The next step's code (the app moves on after 30 s) is accepted.
    clock.set_now(NOW + timedelta(seconds=30))
    assert _post(client, "/login/code", code=_code(secret)).status_code == 302


@pytest.mark.parametrize(("steps", "accepted"), [(-2, False), (-1, True), (1, True), (2, False)])
def test_codes_one_step_either_side_are_accepted_and_no_further(client, enrolled, steps, accepted):
    user, secret, _ = enrolled()
    sign_in(client, user.email)
    response = _post(client, "/login/code", code=_code(secret, steps))
    assert (response.status_code == 302) is accepted
    assert (client.get("/leads").status_code == 200) is accepted


def test_a_recovery_code_works_once(client, enrolled):
    user, _, codes = enrolled()
    sign_in(client, user.email)

    used = _post(client, "/login/code", code=codes[3].lower().replace("-", " "))

    assert used.status_code == 302
    assert "recovery code; 9 left" in client.get("/leads").get_data(as_text=True)
    assert _audits("2fa_recovery_code_used") == 1
    client.delete_cookie("crm_session")
    sign_in(client, user.email)
    again = _post(client, "/login/code", code=codes[3])
    assert again.status_code == 200 and "That code doesn" in again.get_data(as_text=True)
    assert client.get("/leads").status_code == 302


def test_wrong_codes_lock_the_account_like_wrong_passwords(client, enrolled):
    user, secret, _ = enrolled()
    sign_in(client, user.email)
    for _ in range(4):
        assert "That code doesn" in _post(client, "/login/code", code="000000").get_data(as_text=True)

    fifth = _post(client, "/login/code", code="000000")

    assert fifth.status_code == 302 and fifth.headers["Location"] == "/login"
    message = "This account is locked for 15 minutes after too many failed sign-ins."
    assert message in client.get("/login").get_data(as_text=True)
    assert db.session.scalar(
        sa.select(sa.func.count()).where(ThrottleHit.scope == "login-lock", ThrottleHit.key == user.email)
    )
    # The right password and then the right code do not get in while the lock lasts.
    locked = sign_in(client, user.email)
    assert message in locked.get_data(as_text=True)
    assert client.get("/login/code").status_code == 400  # no code step without the password step
    assert client.get("/leads").status_code == 302
    # After the window, the account opens again.
    clock.set_now(NOW + timedelta(minutes=16))
    sign_in(client, user.email)
    assert _post(client, "/login/code", code=_code(secret)).status_code == 302


def test_the_code_step_without_a_password_step_asks_to_sign_in_again(client):
    response = client.get("/login/code")
    assert response.status_code == 400
    assert "Sign in again" in response.get_data(as_text=True)


def test_the_code_step_expires(client, enrolled, app):
    user, secret, _ = enrolled()
    sign_in(client, user.email)
    token = csrf_token(client.get("/login/code").get_data(as_text=True))
    clock.set_now(NOW + timedelta(minutes=app.config["SECOND_FACTOR_MINUTES"], seconds=1))
    response = client.post("/login/code", data={"code": _code(secret), "csrf_token": token})
    assert response.status_code == 400 and "Sign in again" in response.get_data(as_text=True)
    assert client.get("/leads").status_code == 302


def test_the_idle_logout_still_applies_after_a_two_factor_sign_in(client, enrolled):
    user, secret, _ = enrolled()
    sign_in(client, user.email)
    _post(client, "/login/code", code=_code(secret))
    clock.set_now(NOW + timedelta(minutes=14))
    assert client.get("/leads").status_code == 200

    clock.set_now(NOW + timedelta(minutes=14 + 16))

    idle = client.get("/leads")
    assert idle.status_code == 302 and idle.headers["Location"].startswith("/login")


# --------------------------------------------------------------------------- required roles


@pytest.fixture
def admins_need_2fa(app_config):
    app_config.REQUIRE_2FA_ROLES = ["admin"]


def test_a_required_role_is_sent_to_enrol_and_reaches_nothing_else(
    admins_need_2fa, client, make_user, patient
):
    admin = make_user("admin")

    first = sign_in(client, admin.email)

    assert first.headers["Location"] == "/login/setup"
    for path in ("/admin", "/leads", f"/leads/{patient.id}", "/login/code"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith(("/login?", "/login/setup")), path
    _, codes, html = _enrol_through_page(client, "/login/setup")
    assert len(codes) == 10 and "I saved them, continue" in html
    assert client.get("/admin").status_code == 200
    # The next sign-in asks for the code.
    client.delete_cookie("crm_session")
    assert sign_in(client, admin.email).headers["Location"] == "/login/code"


def test_roles_not_required_sign_in_with_the_password_alone(admins_need_2fa, client, make_user):
    user = make_user("manager")
    assert sign_in(client, user.email).headers["Location"] == "/"
    assert client.get("/dashboard").status_code == 200


def test_a_required_role_cannot_turn_2fa_off(admins_need_2fa, client, enrolled):
    admin, secret, _ = enrolled("admin")
    sign_in(client, admin.email)
    _post(client, "/login/code", code=_code(secret))
    clock.set_now(NOW + timedelta(seconds=30))
    response = _post(client, "/account/security/turn-off", password=DEFAULT_PASSWORD, code=_code(secret))
    assert response.status_code == 400
    assert "Your role requires two-factor sign-in" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, admin.id).totp_enabled is True


def test_an_admin_reset_by_the_cli_ends_sessions_and_forces_enrolment(
    admins_need_2fa, client, enrolled, runner
):
    admin, secret, _ = enrolled("admin")
    sign_in(client, admin.email)
    _post(client, "/login/code", code=_code(secret))
    assert client.get("/admin").status_code == 200

    result = runner.invoke(args=["user", "reset-2fa", admin.email.upper()])

    assert result.exit_code == 0, result.output
    assert "ended 1 session(s)" in result.output and "sets it up again" in result.output
    assert client.get("/admin").status_code == 302
    db.session.expire_all()
    reset = db.session.get(User, admin.id)
    assert (reset.totp_enabled, reset.totp_secret) == (False, None)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RecoveryCode)) == 0
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "2fa_reset"))
    assert event.via == "cli" and event.detail == {"user_id": admin.id}
    assert sign_in(client, admin.email).headers["Location"] == "/login/setup"


def test_the_cli_reset_names_an_unknown_account(runner, app):
    result = runner.invoke(args=["user", "reset-2fa", "nobody@clinic.test"])
    assert result.exit_code != 0 and "No account for nobody@clinic.test" in result.output


# --------------------------------------------------------------------------- account security page


def _signed_in_enrolled(client, enrolled) -> tuple[User, str, list[str]]:
    user, secret, codes = enrolled()
    sign_in(client, user.email)
    _post(client, "/login/code", code=_code(secret))
    clock.set_now(NOW + timedelta(seconds=30))  # the sign-in code is spent; the app shows the next
    return user, secret, codes


def test_turning_2fa_off_needs_the_password_and_a_code(client, enrolled):
    user, secret, _ = _signed_in_enrolled(client, enrolled)

    wrong_password = _post(
        client, "/account/security/turn-off", password="not-my-password-at-all", code=_code(secret)
    )
    assert wrong_password.status_code == 400 and "That password doesn" in wrong_password.get_data(
        as_text=True
    )
    wrong_code = _post(client, "/account/security/turn-off", password=DEFAULT_PASSWORD, code="123456")
    assert wrong_code.status_code == 400 and "That code doesn" in wrong_code.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled is True

    done = _post(client, "/account/security/turn-off", password=DEFAULT_PASSWORD, code=_code(secret))

    assert done.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled is False
    assert _audits("2fa_disable") == 1
    client.delete_cookie("crm_session")
    assert sign_in(client, user.email).headers["Location"] == "/"


def test_new_recovery_codes_replace_the_old_ones(client, enrolled):
    user, secret, old = _signed_in_enrolled(client, enrolled)

    response = _post(client, "/account/security/recovery-codes", code=_code(secret))

    new = RECOVERY_RE.findall(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert _audits("2fa_recovery_codes_regenerated") == 1
    client.delete_cookie("crm_session")
    sign_in(client, user.email)
    assert _post(client, "/login/code", code=old[0]).status_code == 200  # refused
    assert _post(client, "/login/code", code=new[0]).status_code == 302


def test_the_security_page_offers_2fa_to_every_role(client, login_as):
    login_as("surgeon")
    html = client.get("/account/security").get_data(as_text=True)
    assert "Set up two-factor sign-in" in html and 'href="/account/security/setup"' in html


def test_an_admin_resets_a_users_2fa_from_the_admin_page(client, enrolled, login_as):
    user, _, _ = enrolled("manager")
    admin = login_as("admin")
    page = client.get("/admin").get_data(as_text=True)
    assert f'aria-label="Reset two-factor sign-in of {user.name}"' in page

    response = client.post("/admin/reset-2fa", data={"user_id": user.id, "csrf_token": csrf_token(page)})

    assert response.status_code == 302
    assert f"Reset two-factor sign-in of {user.email}" in client.get("/admin").get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).totp_enabled is False
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "2fa_reset"))
    assert (event.user_id, event.via, event.detail) == (admin.id, "web", {"user_id": user.id})
    client.delete_cookie("crm_session")
    assert sign_in(client, user.email).headers["Location"] == "/"  # managers are not required here


def test_the_admin_reset_refuses_a_post_without_a_user(client, login_as):
    login_as("admin")
    token = csrf_token(client.get("/admin").get_data(as_text=True))
    response = client.post("/admin/reset-2fa", data={"user_id": "abc", "csrf_token": token})
    assert response.status_code == 400 and "Choose a staff member." in response.get_data(as_text=True)
    assert _audits("2fa_reset") == 0
