"""Account security: every staff member may set up, renew or turn off two-factor sign-in."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from crm import twofactor
from crm.auth.forms import DisableTwoFactorForm, EnrolForm, RegenerateCodesForm
from crm.auth.routes import bp, render_enrolment
from crm.authz import roles
from crm.extensions import db
from crm.passwords import verify_password
from crm.security import SignInResult, check_second_factor, client_ip, end_all_sessions, end_session

STAFF = ("front_desk", "surgeon", "manager", "admin")


def _security_page(
    regenerate: RegenerateCodesForm | None = None,
    disable: DisableTwoFactorForm | None = None,
    status: int = 200,
) -> tuple[str, int]:
    return (
        render_template(
            "auth/security.html",
            regenerate=regenerate or RegenerateCodesForm(formdata=None),
            disable=disable or DisableTwoFactorForm(formdata=None),
            required=twofactor.required_for(current_user),
            codes_left=twofactor.unused_recovery_codes(current_user) if current_user.totp_enabled else 0,
        ),
        status,
    )


def _locked_out(result: SignInResult) -> Response:
    """Too many wrong codes: the account lock applies here too, and this session ends."""
    end_all_sessions(current_user)
    db.session.commit()
    end_session()
    flash(result.message or "", "error")
    return redirect(url_for("auth.login"))


@bp.route("/account/security")
@roles(*STAFF)
def security() -> tuple[str, int]:
    """Show whether two-factor sign-in is on, with the ways to set it up, renew or turn it off."""
    return _security_page()


@bp.route("/account/security/setup", methods=["GET", "POST"])
@roles(*STAFF)
def enrol() -> Response | str:
    """Set up two-factor sign-in: scan the QR code (or type the secret), then confirm a code."""
    if current_user.totp_enabled:
        flash("Two-factor sign-in is already on. Turn it off first to move it to another device.", "info")
        return redirect(url_for("auth.security"))
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            secret = twofactor.secret_from_token(current_user, form.token.data or "")
            codes = twofactor.enrol(current_user, secret, form.code.data or "", ip=client_ip())
        except twofactor.TwoFactorRefused as refusal:
            db.session.rollback()
            form.code.errors = [str(refusal)]
        else:
            db.session.commit()
            return render_template("auth/recovery_codes.html", codes=codes, first_time=True)
    return render_enrolment(form, current_user, required=False)


@bp.route("/account/security/recovery-codes", methods=["POST"])
@roles(*STAFF)
def regenerate_codes() -> Response | str | tuple[str, int]:
    """Make 10 new recovery codes; the old ones stop working."""
    form = RegenerateCodesForm()
    if not form.validate_on_submit():
        return _security_page(regenerate=form, status=400)
    if not current_user.totp_enabled:
        flash("Two-factor sign-in is not on for your account.", "error")
        return redirect(url_for("auth.security"))
    result = check_second_factor(current_user, form.code.data or "", client_ip())
    if result.locked:
        return _locked_out(result)
    if result.user is None:
        form.code.errors = [result.message or ""]
        return _security_page(regenerate=form, status=400)
    codes = twofactor.regenerate_recovery_codes(current_user, ip=client_ip())
    db.session.commit()
    return render_template("auth/recovery_codes.html", codes=codes, first_time=False)


@bp.route("/account/security/turn-off", methods=["POST"])
@roles(*STAFF)
def disable() -> Response | tuple[str, int]:
    """Turn two-factor sign-in off, with the password and a current code."""
    form = DisableTwoFactorForm()
    if not form.validate_on_submit():
        return _security_page(disable=form, status=400)
    if not current_user.totp_enabled:
        flash("Two-factor sign-in is already off.", "info")
        return redirect(url_for("auth.security"))
    if twofactor.required_for(current_user):
        form.form_errors.append(twofactor.REQUIRED_MESSAGE)
        return _security_page(disable=form, status=400)
    if not verify_password(current_user.password_hash, form.password.data or ""):
        form.password.errors = ["That password doesn't match. Nothing was changed."]
        return _security_page(disable=form, status=400)
    result = check_second_factor(current_user, form.code.data or "", client_ip())
    if result.locked:
        return _locked_out(result)
    if result.user is None:
        form.code.errors = [result.message or ""]
        return _security_page(disable=form, status=400)
    twofactor.disable(current_user, ip=client_ip())
    db.session.commit()
    flash("Two-factor sign-in is off. You sign in with your password alone.", "info")
    return redirect(url_for("auth.security"))
