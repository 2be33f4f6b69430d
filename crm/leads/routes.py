"""The lead list, the lead page and my tasks (read-only until issue 6 adds the work)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy.orm import joinedload, selectinload
from werkzeug.wrappers import Response

from crm import audit
from crm.authz import leads_visible_to, load_lead_for, roles
from crm.extensions import db
from crm.models import (
    Appointment,
    AppointmentRequest,
    Call,
    Lead,
    Note,
    StageChange,
    TagChange,
    Task,
)
from crm.security import client_ip

bp = Blueprint("leads", __name__)

PER_PAGE = 50
STAFF = ("front_desk", "surgeon", "manager", "admin")


@bp.route("/leads")
@roles(*STAFF)
def queue() -> str:
    """List open leads, newest first, a page at a time."""
    page = request.args.get("page", 1, type=int) or 1
    query = (
        sa.select(Lead)
        .where(Lead.in_queue.is_(True), leads_visible_to(current_user))
        .options(selectinload(Lead.tags), joinedload(Lead.owner))
        .order_by(Lead.created_at.desc(), Lead.id.desc())
    )
    pagination = db.paginate(query, page=max(page, 1), per_page=PER_PAGE, error_out=False)
    audit.record_list(
        "lead_list", user_id=current_user.id, lead_ids=[lead.id for lead in pagination.items], ip=client_ip()
    )
    db.session.commit()
    return render_template("leads/queue.html", pagination=pagination)


@bp.route("/leads/<int:lead_id>")
@roles(*STAFF)
def detail(lead_id: int) -> Response | str:
    """Show one lead: contact, clinical facts, tags and its activity, newest first."""
    lead = load_lead_for(current_user, lead_id)
    if lead.merged_into_id is not None:
        return redirect(url_for("leads.detail", lead_id=lead.merged_into_id))
    timeline = build_timeline(lead.id)
    tasks = db.session.scalars(
        sa.select(Task).where(Task.lead_id == lead.id).order_by(Task.done_at.is_not(None), Task.due_at)
    ).all()
    audit.record("lead_view", user_id=current_user.id, lead_id=lead.id, ip=client_ip())
    db.session.commit()
    return render_template("leads/detail.html", lead=lead, timeline=timeline, tasks=tasks)


def build_timeline(lead_id: int) -> list[dict[str, Any]]:
    """Gather a lead's calls, requests, notes, tag and stage changes, tasks and appointments."""
    items: list[dict[str, Any]] = []
    for call in db.session.scalars(
        sa.select(Call).where(Call.lead_id == lead_id).options(joinedload(Call.handled_by))
    ):
        items.append({"kind": "call", "at": call.started_at, "obj": call})
    for req in db.session.scalars(sa.select(AppointmentRequest).where(AppointmentRequest.lead_id == lead_id)):
        items.append({"kind": "request", "at": req.submitted_at, "obj": req})
    for note in db.session.scalars(
        sa.select(Note).where(Note.lead_id == lead_id).options(joinedload(Note.author))
    ):
        items.append({"kind": "note", "at": note.created_at, "obj": note})
    for change in db.session.scalars(
        sa.select(StageChange).where(StageChange.lead_id == lead_id).options(joinedload(StageChange.actor))
    ):
        items.append({"kind": "stage", "at": change.at, "obj": change})
    for tag in db.session.scalars(
        sa.select(TagChange).where(TagChange.lead_id == lead_id).options(joinedload(TagChange.actor))
    ):
        items.append({"kind": "tag", "at": tag.at, "obj": tag})
    for appt in db.session.scalars(
        sa.select(Appointment).where(Appointment.lead_id == lead_id).options(joinedload(Appointment.surgeon))
    ):
        items.append({"kind": "appointment", "at": appt.created_at, "obj": appt})
    items.sort(key=lambda item: item["at"], reverse=True)
    return items


@bp.route("/tasks", endpoint="tasks")
@roles("front_desk", "manager", "admin")
def my_tasks() -> str:
    """List the signed-in user's open tasks, earliest due first."""
    tasks = db.session.scalars(
        sa.select(Task)
        .where(Task.assignee_id == current_user.id, Task.done_at.is_(None))
        .order_by(Task.due_at)
        .limit(200)
    ).all()
    return render_template("leads/tasks.html", tasks=tasks)
