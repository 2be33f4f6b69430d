"""Merging two leads of one patient (PRODUCT §2): the survivor keeps everything of both."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import clock, tagging
from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead, log_manual_call
from crm.merge import MergeRefused, merge_leads
from crm.models import (
    AppointmentRequest,
    AuditEvent,
    Call,
    Lead,
    LeadTag,
    Note,
    StageChange,
    Task,
)
from tests.conftest import csrf_token, utc

LINES = {"+19724995457": "main"}


def _lead(first: str, last: str, phone: str, message: str | None = None) -> Lead:
    lead = find_or_create_lead(
        ContactIn(source="phone", first_name=first, last_name=last, phone=phone, message=message),
        now=clock.now(),
    ).lead
    assert lead is not None
    return lead


@pytest.fixture
def pair(app, make_user, frozen_clock):
    """Two leads of one patient, each with a call, a request, a note, a task and tags."""
    frozen_clock(utc(2026, 3, 9, 15, 0))
    staff = make_user("front_desk")
    a = _lead("Maria", "Delgado", "(972) 555-0134", "my low back locks up")
    b = _lead("Mary", "Smith", "(214) 555-0188", "shoots down my left leg")
    log_manual_call(
        direction="outbound", outcome="answered", lines=LINES, lead=a, actor=staff, now=clock.now()
    )
    log_manual_call(
        direction="inbound", outcome="no_answer", lines=LINES, lead=b, actor=staff, now=clock.now()
    )
    db.session.add(AppointmentRequest(lead_id=b.id, first_name="Mary", last_name="Smith", message="help"))
    db.session.add(Note(lead_id=b.id, author_id=staff.id, body="prefers mornings"))
    tagging.remove_staff_tag(b, "radiating:leg", staff)  # a person's removal must survive the merge
    tagging.set_staff_tag(b, "red_flag:weakness", staff)
    db.session.commit()
    return staff, a, b


def _count(model, lead_id):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(model.lead_id == lead_id))


def test_merge_keeps_everything_of_both_and_closes_the_other_as_duplicate(pair):
    staff, a, b = pair
    before = {
        m: _count(m, a.id) + _count(m, b.id) for m in (Call, AppointmentRequest, Note, Task, StageChange)
    }
    merge_leads(a, b, actor=staff, now=clock.now())
    db.session.commit()
    db.session.expire_all()
    for model, total in before.items():
        assert _count(model, a.id) == total, model
    other = db.session.get(Lead, b.id)
    assert (other.stage, other.close_reason, other.merged_into_id) == ("closed", "duplicate", a.id)
    assert other.in_queue is False and other.open_phone_key is None
    closing = db.session.scalars(sa.select(StageChange).where(StageChange.lead_id == b.id)).one()
    assert (closing.from_stage, closing.to_stage, closing.close_reason) == ("new", "closed", "duplicate")
    survivor = db.session.get(Lead, a.id)
    tags = {t.code: t.state for t in db.session.scalars(sa.select(LeadTag).where(LeadTag.lead_id == a.id))}
    assert tags["region:lower"] == "active" and tags["red_flag:weakness"] == "active"
    assert tags["radiating:leg"] == "removed"
    assert survivor.urgent is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 2  # nothing deleted
    actions = set(db.session.scalars(sa.select(AuditEvent.action)))
    assert {"lead_merge", "lead_merged_away"} <= actions


def test_a_removal_on_the_survivor_side_stays_removed(pair):
    staff, a, b = pair
    tagging.remove_staff_tag(a, "region:lower", staff)
    tagging.apply_auto_tags(b, ["region:lower"])
    db.session.commit()
    merge_leads(a, b, actor=staff, now=clock.now())
    db.session.commit()
    row = db.session.scalars(
        sa.select(LeadTag).where(LeadTag.lead_id == a.id, LeadTag.code == "region:lower")
    ).one()
    assert row.state == "removed"


@pytest.mark.parametrize(
    "case,message",
    [
        ("self", "into itself"),
        ("closed", "is closed"),
        ("merged", "already merged"),
        ("into_merged", "was itself merged"),
    ],
)
def test_merge_refusals(pair, make_lead, case, message):
    staff, a, b = pair
    if case == "self":
        survivor, other = a, a
    elif case == "closed":
        survivor, other = make_lead(stage="closed", close_reason="no_response", closed_from_stage="new"), b
    elif case == "merged":
        merge_leads(a, b, actor=staff, now=clock.now())
        survivor, other = make_lead(), b
    else:
        merge_leads(a, b, actor=staff, now=clock.now())
        survivor, other = b, make_lead()
    db.session.commit()
    with pytest.raises(MergeRefused, match=message):
        merge_leads(survivor, other, actor=staff, now=clock.now())


def test_the_page_confirms_side_by_side_then_merges_and_redirects(client, login_as, pair):
    _staff, a, b = pair
    login_as("front_desk")
    page = client.get(f"/leads/{b.id}/merge?into={a.id}")
    body = page.get_data(as_text=True)
    assert page.status_code == 200 and "Mary Smith" in body and "Maria Delgado" in body
    assert f'href="tel:{a.phone}"' in body
    assert "RED FLAG: weakness" in body and "red_flag:weakness" not in body  # tags by their labels
    response = client.post(f"/leads/{b.id}/merge", data={"into": a.id, "csrf_token": csrf_token(body)})
    assert response.status_code == 302 and response.location.endswith(f"/leads/{a.id}")
    db.session.expire_all()
    assert db.session.get(Lead, b.id).merged_into_id == a.id
    assert client.get(f"/leads/{b.id}").location.endswith(f"/leads/{a.id}")
    queue_ids = db.session.scalars(sa.select(Lead.id).where(Lead.in_queue.is_(True))).all()
    assert b.id not in queue_ids


def test_the_page_shows_a_refusal_and_merges_nothing(client, login_as, pair):
    _staff, a, _b = pair
    login_as("manager")
    page = client.get(f"/leads/{a.id}/merge?into={a.id}")
    assert page.status_code == 400 and "into itself" in page.get_data(as_text=True)


def test_merge_without_csrf_is_refused(client, login_as, pair):
    _staff, a, b = pair
    login_as("front_desk")
    response = client.post(f"/leads/{b.id}/merge", data={"into": a.id})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(Lead, b.id).merged_into_id is None


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_surgeon_may_not_merge(client, login_as, pair, method):
    _staff, a, b = pair
    login_as("surgeon")
    token = csrf_token(client.get("/referrals").get_data(as_text=True))
    response = getattr(client, method)(f"/leads/{b.id}/merge", data={"into": a.id, "csrf_token": token})
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Lead, b.id).merged_into_id is None
