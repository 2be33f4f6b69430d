"""My tasks (/tasks): each task names the patient and the number to call, in a fixed number of
statements however many tasks there are."""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from crm import clock
from crm.extensions import db
from crm.intake import CallEventIn, receive_call_event
from crm.models import Call, Task
from tests.conftest import utc


def _missed_call(number: str, sid: str) -> Task:
    event = CallEventIn(
        call_sid=sid,
        from_number=number,
        to_number="+19724995457",
        direction="inbound",
        status="no-answer",
        started_at=clock.now(),
    )
    result = receive_call_event(event, lines=current_app.config["CLINIC_LINES"], now=clock.now())
    db.session.commit()
    assert result.task is not None
    return result.task


def test_each_task_names_the_patient_and_the_number_to_call(client, login_as, make_lead, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    user = login_as("front_desk")
    lead = make_lead(first_name="Maria", last_name="Delgado", phone="+19725550134", stage="evaluation")
    db.session.add(
        Task(lead_id=lead.id, kind="send_records", title="Send MRI", due_at=clock.now(), assignee_id=user.id)
    )
    withheld = _missed_call("anonymous", "CA" + "1" * 32)
    withheld.assignee_id = user.id
    db.session.commit()

    html = client.get("/tasks").get_data(as_text=True)

    assert "Maria Delgado" in html and 'href="tel:+19725550134"' in html
    assert "Send MRI" in html and "Evaluation" in html
    assert "Missed call from a withheld number" in html and "withheld number" in html


def test_the_page_costs_the_same_statements_for_2_or_12_tasks(
    client, login_as, make_lead, frozen_clock, count_queries
):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    user = login_as("front_desk")
    counts = []
    for batch in (2, 10):
        for n in range(batch):
            lead = make_lead(phone=f"+1972555{len(counts)}{n:03d}")
            task = Task(
                lead_id=lead.id, kind="other", title=f"Task {n}", due_at=clock.now(), assignee_id=user.id
            )
            db.session.add(task)
        db.session.commit()
        client.get("/tasks")  # warm the per-process caches (settings, templates)
        with count_queries() as queries:
            html = client.get("/tasks").get_data(as_text=True)
        assert html.count("Task ") >= batch
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_call_backs_to_non_patients_leave_the_list_but_stay_as_they_were(
    client, login_as, make_lead, frozen_clock
):
    """Spam, a vendor, an existing patient: nobody calls them back, so My tasks leaves them
    out; the task itself is untouched (the call-back figures count it as it was)."""
    frozen_clock(utc(2026, 3, 9, 15, 0))
    user = login_as("front_desk")
    patient = make_lead(first_name="Maria", last_name="Delgado", phone="+19725550134")
    spam_lead = make_lead(first_name="Spam", last_name="Caller", phone="+19725550135", not_a_patient=True)
    for lead, title in ((patient, "Call Maria back"), (spam_lead, "Call the spam back")):
        db.session.add(
            Task(lead_id=lead.id, kind="callback", title=title, due_at=clock.now(), assignee_id=user.id)
        )
    vendor_call = _missed_call("+19725550136", "CA" + "2" * 32)
    vendor_call.assignee_id = user.id
    vendor_call.title = "Call the vendor back"
    db.session.get(Call, vendor_call.call_id).not_a_patient = True
    db.session.commit()

    html = client.get("/tasks").get_data(as_text=True)

    assert "Call Maria back" in html
    assert "Call the spam back" not in html and "Call the vendor back" not in html
    db.session.expire_all()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task).where(Task.done_at.is_(None))) == 3
