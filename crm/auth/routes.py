"""Sign-in (password, then the second factor when due), sign-out, home."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from crm import audit, twofactor
from crm.auth.forms import CodeForm, EnrolForm, LoginForm, LogoutForm
from crm.authz import public, roles
from crm.extensions import db
from crm.models import User
from crm.security import (
    authenticate,
    check_second_factor,
    client_ip,
    complete_sign_in,
    end_session,
    pending_sign_in,
    start_session,
)

bp = Blueprint("auth", __name__)

HOME_BY_ROLE = {
    "front_desk": "leads.queue",
    "surgeon": "referrals.queue",
    "manager": "dashboard.index",
    "admin": "admin.index",
}


@bp.route("/")
@public
def home() -> Response:
    """Send a signed-in user to their role's home page, anyone else to sign in."""
    if not current_user.is_authenticated:
        return redirect(url_for("auth.login"))
    return redirect(url_for(HOME_BY_ROLE[current_user.role]))


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response | str:
    """Sign in with email and password, then go home (never to an address from the query)."""
    if current_user.is_authenticated:
        return redirect(url_for("auth.home"))
    form = LoginForm()
    if form.validate_on_submit():
        result = authenticate(form.email.data or "", form.password.data or "", client_ip())
        if result.user is not None:
            step = twofactor.pending_step(result.user)
            start_session(result.user, pending=step)
            if step is not None:  # not signed in yet: the second factor (or its setup) is due
                return redirect(url_for("auth.enrol_required" if step == "enrol" else "auth.two_factor"))
            audit.record("sign_in", user_id=result.user.id, ip=client_ip())
            db.session.commit()
            return redirect(url_for("auth.home"))
        form.form_errors.append(result.message or "")
    return render_template("auth/login.html", form=form)


def _no_pending_sign_in() -> tuple[str, int]:
    """Answer a code or setup page reached without a password step (or after it expired)."""
    return render_template("auth/start_over.html"), 400


@bp.route("/login/code", methods=["GET", "POST"])
@public
def two_factor() -> Response | str | tuple[str, int]:
    """Second sign-in step: a code from the app (or a recovery code) completes the sign-in."""
    if current_user.is_authenticated:
        return redirect(url_for("auth.home"))
    pending = pending_sign_in()
    if pending is None:
        return _no_pending_sign_in()
    user_session, user = pending
    if user_session.pending == "enrol":
        return redirect(url_for("auth.enrol_required"))
    form = CodeForm()
    if form.validate_on_submit():
        result = check_second_factor(user, form.code.data or "", client_ip())
        if result.locked:
            end_session()
            flash(result.message or "", "error")
            return redirect(url_for("auth.login"))
        if result.user is not None:
            complete_sign_in(user)
            audit.record("sign_in", user_id=user.id, ip=client_ip(), detail={"second_factor": True})
            db.session.commit()
            if result.message:  # a recovery code was used: say how many are left
                flash(result.message, "info")
            return redirect(url_for("auth.home"))
        form.code.errors = [result.message or ""]
    return render_template("auth/code.html", form=form)


@bp.route("/login/setup", methods=["GET", "POST"])
@public
def enrol_required() -> Response | str | tuple[str, int]:
    """Set up two-factor sign-in before going further: the user's role requires it."""
    if current_user.is_authenticated:
        return redirect(url_for("auth.home"))
    pending = pending_sign_in()
    if pending is None:
        return _no_pending_sign_in()
    user_session, user = pending
    if user_session.pending != "enrol":
        return redirect(url_for("auth.two_factor"))
    form = EnrolForm()
    if form.validate_on_submit():
        try:
            secret = twofactor.secret_from_token(user, form.token.data or "")
            codes = twofactor.enrol(user, secret, form.code.data or "", ip=client_ip())
        except twofactor.TwoFactorRefused as refusal:
            db.session.rollback()
            form.code.errors = [str(refusal)]
        else:
            complete_sign_in(user)
            audit.record("sign_in", user_id=user.id, ip=client_ip(), detail={"second_factor": True})
            db.session.commit()
            return render_template("auth/recovery_codes.html", codes=codes, first_time=True)
    return render_enrolment(form, user, required=True)


def render_enrolment(form: EnrolForm, user: User, *, required: bool) -> str:
    """Show the QR code and the secret; keep the same secret when a code was wrong."""
    secret = None
    if form.token.data and not form.token.errors:
        try:
            secret = twofactor.secret_from_token(user, form.token.data)
        except twofactor.TwoFactorRefused:
            secret = None
    if secret is None:
        secret = twofactor.new_secret()
        form.token.data = twofactor.enrolment_token(user, secret)
    form.code.data = ""
    return render_template(
        "auth/enrol.html",
        form=form,
        required=required,
        secret=twofactor.grouped(secret),
        qr_svg=twofactor.qr_svg(twofactor.provisioning_uri(user, secret)),
    )


@bp.route("/logout", methods=["POST"])
@roles("front_desk", "surgeon", "manager", "admin")
def logout() -> Response:
    """Sign out: this session's row ends, so a copied cookie stops working too."""
    form = LogoutForm()
    if form.validate_on_submit():
        end_session()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
