"""Tags edited on the lead page (a person's word wins) and the urgent flag cleared only by a person."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import tagging
from crm.extensions import db
from crm.models import AuditEvent, Lead, LeadTag, Note, TagChange
from tests.conftest import csrf_token


def page(client, lead_id: int) -> str:
    response = client.get(f"/leads/{lead_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def fresh_lead(lead_id: int) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead_id)


def tag_states(lead_id: int) -> dict[str, tuple[str, str]]:
    rows = db.session.scalars(sa.select(LeadTag).where(LeadTag.lead_id == lead_id))
    return {row.code: (row.origin, row.state) for row in rows}


def test_staff_adds_a_tag_from_the_lead_page(client, login_as, make_lead):
    desk = login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/tags",
        data={"csrf_token": token, "code": "condition:stenosis"},
        follow_redirects=True,
    )
    assert "Tag added: " in response.get_data(as_text=True)
    assert tag_states(lead.id) == {"condition:stenosis": ("staff", "active")}
    change = db.session.scalar(sa.select(TagChange).where(TagChange.lead_id == lead.id))
    assert (change.code, change.action, change.actor_id) == ("condition:stenosis", "added", desk.id)
    assert not fresh_lead(lead.id).urgent


def test_a_red_flag_added_by_staff_makes_the_lead_urgent(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/tags",
        data={"csrf_token": token, "code": "red_flag:weakness"},
        follow_redirects=True,
    )
    assert "<strong>Urgent — red flag: weakness.</strong>" in response.get_data(as_text=True)
    assert fresh_lead(lead.id).urgent is True


def test_a_removed_automatic_tag_stays_removed_when_a_later_note_suggests_it(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead(tags=["region:lower", "condition:muscle_strain"])
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/tags/remove",
        data={"csrf_token": token, "code": "condition:muscle_strain"},
        follow_redirects=True,
    )
    assert "Tag removed: " in response.get_data(as_text=True)
    lead = fresh_lead(lead.id)
    added = tagging.apply_auto_tags(lead, ["condition:muscle_strain", "side:left"])
    db.session.commit()
    assert added == ["side:left"]
    assert tag_states(lead.id) == {
        "region:lower": ("auto", "active"),
        "condition:muscle_strain": ("staff", "removed"),
        "side:left": ("auto", "active"),
    }


def test_an_unknown_tag_is_refused(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/tags", data={"csrf_token": token, "code": "mood:grumpy"}, follow_redirects=True
    )
    assert response.status_code == 200 and "Tag added" not in response.get_data(as_text=True)
    assert tag_states(lead.id) == {}


def test_a_person_clears_the_urgent_flag_with_a_reason(client, login_as, make_lead):
    desk = login_as("front_desk")
    lead = make_lead(tags=["red_flag:trauma"], urgent=True)
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/urgent/clear",
        data={"csrf_token": token, "reason": "The fall was ten years ago; seen in the ER then."},
        follow_redirects=True,
    )
    assert "Urgent flag cleared." in response.get_data(as_text=True)
    assert fresh_lead(lead.id).urgent is False
    note = db.session.scalar(sa.select(Note).where(Note.lead_id == lead.id))
    assert (note.body, note.author_id) == (
        "Urgent flag cleared: The fall was ten years ago; seen in the ER then.",
        desk.id,
    )
    event = db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.lead_id == lead.id, AuditEvent.action == "urgent_cleared")
    )
    assert event is not None and event.user_id == desk.id


def test_clearing_the_urgent_flag_needs_a_reason(client, login_as, make_lead):
    login_as("manager")
    lead = make_lead(tags=["red_flag:trauma"], urgent=True)
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/urgent/clear", data={"csrf_token": token, "reason": "  "}, follow_redirects=True
    )
    assert "Say why the urgent flag is cleared." in response.get_data(as_text=True)
    assert fresh_lead(lead.id).urgent is True
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


POSTS = [
    ("/leads/{lead}/tags", {"code": "red_flag:weakness"}),
    ("/leads/{lead}/tags/remove", {"code": "red_flag:trauma"}),
    ("/leads/{lead}/urgent/clear", {"reason": "resolved"}),
]


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_every_tag_form_refuses_a_post_without_its_csrf_token(client, login_as, make_lead, path, data):
    login_as("front_desk")
    lead = make_lead(tags=["red_flag:trauma"], urgent=True)
    response = client.post(path.format(lead=lead.id), data=data)
    assert response.status_code == 400
    assert tag_states(lead.id) == {"red_flag:trauma": ("auto", "active")} and fresh_lead(lead.id).urgent


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_a_surgeon_may_not_edit_tags_or_clear_the_urgent_flag(client, login_as, make_lead, path, data):
    surgeon = login_as("surgeon")
    lead = make_lead(stage="surgical_review", surgeon_id=surgeon.id, tags=["red_flag:trauma"], urgent=True)
    token = csrf_token(page(client, lead.id))
    response = client.post(path.format(lead=lead.id), data={"csrf_token": token, **data})
    assert response.status_code == 403
    assert tag_states(lead.id) == {"red_flag:trauma": ("auto", "active")} and fresh_lead(lead.id).urgent
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0
