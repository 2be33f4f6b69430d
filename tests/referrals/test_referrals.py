"""The surgeons' referral queue: packets, decisions, taking a referral, scope, print, CSRF."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.models import (
    Appointment,
    AppointmentRequest,
    AuditEvent,
    Call,
    Lead,
    Notification,
    ReferringPractice,
    StageChange,
    Task,
)
from crm.referrals.routes import PAGE_SIZE
from crm.settings import get_settings
from tests.conftest import csrf_token, utc

FAILED_PT = "Lower back pain for 2 years, did 8 weeks of PT and no better. MRI says bulging disc at L4-L5."


@pytest.fixture
def referral(make_lead, make_user):
    """A lead in review owned by a front-desk member, with the patient's own words."""

    def make(**overrides):
        desk = overrides.pop("owner", None) or make_user("front_desk", name="Ana Reyes")
        values = {
            "stage": "surgical_review",
            "tags": ["history:failed_pt", "region:lower", "condition:herniated_disc"],
            "owner_id": desk.id,
            "pt_weeks": 8,
            "pt_helped": False,
            "imaging_type": "MRI",
            "imaging_finding": "L4-L5 broad-based disc bulge",
            "stage_entered_at": clock.now() - timedelta(days=2),
        }
        values.update(overrides)
        lead = make_lead(**values)
        db.session.add(
            AppointmentRequest(lead_id=lead.id, message=FAILED_PT, submitted_at=utc(2026, 3, 2, 15))
        )
        db.session.commit()
        return lead

    return make


def queue_page(client) -> str:
    response = client.get("/referrals")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def fresh(lead_id: int) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead_id)


def test_the_queue_shows_a_decision_packet_urgent_first(client, login_as, referral):
    surgeon = login_as("surgeon")
    practice = ReferringPractice(name="Plano Family Medicine")
    db.session.add(practice)
    db.session.commit()
    older = referral(surgeon_id=surgeon.id, first_name="Older", referring_practice_id=practice.id)
    urgent = referral(
        first_name="Urgent", tags=["red_flag:weakness"], urgent=True, stage_entered_at=clock.now()
    )
    html = queue_page(client)
    assert html.index(f'id="lead-{urgent.id}"') < html.index(f'id="lead-{older.id}"')
    packet = html[html.index(f'id="lead-{older.id}"') :]
    assert "Physical therapy 8 weeks, did not help." in packet
    assert "<strong>MRI</strong>: “L4-L5 broad-based disc bulge”" in packet
    assert "Plano Family Medicine" in packet and "front desk: Ana Reyes" in packet
    assert re.search(r'<mark id="ev0-\d+"[^>]*>PT and no better</mark>', packet)
    assert "go to the nearest emergency room now" in html
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral_list"))
    assert event.detail["lead_ids"] == [urgent.id, older.id]


def test_a_surgeon_sees_their_referrals_and_unassigned_ones_only(client, login_as, referral, make_user):
    surgeon = login_as("surgeon")
    mine = referral(surgeon_id=surgeon.id, first_name="Mine")
    free = referral(first_name="Unassigned")
    theirs = referral(surgeon_id=make_user("surgeon").id, first_name="Theirs")
    html = queue_page(client)
    assert f'id="lead-{mine.id}"' in html and f'id="lead-{free.id}"' in html
    assert f'id="lead-{theirs.id}"' not in html
    assert client.get(f"/referrals/{theirs.id}/print").status_code == 404
    assert client.get(f"/leads/{theirs.id}").status_code == 404
    token = csrf_token(html)
    response = client.post(
        f"/referrals/{theirs.id}/accept",
        data={"csrf_token": token, f"r{theirs.id}-consult_at": "2026-12-01T09:00"},
    )
    assert response.status_code == 404
    assert fresh(theirs.id).stage == "surgical_review"


def test_a_surgeon_accepts_with_a_consult_time_and_the_owner_is_told(client, login_as, referral):
    surgeon = login_as("surgeon", name="Dr. Rivera")
    lead = referral(surgeon_id=surgeon.id)
    token = csrf_token(queue_page(client))
    response = client.post(
        f"/referrals/{lead.id}/accept",
        data={
            "csrf_token": token,
            f"r{lead.id}-consult_at": "2026-12-01T09:00",
            f"r{lead.id}-note": "Bring MRI",
        },
    )
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Accepted: consult booked" in html and f'id="lead-{lead.id}"' not in html
    lead = fresh(lead.id)
    assert lead.stage == "consult_scheduled"
    appt = db.session.scalar(sa.select(Appointment).where(Appointment.lead_id == lead.id))
    assert (appt.starts_at, appt.surgeon_id) == (utc(2026, 12, 1, 15, 0), surgeon.id)  # 9:00 CST
    note = db.session.scalar(sa.select(Notification).where(Notification.user_id == lead.owner_id))
    assert note.message == "Dr. Rivera accepted the referral and booked a consult."
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral_decision"))
    assert event.detail == {"decision": "accept", "stage": "consult_scheduled"}


