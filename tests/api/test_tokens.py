"""Bearer tokens: CLI create/revoke, hash-only storage, scope, revocation, and no cookie use."""

from __future__ import annotations

import sqlalchemy as sa

from crm import clock
from crm.apitokens import hash_token
from crm.extensions import db
from crm.models import ApiToken, AuditEvent


def test_cli_creates_a_token_printed_once_and_stores_only_its_hash(runner, make_user, client):
    user = make_user("front_desk")
    result = runner.invoke(
        args=["token", "create", "--user", user.email, "--name", "website", "--scope", "write"]
    )
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    row = db.session.scalar(sa.select(ApiToken).where(ApiToken.user_id == user.id))
    assert row.name == "website" and row.scope == "write"
    assert row.token_hash == hash_token(token) and token not in row.token_hash
    assert result.output.count(token) == 1
    assert client.get("/api/v1/leads", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_cli_token_default_scope_is_read_and_duplicate_name_refused(runner, make_user):
    user = make_user("manager")
    assert runner.invoke(args=["token", "create", "--user", user.email, "--name", "ehr"]).exit_code == 0
    assert db.session.scalar(sa.select(ApiToken.scope).where(ApiToken.user_id == user.id)) == "read"
    again = runner.invoke(args=["token", "create", "--user", user.email, "--name", "ehr"])
    assert again.exit_code != 0 and "already has a token" in again.output


def test_cli_revoke_makes_the_token_answer_401(runner, make_caller, client):
    caller = make_caller("front_desk")
    assert client.get("/api/v1/leads", headers=caller.headers).status_code == 200
    result = runner.invoke(args=["token", "revoke", "--user", caller.user.email, "--name", "test"])
    assert result.exit_code == 0, result.output
    response = client.get("/api/v1/leads", headers=caller.headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert db.session.scalar(sa.select(ApiToken.revoked_at)) is not None


def test_cli_revoke_unknown_token_fails(runner, make_user):
    user = make_user()
    result = runner.invoke(args=["token", "revoke", "--user", user.email, "--name", "nope"])
    assert result.exit_code != 0 and "no token named" in result.output


def test_missing_malformed_and_unknown_tokens_answer_401_in_the_error_shape(client):
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer crm_not-a-token"}):
        response = client.get("/api/v1/leads", headers=headers)
        assert response.status_code == 401
        body = response.get_json()
        assert set(body["error"]) == {"code", "message", "fields"}
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_deactivated_users_token_answers_401(make_caller, client):
    caller = make_caller("front_desk")
    caller.user.active = False
    caller.user.deactivated_at = clock.now()
    db.session.commit()
    assert client.get("/api/v1/leads", headers=caller.headers).status_code == 401


def test_read_token_refused_on_post_and_patch_with_403(make_caller, make_lead, client):
    caller = make_caller("front_desk", scope="read")
    lead = make_lead()
    response = client.post(
        "/api/v1/leads", json={"first_name": "Ann", "phone": "+12025550143"}, headers=caller.headers
    )
    assert response.status_code == 403
    assert "write" in response.get_json()["error"]["message"]
    response = client.patch(
        f"/api/v1/leads/{lead.id}", json={"version": 1, "first_name": "X"}, headers=caller.headers
    )
    assert response.status_code == 403
    # triage changes nothing: a read token may call it
    assert (
        client.post("/api/v1/triage", json={"text": "back pain"}, headers=caller.headers).status_code == 200
    )


def test_a_page_session_cannot_call_the_api(login_as, client):
    login_as("admin")
    assert client.get("/leads").status_code == 200  # signed in for the pages
    response = client.get("/api/v1/leads")
    assert response.status_code == 401
    response = client.post("/api/v1/leads", json={"first_name": "Ann"})
    assert response.status_code == 401


def test_a_bearer_token_cannot_open_the_pages_it_is_sent_to_sign_in(make_caller, client):
    caller = make_caller("admin")
    response = client.get("/leads", headers=caller.headers)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_every_api_call_is_audited_under_the_tokens_user(make_caller, make_lead, client):
    caller = make_caller("manager")
    lead = make_lead()
    client.get(f"/api/v1/leads/{lead.id}", headers=caller.headers)
    event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "lead_view"))
    assert (event.user_id, event.lead_id, event.via) == (caller.user.id, lead.id, "api")


def test_last_used_is_recorded(make_caller, client):
    caller = make_caller()
    client.get("/api/v1/leads", headers=caller.headers)
    db.session.expire_all()
    assert db.session.scalar(sa.select(ApiToken.last_used_at)) is not None
