"""CSRF: every staff form refuses a post without the session's token (PRODUCT §9)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from flask import Flask

from crm.authz import PUBLIC, view_roles
from crm.errors import CSRF_MESSAGE
from crm.extensions import db
from crm.models import Lead, UserSession
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in

# These have their own protection instead (PRODUCT §6): a signed form token, a Twilio
# signature, bearer tokens.
OWN_PROTECTION = ("public.", "webhooks.", "api.")


def _post_forms(app: Flask) -> list[tuple[str, str]]:
    return sorted(
        (rule.endpoint, rule.rule)
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or ()) and not rule.endpoint.startswith(OWN_PROTECTION)
    )


def _live_sessions() -> int:
    db.session.expire_all()
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(UserSession).where(UserSession.ended_at.is_(None))
    )


def test_sign_in_without_a_token_is_refused_and_signs_nobody_in(client, make_user):
    user = make_user("front_desk")
    response = client.post("/login", data={"email": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert CSRF_MESSAGE in response.get_data(as_text=True)
    assert _live_sessions() == 0
    assert client.get("/leads").status_code == 302


def test_sign_in_with_another_visitors_token_is_refused(app, client, make_user):
    user = make_user("front_desk")
    stranger = app.test_client()
    foreign = csrf_token(stranger.get("/login").get_data(as_text=True))
    client.get("/login")
    response = client.post(
        "/login", data={"email": user.email, "password": DEFAULT_PASSWORD, "csrf_token": foreign}
    )
    assert response.status_code == 400
    assert _live_sessions() == 0


def test_sign_out_without_a_token_is_refused_and_the_session_lives(client, login_as):
    login_as("front_desk")
    response = client.post("/logout")
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert _live_sessions() == 1
    assert client.get("/leads").status_code == 200


def test_a_forged_cross_site_sign_out_does_nothing(client, login_as):
    login_as("manager")
    response = client.post(
        "/logout", data={"csrf_token": "forged"}, headers={"Origin": "https://evil.example"}
    )
    assert response.status_code == 400
    assert _live_sessions() == 1


@pytest.fixture
def any_lead(app: Flask) -> int:
    lead = Lead(first_name="Maria", last_name="Delgado", source="phone", stage="surgical_review")
    db.session.add(lead)
    db.session.commit()
    return lead.id


def test_every_staff_form_refuses_a_post_without_a_token(app, client, make_user, any_lead):
    """Walks the URL map, so a form added later is held to the rule too."""
    forms = _post_forms(app)
    assert ("auth.login", "/login") in forms and ("auth.logout", "/logout") in forms
    signed_in_as = None
    for endpoint, path in forms:
        admitted = view_roles(endpoint)
        role = "manager" if "manager" in admitted or PUBLIC in admitted else sorted(admitted)[0]
        if role != signed_in_as:
            client.delete_cookie("crm_session")
            sign_in(client, make_user(role).email)
            signed_in_as = role
        url = path.replace("<int:lead_id>", str(any_lead))
        url = url.replace("<int:notification_id>", "1").replace("<int:task_id>", "1")
        url = url.replace("<int:appointment_id>", "1")
        db.session.expire_all()
        version = db.session.get(Lead, any_lead).version
        response = client.post(url, data={"note": "x", "stage": "closed"})
        assert response.status_code == 400, f"{endpoint} accepted a post without a CSRF token"
        db.session.expire_all()
        assert db.session.get(Lead, any_lead).version == version, endpoint
