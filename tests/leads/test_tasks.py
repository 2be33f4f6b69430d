"""Tasks on the lead page and /tasks: add, done, undo, the lead's next due time, the call-back cadence."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from crm import tasks as task_rules
from crm.extensions import db
from crm.models import AuditEvent, Lead, Note, StageChange, Task
from tests.conftest import csrf_token, sign_in, utc

# Thursday 5 March 2026, 10:00 in Plano (CST, UTC-6); daylight saving starts Sunday 8 March.
THURSDAY_10AM = utc(2026, 3, 5, 16, 0)


def page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def fresh_lead(lead_id: int) -> Lead:
    db.session.expire_all()
    return db.session.get(Lead, lead_id)


def make_task(lead: Lead, **overrides) -> Task:
    values = {"lead_id": lead.id, "kind": "other", "title": "Send the MRI report", "due_at": THURSDAY_10AM}
    values.update(overrides)
    task = Task(**values)
    db.session.add(task)
    db.session.commit()
    return task


def open_tasks(lead_id: int) -> list[Task]:
    return list(
        db.session.scalars(
            sa.select(Task).where(Task.lead_id == lead_id, Task.done_at.is_(None)).order_by(Task.due_at)
        )
    )


def test_front_desk_adds_a_task_due_in_clinic_time(client, login_as, make_lead, make_user, frozen_clock):
    frozen_clock(THURSDAY_10AM)
    login_as("front_desk")
    colleague = make_user("front_desk", name="Ana Desk")
    lead = make_lead()
    token = csrf_token(page(client, f"/leads/{lead.id}"))
    response = client.post(
        f"/leads/{lead.id}/tasks",
        data={
            "csrf_token": token,
            "title": "Send records to Dr. Lee",
            "kind": "send_records",
            "due_at": "2026-03-06T09:30",
            "assignee": str(colleague.id),
        },
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Task added." in html and "Send records to Dr. Lee" in html
    [task] = open_tasks(lead.id)
    assert (task.kind, task.assignee_id, task.due_at) == (
        "send_records",
        colleague.id,
        utc(2026, 3, 6, 15, 30),
    )
    assert fresh_lead(lead.id).next_task_due_at == utc(2026, 3, 6, 15, 30)
    assert "task_add" in db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.lead_id == lead.id))


def test_a_task_without_a_title_is_refused_and_nothing_is_stored(client, login_as, make_lead):
    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(page(client, f"/leads/{lead.id}"))
    response = client.post(
        f"/leads/{lead.id}/tasks",
        data={"csrf_token": token, "title": "  ", "kind": "other", "due_at": "2026-03-06T09:30"},
        follow_redirects=True,
    )
    assert "Give the task a title." in response.get_data(as_text=True)
    assert open_tasks(lead.id) == [] and fresh_lead(lead.id).next_task_due_at is None


def test_a_task_refused_after_its_form_checked_out_costs_the_same_whoever_the_history_names(
    client, login_as, make_lead, make_user, count_queries, monkeypatch
):
    """The refusal rolls back, which expires every account the form's choices loaded; the page
    then loads the staff once again instead of refreshing each person its history names."""
    login_as("front_desk")

    def refuse(*_args, **_kwargs):
        raise task_rules.TaskRefused("The lead was closed meanwhile.")

    monkeypatch.setattr(task_rules, "add_task", refuse)
    counts = []
    for people in (1, 6):
        lead = make_lead()
        for i in range(people):
            former = make_user("front_desk", name=f"Former {people}-{i}", active=False)
            db.session.add(Note(lead_id=lead.id, author_id=former.id, body=f"called back {i}"))
        db.session.commit()
        token = csrf_token(page(client, f"/leads/{lead.id}"))
        data = {"csrf_token": token, "title": "Call back", "kind": "other", "due_at": "2026-03-06T09:30"}
        with count_queries() as queries:
            response = client.post(f"/leads/{lead.id}/tasks", data=data)
        html = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "The lead was closed meanwhile." in html and f"Former {people}-0" in html
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_a_refused_task_keeps_what_the_user_typed(client, login_as, make_lead, make_user):
    login_as("front_desk")
    colleague = make_user("front_desk", name="Ana Desk")
    lead = make_lead()
    token = csrf_token(page(client, f"/leads/{lead.id}"))
    response = client.post(
        f"/leads/{lead.id}/tasks",
        data={
            "csrf_token": token,
            "title": "Send records to Dr. Lee",
            "kind": "send_records",
            "due_at": "",
            "assignee": str(colleague.id),
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Give a due date and time." in html
    assert 'value="Send records to Dr. Lee"' in html
    assert re.search(
        r'<option[^>]*selected[^>]*value="send_records"|<option[^>]*value="send_records"[^>]*selected', html
    )
    assert re.search(
        rf'<option[^>]*selected[^>]*value="{colleague.id}"|<option[^>]*value="{colleague.id}"[^>]*selected',
        html,
    )
    assert re.search(r'<details class="editor" open>\s*<summary>Add a task</summary>', html)
    assert open_tasks(lead.id) == []


def test_done_and_undo_keep_the_leads_next_due_time_on_the_earliest_open_task(
    client, login_as, make_lead, frozen_clock
):
    frozen_clock(THURSDAY_10AM)
    desk = login_as("front_desk")
    lead = make_lead()
    first = make_task(lead, due_at=utc(2026, 3, 5, 15, 0), assignee_id=desk.id)
    make_task(lead, due_at=utc(2026, 3, 9, 15, 0), assignee_id=desk.id)
    token = csrf_token(page(client, f"/leads/{lead.id}"))

    response = client.post(f"/tasks/{first.id}/done", data={"csrf_token": token}, follow_redirects=True)
    assert "Task done." in response.get_data(as_text=True)
    assert fresh_lead(lead.id).next_task_due_at == utc(2026, 3, 9, 15, 0)
    done = db.session.get(Task, first.id)
    assert (done.done_at, done.done_by_id) == (THURSDAY_10AM, desk.id)

    response = client.post(f"/tasks/{first.id}/undo", data={"csrf_token": token}, follow_redirects=True)
    assert "Task reopened." in response.get_data(as_text=True)
    assert fresh_lead(lead.id).next_task_due_at == utc(2026, 3, 5, 15, 0)
    assert db.session.get(Task, first.id).done_at is None


def test_my_tasks_lists_my_open_tasks_marks_the_overdue_and_marks_one_done(
    client, login_as, make_lead, make_user, frozen_clock
):
    frozen_clock(THURSDAY_10AM)
    desk = login_as("front_desk")
    other = make_user("front_desk")
    lead = make_lead()
    late = make_task(lead, title="Late call back", due_at=utc(2026, 3, 5, 14, 0), assignee_id=desk.id)
    make_task(lead, title="Records for tomorrow", due_at=utc(2026, 3, 6, 15, 0), assignee_id=desk.id)
    make_task(lead, title="Another person task", assignee_id=other.id)
    html = page(client, "/tasks")
    assert "Late call back" in html and "Records for tomorrow" in html and "Another person task" not in html
    assert html.count("overdue</strong>") == 1
    response = client.post(f"/tasks/{late.id}/done", data={"csrf_token": csrf_token(html), "back": "tasks"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/tasks")
    assert "Late call back" not in page(client, "/tasks")
    assert fresh_lead(lead.id).next_task_due_at == THURSDAY_10AM  # the other person's task


def no_answer(client, task_id: int, lead_id: int) -> str:
    token = csrf_token(page(client, f"/leads/{lead_id}"))
    response = client.post(
        f"/tasks/{task_id}/done", data={"csrf_token": token, "outcome": "no_answer"}, follow_redirects=True
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_the_call_back_cadence_crosses_a_weekend_and_ends_proposing_no_response(
    client, login_as, make_lead, frozen_clock
):
    frozen_clock(THURSDAY_10AM)
    desk = login_as("front_desk")
    lead = make_lead()
    first = make_task(lead, kind="callback", title="Call back: missed call", attempt=1, assignee_id=desk.id)

    html = no_answer(client, first.id, lead.id)
    assert "Next attempt proposed: Call back: attempt 2 of 3." in html
    [second] = open_tasks(lead.id)
    # 3 attempts in 5 business days: 2 business days apart — Friday, then Monday, 10:00 CDT.
    assert (second.kind, second.attempt, second.assignee_id) == ("callback", 2, desk.id)
    assert second.due_at == utc(2026, 3, 9, 15, 0)
    assert fresh_lead(lead.id).next_task_due_at == second.due_at

    frozen_clock(utc(2026, 3, 9, 15, 0))
    sign_in(client, desk.email)  # days later: a new session
    no_answer(client, second.id, lead.id)
    [third] = open_tasks(lead.id)
    assert (third.attempt, third.due_at) == (3, utc(2026, 3, 11, 15, 0))

    frozen_clock(utc(2026, 3, 11, 15, 0))
    sign_in(client, desk.email)
    html = no_answer(client, third.id, lead.id)
    assert open_tasks(lead.id) == [] and fresh_lead(lead.id).next_task_due_at is None
    assert "3 attempts without an answer — close as no response?" in html

    response = client.post(
        f"/leads/{lead.id}/close-no-response", data={"csrf_token": csrf_token(html)}, follow_redirects=True
    )
    assert "Lead closed: no response." in response.get_data(as_text=True)
    lead = fresh_lead(lead.id)
    assert (lead.stage, lead.close_reason) == ("closed", "no_response")
    change = db.session.scalar(sa.select(StageChange).where(StageChange.lead_id == lead.id))
    assert (change.from_stage, change.to_stage, change.actor_id) == ("new", "closed", desk.id)


def test_an_answered_last_attempt_proposes_no_closing(client, login_as, make_lead, frozen_clock):
    frozen_clock(THURSDAY_10AM)
    login_as("front_desk")
    lead = make_lead()
    last = make_task(lead, kind="callback", title="Call back: attempt 3 of 3", attempt=3)
    token = csrf_token(page(client, f"/leads/{lead.id}"))
    response = client.post(f"/tasks/{last.id}/done", data={"csrf_token": token}, follow_redirects=True)
    assert "close as no response?" not in response.get_data(as_text=True)
    assert open_tasks(lead.id) == []


def test_undoing_the_unanswered_last_attempt_withdraws_the_proposal(
    client, login_as, make_lead, frozen_clock
):
    frozen_clock(THURSDAY_10AM)
    login_as("front_desk")
    lead = make_lead()
    last = make_task(lead, kind="callback", title="Call back: attempt 3 of 3", attempt=3)
    html = no_answer(client, last.id, lead.id)
    assert "close as no response?" in html
    response = client.post(
        f"/tasks/{last.id}/undo", data={"csrf_token": csrf_token(html)}, follow_redirects=True
    )
    assert "close as no response?" not in response.get_data(as_text=True)
    assert fresh_lead(lead.id).next_task_due_at == THURSDAY_10AM


def test_undoing_a_no_answer_withdraws_the_next_attempt_it_proposed(
    client, login_as, make_lead, frozen_clock
):
    frozen_clock(THURSDAY_10AM)
    desk = login_as("front_desk")
    lead = make_lead()
    first = make_task(lead, kind="callback", title="Call back: missed call", attempt=1, assignee_id=desk.id)
    html = no_answer(client, first.id, lead.id)
    [second] = open_tasks(lead.id)
    assert second.attempt == 2
    second_id = second.id

    response = client.post(
        f"/tasks/{first.id}/undo", data={"csrf_token": csrf_token(html)}, follow_redirects=True
    )

    assert "the next attempt it proposed (Call back: attempt 2 of 3) is withdrawn" in response.get_data(
        as_text=True
    )
    assert [t.id for t in open_tasks(lead.id)] == [first.id]
    assert fresh_lead(lead.id).next_task_due_at == THURSDAY_10AM
    assert db.session.get(Task, second_id) is None
    withdrawn = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "task_withdrawn"))
    assert withdrawn.detail == {"task_id": second_id, "undone_task_id": first.id}


def test_undo_keeps_a_next_attempt_someone_already_worked(client, login_as, make_lead, frozen_clock):
    frozen_clock(THURSDAY_10AM)
    desk = login_as("front_desk")
    lead = make_lead()
    first = make_task(lead, kind="callback", title="Call back: missed call", attempt=1, assignee_id=desk.id)
    no_answer(client, first.id, lead.id)
    [second] = open_tasks(lead.id)
    frozen_clock(utc(2026, 3, 6, 16, 0))
    sign_in(client, desk.email)  # the next day: a new session
    html = no_answer(client, second.id, lead.id)  # attempt 2 tried too: it is history now
    [third] = open_tasks(lead.id)

    client.post(f"/tasks/{first.id}/undo", data={"csrf_token": csrf_token(html)})

    assert {t.id for t in open_tasks(lead.id)} == {first.id, third.id}
    assert db.session.get(Task, second.id).done_at is not None


POSTS = [
    ("/leads/{lead}/tasks", {"title": "x", "kind": "other", "due_at": "2026-03-06T09:30"}),
    ("/tasks/{task}/done", {"outcome": "no_answer"}),
    ("/tasks/{task}/undo", {}),
    ("/leads/{lead}/close-no-response", {}),
]


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_every_task_form_refuses_a_post_without_its_csrf_token(client, login_as, make_lead, path, data):
    login_as("front_desk")
    lead = make_lead()
    task = make_task(lead, kind="callback", attempt=3)
    response = client.post(path.format(lead=lead.id, task=task.id), data=data)
    assert response.status_code == 400
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 1
    assert db.session.get(Task, task.id).done_at is None and fresh_lead(lead.id).stage == "new"


@pytest.mark.parametrize(("path", "data"), POSTS)
def test_a_surgeon_may_not_work_tasks(client, login_as, make_lead, path, data):
    surgeon = login_as("surgeon")
    lead = make_lead(stage="surgical_review", surgeon_id=surgeon.id)
    task = make_task(lead, kind="callback", attempt=3)
    token = csrf_token(page(client, f"/leads/{lead.id}"))
    response = client.post(path.format(lead=lead.id, task=task.id), data={"csrf_token": token, **data})
    assert response.status_code == 403
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 1
    assert db.session.get(Task, task.id).done_at is None and fresh_lead(lead.id).stage == "surgical_review"


def test_a_task_on_a_lead_out_of_scope_is_404(client, login_as, make_lead, make_user):
    login_as("front_desk")
    lead = make_lead()
    task = make_task(lead)
    token = csrf_token(page(client, "/tasks"))
    assert client.post("/tasks/999999/done", data={"csrf_token": token}).status_code == 404
    assert db.session.get(Task, task.id).done_at is None
