"""The lead list, the lead page (edit, move, note), notifications and my tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from crm import audit, clock, phones
from crm import queue as queue_actions
from crm.authz import MAX_ID, can, leads_visible_to, load_lead_for, roles
from crm.extensions import db
from crm.leadedit import EditRefused, StaleVersion, add_note, describe_changes, update_lead
from crm.leads.evidence import LeadEvidence, explain_texts
from crm.leads.forms import (
    BulkForm,
    CallingForm,
    ClaimForm,
    LeadEditForm,
    MarkReadForm,
    NoteForm,
    QueueFilterForm,
    StageForm,
    clinic_local_to_utc,
)
from crm.models import (
    SOURCE_LABELS,
    SOURCES,
    STAGE_LABELS,
    STAGES,
    Appointment,
    AppointmentRequest,
    Call,
    Lead,
    Note,
    Notification,
    StageChange,
    TagChange,
    Task,
    User,
)
from crm.pipeline import REVIEW, MoveRequest, StageRefused, allowed_targets, label, move
from crm.querystring import plain_text, whole_number, within_calendar
from crm.queue import (
    GROUP_LABELS,
    BadCursor,
    Cursor,
    QueueFilters,
    QueueRefused,
    caller_of,
    fetch_page,
    overdue_label,
)
from crm.security import client_ip
from crm.settings import clinic_tz
from crm.triage import RED_FLAG_ADVICE, TAG_LABELS

bp = Blueprint("leads", __name__)

PER_PAGE = 50
STAFF = ("front_desk", "surgeon", "manager", "admin")
EDITORS = ("front_desk", "manager", "admin")
NOTIFICATIONS_SHOWN = 20


@bp.route("/leads")
@roles(*STAFF)
def queue() -> str:
    """Show the front-desk queue: urgent, overdue, tasks due, the rest; filtered, searched, by cursor."""
    form = QueueFilterForm(request.args)
    owners = _fill_filter_choices(form)
    filters = _read_filters(form)
    try:
        after = Cursor.decode(request.args["after"]) if request.args.get("after") else None
    except BadCursor:
        after = None
    now = clock.now()
    page = fetch_page(leads_visible_to(current_user), filters, now=now, tz=clinic_tz(), after=after)
    notifications = db.session.execute(
        sa.select(Notification, Lead)
        .outerjoin(Lead, Lead.id == Notification.lead_id)
        .where(Notification.user_id == current_user.id, Notification.read_at.is_(None))
        .order_by(Notification.created_at.desc(), Notification.id.desc())
        .limit(NOTIFICATIONS_SHOWN)
    ).all()
    audit.record_list(
        "lead_list", user_id=current_user.id, lead_ids=[lead.id for lead in page.leads], ip=client_ip()
    )
    body = render_template(
        "leads/queue.html",
        page=page,
        form=form,
        filters=filters,
        owners=owners,
        bulk_form=_bulk_form(owners),
        group_labels=GROUP_LABELS,
        # Only the filters go on into the page's links: any other name (``include`` twice, or
        # url_for's own ``_scheme``/``_external``) would break building them.
        args={k: v for k, v in request.args.items() if k in form._fields and v},
        notifications=notifications,
        read_form=MarkReadForm(),
        action_form=ClaimForm(),
        can_edit=can(current_user, "edit_leads"),
        overdue_label=overdue_label,
        caller_of=caller_of,
        row_urls=_row_urls(),
        here=request.full_path,
        token=generate_csrf(),
    )
    audit.commit_view()
    return body


def _row_urls() -> dict[str, str]:
    """Return each queue row's addresses as patterns (``/leads/{}``): built once, not fifty times."""
    return {
        name: url_for(f"leads.{name}", lead_id=MAX_ID).replace(str(MAX_ID), "{}")
        for name in ("detail", "claim", "calling")
    }


