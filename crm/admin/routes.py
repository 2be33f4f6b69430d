"""The admin's overview: staff accounts (management pages arrive with later issues)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template

from crm.authz import roles
from crm.extensions import db
from crm.models import User

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("")
@roles("admin")
def index() -> str:
    """List staff accounts with their roles and status."""
    users = db.session.scalars(sa.select(User).order_by(User.active.desc(), User.name)).all()
    return render_template("admin/index.html", users=users)
