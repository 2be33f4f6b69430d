"""The lead page's "Download referral (FHIR)": the API's Bundle for surgeons, managers and admins, audited."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from fhir.resources.R4B.bundle import Bundle

from crm.apitokens import create_token
from crm.extensions import db
from crm.models import AuditEvent
from tests.api.test_fhir import GOLDEN, hand_built_lead

BUTTON = "Download referral (FHIR)"


def _exports() -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "fhir_export")))


@pytest.mark.parametrize("role", ["surgeon", "manager", "admin"])
def test_it_downloads_the_apis_bundle_validated_as_r4b_and_audited(
    client, login_as, make_user, make_lead, role
):
    lead = hand_built_lead(make_user, make_lead)  # surgical_review, unassigned: a surgeon sees it
    user = login_as(role)
    response = client.get(f"/leads/{lead.id}/fhir.json")
    assert response.status_code == 200
    assert response.mimetype == "application/fhir+json"
    assert (
        response.headers["Content-Disposition"] == f'attachment; filename="referral-lead-{lead.id}.fhir.json"'
    )
    bundle = json.loads(response.get_data(as_text=True))
    Bundle.model_validate(bundle)
    assert bundle == json.loads(GOLDEN.read_text())  # the same Bundle GET /api/v1/leads/<id>/fhir answers
    [event] = _exports()
    assert (event.user_id, event.lead_id, event.via) == (user.id, lead.id, "web")


def test_the_lead_page_shows_the_button_to_a_surgeon(client, login_as, make_user, make_lead):
    lead = hand_built_lead(make_user, make_lead)
    login_as("surgeon")
    html = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert BUTTON in html and f"/leads/{lead.id}/fhir.json" in html


def test_front_desk_gets_403_no_button_and_no_export(client, login_as, make_user, make_lead):
    lead = hand_built_lead(make_user, make_lead)
    login_as("front_desk")
    assert client.get(f"/leads/{lead.id}/fhir.json").status_code == 403
    assert BUTTON not in client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert _exports() == []


def test_a_surgeon_gets_404_for_a_lead_outside_their_scope(client, login_as, make_lead):
    lead = make_lead(stage="new")  # before surgical_review: not a surgeon's
    login_as("surgeon")
    assert client.get(f"/leads/{lead.id}/fhir.json").status_code == 404
    assert _exports() == []


def test_a_visitor_is_sent_to_sign_in(client, make_lead):
    response = client.get(f"/leads/{make_lead().id}/fhir.json")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_an_api_token_cannot_download_from_the_page_route(client, make_user, make_lead):
    lead = hand_built_lead(make_user, make_lead)
    new = create_token(make_user("manager"), "ehr", scope="write")
    db.session.commit()
    response = client.get(f"/leads/{lead.id}/fhir.json", headers={"Authorization": f"Bearer {new.plaintext}"})
    assert response.status_code == 302 and _exports() == []


def test_an_id_beyond_any_row_answers_404_not_500(client, login_as):
    login_as("manager")
    assert client.get("/leads/575148233157158502400/fhir.json").status_code == 404
