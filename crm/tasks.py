"""The work on a lead: tasks, the call-back cadence, clearing the urgent flag, appointments.

Every change to a task goes through here, and each ends with ``refresh_next_task_due`` so the
lead's ``next_task_due_at`` (the queue sorts on it) always equals its earliest open task's due
time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from crm import audit, clock
from crm.business_hours import BusinessCalendar, load_calendar
from crm.extensions import db
from crm.models import (
    APPOINTMENT_KINDS,
    APPOINTMENT_OUTCOMES,
    TASK_KINDS,
    Appointment,
    AuditEvent,
    Lead,
    Note,
    StageChange,
    Task,
    User,
)
from crm.pipeline import MoveRequest, move
from crm.settings import before_clinic_today, get_settings

TASK_KIND_LABELS = {
    "callback": "Call back",
    "send_records": "Send records",
    "schedule": "Schedule",
    "more_info": "More information",
    "other": "Other",
}
NO_ANSWER = "task_no_answer"  # the audit action that records a call-back nobody answered


class TaskRefused(Exception):
    """A task change the rules do not allow; the message is for the user."""


def refresh_next_task_due(lead_id: int) -> None:
    """Set the lead's next task due time to its earliest open task's due time (or none)."""
    db.session.flush()
    earliest = db.session.scalar(
        sa.select(sa.func.min(Task.due_at)).where(Task.lead_id == lead_id, Task.done_at.is_(None))
    )
    lead = db.session.get(Lead, lead_id)
    if lead is not None:
        lead.next_task_due_at = earliest


def add_task(
    lead: Lead,
    *,
    title: str,
    kind: str,
    due_at: datetime,
    assignee: User | None,
    actor: User,
    ip: str | None = None,
) -> Task:
    """Add a task to a lead by hand.

    :raises TaskRefused: when the title is empty, the kind unknown or the due day already gone.
    """
    title = title.strip()
    if not title:
        raise TaskRefused("Give the task a title.")
    if kind not in TASK_KINDS:
        raise TaskRefused("Choose what kind of task it is.")
    if before_clinic_today(due_at, clock.now()):
        raise TaskRefused("The due date is in the past. Give a date from today on.")
    task = Task(
        lead_id=lead.id,
        kind=kind,
        title=title,
        due_at=due_at,
        assignee_id=assignee.id if assignee else None,
        attempt=1 if kind == "callback" else None,
        created_at=clock.now(),
        created_by_id=actor.id,
    )
    db.session.add(task)
    db.session.flush()
    refresh_next_task_due(lead.id)
    audit.record("task_add", user_id=actor.id, lead_id=lead.id, detail={"task_id": task.id}, ip=ip)
    return task


def complete_task(task: Task, *, actor: User, no_answer: bool = False, ip: str | None = None) -> Task | None:
    """Mark a task done; a call-back nobody answered proposes the next attempt (returned).

    After the clinic's last attempt no new task is made: the lead page then proposes closing
    the lead as ``no_response`` (see ``no_response_proposed``).

    :raises TaskRefused: when the task is already done, or "no answer" is given for a non-call-back.
    """
    if task.done_at is not None:
        raise TaskRefused("This task is already done.")
    if no_answer and task.kind != "callback":
        raise TaskRefused("Only a call-back can end without an answer.")
    now = clock.now()
    task.done_at, task.done_by_id = now, actor.id
    audit.record(
        NO_ANSWER if no_answer else "task_done",
        user_id=actor.id,
        lead_id=task.lead_id,
        detail={"task_id": task.id},
        ip=ip,
    )
    follow_up = None
    settings = get_settings()
    attempt = task.attempt or 1
    if no_answer and task.lead_id is not None and attempt < settings.callback_attempts:
        follow_up = Task(
            lead_id=task.lead_id,
            kind="callback",
            title=f"Call back: attempt {attempt + 1} of {settings.callback_attempts}",
            due_at=next_attempt_due(
                now, load_calendar(), settings.callback_attempts, settings.callback_window_days
            ),
            assignee_id=task.assignee_id,
            attempt=attempt + 1,
            created_at=now,
            created_by_id=actor.id,
        )
        db.session.add(follow_up)
    if task.lead_id is not None:
        refresh_next_task_due(task.lead_id)
    return follow_up


def reopen_task(task: Task, *, actor: User, ip: str | None = None) -> Task | None:
    """Undo "done": the task is open again and counts for the lead's next due time.

    Undoing a call-back marked "no answer" also withdraws the next attempt that answer
    proposed, while nobody has worked it yet: the attempt being reopened is the one to make.
    Returns the withdrawn attempt, if any.

    :raises TaskRefused: when the task is not done.
    """
    if task.done_at is None:
        raise TaskRefused("This task is still open.")
    proposed = _proposed_by(task)
    task.done_at, task.done_by_id = None, None
    audit.record("task_undo", user_id=actor.id, lead_id=task.lead_id, detail={"task_id": task.id}, ip=ip)
    if proposed is not None:
        audit.record(
            "task_withdrawn",
            user_id=actor.id,
            lead_id=task.lead_id,
            detail={"task_id": proposed.id, "undone_task_id": task.id},
            ip=ip,
        )
        db.session.delete(proposed)
    if task.lead_id is not None:
        refresh_next_task_due(task.lead_id)
    return proposed


def _proposed_by(task: Task) -> Task | None:
    """Return the still-open next attempt that marking this call-back "no answer" proposed.

    ``complete_task`` makes it in the same moment the call-back is marked done: the lead's
    call-back of the next attempt number, created at the done time, not done since.
    """
    if task.kind != "callback" or task.lead_id is None or task.done_at is None:
        return None
    return db.session.scalar(
        sa.select(Task)
        .where(
            Task.lead_id == task.lead_id,
            Task.kind == "callback",
            Task.attempt == (task.attempt or 1) + 1,
            Task.created_at == task.done_at,
            Task.done_at.is_(None),
        )
        .order_by(Task.id.desc())
        .limit(1)
    )


def next_attempt_due(
    after: datetime, calendar: BusinessCalendar, attempts: int, window_days: int
) -> datetime:
    """Return when the next call-back attempt is due: attempts spread over the window's business days.

    With 3 attempts in 5 business days the attempts fall 2 business days apart, at the same
    clinic wall-clock time (moved into opening hours when the clinic is closed then).
    """
    step = max(1, window_days // max(1, attempts - 1))
    local = calendar.local(after)
    day, found = local.date(), 0
    for _ in range(400):
        day += timedelta(days=1)
        span = calendar.opening(day)
        if span is None:
            continue
        found += 1
        if found == step:
            opens, closes = span
            wanted = datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=calendar.tz)
            return min(max(wanted.astimezone(opens.tzinfo), opens), closes - timedelta(minutes=1))
    return after + timedelta(days=step)


def no_response_proposed(lead: Lead, tasks: list[Task]) -> bool:
    """Tell whether the lead's last call-back attempt went unanswered, so closing is proposed.

    ``tasks`` are the lead's tasks as the page already loaded them; the audit trail is read only
    when the last attempt is done and nothing is open, so the page costs nothing otherwise.
    """
    if lead.stage == "closed" or lead.merged_into_id is not None:
        return False
    callbacks = [t for t in tasks if t.kind == "callback"]
    if not callbacks or any(t.done_at is None for t in callbacks):
        return False
    last = max(callbacks, key=lambda t: ((t.attempt or 1), t.id))
    if (last.attempt or 1) < get_settings().callback_attempts:
        return False
    latest = db.session.scalar(
        sa.select(AuditEvent)
        .where(AuditEvent.lead_id == lead.id, AuditEvent.action.in_((NO_ANSWER, "task_done", "task_undo")))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return (
        latest is not None and latest.action == NO_ANSWER and (latest.detail or {}).get("task_id") == last.id
    )


def close_no_response(lead: Lead, *, actor: User) -> StageChange:
    """Close a lead nobody answered after the clinic's call-back attempts.

    :raises StageRefused: when the stage machine refuses (role, already closed).
    """
    attempts = get_settings().callback_attempts
    return move(
        lead,
        MoveRequest(
            to="closed",
            close_reason="no_response",
            reason=f"{attempts} call-back attempts without an answer",
        ),
        actor=actor,
    )


class UrgentRefused(Exception):
    """Clearing the urgent flag refused; the message is for the user."""


def clear_urgent(lead: Lead, reason: str, *, actor: User, ip: str | None = None) -> Note:
    """Clear a lead's urgent flag: only a person, with a reason kept as a note and in the audit trail.

    :raises UrgentRefused: when the lead is not urgent or no reason is given.
    """
    reason = reason.strip()
    if not lead.urgent:
        raise UrgentRefused("This lead is not marked urgent.")
    if not reason:
        raise UrgentRefused("Say why the urgent flag is cleared.")
    now = clock.now()
    lead.urgent = False
    note = Note(lead_id=lead.id, author_id=actor.id, body=f"Urgent flag cleared: {reason}", created_at=now)
    db.session.add(note)
    lead.last_activity_at = now
    db.session.flush()
    audit.record("urgent_cleared", user_id=actor.id, lead_id=lead.id, detail={"note_id": note.id}, ip=ip)
    return note


class AppointmentRefused(Exception):
    """An appointment change refused; the message is for the user."""


def book_appointment(
    lead: Lead,
    *,
    kind: str,
    starts_at: datetime,
    surgeon: User | None,
    location: str | None,
    actor: User,
    ip: str | None = None,
) -> Appointment:
    """Book an appointment for a lead (a time in UTC, shown in clinic time).

    :raises AppointmentRefused: when the kind is unknown, the surgeon is not a surgeon or the day
        already gone.
    """
    if kind not in APPOINTMENT_KINDS:
        raise AppointmentRefused("Choose the kind of appointment.")
    if surgeon is not None and surgeon.role != "surgeon":
        raise AppointmentRefused("Choose a surgeon.")
    if before_clinic_today(starts_at, clock.now()):
        raise AppointmentRefused("The appointment's date is in the past. Give a date from today on.")
    appointment = Appointment(
        lead_id=lead.id,
        kind=kind,
        starts_at=starts_at,
        surgeon_id=surgeon.id if surgeon else None,
        location=(location or "").strip() or None,
        created_at=clock.now(),
        created_by_id=actor.id,
    )
    db.session.add(appointment)
    lead.last_activity_at = clock.now()
    db.session.flush()
    audit.record(
        "appointment_booked",
        user_id=actor.id,
        lead_id=lead.id,
        detail={"appointment_id": appointment.id},
        ip=ip,
    )
    return appointment


def record_appointment_outcome(
    appointment: Appointment, outcome: str, *, actor: User, ip: str | None = None
) -> None:
    """Record what became of an appointment: attended, no_show, canceled or rescheduled.

    :raises AppointmentRefused: when the outcome is unknown.
    """
    if outcome not in APPOINTMENT_OUTCOMES:
        raise AppointmentRefused("Choose what became of the appointment.")
    appointment.outcome = outcome
    audit.record(
        "appointment_outcome",
        user_id=actor.id,
        lead_id=appointment.lead_id,
        detail={"appointment_id": appointment.id, "outcome": outcome},
        ip=ip,
    )
