"""No one reaches another's object by changing an id (PRODUCT §5, issue 9 "Access").

A canary patient sits outside a surgeon's scope, with a task, an appointment and a
notification of their own. Every route that takes an object id is walked with the canary's
ids: the answer is 404 (or 403 where the role is not admitted at all), the canary's name and
phone never appear in the body, and nothing in the database changes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.routing import Rule

from crm import clock
from crm.apitokens import create_token
from crm.authz import view_roles
from crm.extensions import db
from crm.models import Appointment, Lead, Notification, Task
from tests.conftest import csrf_token, sign_in

CANARY_NAME, CANARY_PHONE = "Quartermaine", "+19725550142"
# A valid body for each API call that takes one, so the scope (not validation) answers.
API_BODIES = {
    ("PATCH", "api.patch_lead"): {"version": 1, "first_name": "Changed"},
    ("POST", "api.move_stage"): {"to": "evaluation"},
}
HOME = {"front_desk": "/leads", "surgeon": "/referrals", "manager": "/dashboard", "admin": "/admin"}


def snapshot() -> dict[str, object]:
    """Every table's row count and a digest of its rows: equal before and after means unchanged."""
    result: dict[str, object] = {}
    for table in db.metadata.sorted_tables:
        rows = db.session.execute(sa.select(table)).all()
        result[table.name] = sorted(repr(tuple(row)) for row in rows)
    return result


@pytest.fixture
def canary(app: Flask, make_user) -> dict[str, int]:
    """An out-of-scope lead (stage new) and objects that belong to it or to its owner."""
    owner = make_user("front_desk")
    lead = Lead(
        first_name="Zebulon",
        last_name=CANARY_NAME,
        phone=CANARY_PHONE,
        source="phone",
        stage="new",
        owner=owner,
    )
    db.session.add(lead)
    db.session.flush()
    task = Task(lead_id=lead.id, kind="callback", title="Call back", due_at=clock.now(), assignee_id=owner.id)
    appt = Appointment(lead_id=lead.id, kind="consult", starts_at=clock.now() + timedelta(days=3))
    note = Notification(user_id=owner.id, lead_id=lead.id, message="A referral decision is waiting")
    db.session.add_all([task, appt, note])
    db.session.commit()
    return {
        "lead_id": lead.id,
        "task_id": task.id,
        "appointment_id": appt.id,
        "notification_id": note.id,
    }


def _object_rules(app: Flask) -> list[Rule]:
    return sorted(
        (
            r
            for r in app.url_map.iter_rules()
            if r.endpoint != "static" and any("_id" in a for a in r.arguments)
        ),
        key=lambda r: r.rule,
    )


def _methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def _clean(body: str) -> bool:
    return CANARY_NAME not in body and "555-0142" not in body and CANARY_PHONE not in body


def test_a_surgeon_reaches_no_object_of_a_lead_outside_their_scope(app, client, make_user, canary):
    surgeon = make_user("surgeon")
    sign_in(client, surgeon.email)
    token = csrf_token(client.get(HOME["surgeon"]).get_data(as_text=True))
    bearer = {"Authorization": f"Bearer {create_token(surgeon, 'walk', scope='write').plaintext}"}
    db.session.commit()
    before = snapshot()
    walked = 0
    for rule in _object_rules(app):
        url = rule.build({a: canary.get(a, 1) for a in rule.arguments}, append_unknown=False)[1]
        for method in _methods(rule):
            api = rule.endpoint.startswith("api.")
            if api:
                body = API_BODIES.get((method, rule.endpoint))
                response = client.open(url, method=method, headers=bearer, json=body)
            else:
                response = client.open(url, method=method, data={"csrf_token": token, "version": "1"})
            expected = 404 if "surgeon" in view_roles(rule.endpoint) else 403
            where = f"{method} {rule.rule}"
            assert response.status_code == expected, (where, response.status_code)
            assert _clean(response.get_data(as_text=True)), where
            walked += 1
    db.session.expire_all()
    assert snapshot() == before
    assert walked >= 25, walked


@pytest.mark.parametrize("role", ["front_desk", "manager", "admin"])
def test_an_object_id_under_another_leads_id_is_not_found(app, client, make_user, make_lead, canary, role):
    """Changing one id of a pair (lead and appointment) reaches nothing, for every role."""
    other = make_lead()
    user = make_user(role)
    sign_in(client, user.email)
    token = csrf_token(client.get(HOME[role]).get_data(as_text=True))
    before = snapshot()
    response = client.post(
        f"/leads/{other.id}/appointments/{canary['appointment_id']}/outcome",
        data={"csrf_token": token, "outcome": "attended"},
    )
    assert response.status_code in (403, 404)
    assert _clean(response.get_data(as_text=True))
    response = client.post(f"/notifications/{canary['notification_id']}/read", data={"csrf_token": token})
    assert response.status_code in (403, 404)
    db.session.expire_all()
    assert snapshot() == before
    assert db.session.get(Notification, canary["notification_id"]).read_at is None
