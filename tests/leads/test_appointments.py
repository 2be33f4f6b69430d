"""Appointments on the lead page: booked in clinic time, outcomes recorded, by the roles of PRODUCT §5."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.models import Appointment, AuditEvent, Task
from tests.conftest import csrf_token, utc


def page(client, lead_id: int) -> str:
    response = client.get(f"/leads/{lead_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def make_appointment(lead, **overrides) -> Appointment:
    values = {"lead_id": lead.id, "kind": "consult", "starts_at": utc(2026, 3, 10, 15, 0)}
    values.update(overrides)
    appointment = Appointment(**values)
    db.session.add(appointment)
    db.session.commit()
    return appointment


def test_front_desk_books_a_consult_in_clinic_time(client, login_as, make_lead, make_user, frozen_clock):
    frozen_clock(utc(2026, 3, 2, 15, 0))
    desk = login_as("front_desk")
    surgeon = make_user("surgeon", name="Dr. Rivera")
    lead = make_lead(stage="surgical_review")
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/appointments",
        data={
            "csrf_token": token,
            "kind": "consult",
            "starts_at": "2026-03-10T09:00",
            "surgeon": str(surgeon.id),
            "location": "Plano office, suite 200",
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Appointment booked." in html and "Plano office, suite 200" in html
    [appointment] = db.session.scalars(sa.select(Appointment).where(Appointment.lead_id == lead.id)).all()
    # 9:00 in Plano on 10 March 2026 is CDT (UTC-5): daylight saving began on the 8th.
    assert (appointment.kind, appointment.starts_at, appointment.surgeon_id, appointment.created_by_id) == (
        "consult",
        utc(2026, 3, 10, 14, 0),
        surgeon.id,
        desk.id,
    )
    assert "appointment_booked" in db.session.scalars(
        sa.select(AuditEvent.action).where(AuditEvent.lead_id == lead.id)
    )


def test_a_booking_without_a_time_is_refused(client, login_as, make_lead):
    login_as("manager")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/appointments", data={"csrf_token": token, "kind": "imaging"}, follow_redirects=True
    )
    assert "Give the date and time." in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0


@pytest.mark.parametrize("outcome", ["attended", "no_show", "canceled", "rescheduled"])
def test_a_surgeon_records_the_outcome_of_a_consult(client, login_as, make_lead, outcome):
    surgeon = login_as("surgeon")
    lead = make_lead(stage="consult_scheduled", surgeon_id=surgeon.id)
    appointment = make_appointment(lead, surgeon_id=surgeon.id)
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/appointments/{appointment.id}/outcome",
        data={"csrf_token": token, "outcome": outcome},
        follow_redirects=True,
    )
    assert "Outcome recorded." in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Appointment, appointment.id).outcome == outcome


def test_an_appointment_of_another_lead_is_404(client, login_as, make_lead):
    login_as("front_desk")
    lead, other = make_lead(), make_lead()
    appointment = make_appointment(other)
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/appointments/{appointment.id}/outcome",
        data={"csrf_token": token, "outcome": "attended"},
    )
    assert response.status_code == 404
    db.session.expire_all()
    assert db.session.get(Appointment, appointment.id).outcome is None


POSTS = [
    ("/leads/{lead}/appointments", {"kind": "consult", "starts_at": "2026-03-10T09:00"}),
    ("/leads/{lead}/appointments/{appointment}/outcome", {"outcome": "attended"}),
]


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_every_appointment_form_refuses_a_post_without_its_csrf_token(
    client, login_as, make_lead, path, data
):
    login_as("front_desk")
    lead = make_lead()
    appointment = make_appointment(lead)
    response = client.post(path.format(lead=lead.id, appointment=appointment.id), data=data)
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 1
    assert db.session.get(Appointment, appointment.id).outcome is None


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_an_admin_may_not_book_or_record_outcomes(client, login_as, make_lead, path, data):
    login_as("admin")
    lead = make_lead()
    appointment = make_appointment(lead)
    token = csrf_token(page(client, lead.id))
    response = client.post(
        path.format(lead=lead.id, appointment=appointment.id), data={"csrf_token": token, **data}
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 1
    assert db.session.get(Appointment, appointment.id).outcome is None


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("appointments", "starts_at", "The appointment&#39;s date is in the past."),
        ("tasks", "due_at", "The due date is in the past."),
    ],
)
def test_a_day_already_gone_is_refused_and_nothing_is_booked(
    client, login_as, make_lead, frozen_clock, path, field, message
):
    frozen_clock(utc(2026, 3, 10, 15, 0))  # 10:00 in Plano
    login_as("front_desk")
    lead = make_lead(stage="surgical_review")
    token = csrf_token(page(client, lead.id))
    data = {"csrf_token": token, "kind": "consult" if path == "appointments" else "callback", "title": "Call"}
    response = client.post(
        f"/leads/{lead.id}/{path}", data=data | {field: "2025-03-10T09:00"}, follow_redirects=True
    )
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert 'value="2025-03-10T09:00"' in response.get_data(as_text=True)  # what was typed is kept
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 0
    # Earlier today is still today: a task for this morning, a walk-in consult.
    response = client.post(
        f"/leads/{lead.id}/{path}", data=data | {field: "2026-03-10T08:00"}, follow_redirects=True
    )
    assert message not in response.get_data(as_text=True)
    model = Appointment if path == "appointments" else Task
    assert db.session.scalar(sa.select(sa.func.count()).select_from(model)) == 1