def _fill_filter_choices(form: QueueFilterForm) -> list[User]:
    """Offer the stages, tags, sources and staff to filter by; return the staff who can own leads."""
    owners = list(
        db.session.scalars(
            sa.select(User).where(User.active.is_(True), User.role.in_(EDITORS)).order_by(User.name)
        )
    )
    anyone = SelectChoice("", "Any")
    form.stage.choices = [anyone, *[SelectChoice(s, STAGE_LABELS[s]) for s in STAGES]]
    form.tag.choices = [anyone, *[SelectChoice(code, TAG_LABELS[code]) for code in TAG_LABELS]]
    form.source.choices = [anyone, *[SelectChoice(s, SOURCE_LABELS[s]) for s in SOURCES]]
    form.owner.choices = [
        anyone,
        SelectChoice("me", "Me"),
        SelectChoice("none", "Unassigned"),
        *[SelectChoice(str(u.id), u.name) for u in owners],
    ]
    return owners


def _read_filters(form: QueueFilterForm) -> QueueFilters:
    """Read the filter form into the queue's filters; a malformed value is dropped, not an error."""
    form.validate()
    owner: int | str | None = form.owner.data or None
    if owner == "me":
        owner = current_user.id
    elif owner is not None and owner != "none":
        owner = whole_number(owner)
    stage = form.stage.data if form.stage.data in STAGES else None
    if stage == "closed":
        form.include.data = "closed"  # asking for closed leads is asking to see them
    return QueueFilters(
        stage=stage,
        tag=form.tag.data if form.tag.data in TAG_LABELS else None,
        source=form.source.data if form.source.data in SOURCES else None,
        campaign=plain_text(form.campaign.data, 120),
        owner=owner,
        created_from=within_calendar(form.created_from.data) if not form.created_from.errors else None,
        created_to=within_calendar(form.created_to.data) if not form.created_to.errors else None,
        q=plain_text(form.q.data, 200),
        include_closed=form.include.data == "closed",
    )


def _bulk_form(owners: list[User]) -> BulkForm:
    form = BulkForm(formdata=None)
    form.owner.choices = [
        SelectChoice("", "Choose…"),
        SelectChoice("none", "Nobody (unassigned)"),
        *[SelectChoice(str(u.id), u.name) for u in owners],
    ]
    return form


def _back_to_queue() -> Response:
    """Return to the queue the action was taken from (its filters kept), never elsewhere."""
    target = request.form.get("next", "")
    if not target.startswith("/leads") or target.startswith("//"):
        target = url_for("leads.queue")
    return redirect(target)


@bp.route("/leads/<int:lead_id>/claim", methods=["POST"])
@roles(*EDITORS)
def claim(lead_id: int) -> Response:
    """Make an unassigned lead the signed-in user's own."""
    lead = load_lead_for(current_user, lead_id)
    if not ClaimForm().validate_on_submit():
        abort(400, description="The form expired. Reload the page and try again.")
    try:
        queue_actions.claim(lead, user=current_user, now=clock.now(), ip=client_ip())
        db.session.commit()
    except QueueRefused as error:
        db.session.rollback()
        flash(str(error), "error")
        return _back_to_queue()
    flash(f"{lead.full_name} is now yours.", "success")
    return _back_to_queue()


@bp.route("/leads/<int:lead_id>/calling", methods=["POST"])
@roles(*EDITORS)
def calling(lead_id: int) -> Response:
    """Show the others that the signed-in user is calling this patient now (or has stopped)."""
    lead = load_lead_for(current_user, lead_id)
    form = CallingForm()
    if not form.validate_on_submit():
        abort(400, description="The form expired. Reload the page and try again.")
    starting = form.action.data == "start"
    queue_actions.set_calling(lead, user=current_user, calling=starting, now=clock.now())
    db.session.commit()
    flash(
        f"Others now see you are calling {lead.full_name}." if starting else "Call marked as over.", "success"
    )
    return _back_to_queue()


