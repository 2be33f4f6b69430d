"""The admin area: staff accounts and API tokens (PRODUCT §5: admin only)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from crm import twofactor
from crm.admin.forms import ResetTwoFactorForm, TokenCreateForm, TokenRevokeForm
from crm.apitokens import TokenRefused, create_token, revoke_token
from crm.authz import roles
from crm.extensions import db
from crm.models import ApiToken, User
from crm.security import client_ip, end_all_sessions

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("")
@roles("admin")
def index() -> str:
    """List staff accounts with their roles and status."""
    users = db.session.scalars(sa.select(User).order_by(User.active.desc(), User.name)).all()
    return render_template(
        "admin/index.html",
        users=users,
        required_2fa=set(current_app.config["REQUIRE_2FA_ROLES"]),
        reset_form=ResetTwoFactorForm(formdata=None),
    )


@bp.route("/reset-2fa", methods=["POST"])
@roles("admin")
def reset_two_factor() -> Response:
    """Clear a staff member's two-factor setup (a lost phone) and end their sessions, audited."""
    form = ResetTwoFactorForm()
    if not form.validate_on_submit():
        abort(400, description="Choose a staff member.")
    user = db.get_or_404(User, form.user_id.data)
    if not user.totp_enabled:
        flash(f"{user.email} has no two-factor setup; nothing to reset.", "info")
        return redirect(url_for("admin.index"))
    twofactor.reset(user, actor_id=current_user.id, ip=client_ip())
    ended = end_all_sessions(user)
    db.session.commit()
    flash(f"Reset two-factor sign-in of {user.email}; ended {ended} session(s).", "success")
    return redirect(url_for("admin.index"))


def _create_form() -> TokenCreateForm:
    form = TokenCreateForm()
    users = db.session.scalars(sa.select(User).where(User.active.is_(True)).order_by(User.name)).all()
    form.user_id.choices = [SelectChoice(u.id, f"{u.name} ({u.email})") for u in users]
    return form


def _tokens_page(form: TokenCreateForm, status: int = 200) -> tuple[str, int]:
    tokens = db.session.scalars(
        sa.select(ApiToken)
        .options(joinedload(ApiToken.user))
        .order_by(ApiToken.revoked_at.is_not(None), ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    return render_template("admin/tokens.html", tokens=tokens, form=form), status


@bp.route("/tokens")
@roles("admin")
def tokens() -> tuple[str, int]:
    """List every API token: whose, its scope, when created and last used, revoked or not."""
    return _tokens_page(_create_form())


@bp.route("/tokens", methods=["POST"])
@roles("admin")
def create() -> tuple[str, int]:
    """Create a token and show its plaintext on this one answer (never stored, never redirected)."""
    form = _create_form()
    if not form.validate_on_submit():
        return _tokens_page(form, 422)
    user = db.get_or_404(User, form.user_id.data)
    try:
        new = create_token(user, form.name.data, scope=form.scope.data, actor_id=current_user.id, via="web")
    except TokenRefused as refused:
        db.session.rollback()
        form.name.errors = [str(refused)]
        return _tokens_page(form, 422)
    db.session.commit()
    return render_template("admin/token_created.html", token=new.row, plaintext=new.plaintext), 201


@bp.route("/tokens/revoke", methods=["POST"])
@roles("admin")
def revoke() -> Response:
    """Revoke a token: the API answers 401 to it from now on."""
    form = TokenRevokeForm()  # CSRFProtect has already refused a forged post
    if not form.validate_on_submit():
        abort(400, description="Choose a token to revoke.")
    row = db.get_or_404(ApiToken, form.token_id.data)
    revoke_token(row.user, row.name, actor_id=current_user.id, via="web")
    db.session.commit()
    flash(f"Revoked {row.user.email}'s token {row.name!r}.", "success")
    return redirect(url_for("admin.tokens"))
