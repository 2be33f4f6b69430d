"""Sign-in and sign-out through the real form."""

from __future__ import annotations

import sqlalchemy as sa

from crm.extensions import db
from crm.models import AuditEvent
from crm.security import GENERIC_FAILURE
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in


def test_it_shows_a_labelled_sign_in_form(client):
    html = client.get("/login").get_data(as_text=True)
    assert '<label for="email">Email</label>' in html
    assert '<label for="password">Password</label>' in html


def test_it_signs_in_and_lands_on_the_role_home(client, make_user):
    user = make_user("front_desk")
    response = sign_in(client, user.email)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/")
    home = client.get("/")
    assert home.headers["Location"].endswith("/leads")
    assert client.get("/leads").status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "sign_in")) == 1


def test_wrong_password_and_unknown_email_get_the_same_message(client, make_user):
    user = make_user("front_desk")
    wrong = sign_in(client, user.email, "not-the-right-password-at-all").get_data(as_text=True)
    unknown = sign_in(client, "nobody@clinic.test", DEFAULT_PASSWORD).get_data(as_text=True)
    assert GENERIC_FAILURE.replace("'", "&#39;") in wrong
    assert GENERIC_FAILURE.replace("'", "&#39;") in unknown


def test_sign_in_refuses_a_post_without_csrf(client, make_user):
    user = make_user("front_desk")
    response = client.post("/login", data={"email": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    assert client.get("/leads").status_code == 302


def test_sign_out_ends_the_session(client, login_as):
    login_as("manager")
    token = csrf_token(client.get("/dashboard").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/dashboard").status_code == 302