@bp.route("/leads/bulk", methods=["POST"])
@roles(*EDITORS)
def bulk() -> Response:
    """Reassign the ticked leads, or mark them not a patient."""
    form = BulkForm()
    form.owner.choices = []
    if not form.validate_on_submit():
        abort(400, description=_first_error(form))
    ids = [int(v) for v in request.form.getlist("lead_id") if v.isdigit()]
    visible = list(
        db.session.scalars(sa.select(Lead.id).where(Lead.id.in_(ids), leads_visible_to(current_user)))
    )
    if not visible:
        flash("Tick at least one lead first.", "error")
        return _back_to_queue()
    now = clock.now()
    if form.action.data == "not_a_patient":
        done = queue_actions.bulk_not_a_patient(visible, actor=current_user, now=now, ip=client_ip())
        message = f"{done} lead{'s' if done != 1 else ''} marked not a patient."
    else:
        owner = None if form.owner.data == "none" else db.session.get(User, int(form.owner.data))
        if form.owner.data != "none" and (owner is None or not owner.active or owner.role not in EDITORS):
            abort(400, description="Choose an active staff member as the new owner.")
        done = queue_actions.bulk_reassign(visible, owner=owner, actor=current_user, now=now, ip=client_ip())
        message = f"{done} lead{'s' if done != 1 else ''} given to {owner.name if owner else 'nobody'}."
    db.session.commit()
    flash(message, "success")
    return _back_to_queue()


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@roles(*STAFF)
def mark_read(notification_id: int) -> Response:
    """Mark one of the signed-in user's notifications read."""
    note = db.session.scalar(
        sa.select(Notification).where(
            Notification.id == notification_id, Notification.user_id == current_user.id
        )
    )
    if note is None:
        abort(404)
    if not MarkReadForm().validate_on_submit():
        abort(400, description="The form expired. Reload the page and try again.")
    if note.read_at is None:
        note.read_at = clock.now()
        db.session.commit()
    return redirect(url_for("leads.queue"))


@bp.route("/leads/<int:lead_id>")
@roles(*STAFF)
def detail(lead_id: int) -> Response | str:
    """Show one lead: contact, clinical facts, explained tags, stage moves and its activity."""
    lead = load_lead_for(current_user, lead_id, joinedload(Lead.tags))
    if lead.merged_into_id is not None:
        return redirect(url_for("leads.detail", lead_id=lead.merged_into_id))
    page = render_lead_page(lead)  # before the commit, which would expire what the page read
    audit.record("lead_view", user_id=current_user.id, lead_id=lead.id, ip=client_ip())
    audit.commit_view()
    return page


