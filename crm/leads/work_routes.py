"""The work on a lead: add tasks, mark them done or undo, close after unanswered call-backs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from flask import abort, flash, redirect, url_for
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from crm import audit, clock, tagging
from crm import tasks as task_rules
from crm.authz import load_lead_for, roles
from crm.extensions import db
from crm.leads.forms import clinic_local_to_utc
from crm.leads.routes import Refusal, _first_error, active_staff, bp, refuse, render_lead_page
from crm.leads.work_forms import (
    AppointmentForm,
    AppointmentOutcomeForm,
    ClearUrgentForm,
    CloseNoResponseForm,
    TagForm,
    TaskDoneForm,
    TaskForm,
    TaskUndoForm,
)
from crm.models import Appointment, Lead, Task, User
from crm.pipeline import StageRefused
from crm.security import client_ip
from crm.settings import get_settings
from crm.triage import TAG_LABELS

TASK_ROLES = ("front_desk", "manager", "admin")  # PRODUCT §5: tasks are the editors' work
APPOINTMENT_ROLES = ("front_desk", "surgeon", "manager")  # PRODUCT §5: schedule, appointment outcomes


def staff_choices() -> list[SelectChoice]:
    """List the active staff who may be given a task."""
    users = [u for u in active_staff() if u.role in TASK_ROLES]
    return [SelectChoice("", "Nobody yet"), *[SelectChoice(str(u.id), u.name) for u in users]]


def surgeon_choices() -> list[SelectChoice]:
    """List the active surgeons an appointment may be with."""
    surgeons = [u for u in active_staff() if u.role == "surgeon"]
    return [SelectChoice("", "None"), *[SelectChoice(str(u.id), u.name) for u in surgeons]]


@bp.app_template_global("work_task_form")
def work_task_form() -> TaskForm:
    """Give the lead page an empty add-task form, assigned to the signed-in user by default."""
    form = TaskForm(formdata=None)
    form.assignee.choices = staff_choices()
    form.assignee.data = current_user.id
    return form


@bp.app_template_global("work_no_response_proposed")
def work_no_response_proposed(lead: Lead, tasks: list[Task]) -> bool:
    """Tell the lead page whether to propose closing as "no response"."""
    return task_rules.no_response_proposed(lead, tasks)


@bp.app_template_global("work_callback_attempts")
def work_callback_attempts() -> int:
    """Give pages the clinic's number of call-back attempts."""
    return get_settings().callback_attempts


@bp.app_template_global("work_now")
def work_now() -> datetime:
    """Give pages the clock's "now", so overdue is decided as the rest of the app decides it."""
    return clock.now()


def _load_task(task_id: int) -> Task:
    """Load a task the user may see: through its lead's scope (404 outside it)."""
    task = db.get_or_404(Task, task_id)
    if task.lead_id is not None:
        load_lead_for(current_user, task.lead_id)
    return task


def _back(task: Task, back: str | None) -> Response:
    if back == "tasks" or task.lead_id is None:
        return redirect(url_for("leads.tasks"))
    return redirect(url_for("leads.detail", lead_id=task.lead_id, _anchor="tasks-h"))


