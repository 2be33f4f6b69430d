"""The admin area: staff accounts, API tokens, the audit log (PRODUCT §5: admin only)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from crm import twofactor
from crm.accounts import AccountRefused, create_user, deactivate_user, reset_password
from crm.admin.forms import (
    ResetTwoFactorForm,
    TokenCreateForm,
    TokenRevokeForm,
    UserCreateForm,
    UserDeactivateForm,
    UserPasswordForm,
)
from crm.apitokens import TokenRefused, create_token, revoke_token
from crm.authz import roles
from crm.extensions import db
from crm.models import ROLE_LABELS, ApiToken, Lead, User
from crm.passwords import WeakPassword
from crm.querystring import whole_number
from crm.security import client_ip, end_all_sessions

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("")
@roles("admin")
def index() -> str | tuple[str, int]:
    """List staff accounts with their roles and status; add, deactivate, set a new password."""
    return _staff_page()


def _staff_page(
    create_form: UserCreateForm | None = None, refusal: tuple[int, str] | None = None, status: int = 200
) -> tuple[str, int]:
    """Render the staff page; a refused form comes back as it was filled in, with its reason."""
    users = db.session.scalars(sa.select(User).order_by(User.active.desc(), User.name)).all()
    takers = [u for u in users if u.active and u.role in ("front_desk", "manager")]
    open_leads = dict(
        db.session.execute(
            sa.select(Lead.owner_id, sa.func.count())
            .where(Lead.in_queue.is_(True), Lead.owner_id.is_not(None))
            .group_by(Lead.owner_id)
        ).all()
    )
    page = render_template(
        "admin/index.html",
        users=users,
        takers=takers,
        open_leads=open_leads,
        required_2fa=set(current_app.config["REQUIRE_2FA_ROLES"]),
        reset_form=ResetTwoFactorForm(formdata=None),
        create_form=create_form or UserCreateForm(formdata=None),
        refusal=refusal,
    )
    return page, status


@bp.route("/users", methods=["POST"])
@roles("admin")
def create_staff() -> Response | tuple[str, int]:
    """Add a staff member with a first password (audited, never the password)."""
    form = UserCreateForm()
    if not form.validate_on_submit():
        return _staff_page(form, status=400)
    try:
        user = create_user(
            form.email.data or "",
            role=form.role.data or "",
            name=form.name.data or "",
            password=form.password.data or "",
            actor_id=current_user.id,
            ip=client_ip(),
            via="web",
        )
    except (AccountRefused, WeakPassword) as error:
        db.session.rollback()
        form.form_errors.append(str(error))
        return _staff_page(form, status=400)
    db.session.commit()
    flash(f"Added {user.name} ({user.email}) as {ROLE_LABELS[user.role]}.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/users/deactivate", methods=["POST"])
@roles("admin")
def deactivate_staff() -> Response | tuple[str, int]:
    """Deactivate a staff member: their sessions end, their open leads go to the one chosen."""
    form = UserDeactivateForm()
    if not form.validate_on_submit():
        abort(400, description="Choose a staff member.")
    user = db.get_or_404(User, form.user_id.data)
    taker_id = whole_number(form.leads_to.data) if form.leads_to.data else None
    taker = db.session.get(User, taker_id) if taker_id else None
    if form.leads_to.data and taker is None:
        return _staff_page(refusal=(user.id, "Choose who takes the open leads."), status=400)
    try:
        ended, moved = deactivate_user(user, actor=current_user, leads_to=taker, ip=client_ip(), via="web")
    except AccountRefused as error:
        db.session.rollback()
        return _staff_page(refusal=(user.id, str(error)), status=400)
    db.session.commit()
    where = f"now {taker.name}'s" if taker else "now unassigned"
    flash(f"Deactivated {user.email}; ended {ended} session(s); {moved} open lead(s) {where}.", "success")
    return redirect(url_for("admin.index"))


@bp.route("/users/password", methods=["POST"])
@roles("admin")
def reset_staff_password() -> Response | tuple[str, int]:
    """Set a new password for a staff member; every session of theirs ends."""
    form = UserPasswordForm()
    if not form.validate_on_submit():
        if form.user_id.data:
            return _staff_page(refusal=(form.user_id.data, "Type the new password."), status=400)
        abort(400, description="Choose a staff member.")
    user = db.get_or_404(User, form.user_id.data)
    try:
        ended = reset_password(user, form.password.data or "", actor_id=current_user.id, ip=client_ip())
    except (AccountRefused, WeakPassword) as error:
        db.session.rollback()
        return _staff_page(refusal=(user.id, str(error)), status=400)
    db.session.commit()
    flash(
        f"New password set for {user.email}; ended {ended} session(s). Tell it to them in person.", "success"
    )
    return redirect(url_for("admin.index"))


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
