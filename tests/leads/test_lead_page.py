"""The lead page: explained tags, edits without lost updates, stage moves, notes, notifications."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.leadedit import update_lead
from crm.models import (
    AppointmentRequest,
    AuditEvent,
    Call,
    Lead,
    Note,
    Notification,
    StageChange,
    User,
)
from crm.pipeline import GATE_MESSAGE
from crm.settings import get_settings
from tests.conftest import csrf_token, utc

MESSAGE = (
    "My low back <b>hurts</b> & it shoots down my left leg. No numbness in my legs. <script>alert(1)</script>"
)


def page(client, lead_id: int) -> str:
    response = client.get(f"/leads/{lead_id}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def audit_actions(lead_id: int) -> list[str]:
    return list(
        db.session.scalars(
            sa.select(AuditEvent.action).where(AuditEvent.lead_id == lead_id).order_by(AuditEvent.id)
        )
    )


def stage_rows(lead_id: int) -> list[tuple[str | None, str]]:
    rows = db.session.execute(
        sa.select(StageChange.from_stage, StageChange.to_stage).where(StageChange.lead_id == lead_id)
    ).all()
    return [tuple(r) for r in rows]


def fresh(lead: Lead) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead.id)


# --------------------------------------------------------------------------- evidence


def test_it_marks_the_patients_words_behind_each_tag_and_escapes_their_html(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead(tags=["region:lower", "radiating:leg", "side:left"])
    db.session.add(AppointmentRequest(lead_id=lead.id, message=MESSAGE, submitted_at=utc(2026, 3, 2, 15)))
    html = page(client, lead.id)

    marks = re.findall(r'<mark id="(ev0-\d+)"[^>]*>([^<]*)</mark>', html)
    # "left leg" (side) lies inside "shoots down my left leg" (radiating): one mark gives both.
    assert [text for _, text in marks] == ["low back", "shoots down my left leg"]
    anchor = next(a for a, text in marks if text == "low back")
    assert f'href="#{anchor}" class="ev-link">“low back”</a>' in html
    assert "&lt;b&gt;hurts&lt;/b&gt; &amp; it" in html
    assert "<script>alert(1)</script>" not in html and "<b>hurts" not in html
    assert re.search(r"“numbness in my legs”\s*—\s*negated", html)
    assert audit_actions(lead.id) == ["lead_view"]


def test_an_urgent_lead_shows_the_emergency_script(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead(tags=["red_flag:trauma", "region:lower"], urgent=True)
    html = page(client, lead.id)
    assert 'class="alert alert-urgent" role="alert"' in html
    assert "<strong>Urgent — red flag: significant trauma.</strong>" in html  # which flag, by name
    assert "go to the nearest emergency room now or call 911" in html


# --------------------------------------------------------------------------- stage moves


def post_stage(client, lead_id: int, **data: str):
    token = csrf_token(page(client, lead_id))
    return client.post(f"/leads/{lead_id}/stage", data={"csrf_token": token, **data})


def test_front_desk_moves_a_lead_with_failed_pt_to_surgical_review(client, login_as, make_lead, make_user):
    desk = login_as("front_desk")
    surgeon = make_user("surgeon", name="Dr. Rivera")
    lead = make_lead(stage="evaluation", tags=["history:failed_pt"])
    response = post_stage(client, lead.id, to="surgical_review", surgeon=str(surgeon.id))
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Moved to Surgical review." in html and "surgeon Dr. Rivera" in html
    lead = fresh(lead)
    assert (lead.stage, lead.surgeon_id) == ("surgical_review", surgeon.id)
    assert stage_rows(lead.id) == [("evaluation", "surgical_review")]
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lead_stage"))
    assert (event.user_id, event.detail) == (desk.id, {"from": "evaluation", "to": "surgical_review"})


def test_the_gate_refusal_is_shown_word_for_word_and_nothing_changes(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead(stage="evaluation", tags=["region:lower"])
    response = post_stage(client, lead.id, to="surgical_review", reason="PT next week")
    html = response.get_data(as_text=True)
    # The reason sits in the stage card, above the form, which keeps what was chosen and typed
    # and takes the focus (the browser scrolls it into view).
    assert response.status_code == 400
    card = html[html.index('id="stage-h"') : html.index('id="note-h"')]
    refusal = f'role="alert" id="stage-refusal"><p>Surgical review {GATE_MESSAGE}.</p></div>'
    assert refusal in card
    assert '<option selected value="surgical_review">' in card
    assert "PT next week</textarea>" in card
    assert re.search(r'<select[^>]*autofocus[^>]*id="to"|<select[^>]*id="to"[^>]*autofocus', card), card
    assert fresh(lead).stage == "evaluation"
    assert stage_rows(lead.id) == []
    assert "lead_stage" not in audit_actions(lead.id)


def test_a_consult_date_is_read_in_clinic_time(client, login_as, make_lead, frozen_clock):
    frozen_clock(utc(2026, 7, 1, 15, 0))
    login_as("manager")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    post_stage(client, lead.id, to="consult_scheduled", consult_at="2026-07-14T09:30")
    lead = fresh(lead)
    assert lead.stage == "consult_scheduled"
    from crm.models import Appointment

    appt = db.session.scalar(sa.select(Appointment).where(Appointment.lead_id == lead.id))
    assert appt.starts_at == utc(2026, 7, 14, 14, 30)  # 9:30 CDT


def test_a_consult_on_a_day_already_gone_is_refused(client, login_as, make_lead, frozen_clock):
    frozen_clock(utc(2026, 7, 15, 15, 0))
    login_as("manager")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    response = post_stage(client, lead.id, to="consult_scheduled", consult_at="2026-07-14T09:30")
    assert response.status_code == 400
    assert "The consult&#39;s date is in the past. Give a date from today on." in response.get_data(
        as_text=True
    )
    assert fresh(lead).stage == "surgical_review" and stage_rows(lead.id) == []


def test_the_front_desk_cannot_decide_a_referral(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    html = page(client, lead.id)
    assert '<option value="consult_scheduled"' not in html
    response = post_stage(client, lead.id, to="consult_scheduled", consult_at="2026-07-14T09:30")
    assert response.status_code == 400
    assert "Only a surgeon or a manager decides a referral" in response.get_data(as_text=True)
    assert fresh(lead).stage == "surgical_review" and stage_rows(lead.id) == []


def test_a_surgeon_cannot_edit_a_lead(client, login_as, make_lead):
    login_as("surgeon")
    lead = make_lead(stage="surgical_review", medications="ibuprofen")
    html = page(client, lead.id)
    assert "Edit contact, consent and clinical facts" not in html
    response = client.post(
        f"/leads/{lead.id}/edit",
        data={"csrf_token": csrf_token(html), "version": "1", "medications": "oxycodone"},
    )
    assert response.status_code == 403
    assert "Your role does not include it" in response.get_data(as_text=True)
    assert fresh(lead).medications == "ibuprofen"


def test_a_surgeon_gets_404_for_a_lead_outside_their_queue(client, login_as, make_lead, make_user):
    login_as("surgeon")
    other = make_user("surgeon")
    assert client.get(f"/leads/{make_lead(stage='evaluation').id}").status_code == 404
    assert (
        client.get(f"/leads/{make_lead(stage='surgical_review', surgeon_id=other.id).id}").status_code == 404
    )


# --------------------------------------------------------------------------- notes


def test_a_surgeon_may_add_a_note(client, login_as, make_lead):
    surgeon = login_as("surgeon", name="Dr. Okafor")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    token = csrf_token(page(client, lead.id))
    response = client.post(
        f"/leads/{lead.id}/notes", data={"csrf_token": token, "body": "Get the MRI report."}
    )
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Note added." in html and "Note</strong> by Dr. Okafor" in html and "Get the MRI report." in html
    note = db.session.scalar(sa.select(Note).where(Note.lead_id == lead.id))
    assert (note.author_id, note.body) == (surgeon.id, "Get the MRI report.")
    assert "lead_note" in audit_actions(lead.id)


def test_an_empty_note_is_refused(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    response = client.post(f"/leads/{lead.id}/notes", data={"csrf_token": token, "body": "  "})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    card = html[html.index('id="note-h"') :]
    assert "Write the note first." in card[: card.index("</form>")]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0
    # The page shown again is a view of the record, audited as such.
    assert audit_actions(lead.id).count("lead_view") == 2  # the GET before, and the refusal


def test_a_refused_note_keeps_what_was_written(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, lead.id))
    long = "Patient <b>asked</b> about the MRI. " * 200  # over the 5,000 characters a note holds
    response = client.post(f"/leads/{lead.id}/notes", data={"csrf_token": token, "body": long})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Patient &lt;b&gt;asked&lt;/b&gt; about the MRI." in html  # kept, and escaped
    assert re.search(r"<textarea[^>]*autofocus", html)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


# --------------------------------------------------------------------------- edits


class _FormValues(HTMLParser):
    """Collect what a browser would send from the lead page's edit form."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.inside = False
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action", "").endswith("/edit")
        elif not self.inside:
            return
        elif tag == "input" and a.get("name"):
            self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self.select = a["name"]
            self.values.setdefault(self.select, "")
        elif tag == "option" and self.select and "selected" in a:
            self.values[self.select] = a.get("value", "")
        elif tag == "textarea":
            self.textarea = a["name"]
            self.values[self.textarea] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.values[self.textarea] += data