def test_accepting_without_a_consult_time_is_refused(client, login_as, referral):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=surgeon.id)
    token = csrf_token(queue_page(client))
    response = client.post(f"/referrals/{lead.id}/accept", data={"csrf_token": token})
    assert "Choose the consult&#39;s date and time." in client.get(response.headers["Location"]).get_data(
        as_text=True
    )
    assert fresh(lead.id).stage == "surgical_review"
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Appointment)) == 0


@pytest.mark.parametrize(
    ("outcome", "stage", "close_reason"),
    [("not_a_candidate", "closed", "not_a_candidate"), ("conservative_care", "conservative_care", None)],
)
def test_a_surgeon_declines_with_a_reason(client, login_as, referral, outcome, stage, close_reason):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=surgeon.id)
    token = csrf_token(queue_page(client))
    response = client.post(
        f"/referrals/{lead.id}/decline",
        data={
            "csrf_token": token,
            f"r{lead.id}-outcome": outcome,
            f"r{lead.id}-reason": "Six more weeks of PT",
        },
    )
    assert "Declined" in client.get(response.headers["Location"]).get_data(as_text=True)
    lead = fresh(lead.id)
    assert (lead.stage, lead.close_reason) == (stage, close_reason)
    change = db.session.scalar(sa.select(StageChange).where(StageChange.lead_id == lead.id))
    assert (change.from_stage, change.to_stage, change.reason) == (
        "surgical_review",
        stage,
        "Six more weeks of PT",
    )


def test_declining_without_a_reason_is_refused(client, login_as, referral):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=surgeon.id)
    token = csrf_token(queue_page(client))
    response = client.post(
        f"/referrals/{lead.id}/decline", data={"csrf_token": token, f"r{lead.id}-outcome": "not_a_candidate"}
    )
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Write the reason or the plan for the front desk." in html
    assert fresh(lead.id).stage == "surgical_review"


def test_a_surgeon_asks_for_more_information(client, login_as, referral, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    surgeon = login_as("surgeon", name="Dr. Rivera")
    lead = referral(surgeon_id=surgeon.id)
    token = csrf_token(queue_page(client))
    response = client.post(
        f"/referrals/{lead.id}/more-info",
        data={"csrf_token": token, f"r{lead.id}-needed": "The MRI report itself, please"},
    )
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Asked the owner for more information" in html and f'id="lead-{lead.id}"' in html
    task = db.session.scalar(sa.select(Task).where(Task.lead_id == lead.id))
    assert (task.kind, task.assignee_id, task.due_at) == ("more_info", lead.owner_id, utc(2026, 3, 10, 15, 0))
    assert "The MRI report itself, please" in task.title
    assert fresh(lead.id).stage == "surgical_review"


def test_a_surgeon_takes_an_unassigned_referral(client, login_as, referral):
    surgeon = login_as("surgeon")
    lead = referral()
    html = queue_page(client)
    assert "Take this referral" in html
    response = client.post(f"/referrals/{lead.id}/take", data={"csrf_token": csrf_token(html)})
    assert "is now in your queue" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert fresh(lead.id).surgeon_id == surgeon.id
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "referral_take"))
    assert (event.user_id, event.lead_id) == (surgeon.id, lead.id)


