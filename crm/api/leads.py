"""Leads: list, read, create (through intake), update (optimistic), move stage (through pipeline)."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import abort
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from crm import audit, clock
from crm.api.common import errors, etag, if_match_version, refuse
from crm.api.routes import bp
from crm.api.schemas import LeadIn, LeadOut, LeadPage, LeadPatch, LeadQuery, StageIn
from crm.api.tokens import api_user
from crm.authz import leads_visible_to, load_lead_for, roles
from crm.extensions import db
from crm.intake import ContactIn, IntakeRefused, find_or_create_lead
from crm.leadedit import EditRefused, StaleVersion, add_note, update_lead
from crm.models import Lead, User
from crm.pipeline import MoveRequest, StageRefused, move
from crm.queue import QueueFilters, filter_clauses, local_day_start
from crm.security import client_ip
from crm.settings import clinic_tz

STAFF = ("front_desk", "surgeon", "manager", "admin")
EDITORS = ("front_desk", "manager", "admin")
CONSENTS = ("phone", "sms", "email", "detailed_voicemail")


def _created_clauses(query: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    start, end = query.get("created_from"), query.get("created_to")
    tz = clinic_tz()
    if isinstance(start, datetime):
        clauses.append(Lead.created_at >= start)
    elif isinstance(start, date):
        clauses.append(Lead.created_at >= local_day_start(start, tz))
    if isinstance(end, datetime):
        clauses.append(Lead.created_at <= end)
    elif isinstance(end, date):
        clauses.append(Lead.created_at < local_day_start(end + timedelta(days=1), tz))
    return clauses


def _owner_clause(email: str | None) -> list[sa.ColumnElement[bool]]:
    if not email:
        return []
    owner_id = sa.select(User.id).where(User.email == email.strip().lower()).scalar_subquery()
    return [Lead.owner_id == owner_id]


@bp.route("/leads", methods=["GET"])
@bp.arguments(LeadQuery, location="query")
@bp.response(200, LeadPage)
@errors(401, 403)
@roles(*STAFF)
def list_leads(query: dict[str, Any]) -> dict[str, Any]:
    """List the leads the token's user may see, newest first, filtered and paginated."""
    user = api_user()
    filters = QueueFilters(
        stage=query.get("stage"), tag=query.get("tag"), source=query.get("source"), q=query.get("q")
    )
    where = [leads_visible_to(user), *filter_clauses(filters, clinic_tz())]
    where += _created_clauses(query) + _owner_clause(query.get("owner"))
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Lead).where(*where)) or 0
    page, per_page = query["page"], query["per_page"]
    leads = db.session.scalars(
        sa.select(Lead)
        .where(*where)
        .options(selectinload(Lead.tags), selectinload(Lead.owner))
        .order_by(Lead.created_at.desc(), Lead.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    audit.record_list(
        "lead_list", user_id=user.id, lead_ids=[lead.id for lead in leads], ip=client_ip(), via="api"
    )
    db.session.commit()
    return {"items": leads, "total": total, "page": page, "pages": math.ceil(total / per_page)}


@bp.route("/leads/<int:lead_id>", methods=["GET"])
@bp.response(200, LeadOut)
@errors(401, 403, 404)
@roles(*STAFF)
def get_lead(lead_id: int) -> Any:
    """Read one lead with its ``version`` (also its ``ETag``)."""
    user = api_user()
    lead = load_lead_for(user, lead_id)
    audit.record("lead_view", user_id=user.id, lead_id=lead.id, ip=client_ip(), via="api")
    db.session.commit()
    return lead, 200, {"ETag": etag(lead.version)}


def _contact(body: dict[str, Any]) -> ContactIn:
    consent = {key: body.pop(f"consent_{key}") for key in CONSENTS if f"consent_{key}" in body}
    return ContactIn(
        source=body.pop("source", "api"),
        first_name=(body.pop("first_name", None) or "").strip(),
        last_name=(body.pop("last_name", None) or "").strip(),
        consent=consent,
        **body,
    )


@bp.route("/leads", methods=["POST"])
@bp.arguments(LeadIn)
@bp.response(201, LeadOut)
@bp.alt_response(200, schema=LeadOut, description="Attached to the patient's existing open lead.")
@errors(400, 413, 401, 403)
@roles(*EDITORS)
def create_lead(body: dict[str, Any]) -> Any:
    """Create a lead through intake (duplicate rule, tagger); 200 when attached to an existing one."""
    user = api_user()
    try:
        result = find_or_create_lead(_contact(dict(body)), now=clock.now(), ip_address=client_ip())
    except IntakeRefused as error:
        db.session.rollback()
        abort(422, description=str(error))
    lead = result.lead
    assert lead is not None
    if (body.get("message") or "").strip():  # the patient's words are kept, as the page keeps them
        add_note(lead, body["message"], actor=user, ip=client_ip(), via="api")
    action = "lead_create" if result.created else "lead_intake_attach"
    audit.record(
        action, user_id=user.id, lead_id=lead.id, detail={"source": lead.source}, ip=client_ip(), via="api"
    )
    db.session.commit()
    return lead, 201 if result.created else 200, {"ETag": etag(lead.version)}


@bp.route("/leads/<int:lead_id>", methods=["PATCH"])
@bp.arguments(LeadPatch)
@bp.response(200, LeadOut)
@errors(400, 413, 401, 403, 404, 409, 428)
@roles(*EDITORS)
def patch_lead(body: dict[str, Any], lead_id: int) -> Any:
    """Change a lead read at ``version`` (or ``If-Match``); a stale one changes nothing (409)."""
    user = api_user()
    lead = load_lead_for(user, lead_id)
    changes = dict(body)
    version = changes.pop("version", None) or if_match_version()
    if version is None:
        abort(428, description="Send the version you read (in the body or as If-Match).")
    if "phone" in changes:
        from crm import phones

        changes["phone"] = phones.normalize(changes["phone"])
    if changes.get("email"):
        changes["email"] = changes["email"].strip().lower()
    try:
        update_lead(lead, changes, expected_version=version, actor=user, ip=client_ip(), via="api")
        db.session.commit()
    except (StaleVersion, StaleDataError):
        db.session.rollback()
        abort(409, description="The lead was changed by someone else since you read it; read it again.")
    except EditRefused as error:
        db.session.rollback()
        abort(409, description=str(error))
    return lead, 200, {"ETag": etag(lead.version)}


def _move_request(body: dict[str, Any]) -> MoveRequest:
    surgeon = None
    if body.get("surgeon"):
        surgeon = db.session.scalar(
            sa.select(User).where(
                User.email == body["surgeon"].strip().lower(), User.role == "surgeon", User.active
            )
        )
        if surgeon is None:
            refuse(422, "surgeon", "No active surgeon has this email.")
    return MoveRequest(
        to=body["to"],
        reason=body.get("reason"),
        close_reason=body.get("close_reason"),
        override=bool(body.get("override")),
        surgeon=surgeon,
        consult_at=body.get("consult_at"),
    )


@bp.route("/leads/<int:lead_id>/stage", methods=["POST"])
@bp.arguments(StageIn)
@bp.response(200, LeadOut)
@errors(400, 413, 401, 403, 404, 409)
@roles(*STAFF)
def move_stage(body: dict[str, Any], lead_id: int) -> Any:
    """Move a lead through the same stage machine and gate as the pages (same refusals, 409)."""
    user = api_user()
    lead = load_lead_for(user, lead_id)
    before = lead.stage
    try:
        move(lead, _move_request(body), actor=user)
        audit.record(
            "lead_stage",
            user_id=user.id,
            lead_id=lead.id,
            detail={"from": before, "to": lead.stage},
            ip=client_ip(),
            via="api",
        )
        db.session.commit()
    except (StageRefused, StaleDataError) as error:
        db.session.rollback()
        abort(
            409, description=str(error) if isinstance(error, StageRefused) else "The lead changed meanwhile."
        )
    return lead, 200, {"ETag": etag(lead.version)}