def edit_data(html: str, **values: str) -> dict[str, str]:
    """Return the edit form as the browser would post it, with some fields changed."""
    parser = _FormValues()
    parser.feed(html)
    for name, value in parser.values.items():  # a browser drops a textarea's first line break
        parser.values[name] = re.sub(r"^\r?\n", "", value)
    assert "version" in parser.values, "no edit form on the page"
    return {**parser.values, **values}


def test_an_edit_saves_changed_fields_and_audits_their_names_only(client, login_as, make_lead):
    desk = login_as("front_desk")
    lead = make_lead(last_name="Lopez")
    data = edit_data(
        page(client, lead.id),
        last_name="Lopez",
        phone="972 499 5457",
        pt_weeks="6",
        pt_helped="no",
        imaging_type="MRI",
        imaging_finding="L4-L5 bulge",
    )
    response = client.post(f"/leads/{lead.id}/edit", data=data)
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved." in html and "6 weeks, did not help" in html and "(972) 499-5457" in html
    lead = fresh(lead)
    assert (lead.phone, lead.pt_weeks, lead.pt_helped, lead.version) == ("+19724995457", 6, False, 2)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lead_edit"))
    assert event.user_id == desk.id
    assert event.detail == {
        "fields": ["phone", "imaging_type", "imaging_finding", "pt_weeks", "pt_helped"],
        "version": 2,
    }


