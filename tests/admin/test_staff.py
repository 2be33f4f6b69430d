"""The admin's staff page: add a staff member, set a new password, deactivate with a hand-over."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.models import AuditEvent, ClinicSettings, Lead, Task, User, UserSession
from crm.passwords import verify_password
from crm.settings import get_settings
from tests.conftest import DEFAULT_PASSWORD, csrf_token, sign_in

NEW_PASSWORD = "a lighthouse keeps its lamp lit"


def _post(client, path: str, **data: str):
    token = csrf_token(client.get("/admin").get_data(as_text=True))
    return client.post(f"/admin/{path}", data={"csrf_token": token, **data})


def _user(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalar(sa.select(User).where(User.email == email))


def _actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))


def test_an_admin_adds_a_staff_member_who_can_then_sign_in(app, client, login_as):
    admin = login_as("admin")
    response = _post(
        client,
        "users",
        name="Tamika Brooks",
        email=" Tamika@Clinic.test ",
        role="front_desk",
        password=NEW_PASSWORD,
    )
    assert response.status_code == 302
    page = client.get("/admin").get_data(as_text=True)
    assert "Added Tamika Brooks (tamika@clinic.test) as Front desk." in page
    made = _user("tamika@clinic.test")
    assert (
        made is not None and made.role == "front_desk" and verify_password(made.password_hash, NEW_PASSWORD)
    )
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user_create")).one()
    assert (event.user_id, event.detail, event.via) == (
        admin.id,
        {"user_id": made.id, "role": "front_desk"},
        "web",
    )
    assert NEW_PASSWORD not in str(event.detail)
    other = app.test_client()
    assert sign_in(other, "tamika@clinic.test", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("ana@clinic.test", NEW_PASSWORD, "An account for ana@clinic.test already exists."),
        ("new@clinic.test", "short", "Use at least 15 characters"),
        ("not an email", NEW_PASSWORD, "is not an email address."),
    ],
)
def test_a_refused_account_says_why_keeps_the_input_and_saves_nothing(
    client, login_as, make_user, email, password, message
):
    login_as("admin")
    make_user("front_desk", email="ana@clinic.test")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(User))
    response = _post(
        client, "users", name="Luis <b>Herrera</b>", email=email, role="manager", password=password
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert message in html
    assert 'value="Luis &lt;b&gt;Herrera&lt;/b&gt;"' in html  # kept, escaped
    assert password not in html.split('id="add-h"')[1] or password == "short"
    assert 'value="short"' not in html  # a password is never sent back
    assert db.session.scalar(sa.select(sa.func.count()).select_from(User)) == before


def test_a_new_password_ends_the_staff_members_sessions(app, client, login_as, make_user):
    login_as("admin")
    ana = make_user("front_desk", email="ana@clinic.test")
    theirs = app.test_client()
    sign_in(theirs, "ana@clinic.test")
    assert theirs.get("/leads").status_code == 200

    response = _post(client, "users/password", user_id=str(ana.id), password=NEW_PASSWORD)

    assert response.status_code == 302
    assert "New password set for ana@clinic.test; ended 1 session(s)." in client.get("/admin").get_data(
        as_text=True
    )
    assert theirs.get("/leads").status_code == 302  # signed out
    assert verify_password(_user("ana@clinic.test").password_hash, NEW_PASSWORD)
    assert not verify_password(_user("ana@clinic.test").password_hash, DEFAULT_PASSWORD)
    assert "user_password_reset" in _actions()
    weak = _post(client, "users/password", user_id=str(ana.id), password="password")
    assert weak.status_code == 400 and "Use at least 15 characters" in weak.get_data(as_text=True)


def test_deactivating_hands_the_open_leads_over_and_keeps_the_closed_ones(
    client, login_as, make_user, make_lead
):
    login_as("admin")
    leaving = make_user("front_desk", email="leaving@clinic.test", name="Leaving Person")
    taker = make_user("front_desk", email="taker@clinic.test", name="Ana Taker")
    open_a, open_b = make_lead(owner_id=leaving.id), make_lead(owner_id=leaving.id)
    closed = make_lead(owner_id=leaving.id, stage="closed", in_queue=False, close_reason="no_response")
    callback = Task(
        lead_id=open_a.id, kind="callback", title="Call back", due_at=clock.now(), assignee_id=leaving.id
    )
    done = Task(
        lead_id=open_b.id,
        kind="callback",
        title="Called",
        due_at=clock.now(),
        assignee_id=leaving.id,
        done_at=clock.now(),
    )
    db.session.add_all([callback, done])
    db.session.commit()
    page = client.get("/admin").get_data(as_text=True)
    assert f'for="leads-to-{leaving.id}">Give their 2 open leads to' in page

    response = _post(client, "users/deactivate", user_id=str(leaving.id), leads_to=str(taker.id))

    assert response.status_code == 302
    flashed = client.get("/admin").get_data(as_text=True)
    assert "2 open lead(s) now Ana Taker" in flashed, flashed[
        flashed.find("flash") : flashed.find("flash") + 300
    ]
    assert _user("leaving@clinic.test").active is False
    owners = {lead.id: lead.owner_id for lead in db.session.scalars(sa.select(Lead))}
    assert owners == {open_a.id: taker.id, open_b.id: taker.id, closed.id: leaving.id}
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "user_deactivate")).one()
    assert event.detail["leads_to"] == taker.id and event.detail["leads_moved"] == 2
    # Each lead's reassignment is in its own audit trail, and the open call-back went along.
    moved = db.session.scalars(
        sa.select(AuditEvent.lead_id).where(AuditEvent.action == "lead_reassign")
    ).all()
    assert sorted(moved) == sorted([open_a.id, open_b.id])
    assert db.session.get(Task, callback.id).assignee_id == taker.id
    assert db.session.get(Task, done.id).assignee_id == leaving.id  # history stays as it was


def test_deactivating_a_surgeon_unassigns_their_referrals_and_the_clinic_default(
    client, login_as, make_user, make_lead
):
    login_as("admin")
    leaving = make_user("surgeon", email="dr.gone@clinic.test")
    referral = make_lead(stage="surgical_review", surgeon_id=leaving.id, tags=["history:failed_pt"])
    settings = get_settings()
    settings.default_surgeon_id = leaving.id
    db.session.commit()
    assert _post(client, "users/deactivate", user_id=str(leaving.id), leads_to="").status_code == 302
    db.session.expire_all()
    assert db.session.get(Lead, referral.id).surgeon_id is None  # every surgeon sees it now
    assert db.session.get(ClinicSettings, 1).default_surgeon_id is None


def test_a_hand_over_to_the_person_leaving_is_refused(client, login_as, make_user, make_lead):
    login_as("admin")
    leaving = make_user("front_desk")
    make_lead(owner_id=leaving.id)
    response = _post(client, "users/deactivate", user_id=str(leaving.id), leads_to=str(leaving.id))
    assert response.status_code == 400
    assert _user(leaving.email).active


def test_an_admin_cannot_deactivate_themselves_nor_hand_leads_to_a_surgeon(client, login_as, make_user):
    admin = login_as("admin")
    leaving = make_user("front_desk")
    surgeon = make_user("surgeon")
    mine = _post(client, "users/deactivate", user_id=str(admin.id), leads_to="")
    assert mine.status_code == 400 and "You can&#39;t deactivate your own account" in mine.get_data(
        as_text=True
    )
    to_surgeon = _post(client, "users/deactivate", user_id=str(leaving.id), leads_to=str(surgeon.id))
    assert to_surgeon.status_code == 400
    assert "an active member of the front desk or a manager" in to_surgeon.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, admin.id).active and db.session.get(User, leaving.id).active
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(UserSession).where(UserSession.ended_at.is_not(None))
        )
        == 0
    )


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager"])
def test_only_an_admin_manages_staff(client, login_as, make_user, role):
    login_as(role)
    other = make_user("front_desk")
    token = csrf_token(client.get("/leads" if role != "surgeon" else "/referrals").get_data(as_text=True))
    assert client.get("/admin").status_code == 403
    for path, data in (
        ("users", {"name": "X", "email": "x@clinic.test", "role": "admin", "password": NEW_PASSWORD}),
        ("users/password", {"user_id": str(other.id), "password": NEW_PASSWORD}),
        ("users/deactivate", {"user_id": str(other.id), "leads_to": ""}),
    ):
        assert client.post(f"/admin/{path}", data={"csrf_token": token, **data}).status_code == 403
    assert _user("x@clinic.test") is None
    assert _user(other.email).active
