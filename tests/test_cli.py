"""``flask user …``: staff accounts from the command line, good input and bad."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.models import AuditEvent, User, UserSession
from crm.passwords import verify_password
from tests.conftest import sign_in

GOOD_PASSWORD = "maple river lantern quiet"


def _user(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == email))


def _count_users() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(User))


def test_user_create_makes_an_account_that_can_sign_in(runner, client):
    result = runner.invoke(
        args=[
            "user",
            "create",
            "Ana.Lopez@Clinic.test",
            "--role",
            "front_desk",
            "--name",
            "Ana López",
            "--password",
            GOOD_PASSWORD,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "Created ana.lopez@clinic.test (front_desk)." in result.output
    user = _user("ana.lopez@clinic.test")
    assert (user.name, user.role, user.active) == ("Ana López", "front_desk", True)
    assert user.password_hash.startswith("$argon2id$")
    assert GOOD_PASSWORD not in user.password_hash
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "user_create")) == 1
    assert sign_in(client, "ana.lopez@clinic.test", GOOD_PASSWORD).status_code == 302


def test_user_create_prompts_for_a_hidden_password_when_none_is_given(runner):
    result = runner.invoke(
        args=["user", "create", "sam@clinic.test", "--role", "surgeon", "--name", "Sam Reyes"],
        input=f"{GOOD_PASSWORD}\n{GOOD_PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Password:" in result.output and "Repeat for confirmation:" in result.output
    assert GOOD_PASSWORD not in result.output  # hidden input is not echoed
    user = _user("sam@clinic.test")
    assert user.role == "surgeon" and verify_password(user.password_hash, GOOD_PASSWORD)


def test_user_create_refuses_an_unknown_role(runner):
    result = runner.invoke(
        args=[
            "user",
            "create",
            "x@clinic.test",
            "--role",
            "nurse",
            "--name",
            "X Y",
            "--password",
            GOOD_PASSWORD,
        ]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--role'" in result.output and "front_desk" in result.output
    assert _count_users() == 0


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short-pw", "at least 15 characters"),
        ("aaaaaaaaaaaaaaaaaaaa", "too common"),
        ("pat.morgan-2026-clinic", "own name or email"),
    ],
)
def test_user_create_refuses_a_weak_password(runner, password, message):
    result = runner.invoke(
        args=[
            "user",
            "create",
            "pat.morgan@clinic.test",
            "--role",
            "manager",
            "--name",
            "Pat Morgan",
            "--password",
            password,
        ]
    )
    assert result.exit_code == 1
    assert message in result.output
    assert _count_users() == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0


def test_user_create_refuses_a_taken_email_whatever_its_case(runner, make_user):
    existing = make_user("front_desk")
    result = runner.invoke(
        args=[
            "user",
            "create",
            existing.email.upper(),
            "--role",
            "admin",
            "--name",
            "Someone Else",
            "--password",
            GOOD_PASSWORD,
        ]
    )
    assert result.exit_code == 1
    assert f"An account for {existing.email} already exists." in result.output
    assert _count_users() == 1
    assert _user(existing.email).role == "front_desk"


def test_user_create_refuses_something_that_is_not_an_email(runner):
    result = runner.invoke(
        args=["user", "create", "ana-lopez", "--role", "admin", "--name", "Ana", "--password", GOOD_PASSWORD]
    )
    assert result.exit_code == 1
    assert "is not an email address" in result.output
    assert _count_users() == 0


def test_user_deactivate_keeps_the_account_and_ends_its_sessions(runner, client, make_user):
    user = make_user("front_desk")
    sign_in(client, user.email)
    result = runner.invoke(args=["user", "deactivate", user.email.upper()])
    assert result.exit_code == 0, result.output
    assert f"Deactivated {user.email}; ended 1 session(s)." in result.output
    row = _user(user.email)
    assert row is not None and row.active is False and row.deactivated_at is not None
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(UserSession).where(UserSession.ended_at.is_(None))
        )
        == 0
    )
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "user_deactivate")) == 1


def test_user_deactivate_twice_says_so_and_changes_nothing(runner, make_user):
    user = make_user("front_desk", active=False)
    result = runner.invoke(args=["user", "deactivate", user.email])
    assert result.exit_code == 0
    assert "already deactivated" in result.output
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 0


def test_user_deactivate_of_an_unknown_email_fails(runner):
    result = runner.invoke(args=["user", "deactivate", "ghost@clinic.test"])
    assert result.exit_code == 1
    assert "No account for ghost@clinic.test." in result.output


def test_user_set_password_refuses_a_weak_one_and_keeps_the_old(runner, make_user):
    user = make_user("front_desk")
    old_hash = user.password_hash
    result = runner.invoke(args=["user", "set-password", user.email, "--password", "tooshort"])
    assert result.exit_code == 1
    assert "at least 15 characters" in result.output
    assert _user(user.email).password_hash == old_hash
