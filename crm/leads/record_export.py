"""A patient's whole record, for the patient's request of their records (HIPAA right of access).

From the lead page, anyone who may see the lead downloads it as JSON or opens a printable
page: every field of the lead (and of any lead merged into it), its consents, calls,
appointment requests, notes, tags and tag changes, stage changes, appointments and tasks,
with the staff named. Each download or printable view writes one audit event.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import Response, render_template
from flask_login import current_user

from crm import audit, clock
from crm.authz import load_lead_for, roles
from crm.extensions import db
from crm.leads.routes import STAFF, bp
from crm.models import (
    Appointment,
    AppointmentRequest,
    Call,
    Consent,
    Lead,
    LeadTag,
    Note,
    StageChange,
    TagChange,
    Task,
    User,
)
from crm.security import client_ip

# Section name → model, in the order the printable page shows them; each row is a plain dict.
SECTIONS: tuple[tuple[str, type[Any]], ...] = (
    ("consents", Consent),
    ("calls", Call),
    ("appointment_requests", AppointmentRequest),
    ("notes", Note),
    ("tags", LeadTag),
    ("tag_changes", TagChange),
    ("stage_changes", StageChange),
    ("appointments", Appointment),
    ("tasks", Task),
)
SECTION_TITLES = {
    "consents": "Consents",
    "calls": "Calls",
    "appointment_requests": "Appointment requests",
    "notes": "Notes",
    "tags": "Complaint tags",
    "tag_changes": "Tag changes",
    "stage_changes": "Stage changes",
    "appointments": "Appointments",
    "tasks": "Tasks",
}
# Columns kept for search and sorting only (they repeat the phone and the name): not the record.
INTERNAL = {"open_phone_key", "phone_last7", "phone_last4"}


def _value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _row(obj: Any) -> dict[str, Any]:
    columns = sa.inspect(type(obj)).mapper.column_attrs
    return {c.key: _value(getattr(obj, c.key)) for c in columns if c.key not in INTERNAL}


def patient_record(lead: Lead) -> dict[str, Any]:
    """Gather everything the clinic holds about the patient of ``lead``, as plain JSON values."""
    merged = list(db.session.scalars(sa.select(Lead).where(Lead.merged_into_id == lead.id).order_by(Lead.id)))
    lead_ids = [lead.id, *(m.id for m in merged)]
    record: dict[str, Any] = {
        "exported_at": clock.now().isoformat(),
        "lead": _row(lead),
        "merged_leads": [_row(m) for m in merged],
    }
    for name, model in SECTIONS:
        rows = db.session.scalars(sa.select(model).where(model.lead_id.in_(lead_ids)).order_by(model.id))
        record[name] = [_row(row) for row in rows]
    staff_ids = {
        value
        for rows in [[record["lead"]], record["merged_leads"], *(record[n] for n, _ in SECTIONS)]
        for row in rows
        for key, value in row.items()
        if key.endswith(
            ("_by_id", "owner_id", "surgeon_id", "actor_id", "author_id", "assignee_id", "user_id")
        )
        and value is not None
    }
    users = db.session.execute(sa.select(User.id, User.name).where(User.id.in_(staff_ids))).all()
    record["staff"] = {str(uid): name for uid, name in sorted(users)}
    return record


@bp.route("/leads/<int:lead_id>/record.json")
@roles(*STAFF)
def record_json(lead_id: int) -> Response:
    """Download the patient's whole record as JSON, and audit the export."""
    lead = load_lead_for(current_user, lead_id)
    record = patient_record(lead)
    audit.record(
        "record_export", user_id=current_user.id, lead_id=lead.id, detail={"format": "json"}, ip=client_ip()
    )
    db.session.commit()
    response = Response(json.dumps(record, indent=2, ensure_ascii=False), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="patient-record-lead-{lead_id}.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/leads/<int:lead_id>/record")
@roles(*STAFF)
def record_print(lead_id: int) -> Response:
    """Show the patient's whole record as a printable page, and audit the view."""
    lead = load_lead_for(current_user, lead_id)
    record = patient_record(lead)
    page = render_template(
        "leads/record.html",
        lead=lead,
        record=record,
        sections=[(name, SECTION_TITLES[name], record[name]) for name, _ in SECTIONS],
    )
    audit.record(
        "record_print", user_id=current_user.id, lead_id=lead.id, detail={"format": "print"}, ip=client_ip()
    )
    db.session.commit()
    response = Response(page, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response