def test_a_bad_phone_is_refused_next_to_the_field_and_the_rest_is_kept(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    data = edit_data(page(client, lead.id), phone="12", medications="naproxen")
    response = client.post(f"/leads/{lead.id}/edit", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter a valid phone number" in html and "naproxen</textarea>" in html
    assert fresh(lead).medications is None


def test_a_stale_save_is_refused_listing_the_other_change_and_keeping_both_inputs(
    client, login_as, make_lead, make_user
):
    login_as("front_desk")
    lead = make_lead(medications="ibuprofen")
    html = page(client, lead.id)  # the first person opens the lead at version 1
    ana = make_user("front_desk", name="Ana Reyes")
    update_lead(lead, {"medications": "gabapentin 300 mg"}, expected_version=1, actor=ana)  # saves first
    db.session.commit()

    data = edit_data(html, medications="cyclobenzaprine", pt_weeks="8")
    response = client.post(f"/leads/{lead.id}/edit", data=data)
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Not saved: someone else changed this lead while you were editing." in body
    assert re.search(
        r"Medications: now <strong>gabapentin 300 mg</strong> <span class=\"muted\">\(Ana Reyes\)", body
    )
    assert "cyclobenzaprine</textarea>" in body and 'value="8"' in body
    assert 'name="version" type="hidden" value="2"' in body
    lead = fresh(lead)
    assert (lead.medications, lead.pt_weeks, lead.version) == ("gabapentin 300 mg", None, 2)

    # Having read the change, the second person saves again: it goes through.
    again = client.post(f"/leads/{lead.id}/edit", data={**data, "version": "2"})
    assert again.status_code == 302
    assert (fresh(lead).medications, fresh(lead).pt_weeks) == ("cyclobenzaprine", 8)


def test_a_stage_move_in_between_also_refuses_a_stale_save(client, login_as, make_lead, make_user):
    login_as("front_desk")
    lead = make_lead(stage="new")
    html = page(client, lead.id)
    from crm.pipeline import MoveRequest, move

    move(lead, MoveRequest(to="contacted"), actor=make_user("front_desk"))
    db.session.commit()
    response = client.post(f"/leads/{lead.id}/edit", data=edit_data(html, medications="x"))
    assert response.status_code == 409
    assert "The lead moved on" in response.get_data(as_text=True)
    assert fresh(lead).medications is None


# --------------------------------------------------------------------------- notifications


def test_the_owner_sees_unread_notifications_and_marks_them_read(client, login_as, make_lead):
    desk = login_as("front_desk")
    lead = make_lead(first_name="Maria", last_name="Gomez", owner_id=desk.id)
    note = Notification(user_id=desk.id, lead_id=lead.id, message="Dr. Rivera declined the referral.")
    db.session.add(note)
    html = client.get("/leads").get_data(as_text=True)
    assert (
        "For you (1 unread)" in html and "Dr. Rivera declined the referral." in html and "Maria Gomez" in html
    )
    response = client.post(f"/notifications/{note.id}/read", data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    assert db.session.get(Notification, note.id).read_at is not None
    assert "For you" not in client.get("/leads").get_data(as_text=True)


def test_nobody_marks_another_users_notification(client, login_as, make_user):
    login_as("front_desk")
    other = make_user("front_desk")
    note = Notification(user_id=other.id, message="x")
    db.session.add(note)
    token = csrf_token(client.get("/leads").get_data(as_text=True))
    assert client.post(f"/notifications/{note.id}/read", data={"csrf_token": token}).status_code == 404
    assert db.session.get(Notification, note.id).read_at is None


# --------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/leads/{id}/edit", {"version": "1", "medications": "x"}),
        ("/leads/{id}/stage", {"to": "contacted"}),
        ("/leads/{id}/notes", {"body": "x"}),
        ("/notifications/{nid}/read", {}),
    ],
)
def test_every_form_refuses_a_post_without_its_csrf_token(client, login_as, make_lead, path, data):
    desk = login_as("front_desk")
    lead = make_lead()
    note = Notification(user_id=desk.id, lead_id=lead.id, message="x")
    db.session.add(note)
    db.session.commit()
    response = client.post(path.format(id=lead.id, nid=note.id), data=data)
    assert response.status_code == 400
    lead = fresh(lead)
    assert (lead.stage, lead.medications, lead.version) == ("new", None, 1)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Note)) == 0
    assert db.session.get(Notification, note.id).read_at is None


