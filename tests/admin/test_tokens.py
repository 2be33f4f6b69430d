"""The admin's API tokens page: list, create (plaintext shown once), revoke; admin only, CSRF, audited."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm.apitokens import create_token, hash_token
from crm.errors import CSRF_MESSAGE
from crm.extensions import db
from crm.models import ApiToken, AuditEvent
from tests.conftest import csrf_token


def _create(client, user_id, name="website", scope="write"):
    token = csrf_token(client.get("/admin/tokens").get_data(as_text=True))
    return client.post(
        "/admin/tokens", data={"user_id": user_id, "name": name, "scope": scope, "csrf_token": token}
    )


def _plaintext(html: str) -> str:
    start = html.index('id="plaintext-token"')
    value = html.index('value="', start) + len('value="')
    return html[value : html.index('"', value)]


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager"])
def test_it_refuses_every_role_but_admin_with_403(client, login_as, make_user, role):
    login_as(role)
    other = make_user("front_desk")
    assert client.get("/admin/tokens").status_code == 403
    assert client.post("/admin/tokens", data={"user_id": other.id, "name": "x"}).status_code in (400, 403)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_it_sends_a_visitor_to_sign_in(client):
    response = client.get("/admin/tokens")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_it_lists_tokens_with_user_scope_and_status(client, login_as, make_user):
    login_as("admin")
    owner = make_user("front_desk", name="Fran Desk")
    create_token(owner, "phone system", scope="read")
    revoked = create_token(owner, "old website", scope="write")
    revoked.row.revoked_at = revoked.row.created_at
    db.session.commit()
    html = client.get("/admin/tokens").get_data(as_text=True)
    assert "Fran Desk" in html and "phone system" in html and "old website" in html
    assert "Revoked" in html and "Live" in html and "never" in html
    assert revoked.plaintext not in html and revoked.row.token_hash not in html


def test_it_creates_a_token_shown_once_with_only_its_hash_stored(client, login_as, make_user):
    admin = login_as("admin")
    owner = make_user("manager")
    response = _create(client, owner.id, name="EHR export", scope="write")
    assert response.status_code == 201
    plaintext = _plaintext(response.get_data(as_text=True))
    assert plaintext.startswith("crm_")
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == owner.id))
    assert (row.name, row.scope) == ("EHR export", "write")
    assert row.token_hash == hash_token(plaintext) and plaintext not in row.token_hash
    assert "no-store" in response.headers["Cache-Control"]
    assert plaintext not in client.get("/admin/tokens").get_data(as_text=True)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "api_token_create"))
    assert event.user_id == admin.id and event.via == "web" and plaintext not in str(event.detail)
    api = client.get("/api/v1/leads", headers={"Authorization": f"Bearer {plaintext}"})
    assert api.status_code == 200


def test_it_refuses_a_duplicate_name_next_to_the_field(client, login_as, make_user):
    login_as("admin")
    owner = make_user("front_desk")
    create_token(owner, "website")
    db.session.commit()
    response = _create(client, owner.id, name="website")
    assert response.status_code == 422
    assert "already has a token named" in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 1


def test_it_refuses_a_blank_name(client, login_as, make_user):
    login_as("admin")
    owner = make_user("front_desk")
    response = _create(client, owner.id, name="   ")
    assert response.status_code == 422
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_it_revokes_a_token_and_the_api_then_answers_401(client, login_as, make_user):
    admin = login_as("admin")
    owner = make_user("front_desk")
    new = create_token(owner, "website", scope="read")
    db.session.commit()
    headers = {"Authorization": f"Bearer {new.plaintext}"}
    assert client.get("/api/v1/leads", headers=headers).status_code == 200
    token = csrf_token(client.get("/admin/tokens").get_data(as_text=True))
    response = client.post("/admin/tokens/revoke", data={"token_id": new.row.id, "csrf_token": token})
    assert response.status_code == 302
    assert client.get("/api/v1/leads", headers=headers).status_code == 401
    db.session.expire_all()
    assert db.session.get(ApiToken, new.row.id).revoked_at is not None
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "api_token_revoke"))
    assert event.user_id == admin.id and event.detail["token_id"] == new.row.id


def test_revoking_an_unknown_token_answers_404(client, login_as):
    login_as("admin")
    token = csrf_token(client.get("/admin/tokens").get_data(as_text=True))
    assert (
        client.post("/admin/tokens/revoke", data={"token_id": 999999, "csrf_token": token}).status_code == 404
    )


def test_create_without_csrf_is_refused_and_creates_nothing(client, login_as, make_user):
    login_as("admin")
    owner = make_user("front_desk")
    response = client.post("/admin/tokens", data={"user_id": owner.id, "name": "forged", "scope": "write"})
    assert response.status_code == 400 and CSRF_MESSAGE in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(ApiToken)) == 0


def test_revoke_without_csrf_is_refused_and_the_token_stays_live(client, login_as, make_user):
    login_as("admin")
    new = create_token(make_user("front_desk"), "website")
    db.session.commit()
    response = client.post("/admin/tokens/revoke", data={"token_id": new.row.id})
    assert response.status_code == 400
    db.session.expire_all()
    assert db.session.get(ApiToken, new.row.id).revoked_at is None


def test_the_page_links_the_api_documentation(client, login_as):
    login_as("admin")
    assert 'href="/api/v1/docs"' in client.get("/admin/tokens").get_data(as_text=True)


def test_revoking_an_id_beyond_any_row_answers_400_not_500(client, login_as):
    login_as("admin")
    token = csrf_token(client.get("/admin/tokens").get_data(as_text=True))
    response = client.post("/admin/tokens/revoke", data={"token_id": 10**20, "csrf_token": token})
    assert response.status_code == 400
