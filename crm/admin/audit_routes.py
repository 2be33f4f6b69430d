"""The admin's audit log: who saw or changed which record, filtered by user, lead and date."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import sqlalchemy as sa
from flask import render_template, request
from sqlalchemy.orm import joinedload

from crm.admin.routes import bp
from crm.authz import roles
from crm.extensions import db
from crm.models import AuditEvent, User
from crm.querystring import iso_day, whole_number
from crm.settings import clinic_tz

PAGE_SIZE = 100


@bp.route("/audit")
@roles("admin")
def audit_log() -> str:
    """List audit events newest first, a page at a time, filtered from the query string."""
    user_id = whole_number(request.args.get("user"))
    lead_id = whole_number(request.args.get("lead"))
    before = whole_number(request.args.get("before"))
    day_from, day_to = iso_day(request.args.get("from")), iso_day(request.args.get("to"))
    tz = clinic_tz()
    query = sa.select(AuditEvent).options(joinedload(AuditEvent.user)).order_by(AuditEvent.id.desc())
    if user_id:
        query = query.where(AuditEvent.user_id == user_id)
    if lead_id:
        query = query.where(AuditEvent.lead_id == lead_id)
    if day_from:
        query = query.where(AuditEvent.at >= datetime.combine(day_from, time(), tz))
    if day_to:
        query = query.where(AuditEvent.at < datetime.combine(day_to + timedelta(days=1), time(), tz))
    if before:
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
