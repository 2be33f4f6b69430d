"""Sign-in, sign-out, home."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from crm import audit
from crm.auth.forms import LoginForm, LogoutForm
from crm.authz import public, roles
from crm.extensions import db
from crm.security import authenticate, client_ip, end_session, start_session

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
            start_session(result.user)
            audit.record("sign_in", user_id=result.user.id, ip=client_ip())
            db.session.commit()
            return redirect(url_for("auth.home"))
        form.form_errors.append(result.message or "")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@roles("front_desk", "surgeon", "manager", "admin")
def logout() -> Response:
    """Sign out: this session's row ends, so a copied cookie stops working too."""
    form = LogoutForm()
    if form.validate_on_submit():
        end_session()
        flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