@bp.route("/leads/<int:lead_id>/tasks", methods=["POST"])
@roles(*TASK_ROLES)
def add_task(lead_id: int) -> Response:
    """Add a task to the lead by hand."""
    lead = load_lead_for(current_user, lead_id)
    form = TaskForm()
    form.assignee.choices = staff_choices()
    if not form.validate_on_submit():
        return _refuse_task(lead, form, _first_error(form))
    assignee = db.session.get(User, form.assignee.data) if form.assignee.data else None
    try:
        task_rules.add_task(
            lead,
            title=form.title.data or "",
            kind=form.kind.data or "other",
            due_at=clinic_local_to_utc(form.due_at.data),  # type: ignore[arg-type]
            assignee=assignee,
            actor=current_user,
            ip=client_ip(),
        )
        db.session.commit()
    except task_rules.TaskRefused as error:
        db.session.rollback()
        return _refuse_task(load_lead_for(current_user, lead_id), form, str(error))
    flash("Task added.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="tasks-h"))


def _refuse_task(lead: Lead, form: TaskForm, message: str) -> Response:
    """Show the lead page again with the refused task form open, as the user filled it in."""
    flash(message, "error")
    body, status = render_lead_page(lead, task_form=form, status=400)
    return Response(body, status=status, mimetype="text/html")


@bp.route("/tasks/<int:task_id>/done", methods=["POST"])
@roles(*TASK_ROLES)
def task_done(task_id: int) -> Response:
    """Mark a task done; a call-back without an answer proposes the next attempt."""
    task = _load_task(task_id)
    form = TaskDoneForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
        return _back(task, None)
    try:
        follow_up = task_rules.complete_task(
            task, actor=current_user, no_answer=form.outcome.data == "no_answer", ip=client_ip()
        )
        db.session.commit()
    except task_rules.TaskRefused as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        flash(f"Done. Next attempt proposed: {follow_up.title}." if follow_up else "Task done.", "success")
    return _back(task, form.back.data)


@bp.route("/tasks/<int:task_id>/undo", methods=["POST"])
@roles(*TASK_ROLES)
def task_undo(task_id: int) -> Response:
    """Reopen a task marked done by mistake."""
    task = _load_task(task_id)
    form = TaskUndoForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
        return _back(task, None)
    try:
        withdrawn = task_rules.reopen_task(task, actor=current_user, ip=client_ip())
        withdrawn_title = withdrawn.title if withdrawn else None
        db.session.commit()
    except task_rules.TaskRefused as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        flash(
            f"Task reopened; the next attempt it proposed ({withdrawn_title}) is withdrawn."
            if withdrawn_title
            else "Task reopened.",
            "success",
        )
    return _back(task, None)


@bp.route("/leads/<int:lead_id>/close-no-response", methods=["POST"])
@roles(*TASK_ROLES)
def close_no_response(lead_id: int) -> Response:
    """Close the lead as "no response" after the last unanswered call-back."""
    lead = load_lead_for(current_user, lead_id)
    if not CloseNoResponseForm().validate_on_submit():
        abort(400)
    before = lead.stage
    try:
        task_rules.close_no_response(lead, actor=current_user)
        audit.record(
            "lead_stage",
            user_id=current_user.id,
            lead_id=lead.id,
            detail={"from": before, "to": lead.stage, "close_reason": "no_response"},
            ip=client_ip(),
        )
        db.session.commit()
    except StageRefused as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        flash("Lead closed: no response.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id))


@bp.app_template_global("work_tag_form")
def work_tag_form() -> TagForm:
    """Give the lead page an empty add-tag form."""
    return TagForm(formdata=None)


@bp.route("/leads/<int:lead_id>/tags", methods=["POST"])
@roles(*TASK_ROLES)
def add_tag(lead_id: int) -> Response:
    """Add a complaint tag as staff's word (a red flag makes the lead urgent)."""
    return _change_tag(lead_id, tagging.set_staff_tag, "Tag added: {}.")


@bp.route("/leads/<int:lead_id>/tags/remove", methods=["POST"])
@roles(*TASK_ROLES)
def remove_tag(lead_id: int) -> Response:
    """Remove a complaint tag; the removal is remembered, so no call note brings it back."""
    return _change_tag(lead_id, tagging.remove_staff_tag, "Tag removed: {}.")


def _change_tag(lead_id: int, change: Callable[..., object], done: str) -> Response:
    lead = load_lead_for(current_user, lead_id)
    form = TagForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        change(lead, form.code.data or "", current_user)
        audit.record(
            "lead_tag",
            user_id=current_user.id,
            lead_id=lead.id,
            detail={"code": form.code.data},
            ip=client_ip(),
        )
        db.session.commit()
        flash(done.format(TAG_LABELS[form.code.data or ""]), "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="why-h"))


@bp.route("/leads/<int:lead_id>/urgent/clear", methods=["POST"])
@roles(*TASK_ROLES)
def clear_urgent(lead_id: int) -> Response:
    """Clear the urgent flag, with the person's reason kept as a note."""
    lead = load_lead_for(current_user, lead_id)
    form = ClearUrgentForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
        return redirect(url_for("leads.detail", lead_id=lead.id))
    try:
        task_rules.clear_urgent(lead, form.reason.data or "", actor=current_user, ip=client_ip())
        db.session.commit()
    except task_rules.UrgentRefused as error:
        db.session.rollback()
        flash(str(error), "error")
    else:
        flash("Urgent flag cleared.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id))


@bp.app_template_global("work_clear_urgent_form")
def work_clear_urgent_form() -> ClearUrgentForm:
    """Give the lead page an empty clear-urgent form."""
    return ClearUrgentForm(formdata=None)


@bp.app_template_global("work_appointment_form")
def work_appointment_form() -> AppointmentForm:
    """Give the lead page an empty booking form."""
    form = AppointmentForm(formdata=None)
    form.surgeon.choices = surgeon_choices()
    return form


@bp.app_template_global("work_outcome_form")
def work_outcome_form() -> AppointmentOutcomeForm:
    """Give the lead page an empty outcome form."""
    return AppointmentOutcomeForm(formdata=None)


@bp.app_template_global("work_may_book")
def work_may_book() -> bool:
    """Tell the lead page whether the user may book appointments and record outcomes."""
    return bool(current_user.role in APPOINTMENT_ROLES)


@bp.route("/leads/<int:lead_id>/appointments", methods=["POST"])
@roles(*APPOINTMENT_ROLES)
def book_appointment(lead_id: int) -> Response:
    """Book an appointment for the lead."""
    lead = load_lead_for(current_user, lead_id)
    form = AppointmentForm()
    form.surgeon.choices = surgeon_choices()
    if not form.validate_on_submit():
        return refuse(lead, Refusal("appointment", _first_error(form), form))
    surgeon = db.session.get(User, form.surgeon.data) if form.surgeon.data else None
    try:
        task_rules.book_appointment(
            lead,
            kind=form.kind.data or "",
            starts_at=clinic_local_to_utc(form.starts_at.data),  # type: ignore[arg-type]
            surgeon=surgeon,
            location=form.location.data,
            actor=current_user,
            ip=client_ip(),
        )
        db.session.commit()
    except task_rules.AppointmentRefused as error:
        db.session.rollback()
        return refuse(load_lead_for(current_user, lead_id), Refusal("appointment", str(error), form))
    flash("Appointment booked.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="appointments-h"))


@bp.route("/leads/<int:lead_id>/appointments/<int:appointment_id>/outcome", methods=["POST"])
@roles(*APPOINTMENT_ROLES)
def appointment_outcome(lead_id: int, appointment_id: int) -> Response:
    """Record what became of one of the lead's appointments."""
    lead = load_lead_for(current_user, lead_id)
    appointment = db.session.scalar(
        sa.select(Appointment).where(Appointment.id == appointment_id, Appointment.lead_id == lead.id)
    )
    if appointment is None:
        abort(404)
    form = AppointmentOutcomeForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
    else:
        task_rules.record_appointment_outcome(
            appointment, form.outcome.data or "", actor=current_user, ip=client_ip()
        )
        db.session.commit()
        flash("Outcome recorded.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="appointments-h"))
