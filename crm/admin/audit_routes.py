"""The admin's audit log: who saw or changed which record, filtered by user, lead and date."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from flask import render_template, request
from sqlalchemy.orm import joinedload

from crm.admin.routes import bp
from crm.authz import roles
from crm.extensions import db
from crm.models import AuditEvent, User
from crm.settings import clinic_tz

PAGE_SIZE = 100


def _day(value: str | None) -> date | None:
    """Read a YYYY-MM-DD filter, ignoring anything else."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@bp.route("/audit")
@roles("admin")
def audit_log() -> str:
    """List audit events newest first, a page at a time, filtered from the query string."""
    user_id = request.args.get("user", type=int)
    lead_id = request.args.get("lead", type=int)
    before = request.args.get("before", type=int)
    day_from, day_to = _day(request.args.get("from")), _day(request.args.get("to"))
    tz = clinic_tz()
    query = sa.select(AuditEvent).options(joinedload(AuditEvent.user)).order_by(AuditEvent.id.desc())
    if user_id and user_id < 2**31:
        query = query.where(AuditEvent.user_id == user_id)
    if lead_id and lead_id < 2**31:
        query = query.where(AuditEvent.lead_id == lead_id)
    if day_from:
        query = query.where(AuditEvent.at >= datetime.combine(day_from, time(), tz))
    if day_to:
        query = query.where(AuditEvent.at < datetime.combine(day_to + timedelta(days=1), time(), tz))
    if before and before < 2**63:
        query = query.where(AuditEvent.id < before)  # keyset: the page after the last id shown
    events = db.session.scalars(query.limit(PAGE_SIZE + 1)).all()
    users = db.session.scalars(sa.select(User).order_by(User.name)).all()
    filters = {k: v for k, v in request.args.items() if k in {"user", "lead", "from", "to"} and v}
    return render_template(
        "admin/audit.html",
        events=events[:PAGE_SIZE],
        more=len(events) > PAGE_SIZE,
        users=users,
        filters=filters,
    )
