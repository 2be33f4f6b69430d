"""Manual intake pages: a new lead, the phone lookup, a logged call, merging, CSV import."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from crm import audit, clock, imports, phones
from crm.authz import leads_visible_to, load_lead_for, roles
from crm.extensions import db
from crm.intake import ContactIn, IntakeRefused, find_or_create_lead, log_manual_call
from crm.leadedit import add_note
from crm.leads.intake_forms import CallLogForm, ImportCommitForm, ImportUploadForm, MergeForm, NewLeadForm
from crm.leads.routes import Refusal, _first_error, bp, refuse
from crm.merge import MergeRefused, check_merge, lead_counts, merge_leads
from crm.models import Lead
from crm.security import client_ip

EDITORS = ("front_desk", "manager", "admin")
LOOKUP_LIMIT = 5


@bp.route("/leads/new", methods=["GET", "POST"])
@roles(*EDITORS)
def new_lead() -> Response | str | tuple[str, int]:
    """Create a lead by hand; intake's duplicate rule may attach it to an existing one."""
    form = NewLeadForm()
    if not form.validate_on_submit():
        status = 400 if request.method == "POST" else 200
        return render_template("leads/new.html", form=form), status
    contact = ContactIn(
        source=form.source.data or "phone",
        first_name=form.first_name.data or "",
        last_name=form.last_name.data or "",
        phone=form.phone.data,
        email=form.email.data,
        message=form.message.data or None,
    )
    result = find_or_create_lead(contact, now=clock.now())
    lead = result.lead
    assert lead is not None
    if (form.message.data or "").strip():
        add_note(lead, form.message.data or "", actor=current_user, ip=client_ip())
    action = "lead_create" if result.created else "lead_intake_attach"
    audit.record(
        action, user_id=current_user.id, lead_id=lead.id, detail={"source": contact.source}, ip=client_ip()
    )
    db.session.commit()
    flash(_created_message(result.created, result.possible_duplicate_of), "success")
    return redirect(url_for("leads.detail", lead_id=lead.id))


def _created_message(created: bool, duplicate_of: Lead | None) -> str:
    if not created:
        return "Already a lead: what you typed was added to this patient's existing lead."
    if duplicate_of is not None:
        return (
            f"Lead created. Another lead (#{duplicate_of.id}) has the same phone with a different name: "
            "it is marked as a possible duplicate — merge the two if they are the same person."
        )
    return "Lead created."


@bp.route("/leads/lookup", methods=["POST"])
@roles(*EDITORS)
def lookup() -> Response:
    """Answer the open leads with a phone (as typed), for the new-lead page's duplicate warning.

    A POST, so the phone never sits in a URL or an access log.
    """
    phone = phones.normalize((request.form.get("phone") or "")[:64])
    leads: list[Lead] = []
    if phone:
        leads = list(
            db.session.scalars(
                sa.select(Lead)
                .where(
                    Lead.phone == phone,
                    Lead.stage != "closed",
                    Lead.merged_into_id.is_(None),
                    leads_visible_to(current_user),
                )
                .order_by(Lead.last_activity_at.desc())
                .limit(LOOKUP_LIMIT)
            )
        )
    audit.record_list(
        "lead_lookup", user_id=current_user.id, lead_ids=[lead.id for lead in leads], ip=client_ip()
    )
    matches = [
        {"id": lead.id, "name": lead.full_name, "url": url_for("leads.detail", lead_id=lead.id)}
        for lead in leads
    ]
    db.session.commit()
    return jsonify({"matches": matches})


@bp.route("/leads/<int:lead_id>/calls", methods=["POST"])
@roles(*EDITORS)
def log_call(lead_id: int) -> Response:
    """Log a call made or taken by hand: an attempt, or the first contact when answered."""
    lead = load_lead_for(current_user, lead_id)
    form = CallLogForm()
    if not form.validate_on_submit():
        return refuse(lead, Refusal("call", _first_error(form), form))
    try:
        result = log_manual_call(
            direction=form.direction.data or "",
            outcome=form.outcome.data or "",
            lines=current_app.config["CLINIC_LINES"],
            lead=lead,
            actor=current_user,
            notes=form.notes.data or None,
            override_reason=form.override_reason.data or None,
            now=clock.now(),
        )
    except IntakeRefused as error:
        db.session.rollback()
        return refuse(load_lead_for(current_user, lead_id), Refusal("call", str(error), form))
    assert result.call is not None
    detail = {"call_id": result.call.id, "direction": form.direction.data, "outcome": form.outcome.data}
    if "opt_out_override" in result.details:
        detail["opt_out_override"] = result.details["opt_out_override"]
    audit.record("call_log", user_id=current_user.id, lead_id=lead.id, detail=detail, ip=client_ip())
    db.session.commit()
    flash("Call logged.", "success")
    return redirect(url_for("leads.detail", lead_id=lead.id, _anchor="timeline-h"))


