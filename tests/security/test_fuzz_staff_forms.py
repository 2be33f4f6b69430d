"""Every staff form's POST, sent hostile values in every field any form of the app declares,
behind a valid session and CSRF token: never a server error (PRODUCT §9, issue 9 "Input").

The field names come from the form classes themselves, and the routes from the URL map, so a
form added later is held to the rule too. Accepted text is shown escaped on the lead page.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_wtf import FlaskForm

from crm.authz import PUBLIC, view_roles
from crm.extensions import db
from crm.models import Appointment, Lead, Notification, Task
from tests.conftest import csrf_token, sign_in

FORM_MODULES = (
    "crm.leads.forms",
    "crm.leads.work_forms",
    "crm.leads.intake_forms",
    "crm.referrals.forms",
    "crm.admin.forms",
    "crm.auth.forms",
)
OWN_PROTECTION = ("public.", "webhooks.", "api.")
SKIP = {"auth.logout", "auth.login"}  # signing out ends the walk; sign-in is fuzzed on its own
HOME = {"front_desk": "/leads", "surgeon": "/referrals", "manager": "/dashboard", "admin": "/admin"}
PAYLOAD = "<script>alert('x')</script>"
HOSTILE = (
    "a\x00b",  # PostgreSQL refuses NUL in text
    "x" * 100_000,
    PAYLOAD,
    '=HYPERLINK("http://evil.test")',
    "9" * 40,  # past any integer column
    "-1",
    "2026-13-45T99:99",
    "\u202eevil\u202c",
    " ",
)


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _field_names() -> set[str]:
    for name in FORM_MODULES:
        importlib.import_module(name)
    names: set[str] = set()
    for form in _subclasses(FlaskForm):
        if form.__module__.startswith("crm."):
            names |= {
                n for n in dir(form) if not n.startswith("_") and hasattr(getattr(form, n), "field_class")
            }
    return names - {"csrf_token"}


@pytest.fixture
def objects(make_user, make_lead) -> dict[str, int]:
    desk = make_user("front_desk")
    lead = make_lead(stage="surgical_review", phone="+19725550123", urgent=True, tags=["red_flag:weakness"])
    other = make_lead()
    task = Task(
        lead_id=lead.id, kind="callback", title="Call back", due_at=lead.created_at, assignee_id=desk.id
    )
    appointment = Appointment(lead_id=lead.id, kind="consult", starts_at=lead.created_at)
    note = Notification(user_id=desk.id, lead_id=lead.id, message="A decision is waiting")
    db.session.add_all([task, appointment, note])
    db.session.commit()
    return {
        "lead_id": lead.id,
        "task_id": task.id,
        "appointment_id": appointment.id,
        "notification_id": note.id,
        "user_id": desk.id,
        "token_id": 1,
        "other": other.id,
    }


def test_every_staff_form_survives_hostile_values_in_every_field(app: Flask, client, make_user, objects):
    names = _field_names()
    assert {"body", "reason", "first_name", "consult_at", "code"} <= names
    routes = sorted(
        (r for r in app.url_map.iter_rules() if "POST" in (r.methods or ()) and r.endpoint not in SKIP),
        key=lambda r: r.rule,
    )
    routes = [r for r in routes if not r.endpoint.startswith(OWN_PROTECTION)]
    sent = 0
    signed_in_as = None
    token = ""
    for rule in routes:
        admitted = view_roles(rule.endpoint)
        role = "manager" if "manager" in admitted or PUBLIC in admitted else sorted(admitted)[0]
        if role != signed_in_as:
            client.delete_cookie("crm_session")
            sign_in(client, make_user(role).email)
            token = csrf_token(client.get(HOME[role]).get_data(as_text=True))
            signed_in_as = role
        url = rule.build(
            {a: objects.get(a, objects["lead_id"]) for a in rule.arguments}, append_unknown=False
        )[1]
        prefix = f"r{objects['lead_id']}-"  # the referral packets' per-lead form prefix
        for value in HOSTILE:
            data = {name: value for name in names}
            data |= {prefix + name: value for name in names}
            data |= {"csrf_token": token, prefix + "csrf_token": token}
            response = client.post(url, data=data)
            assert response.status_code < 500, (rule.endpoint, repr(value[:20]), response.status_code)
            sent += 1
            if client.get_cookie("crm_session") is None:  # a form that ends the session (a password change)
                sign_in(client, make_user(role).email)
                token = csrf_token(client.get(HOME[role]).get_data(as_text=True))
    print(
        f"\n{sent} hostile posts to {len(routes)} staff forms, {len(names)} field names each: 0 server errors"
    )
    assert sent >= 30 * len(HOSTILE) // 2

    client.delete_cookie("crm_session")
    sign_in(client, make_user("manager").email)
    db.session.expire_all()
    for lead_id in db.session.scalars(sa.select(Lead.id)):
        page = client.get(f"/leads/{lead_id}").get_data(as_text=True)
        assert PAYLOAD not in page


def test_a_nul_in_a_form_field_is_dropped_not_stored(client, login_as, make_lead):
    from crm.models import Note

    login_as("front_desk")
    lead = make_lead()
    token = csrf_token(client.get(f"/leads/{lead.id}").get_data(as_text=True))
    response = client.post(f"/leads/{lead.id}/notes", data={"csrf_token": token, "body": "MRI\x00 on Friday"})
    assert response.status_code == 302
    assert db.session.scalars(sa.select(Note.body).where(Note.lead_id == lead.id)).all() == ["MRI on Friday"]
