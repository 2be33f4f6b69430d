"""The manager dashboard (charts arrive with issue 7)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template

from crm.authz import roles
from crm.extensions import db
from crm.models import STAGES, Lead

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@bp.route("")
@roles("surgeon", "manager", "admin")
def index() -> str:
    """Show the pipeline at a glance: open leads per stage."""
    counts = dict(
        db.session.execute(
            sa.select(Lead.stage, sa.func.count()).where(Lead.in_queue.is_(True)).group_by(Lead.stage)
        ).all()
    )
    return render_template("dashboard/index.html", counts=counts, stages=STAGES)