@bp.route("/leads/<int:lead_id>/edit", methods=["POST"])
@roles(*EDITORS)
def edit(lead_id: int) -> Response | str:
    """Save contact, consent and clinical facts, refusing a save made from an outdated copy."""
    lead = load_lead_for(current_user, lead_id)
    form = LeadEditForm()
    if not form.validate_on_submit():
        return render_lead_page(lead, edit_form=form, status=400)
    try:
        changed = update_lead(
            lead, form.changes(), expected_version=int(form.version.data), actor=current_user, ip=client_ip()
        )
        db.session.commit()
    except (StaleVersion, StaleDataError) as error:
        db.session.rollback()
        return _refuse_stale(lead_id, form, error)
    except EditRefused as error:
        db.session.rollback()
        form.form_errors.append(str(error))
        return render_lead_page(load_lead_for(current_user, lead_id), edit_form=form, status=400)
    flash("Saved." if changed else "Nothing to save: no field changed.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="details-h"))


def _refuse_stale(lead_id: int, form: LeadEditForm, error: Exception) -> tuple[str, int]:
    """Re-show the editor's input with what the other person changed, against the new version."""
    lead = load_lead_for(current_user, lead_id)
    changed = error.changed_fields_by_other if isinstance(error, StaleVersion) else {}
    form.version.data = str(lead.version)  # a second save, after reading the changes, goes through
    return render_lead_page(lead, edit_form=form, conflict=describe_changes(changed), status=409)


@bp.route("/leads/<int:lead_id>/stage", methods=["POST"])
@roles(*STAFF)
def stage(lead_id: int) -> Response:
    """Move a lead to another stage through the stage machine."""
    lead = load_lead_for(current_user, lead_id)
    form = StageForm()
    if not form.validate_on_submit():
        return refuse(lead, Refusal("stage", _first_error(form), form))
    if not form.to.data:
        return refuse(lead, Refusal("stage", "Choose the stage to move the lead to.", form))
    before = lead.stage
    try:
        move(lead, _move_request(form), actor=current_user)
        audit.record(
            "lead_stage",
            user_id=current_user.id,
            lead_id=lead.id,
            detail={"from": before, "to": lead.stage},
            ip=client_ip(),
        )
        db.session.commit()
    except StageRefused as error:
        db.session.rollback()
        return refuse(load_lead_for(current_user, lead_id), Refusal("stage", str(error), form))
    flash(f"Moved to {label(lead.stage)}.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id))


def _move_request(form: StageForm) -> MoveRequest:
    """Read the stage form into the stage machine's request."""
    surgeon = db.session.get(User, form.surgeon.data) if form.surgeon.data else None
    return MoveRequest(
        to=form.to.data or "",
        reason=form.reason.data,
        close_reason=form.close_reason.data or None,
        override=bool(form.override.data),
        surgeon=surgeon,
        consult_at=clinic_local_to_utc(form.consult_at.data),
    )


@bp.route("/leads/<int:lead_id>/notes", methods=["POST"])
@roles(*STAFF)
def notes(lead_id: int) -> Response:
    """Add a note to the lead's timeline."""
    lead = load_lead_for(current_user, lead_id)
    form = NoteForm()
    if not form.validate_on_submit():
        return refuse(lead, Refusal("note", _first_error(form), form))
    try:
        add_note(lead, form.body.data or "", actor=current_user, ip=client_ip())
        db.session.commit()
    except EditRefused as error:
        db.session.rollback()
        return refuse(load_lead_for(current_user, lead_id), Refusal("note", str(error), form))
    flash("Note added.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="timeline-h"))


def _first_error(form: Any) -> str:
    """Return the form's first error in words (a CSRF failure included)."""
    for name, errors in form.errors.items():
        if errors:
            if name == "csrf_token":
                return "The form expired. Reload the page and try again."
            field = getattr(form, name, None)
            return f"{field.label.text if field else name}: {errors[0]}"
    return "Check the form and try again."


# --------------------------------------------------------------------------- the page


@dataclass(frozen=True)
class Refusal:
    """A lead-page form that was refused: its section, the reason, and the form as it was sent."""

    section: str  # "stage", "note" or "call": the card that shows the reason
    message: str
    form: Any


def refuse(lead: Lead, refusal: Refusal) -> Response:
    """Show the lead page again with the reason beside the refused form, the user's input kept.

    The form's first field takes the focus (``autofocus``), so the browser brings the card
    and its reason into view; nothing was saved.
    """
    body, status = render_lead_page(lead, refusal=refusal, status=400)
    return Response(body, status=status, mimetype="text/html")


def render_lead_page(
    lead: Lead,
    *,
    edit_form: LeadEditForm | None = None,
    conflict: list[Any] | None = None,
    task_form: Any = None,
    refusal: Refusal | None = None,
    status: int = 200,
) -> Any:
    """Render the lead page with its forms; an edit, task or refused form given back keeps its input."""
    active_staff()  # first: the owner, surgeon and people on the page then come from the session
    timeline = build_timeline(lead.id)
    tasks = [item["obj"] for item in timeline if item["kind"] == "task"]
    tasks.sort(key=lambda t: (t.done_at is not None, t.due_at))
    evidence = lead_evidence(timeline)
    targets = allowed_targets(lead, current_user) if lead.merged_into_id is None else []
    stage_form = refusal.form if refusal and refusal.section == "stage" else StageForm(formdata=None)
    stage_form.to.choices = [
        SelectChoice("", "Choose a stage…"),
        *[SelectChoice(t, label(t)) for t in targets],
    ]
    surgeons: list[User] = []
    if REVIEW in targets:
        surgeons = [u for u in active_staff() if u.role == "surgeon"]
        stage_form.surgeon.choices = [
            SelectChoice("", "Clinic default / unassigned"),
            *[SelectChoice(str(s.id), s.name) for s in surgeons],
        ]
    if edit_form is None and can(current_user, "edit_leads"):
        edit_form = LeadEditForm(formdata=None, obj=lead)
        edit_form.version.data = str(lead.version)
        edit_form.phone.data = phones.display(lead.phone) or None
    body = render_template(
        "leads/detail.html",
        lead=lead,
        timeline=timeline,
        tasks=tasks,
        evidence=evidence,
        targets=targets,
        stage_form=stage_form,
        note_form=refusal.form if refusal and refusal.section == "note" else NoteForm(formdata=None),
        refusal=refusal,
        edit_form=edit_form,
        conflict=conflict,
        red_flag_advice=RED_FLAG_ADVICE,
        can_edit=can(current_user, "edit_leads"),
        can_note=can(current_user, "add_notes"),
        can_override=can(current_user, "override_gate"),
        refused_task_form=task_form,
    )
    if status == 200:
        return body
    # A refused form shows the whole record again: that is a view of it, audited as the page's
    # own GET is (nothing else is pending: the refusal rolled back or changed nothing).
    audit.record("lead_view", user_id=current_user.id, lead_id=lead.id, ip=client_ip())
    audit.commit_view()
    return body, status


def active_staff() -> list[User]:
    """The active staff by name, loaded once per request: the lead page's stage, task and
    appointment forms all choose from it.

    Every account is loaded, deactivated ones too (a clinic has tens): the people a lead's
    history names (who took a call, wrote a note, moved it) then come from the session's
    identity map, with no join in each timeline query.
    """
    # Loaded again after a rollback or commit expired them (a refused form shows the page again).
    if "active_staff" not in g or (g.all_staff and sa.inspect(g.all_staff[0]).expired):
        # Held for the request: the session keeps only weak references to what it loaded.
        g.all_staff = list(db.session.scalars(sa.select(User).order_by(User.name)))
        g.active_staff = [user for user in g.all_staff if user.active]
    staff: list[User] = g.active_staff
    return staff


def lead_evidence(timeline: list[dict[str, Any]]) -> LeadEvidence:
    """Explain the patient's words on a lead: form messages, call notes and notes."""
    texts: list[tuple[str, str, Any, str]] = []
    for item in timeline:
        obj = item["obj"]
        if item["kind"] == "request" and obj.message:
            texts.append(("request", "Web form message", item["at"], obj.message))
        elif item["kind"] == "call" and obj.notes:
            texts.append(("call", "Call notes", item["at"], obj.notes))
        elif item["kind"] == "note":
            who = obj.author.name if obj.author else "staff"
            texts.append(("note", f"Note by {who}", item["at"], obj.body))
    return explain_texts(texts)


def build_timeline(lead_id: int) -> list[dict[str, Any]]:
    """Gather a lead's calls, requests, notes, tag and stage changes, tasks and appointments.

    The people they name come from the session (``active_staff`` loads every account first).
    """
    active_staff()
    items: list[dict[str, Any]] = []
    sources: list[tuple[str, Any, Any]] = [
        ("call", Call, Call.started_at),
        ("request", AppointmentRequest, AppointmentRequest.submitted_at),
        ("note", Note, Note.created_at),
        ("stage", StageChange, StageChange.at),
        ("tag", TagChange, TagChange.at),
        ("appointment", Appointment, Appointment.created_at),
        ("task", Task, Task.created_at),
    ]
    for kind, model, at in sources:
        for obj in db.session.scalars(sa.select(model).where(model.lead_id == lead_id)):
            items.append({"kind": kind, "at": getattr(obj, at.key), "obj": obj})
    items.sort(key=lambda item: item["at"], reverse=True)
    return items


@bp.route("/tasks", endpoint="tasks")
@roles("front_desk", "manager", "admin")
def my_tasks() -> str:
    """List the signed-in user's open tasks, earliest due first."""
    tasks = db.session.scalars(
        sa.select(Task)
        .where(
            Task.assignee_id == current_user.id,
            Task.done_at.is_(None),
            # A call-back to spam, a vendor or an existing patient is nobody's work: the task
            # stays as it was (the call-back figures count it so), but this list leaves it out.
            ~sa.exists().where(Lead.id == Task.lead_id, Lead.not_a_patient.is_(True)),
            ~sa.exists().where(Call.id == Task.call_id, Call.not_a_patient.is_(True)),
        )
        .options(
            joinedload(Task.lead).load_only(
                Lead.first_name, Lead.last_name, Lead.phone, Lead.consent_phone, Lead.stage
            ),
            joinedload(Task.call).load_only(
                Call.from_number, Call.direction, Call.not_a_patient, Call.disposition
            ),
        )
        .order_by(Task.due_at)
        .limit(200)
    ).all()
    lead_ids = sorted({task.lead_id for task in tasks if task.lead_id is not None})
    audit.record_list("task_list", user_id=current_user.id, lead_ids=lead_ids, ip=client_ip())
    page = render_template("leads/tasks.html", tasks=tasks)  # before the commit expires the rows
    db.session.commit()
    return page
