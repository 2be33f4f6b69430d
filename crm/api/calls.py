"""Calls: list with filters, and create through the same intake as the phone system's webhook."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app

from crm import audit, clock
from crm.api.common import errors
from crm.api.routes import bp
from crm.api.schemas import CallIn, CallOut, CallPage, CallQuery
from crm.api.tokens import api_user
from crm.authz import leads_visible_to, roles
from crm.extensions import db
from crm.intake import CallEventIn, IntakeRefused, receive_call_event
from crm.models import Call, Lead, User
from crm.queue import local_day_start
from crm.security import client_ip
from crm.settings import clinic_tz

STAFF = ("front_desk", "surgeon", "manager", "admin")
EDITORS = ("front_desk", "manager", "admin")


def calls_visible_to(user: User) -> sa.ColumnElement[bool]:
    """Calls a user may see: all for the front desk, managers and admins; a surgeon, their leads' calls."""
    if user.role == "surgeon":
        return Call.lead_id.in_(sa.select(Lead.id).where(leads_visible_to(user)))
    return sa.true()


def _started_clauses(query: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    start, end = query.get("started_from"), query.get("started_to")
    tz = clinic_tz()
    if isinstance(start, datetime):
        clauses.append(Call.started_at >= start)
    elif isinstance(start, date):
        clauses.append(Call.started_at >= local_day_start(start, tz))
    if isinstance(end, datetime):
        clauses.append(Call.started_at <= end)
    elif isinstance(end, date):
        clauses.append(Call.started_at < local_day_start(end + timedelta(days=1), tz))
    return clauses


@bp.route("/calls", methods=["GET"])
@bp.arguments(CallQuery, location="query")
@bp.response(200, CallPage)
@errors(401, 403)
@roles(*STAFF)
def list_calls(query: dict[str, Any]) -> dict[str, Any]:
    """List calls, newest first, filtered and paginated."""
    user = api_user()
    where = [calls_visible_to(user), *_started_clauses(query)]
    for name in ("call_sid", "lead_id", "status", "from_number", "to_number"):
        if query.get(name) is not None:
            where.append(getattr(Call, name) == query[name])
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Call).where(*where)) or 0
    page, per_page = query["page"], query["per_page"]
    calls = db.session.scalars(
        sa.select(Call)
        .where(*where)
        .order_by(Call.started_at.desc(), Call.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    lead_ids = sorted({call.lead_id for call in calls if call.lead_id is not None})
    audit.record_list("call_list", user_id=user.id, lead_ids=lead_ids, ip=client_ip(), via="api")
    db.session.commit()
    return {"items": calls, "total": total, "page": page, "pages": math.ceil(total / per_page)}


@bp.route("/calls", methods=["POST"])
@bp.arguments(CallIn)
@bp.response(200, CallOut)
@errors(400, 413, 401, 403)
@roles(*EDITORS)
def create_call(body: dict[str, Any]) -> Any:
    """Record a call as the webhook would (upsert by ``call_sid``, lead linked, call-back task)."""
    user = api_user()
    event = CallEventIn(
        call_sid=body.get("call_sid"),
        from_number=body["from_number"],
        to_number=body["to_number"],
        direction=body["direction"],
        status=body["status"],
        started_at=body.get("started_at"),
        duration_seconds=body.get("duration", 0),
        recording_url=body.get("recording_url"),
        notes=body.get("notes"),
    )
    try:
        result = receive_call_event(event, lines=current_app.config["CLINIC_LINES"], now=clock.now())
    except IntakeRefused as error:
        db.session.rollback()
        abort(422, description=str(error))
    call = result.call
    if call is None:  # a leg of another call: it marked its parent, and is no call of its own
        abort(422, description="This event is a leg of another call.")
    audit.record(
        "call_api",
        user_id=user.id,
        lead_id=call.lead_id,
        detail={"call_id": call.id},
        ip=client_ip(),
        via="api",
    )
    db.session.commit()
    return call
