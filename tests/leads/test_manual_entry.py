"""Manual entry (PRODUCT §6 item 5): a new lead in a few keystrokes, the phone lookup, a logged call."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead
from crm.models import AuditEvent, Call, Lead, LeadTag, Note
from tests.conftest import csrf_token, utc


def _existing(first="Maria", last="Delgado", phone="(972) 555-0134") -> Lead:
    lead = find_or_create_lead(
        ContactIn(source="web_form", first_name=first, last_name=last, phone=phone), now=clock.now()
    ).lead
    db.session.commit()
    return lead


def _post_new(client, **data):
    token = csrf_token(client.get("/leads/new").get_data(as_text=True))
    return client.post("/leads/new", data={"source": "walk_in", "csrf_token": token, **data})


def _leads():
    db.session.expire_all()
    return db.session.scalars(sa.select(Lead).order_by(Lead.id)).all()


def test_a_new_lead_is_created_tagged_and_its_words_kept(client, login_as):
    login_as("front_desk")
    response = _post_new(
        client, first_name="Ana", last_name="Ruiz", phone="972.555.0199", message="my low back locks up"
    )
    (lead,) = _leads()
    assert response.status_code == 302 and response.location.endswith(f"/leads/{lead.id}")
    assert (lead.phone, lead.source, lead.open_phone_key) == ("+19725550199", "walk_in", "+19725550199")
    assert "region:lower" in lead.active_tag_codes
    assert db.session.scalars(sa.select(Note.body).where(Note.lead_id == lead.id)).all() == [
        "my low back locks up"
    ]
    assert "lead_create" in db.session.scalars(sa.select(AuditEvent.action)).all()
    page = client.get(response.location).get_data(as_text=True)
    assert "Lead created." in page and 'href="tel:+19725550199"' in page


def test_the_same_patient_attaches_to_the_open_lead(client, login_as):
    existing = _existing()
    login_as("front_desk")
    response = _post_new(client, first_name="maría", last_name="DELGADO", phone="+1 972 555 0134")
    assert response.status_code == 302 and response.location.endswith(f"/leads/{existing.id}")
    assert len(_leads()) == 1
    assert "Already a lead" in client.get(response.location).get_data(as_text=True)


def test_a_household_member_makes_a_possible_duplicate(client, login_as):
    existing = _existing()
    login_as("front_desk")
    response = _post_new(client, first_name="Jorge", last_name="Ruiz", phone="972-555-0134")
    first, second = _leads()
    assert first.id == existing.id and second.possible_duplicate_of_id == existing.id
    assert second.open_phone_key is None
    page = client.get(response.location).get_data(as_text=True)
    assert "possible duplicate" in page and f"/leads/{second.id}/merge?into={existing.id}" in page


@pytest.mark.parametrize(
    "data,message",
    [
        ({"first_name": "Ana", "phone": "12"}, "valid phone number"),
        ({"first_name": "Ana"}, "phone or an email"),
        ({"phone": "972-555-0199"}, "first or last name"),
        ({"first_name": "<script>x</script>", "email": "not-an-email"}, "email address"),
    ],
)
def test_bad_input_is_refused_with_a_message_and_kept(client, login_as, data, message):
    login_as("front_desk")
    response = _post_new(client, **data)
    body = response.get_data(as_text=True)
    assert response.status_code == 400 and message in body
    assert "<script>x</script>" not in body
    assert _leads() == []


def test_new_lead_without_csrf_is_refused(client, login_as):
    login_as("front_desk")
    response = client.post("/leads/new", data={"first_name": "Ana", "phone": "972-555-0199"})
    assert response.status_code == 400 and _leads() == []


@pytest.mark.parametrize("path", ["/leads/new", "/leads/import"])
def test_a_surgeon_gets_403(client, login_as, path):
    login_as("surgeon")
    assert client.get(path).status_code == 403


def test_lookup_finds_open_leads_by_phone_and_is_audited(client, login_as):
    existing = _existing()
    user = login_as("front_desk")
    token = csrf_token(client.get("/leads/new").get_data(as_text=True))
    response = client.post("/leads/lookup", data={"phone": "972 555 0134"}, headers={"X-CSRFToken": token})
    assert response.status_code == 200
    assert response.get_json() == {
        "matches": [{"id": existing.id, "name": "Maria Delgado", "url": f"/leads/{existing.id}"}]
    }
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "lead_lookup")).one()
    assert event.user_id == user.id and event.detail["lead_ids"] == [existing.id]
    empty = client.post("/leads/lookup", data={"phone": "214 555 0100"}, headers={"X-CSRFToken": token})
    assert empty.get_json() == {"matches": []}


def test_lookup_refuses_a_forged_post(client, login_as):
    _existing()
    login_as("front_desk")
    assert client.post("/leads/lookup", data={"phone": "972 555 0134"}).status_code == 400  # no token


def test_lookup_refuses_surgeons(client, login_as):
    _existing()
    login_as("surgeon")
    token = csrf_token(client.get("/referrals").get_data(as_text=True))
    response = client.post("/leads/lookup", data={"phone": "972 555 0134"}, headers={"X-CSRFToken": token})
    assert response.status_code == 403


def test_the_new_lead_page_loads_its_script_without_inline_code(client, login_as):
    login_as("front_desk")
    body = client.get("/leads/new").get_data(as_text=True)
    assert '<script src="/static/js/new_lead.js"></script>' in body
    script = client.get("/static/js/new_lead.js")
    assert script.status_code == 200
    script.close()


def _log(client, lead_id, **data):
    token = csrf_token(client.get(f"/leads/{lead_id}").get_data(as_text=True))
    return client.post(f"/leads/{lead_id}/calls", data={"csrf_token": token, **data})


def test_an_unanswered_outbound_call_is_a_first_attempt(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _existing()
    user = login_as("front_desk")
    frozen_clock(utc(2026, 3, 9, 15, 5))
    response = _log(client, lead.id, direction="outbound", outcome="no_answer", notes="")
    assert response.status_code == 302
    db.session.expire_all()
    lead = db.session.get(Lead, lead.id)
    assert lead.first_attempt_at == utc(2026, 3, 9, 15, 5) and lead.first_contact_at is None
    call = db.session.scalars(sa.select(Call).where(Call.lead_id == lead.id)).one()
    assert (call.direction, call.status, call.handled_by_id) == ("outbound", "no-answer", user.id)


def test_an_answered_call_is_the_first_contact_and_its_notes_are_tagged(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _existing()
    login_as("front_desk")
    frozen_clock(utc(2026, 3, 9, 15, 10))
    _log(client, lead.id, direction="outbound", outcome="answered", notes="MRI says bulging disc at L4-L5")
    db.session.expire_all()
    lead = db.session.get(Lead, lead.id)
    assert lead.first_contact_at == utc(2026, 3, 9, 15, 10) and lead.first_contact_due_at is None
    tags = db.session.scalars(sa.select(LeadTag.code).where(LeadTag.lead_id == lead.id)).all()
    assert {"condition:herniated_disc", "region:lower"} <= set(tags)
    assert "call_log" in db.session.scalars(sa.select(AuditEvent.action)).all()


def test_log_call_without_csrf_is_refused(client, login_as):
    lead = _existing()
    login_as("front_desk")
    response = client.post(f"/leads/{lead.id}/calls", data={"direction": "outbound", "outcome": "busy"})
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 0


def test_log_call_by_a_surgeon_is_refused(client, login_as):
    lead = _existing()
    login_as("surgeon")
    token = csrf_token(client.get("/referrals").get_data(as_text=True))
    response = client.post(
        f"/leads/{lead.id}/calls", data={"direction": "outbound", "outcome": "busy", "csrf_token": token}
    )
    assert response.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Call)) == 0


def test_the_queue_offers_new_lead_and_import_to_the_front_desk(client, login_as):
    login_as("front_desk")
    html = client.get("/leads").get_data(as_text=True)
    assert 'href="/leads/new"' in html
    assert 'href="/leads/import"' in html
