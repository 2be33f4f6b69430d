"""Who may open what (PRODUCT §5): every route × every role × every method.

Deny by default: every endpoint must name its roles (``@roles``) or be ``@public``. The
walk below then checks, for every route that exists, that a visitor who is not signed in
is sent to sign in, a role that is not admitted gets 403 with a plain explanation, and an
admitted role gets through. The foundation's pages are also held to PRODUCT §5's table.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from werkzeug.routing import Rule

from crm.authz import PUBLIC, view_roles
from crm.extensions import db
from crm.models import ROLES, AuditEvent, Lead, User
from tests.conftest import csrf_token, sign_in

STAFF = frozenset(ROLES)
# PRODUCT §5 for the pages the foundation built. A route added later needs no row here to
# be checked (the walk covers it), only to be held to §5's words.
EXPECTED: dict[str, frozenset[str]] = {
    "auth.home": frozenset({PUBLIC}),  # sends each signed-in role to its home, others to sign in
    "auth.login": frozenset({PUBLIC}),
    "auth.logout": STAFF,
    "leads.queue": STAFF,  # lead queue, search: everyone (a surgeon within scope)
    "leads.detail": STAFF,  # lead detail: everyone (a surgeon within scope)
    "leads.tasks": frozenset({"front_desk", "manager", "admin"}),  # tasks: not the surgeons'
    "referrals.queue": frozenset({"surgeon", "manager"}),  # who decides referrals
    "dashboard.index": frozenset({"surgeon", "manager", "admin"}),  # surgeons: their own numbers
    "admin.index": frozenset({"admin"}),  # users, tokens, settings, audit log
}
HOME = {
    "front_desk": "/leads",
    "surgeon": "/referrals",
    "manager": "/dashboard",
    "admin": "/admin",
}
# Forms with their own protection instead of the session's CSRF token (PRODUCT §6).
OWN_PROTECTION = {"public", "webhooks", "api"}


def _rules(app: Flask) -> list[Rule]:
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint != "static"), key=lambda r: r.rule)


def _methods(rule: Rule) -> list[str]:
    return sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def _url(rule: Rule, lead_id: int) -> str:
    values = {arg: (lead_id if "id" in arg else "x") for arg in rule.arguments}
    return rule.build(values, append_unknown=False)[1]


def _to_sign_in(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].split("?")[0].endswith("/login")


@pytest.fixture
def visible_lead(app: Flask) -> int:
    """A lead every role may open: in surgical review, no surgeon assigned yet."""
    lead = Lead(first_name="Maria", last_name="Delgado", source="phone", stage="surgical_review")
    db.session.add(lead)
    db.session.commit()
    return lead.id


def test_every_route_names_its_roles(app):
    """Deny by default: a new route without @roles or @public fails here."""
    unnamed = [rule.endpoint for rule in _rules(app) if not view_roles(rule.endpoint)]
    assert unnamed == [], f"add @roles(...) or @public to: {unnamed}"


@pytest.mark.parametrize("endpoint", sorted(EXPECTED))
def test_foundation_pages_admit_the_roles_of_product_5(app, endpoint):
    assert view_roles(endpoint) == EXPECTED[endpoint]


@pytest.mark.parametrize("role", [*ROLES, "anonymous"])
def test_every_route_answers_each_role_as_its_roles_say(app, client, make_user, visible_lead, role):
    if role == "anonymous":
        token = csrf_token(client.get("/login").get_data(as_text=True))
    else:
        user = make_user(role)
        assert sign_in(client, user.email).status_code == 302
        token = csrf_token(client.get(HOME[role]).get_data(as_text=True))
    checked = 0
    for rule in _rules(app):
        admitted = view_roles(rule.endpoint)
        blueprint = rule.endpoint.rpartition(".")[0]
        if rule.endpoint == "auth.logout":
            continue  # signs the walk out; its own tests below
        if blueprint == "api":
            continue  # bearer tokens, not sessions: the API's own tests
        for method in _methods(rule):
            url = _url(rule, visible_lead)
            data = {"csrf_token": token} if method != "GET" else None
            response = client.open(url, method=method, data=data)
            where = f"{role} {method} {rule.rule}"
            if PUBLIC in admitted:
                # Open without sign-in; it may refuse for its own reasons (a webhook's bad
                # signature is a 403), never for the visitor's role.
                assert "Your role does not include it" not in response.get_data(as_text=True), where
                assert rule.endpoint == "auth.home" or not _to_sign_in(response), where
            elif role == "anonymous":
                assert _to_sign_in(response), where
            elif role not in admitted:
                assert response.status_code == 403, where
                body = response.get_data(as_text=True)
                assert "Not open to your role" in body and "Your role does not include it" in body, where
            else:
                assert response.status_code not in (401, 403) and not _to_sign_in(response), where
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize("scope", ["read", "write"])
@pytest.mark.parametrize("role", ROLES)
def test_every_route_answers_each_tokens_role_and_scope(app, client, make_user, visible_lead, role, scope):
    """An API token acts as its user narrowed by its scope; it never opens a page (PRODUCT §5)."""
    from crm.api.tokens import SAFE_METHODS, _is_read_only
    from crm.apitokens import create_token

    user = make_user(role)
    headers = {"Authorization": f"Bearer {create_token(user, 'walk', scope=scope).plaintext}"}
    db.session.commit()
    checked = {"api": 0, "pages": 0}
    for rule in _rules(app):
        admitted = view_roles(rule.endpoint)
        if PUBLIC in admitted:
            continue  # the public form, webhooks, sign-in, API docs: no token needed or read
        api = rule.endpoint.startswith("api.")
        for method in _methods(rule):
            url, where = _url(rule, visible_lead), f"{role}/{scope} {method} {rule.rule}"
            response = client.open(url, method=method, headers=headers, json={} if method != "GET" else None)
            if not api:
                # Pages read only the session cookie: a token is a visitor who is not signed in.
                assert _to_sign_in(response) or response.status_code == 400, where  # 400: CSRF first
            elif role not in admitted:
                assert response.status_code == 403, where
            elif method not in SAFE_METHODS and scope == "read":
                with app.test_request_context(url, method=method):
                    read_only = _is_read_only(rule.endpoint)
                assert response.status_code != 403 if read_only else response.status_code == 403, where
            else:
                assert response.status_code not in (401, 403), where
            checked["api" if api else "pages"] += 1
    print(f"{role}/{scope}: {checked}")
    assert checked["api"] >= 8 and checked["pages"] >= 20, checked


@pytest.mark.parametrize("role", ROLES)
def test_each_role_opens_the_foundation_pages_of_its_own(client, make_user, visible_lead, role):
    user = make_user(role)
    sign_in(client, user.email)
    assert client.get("/").headers["Location"] == HOME[role]
    for endpoint, path in [
        ("leads.queue", "/leads"),
        ("leads.detail", f"/leads/{visible_lead}"),
        ("leads.tasks", "/tasks"),
        ("referrals.queue", "/referrals"),
        ("dashboard.index", "/dashboard"),
        ("admin.index", "/admin"),
    ]:
        expected = 200 if role in EXPECTED[endpoint] else 403
        assert client.get(path).status_code == expected, f"{role} {path}"


def test_a_wrong_role_gets_403_with_a_plain_explanation_not_sign_in(client, login_as):
    login_as("front_desk")
    response = client.get("/admin")
    assert response.status_code == 403
    assert "Location" not in response.headers
    body = response.get_data(as_text=True)
    assert "This page is for admin staff. Your role does not include it." in body
    assert "<h1>Not open to your role</h1>" in body


def test_a_visitor_is_sent_to_sign_in_and_not_back_to_an_outside_address(client, make_user):
    response = client.get("/dashboard")
    assert _to_sign_in(response)
    user = make_user("manager")
    page = client.get("/login?next=https://evil.example/phish")
    token = csrf_token(page.get_data(as_text=True))
    signed_in = client.post(
        "/login?next=https://evil.example/phish",
        data={"email": user.email, "password": "a-long-test-password-for-staff", "csrf_token": token},
    )
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/"


def test_a_route_without_roles_is_closed_to_everyone(app, client, make_user):
    app.add_url_rule("/probe", "probe", lambda: "secret page")
    app.add_url_rule("/api/v1/probe", "api.probe", lambda: "secret data")
    for role in ROLES:
        client.delete_cookie("crm_session")
        sign_in(client, make_user(role).email)
        page = client.get("/probe")
        assert page.status_code == 403 and "secret" not in page.get_data(as_text=True), role
        assert client.get("/api/v1/probe").status_code == 403, role
    client.delete_cookie("crm_session")
    assert _to_sign_in(client.get("/probe"))
    anonymous_api = client.get("/api/v1/probe")
    assert anonymous_api.status_code == 403
    assert anonymous_api.get_json()["error"]["code"] == "forbidden"


# --------------------------------------------------------------------------- surgeon's scope


@pytest.fixture
def make_lead(app: Flask) -> Callable[..., Lead]:
    def make(first: str, last: str, stage: str, surgeon: User | None = None) -> Lead:
        lead = Lead(first_name=first, last_name=last, source="web_form", stage=stage, surgeon=surgeon)
        db.session.add(lead)
        db.session.commit()
        return lead

    return make


def test_a_surgeon_opens_their_referrals_and_unassigned_ones(client, login_as, make_lead):
    surgeon = login_as("surgeon")
    mine = make_lead("Dolores", "Whitfield", "surgical_review", surgeon)
    unassigned = make_lead("Ernesto", "Salinas", "surgical_review")
    scheduled = make_lead("Priya", "Raman", "consult_scheduled", surgeon)
    for lead in (mine, unassigned, scheduled):
        response = client.get(f"/leads/{lead.id}")
        assert response.status_code == 200
        assert lead.last_name in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("stage", "assigned_to_other"),
    [("new", False), ("evaluation", False), ("closed", False), ("surgical_review", True)],
)
def test_a_surgeon_cannot_open_a_lead_outside_their_scope(
    client, login_as, make_user, make_lead, stage, assigned_to_other
):
    login_as("surgeon")
    other = make_user("surgeon") if assigned_to_other else None
    lead = make_lead("Harriet", "Okonkwo-Bell", stage, other)

    response = client.get(f"/leads/{lead.id}")

    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert "Okonkwo-Bell" not in body and "Harriet" not in body
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).where(AuditEvent.action == "lead_view", AuditEvent.lead_id == lead.id)
        )
        == 0
    )


def test_a_surgeons_lead_list_shows_only_their_scope(client, login_as, make_user, make_lead):
    surgeon = login_as("surgeon")
    make_lead("Dolores", "Whitfield", "surgical_review", surgeon)
    make_lead("Harriet", "Okonkwo-Bell", "new")
    make_lead("Ivan", "Petrakis", "surgical_review", make_user("surgeon"))
    body = client.get("/leads").get_data(as_text=True)
    assert "Whitfield" in body
    assert "Okonkwo-Bell" not in body and "Petrakis" not in body


def test_the_403_page_names_no_patient_and_no_sign_in_form(client, login_as, visible_lead):
    login_as("surgeon")
    body = client.get("/admin").get_data(as_text=True)
    assert not re.search(r'name="password"', body)
    assert "Delgado" not in body
