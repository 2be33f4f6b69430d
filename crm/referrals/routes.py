"""The surgeons' referral queue: one decision packet per lead, the decisions, and a print view."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response

from crm import audit, clock
from crm.authz import leads_visible_to, load_lead_for, roles
from crm.extensions import db
from crm.leadedit import EditRefused, take_referral
from crm.leads.evidence import LeadEvidence, explain_texts
from crm.leads.forms import clinic_local_to_utc
from crm.models import AppointmentRequest, Call, Lead, Note
from crm.pipeline import REVIEW, MoveRequest, StageRefused, move, request_more_info
from crm.querystring import whole_number
from crm.referrals.forms import BACK_TO_CARE, AcceptForm, DeclineForm, MoreInfoForm, TakeForm
from crm.security import client_ip
from crm.triage import RED_FLAG_ADVICE

bp = Blueprint("referrals", __name__, url_prefix="/referrals")

DECIDERS = ("surgeon", "manager")
# A surgeon decides one referral at a time between cases: ten packets a page keeps the page
# one quick read (and the server's work bounded), with the rest a click away.
PAGE_SIZE = 10
# The packet shows the patient's latest words; the lead page has all of them.
TEXTS_PER_PACKET = 4
MORE_INFO_DUE = timedelta(days=1)


@bp.route("")
@roles(*DECIDERS)
def queue() -> str:
    """List leads waiting for a surgeon's decision, urgent first, then oldest, as decision packets."""
    waiting = sa.and_(Lead.stage == REVIEW, Lead.in_queue.is_(True), leads_visible_to(current_user))
    page = whole_number(request.args.get("page")) or 1  # page 10^20 would overflow OFFSET on PostgreSQL
    leads, total = _waiting_page(waiting, page)
    pages = max(1, -(-total // PAGE_SIZE))
    if page > pages:  # past the end (an edited address): show the last page
        page = pages
        leads, total = _waiting_page(waiting, page)
    packets = [_packet(lead, ev) for lead, ev in zip(leads, evidence_for(leads), strict=True)]
    audit.record_list(
        "referral_list", user_id=current_user.id, lead_ids=[lead.id for lead in leads], ip=client_ip()
    )
    html = render_template(
        "referrals/queue.html",
        packets=packets,
        blank=_blank_forms(),
        advice=RED_FLAG_ADVICE,
        total=total,
        page=page,
        pages=pages,
    )
    audit.commit_view()
    return html


def _waiting_page(waiting: sa.ColumnElement[bool], page: int) -> tuple[list[Lead], int]:
    """Return one page of the waiting referrals, urgent first then oldest, and how many wait in all.

    One statement: the total rides along on each row (``count(*) OVER ()``); a page past the
    end has no row to carry it, so it is counted alone.
    """
    rows = db.session.execute(
        sa.select(Lead, sa.func.count().over().label("total"))
        .where(waiting)
        .options(
            selectinload(Lead.tags),
            joinedload(Lead.owner),
            joinedload(Lead.surgeon),
            joinedload(Lead.referring_practice),
        )
        .order_by(Lead.urgent.desc(), Lead.stage_entered_at, Lead.id)
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    ).all()
    if rows:
        return [lead for lead, _total in rows], int(rows[0].total)
    if page == 1:
        return [], 0
    return [], db.session.scalar(sa.select(sa.func.count()).select_from(Lead).where(waiting)) or 0


@bp.route("/<int:lead_id>/print")
@roles("surgeon", "manager", "front_desk")
def print_packet(lead_id: int) -> str:
    """Show one referral's decision packet laid out for paper."""
    lead = load_lead_for(current_user, lead_id)
    packet = _packet(lead, evidence_for([lead])[0])
    audit.record("referral_print", user_id=current_user.id, lead_id=lead.id, ip=client_ip())
    page = render_template("referrals/print.html", p=packet, advice=RED_FLAG_ADVICE, printed_at=clock.now())
    db.session.commit()
    return page


@bp.route("/<int:lead_id>/accept", methods=["POST"])
@roles(*DECIDERS)
def accept(lead_id: int) -> Response:
    """Accept a referral and book its consult."""
    lead = load_lead_for(current_user, lead_id)
    form = AcceptForm(prefix=_prefix(lead_id))
    if not form.validate_on_submit():
        return _back(lead_id, _first_error(form))
    request = MoveRequest(
        to="consult_scheduled", reason=form.note.data, consult_at=clinic_local_to_utc(form.consult_at.data)
    )
    return _decide(lead, "accept", lambda: move(lead, request, actor=current_user))


@bp.route("/<int:lead_id>/decline", methods=["POST"])
@roles(*DECIDERS)
def decline(lead_id: int) -> Response:
    """Decline a referral: close it with a reason, or send it back to conservative care."""
    lead = load_lead_for(current_user, lead_id)
    form = DeclineForm(prefix=_prefix(lead_id))
    if not form.validate_on_submit():
        return _back(lead_id, _first_error(form))
    back = form.outcome.data == BACK_TO_CARE
    request = MoveRequest(
        to=BACK_TO_CARE if back else "closed",
        reason=form.reason.data,
        close_reason=None if back else form.outcome.data,
    )
    return _decide(lead, "decline", lambda: move(lead, request, actor=current_user))


@bp.route("/<int:lead_id>/more-info", methods=["POST"])
@roles(*DECIDERS)
def more_info(lead_id: int) -> Response:
    """Ask the owner for more information; the lead stays in the queue."""
    lead = load_lead_for(current_user, lead_id)
    form = MoreInfoForm(prefix=_prefix(lead_id))
    if not form.validate_on_submit():
        return _back(lead_id, _first_error(form))
    due_at = clock.now() + MORE_INFO_DUE
    return _decide(
        lead,
        "more_info",
        lambda: request_more_info(lead, actor=current_user, note=form.needed.data or "", due_at=due_at),
    )


@bp.route("/<int:lead_id>/take", methods=["POST"])
@roles("surgeon")
def take(lead_id: int) -> Response:
    """Take an unassigned referral as one's own."""
    lead = load_lead_for(current_user, lead_id)
    if not TakeForm(prefix=_prefix(lead_id)).validate_on_submit():
        return _back(lead_id, "The form expired. Reload the page and try again.")
    try:
        take_referral(lead, surgeon=current_user, ip=client_ip())
        db.session.commit()
    except (EditRefused, StaleDataError) as error:
        db.session.rollback()
        message = str(error) if isinstance(error, EditRefused) else "Another surgeon has just taken it."
        return _back(lead_id, message)
    flash(f"{lead.full_name} is now in your queue.", "success")
    return redirect(url_for("referrals.queue", _anchor=f"lead-{lead_id}"))


DECISION_WORDS = {
    "accept": "Accepted: consult booked",
    "decline": "Declined",
    "more_info": "Asked the owner for more information",
}


def _decide(lead: Lead, decision: str, act: Any) -> Response:
    """Run one decision through the stage machine, audit it, commit, and say what happened."""
    name = lead.full_name
    try:
        act()
        audit.record(
            "referral_decision",
            user_id=current_user.id,
            lead_id=lead.id,
            detail={"decision": decision, "stage": lead.stage},
            ip=client_ip(),
        )
        db.session.commit()
    except (StageRefused, StaleDataError) as error:
        db.session.rollback()
        message = str(error) if isinstance(error, StageRefused) else "The lead changed meanwhile; look again."
        return _back(lead.id, message)
    flash(f"{DECISION_WORDS[decision]} — {name}.", "success")
    return redirect(url_for("referrals.queue"))


def _back(lead_id: int, message: str) -> Response:
    flash(message, "error")
    return redirect(url_for("referrals.queue", _anchor=f"lead-{lead_id}"))


def _prefix(lead_id: int) -> str:
    return f"r{lead_id}"


def _first_error(form: FlaskForm) -> str:
    """Return the form's first error in words (a CSRF failure included)."""
    for name, errors in form.errors.items():
        if errors:
            if name == "csrf_token":
                return "The form expired. Reload the page and try again."
            return str(errors[0])
    return "Check the form and try again."


# --------------------------------------------------------------------------- packets


def evidence_for(leads: list[Lead]) -> list[LeadEvidence]:
    """Explain the patient's words of many leads with three queries in all, not three per lead."""
    ids = [lead.id for lead in leads]
    texts: dict[int, list[tuple[str, str, Any, str]]] = defaultdict(list)
    if ids:
        for req in db.session.scalars(
            sa.select(AppointmentRequest).where(
                AppointmentRequest.lead_id.in_(ids), AppointmentRequest.message.is_not(None)
            )
        ):
            texts[req.lead_id].append(("request", "Web form message", req.submitted_at, req.message or ""))
        for call in db.session.scalars(
            sa.select(Call).where(Call.lead_id.in_(ids), Call.notes.is_not(None), Call.notes != "")
        ):
            if call.lead_id is not None:
                texts[call.lead_id].append(("call", "Call notes", call.started_at, call.notes or ""))
        for note in db.session.scalars(
            sa.select(Note).where(Note.lead_id.in_(ids)).options(joinedload(Note.author))
        ):
            who = note.author.name if note.author else "staff"
            texts[note.lead_id].append(("note", f"Note by {who}", note.created_at, note.body))
    latest = {
        lead_id: sorted(items, key=lambda item: item[2], reverse=True)[:TEXTS_PER_PACKET]
        for lead_id, items in texts.items()
    }
    return [explain_texts(latest.get(lead_id, [])) for lead_id in ids]


def _packet(lead: Lead, evidence: LeadEvidence) -> dict[str, Any]:
    """Gather what a surgeon decides on; ``prefix`` names the fields of its decision forms."""
    return {"lead": lead, "evidence": evidence, "prefix": _prefix(lead.id) + "-"}


# The decision forms are always shown empty (a refused decision comes back as a message), so
# the page renders each form's fields once with this stand-in prefix and gives every packet a
# copy with its own prefix: ten packets' fifty WTForms fields took 7 ms of the page's 22.
BLANK_PREFIX = "rLEAD"
BLANK_OWNER = "OWNER-NAME"  # stands for the packet owner's name in the "more info" hint


def _blank_forms() -> dict[str, Any]:
    return {
        "prefix": BLANK_PREFIX + "-",
        "owner": BLANK_OWNER,
        "accept": AcceptForm(formdata=None, prefix=BLANK_PREFIX),
        "decline": DeclineForm(formdata=None, prefix=BLANK_PREFIX),
        "more_info": MoreInfoForm(formdata=None, prefix=BLANK_PREFIX),
    }