def test_a_taken_referral_cannot_be_taken_again(client, login_as, referral, make_user):
    login_as("surgeon")
    lead = referral()
    html = queue_page(client)
    other = make_user("surgeon")
    lead.surgeon_id = other.id
    db.session.commit()
    response = client.post(f"/referrals/{lead.id}/take", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 404  # now outside this surgeon's scope
    assert fresh(lead.id).surgeon_id == other.id


def test_a_manager_decides_but_does_not_take(client, login_as, referral):
    login_as("manager")
    lead = referral()
    html = queue_page(client)
    assert "Take this referral" not in html and "Accept and book" in html
    response = client.post(f"/referrals/{lead.id}/take", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 403
    assert fresh(lead.id).surgeon_id is None


@pytest.mark.parametrize("role", ["front_desk", "admin"])
def test_other_roles_get_403_on_the_queue_and_decisions(client, login_as, referral, role):
    login_as(role)
    lead = referral()
    assert client.get("/referrals").status_code == 403
    token = csrf_token(client.get(f"/leads/{lead.id}").get_data(as_text=True))
    response = client.post(f"/referrals/{lead.id}/decline", data={"csrf_token": token})
    assert response.status_code == 403
    assert fresh(lead.id).stage == "surgical_review"


def test_the_print_view_holds_the_packet(client, login_as, referral):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=surgeon.id, first_name="Printed")
    response = client.get(f"/referrals/{lead.id}/print")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Referral packet: Printed" in html and ">PT and no better</mark>" in html
    assert "Accept and book" not in html
    assert (
        db.session.scalar(sa.select(AuditEvent.action).where(AuditEvent.lead_id == lead.id))
        == "referral_print"
    )


def test_each_packet_has_decision_fields_of_its_own(client, login_as, referral, make_user):
    """Labels point at their own packet's fields; the owner's name in the hint is escaped text."""
    login_as("surgeon")
    first = referral(owner=make_user("front_desk", name="Ana <b>Reyes</b>"))
    second = referral(owner=make_user("front_desk", name="Ben Ortiz"))
    html = queue_page(client)
    for lead in (first, second):
        p = f"r{lead.id}-"
        for name in ("consult_at", "note", "outcome", "reason", "needed"):
            assert html.count(f'name="{p}{name}"') == 1, name
            assert html.count(f'for="{p}{name}"') == 1, name
    assert "rLEAD" not in html and "OWNER-NAME" not in html
    assert "A task for Ana &lt;b&gt;Reyes&lt;/b&gt;; the lead stays here." in html
    assert "<b>Reyes" not in html
    assert "A task for Ben Ortiz; the lead stays here." in html


@pytest.mark.parametrize("action", ["accept", "decline", "more-info", "take"])
def test_every_decision_form_refuses_a_post_without_its_csrf_token(client, login_as, referral, action):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=None if action == "take" else surgeon.id)
    p = f"r{lead.id}-"
    data = {
        p + "consult_at": "2026-12-01T09:00",
        p + "outcome": "not_a_candidate",
        p + "reason": "x",
        p + "needed": "x",
    }
    response = client.post(f"/referrals/{lead.id}/{action}", data=data)
    assert response.status_code == 400
    lead = fresh(lead.id)
    assert (lead.stage, lead.surgeon_id) == ("surgical_review", None if action == "take" else surgeon.id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 0


@pytest.mark.parametrize("size", [3, 30])
def test_the_queue_costs_the_same_with_3_or_30_referrals(
    client, login_as, referral, make_user, count_queries, size
):
    surgeon = login_as("surgeon")
    desk = make_user("front_desk")
    practice = ReferringPractice(name="Plano Family Medicine")
    db.session.add(practice)
    db.session.commit()
    for i in range(size):
        lead = referral(
            owner=desk, surgeon_id=surgeon.id if i % 2 else None, referring_practice_id=practice.id
        )
        db.session.add(
            Call(lead_id=lead.id, direction="inbound", status="completed", notes="shoots down my leg")
        )
    get_settings()
    db.session.commit()
    with count_queries() as queries:
        html = queue_page(client)
    assert html.count('<article class="packet') == min(size, PAGE_SIZE)
    # 1 session with its user, 2 the page of leads with owner, surgeon and practice joined and
    # the count of all waiting referrals on each row, 3 their tags, 4-6 the patient's words: form
    # messages, call notes, notes with authors, 7 the clinic's settings (time zone), 8 the audit
    # row listing the leads shown.
    assert len(queries) == 8, "\n".join(q[:70] for q in queries.statements)


def test_the_queue_pages_through_every_referral_once(client, login_as, referral):
    surgeon = login_as("surgeon")
    ids = {referral(surgeon_id=surgeon.id).id for _ in range(PAGE_SIZE + 3)}
    seen: list[int] = []
    for page in (1, 2):
        html = client.get(f"/referrals?page={page}").get_data(as_text=True)
        seen += [int(i) for i in re.findall(r'<article class="packet[^"]*" id="lead-(\d+)"', html)]
    assert sorted(seen) == sorted(ids)


def test_a_page_past_the_end_shows_the_last_page(client, login_as, referral):
    surgeon = login_as("surgeon")
    made = [referral(surgeon_id=surgeon.id).id for _ in range(PAGE_SIZE + 3)]
    last = client.get("/referrals?page=2").get_data(as_text=True)
    past = client.get("/referrals?page=99").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'<article class="packet[^"]*" id="lead-(\d+)"', past)]
    assert len(shown) == 3 and set(shown) <= set(made)
    assert shown == [int(i) for i in re.findall(r'<article class="packet[^"]*" id="lead-(\d+)"', last)]


def test_the_lead_page_points_a_surgeon_to_the_packet_to_decide(client, login_as, referral):
    surgeon = login_as("surgeon")
    lead = referral(surgeon_id=surgeon.id)
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert f'href="/referrals#lead-{lead.id}"' in page and f'href="/referrals/{lead.id}/print"' in page
