"""The surgeons' referral queue (decisions arrive with issue 6)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, render_template
from flask_login import current_user
from sqlalchemy.orm import selectinload

from crm.authz import leads_visible_to, roles
from crm.extensions import db
from crm.models import Lead

bp = Blueprint("referrals", __name__, url_prefix="/referrals")


@bp.route("")
@roles("surgeon", "manager")
def queue() -> str:
    """List leads waiting for a surgeon's decision: urgent first, then oldest."""
    leads = db.session.scalars(
        sa.select(Lead)
        .where(Lead.stage == "surgical_review", Lead.in_queue.is_(True), leads_visible_to(current_user))
        .options(selectinload(Lead.tags))
        .order_by(Lead.urgent.desc(), Lead.stage_entered_at)
        .limit(100)
    ).all()
    return render_template("referrals/queue.html", leads=leads)
