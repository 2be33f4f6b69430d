"""A patient's whole record from the lead page: JSON and a printable page, each audited once."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm import intake
from crm.extensions import db
from crm.leadedit import add_note
from crm.models import Appointment, AuditEvent, Lead
from crm.pipeline import MoveRequest, move
from tests.conftest import utc

T0 = utc(2026, 3, 9, 15, 0)
MESSAGE = "Numb <b>left</b> foot & low back pain for 8 weeks"
SECTIONS_FILLED = ("consents", "calls", "appointment_requests", "notes", "tags", "stage_changes", "tasks")


def _patient(make_user, frozen_clock) -> Lead:
    """A patient with a form request, a missed call, a note, a stage move and an appointment."""
    frozen_clock(T0)
    desk = make_user("front_desk", name="Dana Desk")
    contact = intake.ContactIn(
        source="web_form",
        first_name="Rosalind",
        last_name="Okonkwo-Tate",
        phone="(469) 555-0142",
        email="rosalind@example.com",
        consent={"phone": True, "sms": False},
        message=MESSAGE,
    )
    lead = intake.receive_web_request(intake.WebRequestIn(contact=contact, where_it_hurts=["lower"])).lead
    intake.receive_call_event(
        intake.CallEventIn(
            call_sid="CA" + "7" * 32,
            from_number="+14695550142",
            to_number="+19724995457",
            direction="inbound",
            status="no-answer",
            started_at=T0 + timedelta(hours=1),
        ),
        lines={"+19724995457": "main"},
    )
    add_note(lead, "Left a voicemail; patient prefers mornings.", actor=desk)
    move(lead, MoveRequest(to="contacted"), actor=desk)
    db.session.add(
        Appointment(lead_id=lead.id, kind="imaging", starts_at=T0 + timedelta(days=3), created_at=T0)
    )
    db.session.commit()
    return lead


def _audits(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == action)))


@pytest.mark.parametrize("role", ["front_desk", "manager", "admin"])
def test_it_downloads_every_part_of_the_record_as_json_and_audits_it_once(
    client, login_as, make_user, frozen_clock, role
):
    lead = _patient(make_user, frozen_clock)
    user = login_as(role)

    response = client.get(f"/leads/{lead.id}/record.json")

    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert f'filename="patient-record-lead-{lead.id}.json"' in response.headers["Content-Disposition"]
    assert response.headers["Cache-Control"] == "no-store"
    record = json.loads(response.get_data(as_text=True))
    assert record["lead"]["first_name"] == "Rosalind" and record["lead"]["phone"] == "+14695550142"
    assert record["lead"]["stage"] == "contacted" and record["lead"]["email"] == "rosalind@example.com"
    assert {name for name in SECTIONS_FILLED if record[name]} == set(SECTIONS_FILLED)
    assert record["appointment_requests"][0]["message"] == MESSAGE
    assert record["calls"][0]["status"] == "no-answer"
    assert record["appointments"][0]["kind"] == "imaging"
    assert [c["to_stage"] for c in record["stage_changes"]] == ["new", "contacted"]
    assert "Dana Desk" in record["staff"].values()
    [event] = _audits("record_export")
    assert (event.user_id, event.lead_id, event.detail) == (user.id, lead.id, {"format": "json"})


def test_the_printable_page_shows_the_record_escaped_and_audits_it_once(
    client, login_as, make_user, frozen_clock
):
    lead = _patient(make_user, frozen_clock)
    user = login_as("front_desk")

    response = client.get(f"/leads/{lead.id}/record")

    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Patient record: Rosalind Okonkwo-Tate" in page
    assert "Numb &lt;b&gt;left&lt;/b&gt; foot &amp; low back pain" in page and "<b>left</b>" not in page
    assert "Left a voicemail; patient prefers mornings." in page
    assert "Appointments (1)" in page and "Calls (1)" in page
    [event] = _audits("record_print")
    assert (event.user_id, event.lead_id) == (user.id, lead.id)
    assert _audits("record_export") == []


def test_the_lead_page_links_to_both(client, login_as, make_lead):
    lead = make_lead()
    login_as("front_desk")
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert f'href="/leads/{lead.id}/record"' in page and f'href="/leads/{lead.id}/record.json"' in page


@pytest.mark.parametrize("path", ["record", "record.json"])
def test_a_surgeon_gets_404_for_a_lead_outside_their_scope_and_nothing_is_audited(
    client, login_as, make_lead, path
):
    lead = make_lead(first_name="Hidden", last_name="Patient", stage="new")
    login_as("surgeon")
    response = client.get(f"/leads/{lead.id}/{path}")
    assert response.status_code == 404
    assert "Hidden" not in response.get_data(as_text=True)
    assert _audits("record_export") == _audits("record_print") == []


def test_a_surgeon_can_export_a_referral_assigned_to_them(client, login_as, make_lead):
    surgeon = login_as("surgeon")
    lead = make_lead(stage="surgical_review", surgeon_id=surgeon.id)
    assert client.get(f"/leads/{lead.id}/record.json").status_code == 200
    assert len(_audits("record_export")) == 1


def test_a_visitor_is_sent_to_sign_in(client, make_lead):
    lead = make_lead()
    response = client.get(f"/leads/{lead.id}/record.json")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