# --------------------------------------------------------------------------- query count


@pytest.mark.parametrize("size", [3, 30])
def test_the_lead_page_costs_the_same_with_3_or_30_calls_and_notes(
    client, login_as, make_lead, make_user, count_queries, size
):
    login_as("front_desk")
    author = make_user("front_desk")
    # The history names people, one of them no longer active: still no query per person.
    gone = [make_user("front_desk", name=f"Former Colleague {i}", active=False) for i in range(min(size, 5))]
    lead = make_lead(tags=["region:lower", "history:failed_pt", "side:left"], owner_id=author.id)
    for i in range(size):
        handler = gone[i % len(gone)]
        db.session.add(
            Call(
                lead_id=lead.id,
                direction="inbound",
                status="completed",
                notes=f"pain {i} in low back",
                handled_by_id=handler.id,
            )
        )
        db.session.add(
            Note(lead_id=lead.id, author_id=(author if i % 2 else handler).id, body=f"called back {i}")
        )
        db.session.add(AppointmentRequest(lead_id=lead.id, message="my low back spasms"))
    lead_id = lead.id
    get_settings()  # the clinic's settings row exists in any running clinic
    db.session.commit()
    with count_queries() as queries:
        response = client.get(f"/leads/{lead_id}")
    assert response.status_code == 200
    assert "Former Colleague 0" in response.get_data(as_text=True)
    # 1 session with its user, 2 the lead (in scope) with its tags joined, 3 every staff account
    # (the forms choose from the active ones; the owner and the people the history names are
    # then in the session), 4-10 the timeline: calls, requests, notes, stage changes, tag
    # changes, appointments, tasks, 11 the clinic's settings (time zone), 12 the audit row.
    assert len(queries) == 12, "\n".join(q[:70] for q in queries.statements)


