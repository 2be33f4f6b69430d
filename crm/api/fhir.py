"""GET /api/v1/leads/<id>/fhir: the referral as a FHIR R4B Bundle (PRODUCT §6 item 6).

Patient, one Condition per condition tag (SNOMED CT; ``provisional`` when the patient or the
tagger reported it), the requester, and a ServiceRequest for the surgical consult with its
reasons and the patient's own words. References are ``urn:uuid:`` full URLs inside the Bundle,
derived from the lead's id so that an export is stable.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from flask import Response

from crm import audit
from crm.api.common import errors
from crm.api.routes import bp
from crm.api.tokens import api_user
from crm.authz import load_lead_for, roles
from crm.extensions import db
from crm.models import AppointmentRequest, Lead, User
from crm.security import client_ip
from crm.triage import TAG_LABELS

STAFF = ("front_desk", "surgeon", "manager", "admin")
NAMESPACE = uuid.UUID("6f1c2d9e-5b1a-4c1e-9a57-3d0f6c2b8e11")
SNOMED = "http://snomed.info/sct"
# Condition tags with their SNOMED CT concepts. Muscle strain has no concept checked yet:
# it is sent as text only rather than with a guessed code.
CONDITION_CODES = {
    "condition:herniated_disc": ("73589001", "Herniation of intervertebral disc"),
    "condition:stenosis": ("76107001", "Spinal stenosis"),
}
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def _urn(lead: Lead, kind: str, key: str = "") -> str:
    return str(uuid.uuid5(NAMESPACE, f"lead-{lead.id}-{kind}-{key}"))


def _patient(lead: Lead, pid: str) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    name = {
        k: v
        for k, v in (("family", lead.last_name), ("given", [lead.first_name] if lead.first_name else None))
        if v
    }
    if name:
        patient["name"] = [name]
    if lead.phone:
        patient["telecom"] = [{"system": "phone", "value": lead.phone}]
    if lead.date_of_birth:
        patient["birthDate"] = lead.date_of_birth.isoformat()
    return patient


def _condition(lead: Lead, tag: Any, cid: str, pid: str) -> dict[str, Any]:
    code: dict[str, Any] = {"text": TAG_LABELS.get(tag.code, tag.code)}
    if tag.code in CONDITION_CODES:
        snomed, display = CONDITION_CODES[tag.code]
        code["coding"] = [{"system": SNOMED, "code": snomed, "display": display}]
    verified = "confirmed" if tag.origin == "staff" else "provisional"  # patient's or tagger's report
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verified}]},
        "code": code,
        "subject": {"reference": f"urn:uuid:{pid}"},
    }


def _reasons(lead: Lead) -> list[dict[str, Any]]:
    tags = set(lead.active_tag_codes)
    reasons = []
    if "history:failed_pt" in tags or lead.pt_helped is False or lead.conservative_care_helped is False:
        reasons.append({"text": "Failed conservative care"})
    reasons += [
        {"text": TAG_LABELS[t]} for t in sorted(tags) if t.startswith("red_flag:") and t in TAG_LABELS
    ]
    return reasons


def _patient_words(lead: Lead) -> str | None:
    return db.session.scalar(
        sa.select(AppointmentRequest.message)
        .where(AppointmentRequest.lead_id == lead.id, AppointmentRequest.message.is_not(None))
        .order_by(AppointmentRequest.submitted_at.desc())
        .limit(1)
    )


def referral_bundle(lead: Lead, requester: User) -> dict[str, Any]:
    """Build the referral Bundle of a lead (a plain dict, JSON-ready)."""
    pid, rid, sid = (
        _urn(lead, "patient"),
        _urn(lead, "practitioner", str(requester.id)),
        _urn(lead, "request"),
    )
    conditions = [
        _condition(lead, tag, _urn(lead, "condition", tag.code), pid)
        for tag in sorted(lead.tags, key=lambda t: t.code)
        if tag.state == "active" and tag.code.startswith("condition:")
    ]
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": sid,
        "status": "active",
        "intent": "order",
        "code": {"text": "Spine surgery consultation"},
        "subject": {"reference": f"urn:uuid:{pid}"},
        "requester": {"reference": f"urn:uuid:{rid}"},
    }
    if conditions:
        request["reasonReference"] = [{"reference": f"urn:uuid:{c['id']}"} for c in conditions]
    if reasons := _reasons(lead):
        request["reasonCode"] = reasons
    if words := _patient_words(lead):
        request["note"] = [{"text": words}]
    practitioner = {"resourceType": "Practitioner", "id": rid, "name": [{"text": requester.name}]}
    resources = [_patient(lead, pid), practitioner, *conditions, request]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


@bp.route("/leads/<int:lead_id>/fhir", methods=["GET"])
@bp.response(200, description="A FHIR R4B Bundle (application/fhir+json).")
@errors(401, 403, 404)
@roles(*STAFF)
def lead_fhir(lead_id: int) -> Response:
    """The referral as a FHIR R4B Bundle: Patient, Conditions, requester and the consult request."""
    user = api_user()
    lead = load_lead_for(user, lead_id)
    bundle = referral_bundle(lead, lead.owner or user)
    audit.record("referral_fhir", user_id=user.id, lead_id=lead.id, ip=client_ip(), via="api")
    db.session.commit()
    return Response(json.dumps(bundle), status=200, mimetype="application/fhir+json")