@bp.route("/leads/<int:lead_id>/merge", methods=["GET"])
@roles(*EDITORS)
def merge_confirm(lead_id: int) -> str | tuple[str, int]:
    """Show this lead and the one to keep side by side before merging."""
    lead = load_lead_for(current_user, lead_id)
    form = MergeForm(request.args, meta={"csrf": False})
    survivor, refusal = None, None
    if request.args.get("into"):
        if form.validate():
            survivor = db.session.scalar(
                sa.select(Lead).where(Lead.id == form.into.data, leads_visible_to(current_user))
            )
            refusal = f"There is no lead #{form.into.data}." if survivor is None else None
        else:
            refusal = "Give the number of the lead to keep."
        if survivor is not None:
            try:
                check_merge(survivor, lead)
            except MergeRefused as error:
                refusal = str(error)
    audit.record_list(
        "lead_merge_preview",
        user_id=current_user.id,
        lead_ids=[lead.id] + ([survivor.id] if survivor else []),
        ip=client_ip(),
    )
    page = render_template(
        "leads/merge.html",
        lead=lead,
        survivor=survivor,
        refusal=refusal,
        counts={x.id: lead_counts(x.id) for x in (lead, survivor) if x is not None},
        form=MergeForm(formdata=None, into=survivor.id if survivor else None),
    )
    db.session.commit()
    return (page, 400) if refusal else page


@bp.route("/leads/<int:lead_id>/merge", methods=["POST"])
@roles(*EDITORS)
def merge(lead_id: int) -> Response:
    """Merge this lead into the one chosen: the other survives with everything of both."""
    lead = load_lead_for(current_user, lead_id)
    form = MergeForm()
    if not form.validate_on_submit():
        flash(_first_error(form), "error")
        return redirect(url_for("leads.merge_confirm", lead_id=lead.id))
    survivor = load_lead_for(current_user, form.into.data or 0)
    try:
        merge_leads(survivor, lead, actor=current_user, now=clock.now(), ip=client_ip())
    except MergeRefused as error:
        db.session.rollback()
        flash(str(error), "error")
        return redirect(url_for("leads.detail", lead_id=lead_id))
    db.session.commit()
    flash(
        f"Lead #{lead_id} merged into this lead: its calls, requests, notes, tags and tasks are here now.",
        "success",
    )
    return redirect(url_for("leads.detail", lead_id=survivor.id))


# --------------------------------------------------------------------------- CSV import


@bp.route("/leads/import", methods=["GET", "POST"])
@roles(*EDITORS)
def import_upload() -> str | tuple[str, int]:
    """Upload a CSV file and see it as it would be imported: mapped rows, errors, counts."""
    form = ImportUploadForm()
    if not form.validate_on_submit():
        return render_template("leads/import.html", form=form), 400 if request.method == "POST" else 200
    data = form.file.data.read(imports.MAX_BYTES + 1)
    try:
        parsed = imports.read_csv(data, form.kind.data or "", lines=current_app.config["CLINIC_LINES"])
    except imports.ImportRefused as error:
        form.file.errors = [str(error)]
        return render_template("leads/import.html", form=form), 400
    token = imports.store_upload(_upload_dir(), data, kind=parsed.kind, user_id=current_user.id)
    commit_form = ImportCommitForm(formdata=None, token=token)
    return render_template(
        "leads/import.html", form=form, parsed=parsed, commit_form=commit_form, **_preview(parsed)
    )


def _preview(parsed: imports.ParsedFile) -> dict[str, Any]:
    return {
        "fields": list(parsed.columns),
        "preview_rows": parsed.rows[: imports.PREVIEW_ROWS],
        "errors": parsed.errors[: imports.ERRORS_SHOWN],
        "labels": imports.FIELD_LABELS,
    }


def _upload_dir() -> str:
    return str(current_app.instance_path) + "/imports"


@bp.route("/leads/import/commit", methods=["POST"])
@roles(*EDITORS)
def import_commit() -> Response | str | tuple[str, int]:
    """Import the previewed file: all of it, or its good rows when the user chose to skip bad ones."""
    form = ImportCommitForm()
    upload = imports.load_upload(_upload_dir(), form.token.data or "", user_id=current_user.id)
    if not form.validate_on_submit() or upload is None:
        flash("That upload is gone (already imported, or too old): upload the file again.", "error")
        return redirect(url_for("leads.import_upload"))
    data, kind = upload
    lines = current_app.config["CLINIC_LINES"]
    try:
        parsed = imports.read_csv(data, kind, lines=lines)
    except imports.ImportRefused as error:  # pragma: no cover - it was read once for the preview
        flash(str(error), "error")
        return redirect(url_for("leads.import_upload"))
    try:
        result = imports.import_rows(
            parsed,
            skip_bad_rows=bool(form.skip_bad_rows.data),
            lines=lines,
            now=clock.now(),
            actor_id=current_user.id,
            ip=client_ip(),
        )
        db.session.commit()
    except imports.ImportRefused as error:
        db.session.rollback()
        upload_form = ImportUploadForm(formdata=None, kind=kind)
        page = render_template(
            "leads/import.html",
            form=upload_form,
            parsed=parsed,
            commit_form=form,
            refusal=str(error),
            **_preview(parsed),
        )
        return page, 400
    imports.delete_upload(_upload_dir(), form.token.data or "")
    return render_template(
        "leads/import_done.html", result=result, errors=result.errors[: imports.ERRORS_SHOWN]
    )