def test_no_user_is_shown_as_a_surgeon_choice_unless_active(client, login_as, make_lead, make_user):
    login_as("front_desk")
    make_user("surgeon", name="Dr. Gone", active=False)
    make_user("surgeon", name="Dr. Here")
    lead = make_lead(stage="evaluation", tags=["history:failed_pt"])
    html = page(client, lead.id)
    assert "Dr. Here" in html and "Dr. Gone" not in html
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == 3


# --------------------------------------------------------------------------- markup


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.label_for: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "label" and found.get("for"):
            self.label_for.append(found["for"] or "")


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager"])
def test_each_id_on_the_lead_page_is_used_once_so_each_label_names_its_own_field(
    client, login_as, make_lead, role
):
    """Two forms with a field of the same name (a task's and an appointment's "kind", the stage
    move's and the appointment's "surgeon") gave two elements one id: a label then pointed a
    screen reader, and a click, at the other form's field."""
    login_as(role)
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    parser = _Ids()
    parser.feed(page(client, lead.id))
    duplicates = sorted({i for i in parser.ids if parser.ids.count(i) > 1})
    assert duplicates == []
    assert set(parser.label_for) <= set(parser.ids)


@pytest.mark.parametrize("born", ["2030-01-01", "1899-12-31"])
def test_a_date_of_birth_in_the_future_or_before_1900_is_refused(client, login_as, make_lead, born):
    login_as("front_desk")
    lead = make_lead(first_name="Rosa", last_name="Lopez")
    response = client.post(
        f"/leads/{lead.id}/edit", data=edit_data(page(client, lead.id), date_of_birth=born)
    )
    assert response.status_code == 400
    assert "The date of birth must be between 1900 and today." in response.get_data(as_text=True)
    assert fresh(lead).date_of_birth is None and fresh(lead).version == 1


@pytest.mark.parametrize(
    ("contact", "time", "shown"),
    [
        (None, "Any time", "Any time"),
        ("sms", "Mornings", "Text (SMS), Mornings"),
        ("phone", None, "Phone"),
        (None, None, "—"),
    ],
)
def test_the_preferred_contact_reads_as_words(client, login_as, make_lead, contact, time, shown):
    login_as("front_desk")
    lead = make_lead(preferred_contact=contact, preferred_time=time)
    assert f"<dt>Prefers</dt><dd>{shown}</dd>" in page(client, lead.id)
