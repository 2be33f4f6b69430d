"""Server-side sessions: a new id at sign-in, idle and absolute limits, and real sign-out.

The clock is moved with ``frozen_clock``, never slept on.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from crm.extensions import db
from crm.models import AuditEvent, User, UserSession
from crm.security import BACKGROUND_HEADER
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in, utc

T0 = utc(2026, 3, 9, 14, 0)


def _sid(client) -> str | None:
    with client.session_transaction() as session:
        return session.get("sid")


def _session_rows(user: User) -> list[UserSession]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            sa.select(UserSession).where(UserSession.user_id == user.id).order_by(UserSession.created_at)
        )
    )


def _signed_out(response) -> bool:
    """A staff page answered with a bounce to the sign-in page."""
    return response.status_code == 302 and response.headers["Location"].split("?")[0].endswith("/login")


def _sign_out(client, page: str = "/leads") -> None:
    token = csrf_token(client.get(page).get_data(as_text=True))
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302


def test_sign_in_creates_a_live_session_row_named_by_the_cookie(client, make_user, frozen_clock):
    frozen_clock(T0)
    user = make_user("front_desk")
    response = sign_in(client, user.email)
    assert response.status_code == 302
    [row] = _session_rows(user)
    assert _sid(client) == row.id
    assert row.ended_at is None and row.created_at == T0 and row.last_seen_at == T0
    assert row.ip_address == "127.0.0.1"
    assert client.get("/leads").status_code == 200


def test_the_session_id_changes_at_each_sign_in(client, make_user):
    user = make_user("front_desk")
    client.get("/login")
    before = _sid(client)
    sign_in(client, user.email)
    first = _sid(client)
    _sign_out(client)
    sign_in(client, user.email)
    second = _sid(client)
    assert before is None
    assert first and second and first != second
    rows = _session_rows(user)
    assert [r.id for r in rows] == [first, second]
    assert rows[0].ended_at is not None and rows[1].ended_at is None


def test_a_session_id_planted_before_sign_in_is_not_kept(client, make_user):
    # Session fixation: an attacker's chosen id must not become the signed-in session.
    user = make_user("front_desk")
    client.get("/login")
    with client.session_transaction() as session:
        session["sid"] = "attacker-chosen-session-id"
    sign_in(client, user.email)
    assert _sid(client) != "attacker-chosen-session-id"
    assert db.session.get(UserSession, "attacker-chosen-session-id") is None


def test_sign_out_ends_the_row_and_the_page_asks_to_sign_in(client, login_as, frozen_clock):
    frozen_clock(T0)
    user = login_as("front_desk")
    frozen_clock(T0 + timedelta(minutes=3))
    _sign_out(client)
    [row] = _session_rows(user)
    assert row.ended_at == T0 + timedelta(minutes=3)
    assert _signed_out(client.get("/leads"))
    assert "You are signed out." in client.get("/login").get_data(as_text=True)


def test_a_cookie_captured_before_sign_out_is_refused_after_it(app, client, login_as):
    login_as("manager")
    thief = app.test_client()
    thief.set_cookie("crm_session", client.get_cookie("crm_session").value)
    assert thief.get("/dashboard").status_code == 200  # the copy works while the session lives

    _sign_out(client, "/dashboard")

    refused = thief.get("/dashboard")
    assert _signed_out(refused)
    assert "Pipeline" not in refused.get_data(as_text=True)


def test_the_session_ends_after_the_idle_limit(client, login_as, frozen_clock):
    frozen_clock(T0)
    user = login_as("front_desk")
    frozen_clock(T0 + timedelta(minutes=15))
    assert client.get("/leads").status_code == 200  # exactly the limit: still in
    frozen_clock(T0 + timedelta(minutes=30, seconds=1))  # 15 min 1 s after that page
    assert _signed_out(client.get("/leads"))
    [row] = _session_rows(user)
    assert row.ended_at == T0 + timedelta(minutes=30, seconds=1)
    frozen_clock(T0 + timedelta(minutes=31))
    assert _signed_out(client.get("/leads"))  # and it stays ended


def test_the_idle_limit_follows_session_idle_minutes(app, client, login_as, frozen_clock):
    app.config["SESSION_IDLE_MINUTES"] = 5  # read on every request, as SESSION_IDLE_MINUTES sets it
    frozen_clock(T0)
    login_as("front_desk")
    frozen_clock(T0 + timedelta(minutes=5, seconds=1))
    assert _signed_out(client.get("/leads"))


def test_activity_keeps_a_session_alive_up_to_the_absolute_limit(client, login_as, frozen_clock):
    frozen_clock(T0)
    user = login_as("front_desk")
    at = T0
    while at + timedelta(minutes=14) < T0 + timedelta(hours=12):
        at += timedelta(minutes=14)
        frozen_clock(at)
        assert client.get("/leads").status_code == 200, f"signed out at {at - T0}"
    frozen_clock(T0 + timedelta(hours=12, minutes=1))
    assert _signed_out(client.get("/leads"))
    [row] = _session_rows(user)
    assert row.ended_at == T0 + timedelta(hours=12, minutes=1)


def test_a_background_refresh_does_not_extend_the_idle_time(client, login_as, frozen_clock):
    frozen_clock(T0)
    user = login_as("front_desk")
    frozen_clock(T0 + timedelta(minutes=10))
    assert client.get("/leads", headers={BACKGROUND_HEADER: "1"}).status_code == 200
    [row] = _session_rows(user)
    assert row.last_seen_at == T0
    frozen_clock(T0 + timedelta(minutes=16))
    assert _signed_out(client.get("/leads", headers={BACKGROUND_HEADER: "1"}))


def test_deactivation_ends_every_session_of_the_user(app, client, make_user, runner):
    user = make_user("front_desk")
    other_desk = app.test_client()
    sign_in(client, user.email)
    sign_in(other_desk, user.email)
    result = runner.invoke(args=["user", "deactivate", user.email])
    assert result.exit_code == 0, result.output
    assert "ended 2 session(s)" in result.output
    assert _signed_out(client.get("/leads"))
    assert _signed_out(other_desk.get("/leads"))
    assert all(row.ended_at is not None for row in _session_rows(user))
    # And the old password no longer signs in.
    page = sign_in(client, user.email).get_data(as_text=True)
    assert "don&#39;t match an active account" in page
    assert len(_session_rows(user)) == 2


def test_a_password_change_ends_every_session_of_the_user(client, make_user, runner):
    user = make_user("front_desk")
    sign_in(client, user.email)
    new_password = "correct horse battery staple clinic"
    result = runner.invoke(args=["user", "set-password", user.email, "--password", new_password])
    assert result.exit_code == 0, result.output
    assert _signed_out(client.get("/leads"))
    [row] = _session_rows(user)
    assert row.ended_at is not None
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "user_set_password")) == 1
    assert sign_in(client, user.email, DEFAULT_PASSWORD).status_code == 200  # old one refused
    assert sign_in(client, user.email, new_password).status_code == 302
