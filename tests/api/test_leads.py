"""The leads resource: list filters and pages, read with ETag, create, optimistic PATCH, stage moves."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead
from crm.models import AuditEvent, Lead, Note
from crm.pipeline import MoveRequest, StageRefused, move
from tests.conftest import utc

PHONE = "+12025550143"


def ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


# --------------------------------------------------------------------------- list


def test_list_answers_items_total_page_pages_newest_first(make_caller, make_lead, client):
    caller = make_caller("front_desk")
    leads = [make_lead(created_at=utc(2026, 11, 1 + n, 15)) for n in range(3)]
    body = client.get("/api/v1/leads?per_page=2", headers=caller.headers).get_json()
    assert body["total"] == 3 and body["page"] == 1 and body["pages"] == 2
    assert [i["id"] for i in body["items"]] == [leads[2].id, leads[1].id]
    item = body["items"][0]
    for key in (
        "id",
        "first_name",
        "last_name",
        "phone",
        "email",
        "stage",
        "tags",
        "urgent",
        "owner",
        "source",
    ):
        assert key in item
    assert {"created_at", "version"} <= set(item)
    page2 = client.get("/api/v1/leads?per_page=2&page=2", headers=caller.headers).get_json()
    assert [i["id"] for i in page2["items"]] == [leads[0].id]


def test_list_filters(make_caller, make_user, make_lead, client):
    caller = make_caller("manager")
    owner = make_user("front_desk")
    a = make_lead(
        stage="evaluation", source="referral", tags=["condition:stenosis"], created_at=utc(2026, 3, 2, 15)
    )
    b = find_or_create_lead(ContactIn(source="web_form", first_name="Zelda"), now=utc(2026, 3, 5, 15)).lead
    b.owner_id = owner.id  # search terms come from intake, as for every real lead
    db.session.commit()
    h = caller.headers
    assert ids(client.get("/api/v1/leads?stage=evaluation", headers=h)) == [a.id]
    assert ids(client.get("/api/v1/leads?source=web_form", headers=h)) == [b.id]
    assert ids(client.get("/api/v1/leads?tag=condition:stenosis", headers=h)) == [a.id]
    assert ids(client.get(f"/api/v1/leads?owner={owner.email}", headers=h)) == [b.id]
    assert ids(client.get("/api/v1/leads?q=Zelda", headers=h)) == [b.id]
    assert ids(client.get("/api/v1/leads?created_from=2026-03-04", headers=h)) == [b.id]
    assert ids(client.get("/api/v1/leads?created_to=2026-03-03", headers=h)) == [a.id]
    assert ids(client.get("/api/v1/leads?created_from=2026-03-05T14:00:00Z", headers=h)) == [b.id]
    assert ids(client.get("/api/v1/leads?created_to=2026-03-02T14:00:00%2B00:00", headers=h)) == []


@pytest.mark.parametrize(
    "query", ["per_page=101", "page=0", "stage=limbo", "created_from=yesterday", "owner=x"]
)
def test_list_refuses_bad_filters_with_422_and_fields(make_caller, client, query):
    response = client.get(f"/api/v1/leads?{query}", headers=make_caller().headers)
    assert response.status_code == 422
    assert query.split("=")[0] in response.get_json()["error"]["fields"]


def test_surgeon_sees_only_their_referrals_and_404_outside_scope(make_caller, make_user, make_lead, client):
    surgeon = make_caller("surgeon")
    other = make_user("surgeon")
    mine = make_lead(stage="surgical_review", surgeon_id=surgeon.user.id)
    unassigned = make_lead(stage="surgical_review")
    make_lead(stage="surgical_review", surgeon_id=other.id)
    early = make_lead(stage="evaluation")
    assert sorted(ids(client.get("/api/v1/leads", headers=surgeon.headers))) == sorted(
        [mine.id, unassigned.id]
    )
    assert client.get(f"/api/v1/leads/{mine.id}", headers=surgeon.headers).status_code == 200
    response = client.get(f"/api/v1/leads/{early.id}", headers=surgeon.headers)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("role", ["front_desk", "manager", "admin"])
def test_staff_roles_see_every_lead(make_caller, make_lead, client, role):
    lead = make_lead(stage="evaluation")
    assert ids(client.get("/api/v1/leads", headers=make_caller(role).headers)) == [lead.id]


def test_surgeon_token_may_not_create_or_edit(make_caller, make_lead, client):
    surgeon = make_caller("surgeon", scope="write")
    lead = make_lead(stage="surgical_review")
    assert client.post("/api/v1/leads", json={"first_name": "A"}, headers=surgeon.headers).status_code == 403
    response = client.patch(f"/api/v1/leads/{lead.id}", json={"version": 1}, headers=surgeon.headers)
    assert response.status_code == 403


# --------------------------------------------------------------------------- read


def test_read_has_version_and_etag(make_caller, make_lead, client):
    lead = make_lead()
    response = client.get(f"/api/v1/leads/{lead.id}", headers=make_caller().headers)
    assert response.status_code == 200
    assert response.get_json()["version"] == lead.version == 1
    assert response.headers["ETag"] == '"1"'


def test_unknown_lead_is_404(make_caller, client):
    assert client.get("/api/v1/leads/999999", headers=make_caller().headers).status_code == 404


# --------------------------------------------------------------------------- create


def test_create_answers_201_then_200_when_intake_attaches_the_same_patient(make_caller, client):
    caller = make_caller("front_desk")
    body = {
        "first_name": "Ann",
        "last_name": "Lee",
        "phone": "(202) 555-0143",
        "message": "sciatica down my left leg",
    }
    first = client.post("/api/v1/leads", json=body, headers=caller.headers)
    assert first.status_code == 201, first.get_json()
    lead = first.get_json()
    assert lead["phone"] == PHONE and lead["source"] == "api" and lead["tags"]
    second = client.post("/api/v1/leads", json=body, headers=caller.headers)
    assert second.status_code == 200
    assert second.get_json()["id"] == lead["id"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.via == "api")).all()
    assert "lead_create" in actions and "lead_intake_attach" in actions
    notes = db.session.scalars(sa.select(Note).where(Note.lead_id == lead["id"])).all()
    assert [n.body for n in notes] == [
        body["message"]
    ] * 2  # the patient's words kept, as the page keeps them


def test_create_red_flag_message_makes_the_lead_urgent(make_caller, client):
    body = {"first_name": "Bo", "message": "I can't control my bladder since the back pain started"}
    response = client.post("/api/v1/leads", json=body, headers=make_caller().headers)
    assert response.status_code == 201 and response.get_json()["urgent"] is True


def test_create_refuses_unknown_field_with_422_and_fields(make_caller, client):
    response = client.post(
        "/api/v1/leads", json={"first_name": "A", "stage": "closed"}, headers=make_caller().headers
    )
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid" and "stage" in error["fields"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": "A", "phone": "123"}, "phone"),
        ({"first_name": "A", "email": "not-an-email"}, "email"),
        ({"first_name": "A", "preferred_contact": "fax"}, "preferred_contact"),
        ({"first_name": 5}, "first_name"),
        ({"first_name": "A", "consent_sms": "perhaps"}, "consent_sms"),
    ],
)
def test_create_refuses_wrong_fields(make_caller, client, body, field):
    response = client.post("/api/v1/leads", json=body, headers=make_caller().headers)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]


def test_body_that_is_not_json_is_400(make_caller, client):
    caller = make_caller()
    for kwargs in (
        {"data": "first_name=A", "content_type": "application/x-www-form-urlencoded"},
        {"data": "{not json", "content_type": "application/json"},
        {"data": "[1, 2]", "content_type": "application/json"},
    ):
        response = client.post("/api/v1/leads", headers=caller.headers, **kwargs)
        assert response.status_code == 400
        assert response.get_json()["error"]["code"] == "bad_request"


# --------------------------------------------------------------------------- update


def test_patch_with_version_changes_the_lead(make_caller, make_lead, client):
    caller = make_caller()
    lead = make_lead()
    response = client.patch(
        f"/api/v1/leads/{lead.id}",
        json={"version": 1, "first_name": "Robin", "phone": "202-555-0143"},
        headers=caller.headers,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["first_name"] == "Robin" and response.get_json()["phone"] == PHONE
    version = response.get_json()["version"]
    assert version > 1 and response.headers["ETag"] == f'"{version}"'
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lead_edit"))
    assert (event.user_id, event.via) == (caller.user.id, "api")


def test_patch_with_if_match(make_caller, make_lead, client):
    caller = make_caller()
    lead = make_lead()
    headers = {**caller.headers, "If-Match": '"1"'}
    assert (
        client.patch(f"/api/v1/leads/{lead.id}", json={"last_name": "Ng"}, headers=headers).status_code == 200
    )


def test_patch_stale_version_is_409_and_nothing_changes(make_caller, make_lead, client):
    caller = make_caller()
    lead = make_lead(first_name="Pat")
    assert (
        client.patch(
            f"/api/v1/leads/{lead.id}", json={"version": 1, "insurance": "Aetna"}, headers=caller.headers
        ).status_code
        == 200
    )
    response = client.patch(
        f"/api/v1/leads/{lead.id}", json={"version": 1, "first_name": "Stale"}, headers=caller.headers
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "conflict"
    db.session.expire_all()
    fresh = db.session.get(Lead, lead.id)
    assert fresh.first_name == "Pat" and fresh.version > 1  # the first save only
    assert fresh.insurance == "Aetna"
    stale_etag = {**caller.headers, "If-Match": '"1"'}
    assert (
        client.patch(f"/api/v1/leads/{lead.id}", json={"first_name": "S"}, headers=stale_etag).status_code
        == 409
    )


def test_patch_without_version_is_428(make_caller, make_lead, client):
    lead = make_lead()
    response = client.patch(
        f"/api/v1/leads/{lead.id}", json={"first_name": "X"}, headers=make_caller().headers
    )
    assert response.status_code == 428
    assert response.get_json()["error"]["code"] == "precondition_required"


def test_patch_unknown_field_is_422(make_caller, make_lead, client):
    lead = make_lead()
    response = client.patch(
        f"/api/v1/leads/{lead.id}", json={"version": 1, "stage": "closed"}, headers=make_caller().headers
    )
    assert response.status_code == 422 and "stage" in response.get_json()["error"]["fields"]


# --------------------------------------------------------------------------- stage


def test_stage_gate_refusal_is_409_with_the_pages_message(make_caller, make_lead, client):
    caller = make_caller("front_desk")
    lead = make_lead(stage="evaluation")
    with pytest.raises(StageRefused) as page_refusal:  # what the page would flash, from the same function
        move(lead, MoveRequest(to="surgical_review"), actor=caller.user)
    db.session.rollback()
    response = client.post(
        f"/api/v1/leads/{lead.id}/stage", json={"to": "surgical_review"}, headers=caller.headers
    )
    assert response.status_code == 409
    assert response.get_json()["error"]["message"] == str(page_refusal.value)
    db.session.expire_all()
    assert db.session.get(Lead, lead.id).stage == "evaluation"


def test_stage_move_passes_and_is_audited(make_caller, make_user, make_lead, client):
    caller = make_caller("front_desk")
    surgeon = make_user("surgeon")
    lead = make_lead(stage="evaluation", tags=["history:failed_pt"])
    response = client.post(
        f"/api/v1/leads/{lead.id}/stage",
        json={"to": "surgical_review", "surgeon": surgeon.email},
        headers=caller.headers,
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["stage"] == "surgical_review"
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lead_stage"))
    assert (event.user_id, event.via, event.detail["to"]) == (caller.user.id, "api", "surgical_review")


def test_stage_close_needs_a_close_reason_same_as_pages(make_caller, make_lead, client):
    caller = make_caller("front_desk")
    lead = make_lead(stage="contacted")
    with pytest.raises(StageRefused) as page_refusal:
        move(lead, MoveRequest(to="closed"), actor=caller.user)
    db.session.rollback()
    response = client.post(f"/api/v1/leads/{lead.id}/stage", json={"to": "closed"}, headers=caller.headers)
    assert response.status_code == 409 and response.get_json()["error"]["message"] == str(page_refusal.value)
    ok = client.post(
        f"/api/v1/leads/{lead.id}/stage",
        json={"to": "closed", "close_reason": "no_response", "reason": "three attempts"},
        headers=caller.headers,
    )
    assert ok.status_code == 200, ok.get_json()


def test_stage_unknown_surgeon_or_field_is_422(make_caller, make_lead, client):
    caller = make_caller("front_desk")
    lead = make_lead(stage="evaluation", tags=["history:failed_pt"])
    url = f"/api/v1/leads/{lead.id}/stage"
    response = client.post(
        url, json={"to": "surgical_review", "surgeon": "nobody@clinic.test"}, headers=caller.headers
    )
    assert response.status_code == 422 and "surgeon" in response.get_json()["error"]["fields"]
    response = client.post(url, json={"to": "surgical_review", "color": "red"}, headers=caller.headers)
    assert response.status_code == 422 and "color" in response.get_json()["error"]["fields"]


def test_surgeon_accepts_a_referral_with_consult_at(make_caller, make_lead, client):
    surgeon = make_caller("surgeon")
    lead = make_lead(stage="surgical_review", surgeon_id=surgeon.user.id, tags=["history:failed_pt"])
    at = (clock.now() + timedelta(days=7)).isoformat()
    response = client.post(
        f"/api/v1/leads/{lead.id}/stage",
        json={"to": "consult_scheduled", "consult_at": at},
        headers=surgeon.headers,
    )
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 1, "pt_weeks": "6"}, "pt_weeks"),
        ({"version": 1, "pt_helped": "true"}, "pt_helped"),
        ({"version": 1, "consent_sms": 1}, "consent_sms"),
        ({"version": True}, "version"),
    ],
)
def test_patch_types_are_strict(make_caller, make_lead, client, body, field):
    lead = make_lead()
    response = client.patch(f"/api/v1/leads/{lead.id}", json=body, headers=make_caller().headers)
    assert response.status_code == 422 and field in response.get_json()["error"]["fields"]


def test_a_date_of_birth_in_the_future_is_refused_and_nothing_changes(make_caller, make_lead, client):
    caller = make_caller()
    lead = make_lead()
    response = client.patch(
        f"/api/v1/leads/{lead.id}", json={"version": 1, "date_of_birth": "2030-01-01"}, headers=caller.headers
    )
    assert response.status_code == 422, response.get_json()
    assert (
        response.get_json()["error"]["fields"]["date_of_birth"]
        == "The date of birth must be between 1900 and today."
    )
    db.session.expire_all()
    assert db.session.get(Lead, lead.id).date_of_birth is None
