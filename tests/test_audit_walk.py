"""Every request that shows, changes or exports a patient's record writes exactly one audit row
(PRODUCT §9, HIPAA §164.312(b)); list pages name the ids they showed.

The walk covers every route that takes a lead or one of its objects, and the list pages: a new
route of that kind fails ``test_the_walk_covers_every_patient_route`` until it is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, current_app

from crm import clock
from crm.apitokens import create_token
from crm.extensions import db
from crm.intake import log_manual_call
from crm.models import Appointment, AuditEvent, Lead, Task, User
from tests.conftest import csrf_token, sign_in

HOME = {"front_desk": "/leads", "surgeon": "/referrals", "manager": "/dashboard", "admin": "/admin"}
LATER = (clock.now() + timedelta(days=7)).strftime("%Y-%m-%dT10:00")


@dataclass
class Case:
    role: str
    method: str
    url: Callable[[Lead, dict[str, Any]], str]
    data: Callable[[Lead, dict[str, Any]], dict[str, Any]] = lambda lead, ctx: {}
    stage: str = "evaluation"
    prefix: str = ""  # the referral packets' per-lead form prefix
    api: bool = False
    lead_kwargs: dict[str, Any] = field(default_factory=dict)
    rows: int = 1  # audit rows: one per patient record touched


def _lead_url(suffix: str = "") -> Callable[[Lead, dict[str, Any]], str]:
    return lambda lead, ctx: f"/leads/{lead.id}{suffix}"


CASES: dict[str, Case] = {
    "leads.queue": Case("front_desk", "GET", lambda lead, ctx: "/leads"),
    "leads.tasks": Case("front_desk", "GET", lambda lead, ctx: "/tasks"),
    "referrals.queue": Case("surgeon", "GET", lambda lead, ctx: "/referrals", stage="surgical_review"),
    "leads.detail": Case("front_desk", "GET", _lead_url()),
    "leads.fhir_export": Case("manager", "GET", _lead_url("/fhir.json")),
    "leads.record_json": Case("front_desk", "GET", _lead_url("/record.json")),
    "leads.record_print": Case("front_desk", "GET", _lead_url("/record")),
    "referrals.print_packet": Case(
        "surgeon", "GET", lambda lead, ctx: f"/referrals/{lead.id}/print", stage="surgical_review"
    ),
    "leads.merge_confirm": Case(
        "front_desk", "GET", lambda lead, ctx: f"/leads/{lead.id}/merge?into={ctx['other']}"
    ),
    "leads.merge": Case(
        "front_desk", "POST", _lead_url("/merge"), lambda lead, ctx: {"into": ctx["other"]}, rows=2
    ),
    "leads.edit": Case(
        "front_desk",
        "POST",
        _lead_url("/edit"),
        lambda lead, ctx: {
            "version": lead.version,
            "first_name": "Ana",
            "last_name": lead.last_name,
            "phone": lead.phone,
            "preferred_contact": "",
            "imaging_type": "",
        },
    ),
    "leads.notes": Case(
        "front_desk", "POST", _lead_url("/notes"), lambda lead, ctx: {"body": "Prefers mornings"}
    ),
    "leads.stage": Case(
        "front_desk",
        "POST",
        _lead_url("/stage"),
        lambda lead, ctx: {"to": "conservative_care", "reason": "Try six weeks of PT first"},
    ),
    "leads.log_call": Case(
        "front_desk",
        "POST",
        _lead_url("/calls"),
        lambda lead, ctx: {"direction": "outbound", "outcome": "busy"},
    ),
    "leads.claim": Case("front_desk", "POST", _lead_url("/claim")),
    "leads.add_tag": Case("front_desk", "POST", _lead_url("/tags"), lambda lead, ctx: {"code": "side:left"}),
    "leads.remove_tag": Case(
        "front_desk", "POST", _lead_url("/tags/remove"), lambda lead, ctx: {"code": "region:lower"}
    ),
    "leads.clear_urgent": Case(
        "front_desk",
        "POST",
        _lead_url("/urgent/clear"),
        lambda lead, ctx: {"reason": "Spoke with her: no numbness, pain is stable"},
        lead_kwargs={"urgent": True},
    ),
    "leads.add_task": Case(
        "front_desk",
        "POST",
        _lead_url("/tasks"),
        lambda lead, ctx: {"title": "Ask for MRI report", "kind": "send_records", "due_at": LATER},
    ),
    "leads.task_done": Case("front_desk", "POST", lambda lead, ctx: f"/tasks/{ctx['task']}/done"),
    "leads.task_undo": Case("front_desk", "POST", lambda lead, ctx: f"/tasks/{ctx['done_task']}/undo"),
    "leads.close_no_response": Case("front_desk", "POST", _lead_url("/close-no-response")),
    "leads.book_appointment": Case(
        "front_desk",
        "POST",
        _lead_url("/appointments"),
        lambda lead, ctx: {"kind": "imaging", "starts_at": LATER},
    ),
    "leads.appointment_outcome": Case(
        "front_desk",
        "POST",
        lambda lead, ctx: f"/leads/{lead.id}/appointments/{ctx['appointment']}/outcome",
        lambda lead, ctx: {"outcome": "attended"},
    ),
    "referrals.take": Case(
        "surgeon", "POST", lambda lead, ctx: f"/referrals/{lead.id}/take", stage="surgical_review"
    ),
    "referrals.accept": Case(
        "surgeon",
        "POST",
        lambda lead, ctx: f"/referrals/{lead.id}/accept",
        lambda lead, ctx: {"consult_at": LATER},
        stage="surgical_review",
        prefix="r",
    ),
    "referrals.decline": Case(
        "surgeon",
        "POST",
        lambda lead, ctx: f"/referrals/{lead.id}/decline",
        lambda lead, ctx: {"outcome": "not_a_candidate", "reason": "Imaging does not show compression"},
        stage="surgical_review",
        prefix="r",
    ),
    "referrals.more_info": Case(
        "surgeon",
        "POST",
        lambda lead, ctx: f"/referrals/{lead.id}/more-info",
        lambda lead, ctx: {"needed": "The MRI report, please"},
        stage="surgical_review",
        prefix="r",
    ),
    "api.list_leads": Case("front_desk", "GET", lambda lead, ctx: "/api/v1/leads", api=True),
    "api.list_calls": Case("front_desk", "GET", lambda lead, ctx: "/api/v1/calls", api=True),
    "api.get_lead": Case("front_desk", "GET", lambda lead, ctx: f"/api/v1/leads/{lead.id}", api=True),
    "api.lead_fhir": Case(
        "front_desk",
        "GET",
        lambda lead, ctx: f"/api/v1/leads/{lead.id}/fhir",
        api=True,
        stage="surgical_review",
    ),
    "api.patch_lead": Case(
        "front_desk",
        "PATCH",
        lambda lead, ctx: f"/api/v1/leads/{lead.id}",
        lambda lead, ctx: {"version": lead.version, "first_name": "Ana"},
        api=True,
    ),
    "api.move_stage": Case(
        "front_desk",
        "POST",
        lambda lead, ctx: f"/api/v1/leads/{lead.id}/stage",
        lambda lead, ctx: {"to": "conservative_care", "reason": "Try six weeks of PT first"},
        api=True,
    ),
}
# Routes that take no patient's record: they show or change no one's health information.
# "Calling now" is who is on the phone, shown to colleagues for a few minutes: no record changes.
NOT_A_RECORD = {"leads.mark_read", "dashboard.export", "leads.calling"}


def _objects(lead: Lead, user: User, make_lead: Callable[..., Lead]) -> dict[str, Any]:
    """A task, a done task, an appointment and a second lead (to merge into), around ``lead``."""
    task = Task(lead_id=lead.id, kind="callback", title="Call back", due_at=clock.now(), assignee_id=user.id)
    done = Task(
        lead_id=lead.id,
        kind="other",
        title="Send forms",
        due_at=clock.now(),
        done_at=clock.now(),
        done_by_id=user.id,
    )
    appointment = Appointment(lead_id=lead.id, kind="imaging", starts_at=clock.now() - timedelta(hours=2))
    db.session.add_all([task, done, appointment])
    db.session.commit()
    other = make_lead(first_name="Ana", last_name=lead.last_name)
    return {"task": task.id, "done_task": done.id, "appointment": appointment.id, "other": other.id}


def _audit_rows() -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id)))


def test_the_walk_covers_every_patient_route(app: Flask):
    patient_routes = {
        r.endpoint
        for r in app.url_map.iter_rules()
        if any(a.endswith("_id") for a in r.arguments) or r.endpoint in {"leads.queue", "leads.tasks"}
    }
    patient_routes |= {"referrals.queue", "api.list_leads", "api.list_calls"}
    missing = sorted(patient_routes - set(CASES) - NOT_A_RECORD)
    assert missing == [], f"add these routes to the audit walk: {missing}"


@pytest.mark.parametrize("endpoint", sorted(CASES))
def test_each_patient_request_writes_exactly_one_audit_row(
    client, make_user, make_lead, frozen_clock, endpoint
):
    case = CASES[endpoint]
    frozen_clock(clock.now())
    user = make_user(case.role)
    lead = make_lead(
        first_name="Maria",
        last_name="Delgado",
        phone="+19725550134",
        stage=case.stage,
        tags=["region:lower"],
        **case.lead_kwargs,
    )
    ctx = _objects(lead, user, make_lead)
    if endpoint in ("leads.close_no_response", "api.list_calls"):
        for attempt in range(3):
            _unanswered_attempt(lead, user, attempt)
    url, data = case.url(lead, ctx), case.data(lead, ctx)
    if case.api:
        headers = {"Authorization": f"Bearer {create_token(user, 'audit', scope='write').plaintext}"}
        db.session.commit()
        before = len(_audit_rows())
        response = client.open(url, method=case.method, headers=headers, json=data or None)
    else:
        sign_in(client, user.email)
        token = csrf_token(client.get(HOME[case.role]).get_data(as_text=True))
        before = len(_audit_rows())
        if case.method != "GET":
            prefix = f"{case.prefix}{lead.id}-" if case.prefix else ""
            data = {f"{prefix}{k}": v for k, v in {**data, "csrf_token": token}.items()}
        response = client.open(url, method=case.method, data=data or None)
    assert response.status_code in (200, 201, 302), (endpoint, response.status_code)
    if response.status_code == 302:
        page = client.get(response.headers["Location"]).get_data(as_text=True)
        assert 'class="flash flash-error"' not in page, (endpoint, page[page.find("flash-error") :][:300])
    new = [e for e in _audit_rows()[before:] if e.action not in ("lead_view", "lead_list", "referral_list")]
    if case.method == "GET":
        new = _audit_rows()[before:]
    assert len(new) == case.rows, (endpoint, [(e.action, e.lead_id) for e in new])
    assert all(e.user_id == user.id for e in new)
    shown = {e.lead_id for e in new} | {i for e in new for i in (e.detail or {}).get("lead_ids", [])}
    assert lead.id in shown, (endpoint, [(e.action, e.lead_id, e.detail) for e in new])


def _unanswered_attempt(lead: Lead, user: User, attempt: int) -> None:
    """Record an unanswered call-back attempt (the cadence's third one lets us close as no response)."""
    log_manual_call(
        direction="outbound",
        outcome="no_answer",
        lines=current_app.config["CLINIC_LINES"],
        lead=lead,
        actor=user,
        now=clock.now() + timedelta(minutes=attempt),
    )
    db.session.commit()
