"""GET /api/v1/leads/<id>/fhir: a golden Bundle for a hand-built lead, validated by fhir.resources.R4B."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from crm.extensions import db
from crm.models import AppointmentRequest, AuditEvent
from tests.conftest import utc

GOLDEN = Path(__file__).parent / "golden" / "fhir_referral.json"


def hand_built_lead(make_user, make_lead):
    owner = make_user("front_desk", name="Dana Desk", email="dana@clinic.test")
    lead = make_lead(
        first_name="Maria",
        last_name="Lopez",
        phone="+12025550143",
        date_of_birth=date(1970, 4, 2),
        stage="surgical_review",
        owner_id=owner.id,
        created_at=utc(2026, 3, 2, 15),
        tags=["condition:herniated_disc", "history:failed_pt", "red_flag:weakness", "region:lower"],
    )
    db.session.add(
        AppointmentRequest(
            lead_id=lead.id,
            submitted_at=utc(2026, 3, 2, 15),
            first_name="Maria",
            last_name="Lopez",
            message="Shooting pain down my left leg for 3 months; PT did not help.",
            answers={},
        )
    )
    db.session.commit()
    return lead


def test_fhir_bundle_matches_the_golden_file_and_validates_as_r4b(make_user, make_lead, make_caller, client):
    lead = hand_built_lead(make_user, make_lead)
    caller = make_caller("manager")
    response = client.get(f"/api/v1/leads/{lead.id}/fhir", headers=caller.headers)
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    bundle = json.loads(response.get_data(as_text=True))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n")
    assert bundle == json.loads(GOLDEN.read_text())
    Bundle.model_validate(bundle)  # R4B (the default models are R5)
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}

    def references(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference":
                    yield value
                else:
                    yield from references(value)
        elif isinstance(node, list):
            for item in node:
                yield from references(item)

    refs = list(references(bundle))
    assert refs and set(refs) <= full_urls  # every reference resolves inside the Bundle
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert kinds == ["Patient", "Practitioner", "Condition", "ServiceRequest"]
    condition = bundle["entry"][2]["resource"]
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral_fhir"))
    assert (event.user_id, event.lead_id, event.via) == (caller.user.id, lead.id, "api")


def test_fhir_is_scoped_like_the_lead(make_user, make_lead, make_caller, client):
    lead = make_lead(stage="evaluation", tags=["condition:stenosis"])
    surgeon = make_caller("surgeon")
    assert client.get(f"/api/v1/leads/{lead.id}/fhir", headers=surgeon.headers).status_code == 404
    assert client.get(f"/api/v1/leads/{lead.id}/fhir").status_code == 401
    desk = make_caller("front_desk")
    bundle = client.get(f"/api/v1/leads/{lead.id}/fhir", headers=desk.headers).get_json(force=True)
    Bundle.model_validate(bundle)
