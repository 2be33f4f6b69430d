"""The audit log: the database itself refuses to change or delete an event, and viewing a
lead writes exactly one event (who, what, when, from where) with no patient words in it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm import audit
from crm.extensions import db
from crm.models import AuditEvent, Lead
from tests.conftest import utc

T0 = utc(2026, 3, 9, 14, 0)


@pytest.fixture
def event_id(app) -> int:
    event = audit.record("lead_view", user_id=None, lead_id=None, ip="10.0.0.7")
    db.session.commit()
    return event.id


def _event_row(event_id: int):
    return db.session.execute(
        sa.text("SELECT action, ip_address FROM audit_events WHERE id = :id"), {"id": event_id}
    ).one_or_none()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET action = 'nothing_to_see' WHERE id = :id",
        "UPDATE audit_events SET ip_address = NULL",
        "DELETE FROM audit_events WHERE id = :id",
        "DELETE FROM audit_events",
    ],
)
def test_the_database_refuses_to_change_an_audit_event(app, event_id, statement):
    with pytest.raises(sa.exc.DBAPIError) as refused:
        db.session.execute(sa.text(statement), {"id": event_id})
        db.session.commit()
    assert "append-only" in str(refused.value.orig)
    db.session.rollback()
    assert _event_row(event_id) == ("lead_view", "10.0.0.7")


def test_the_whole_table_cannot_be_emptied_at_once(app, event_id):
    # PostgreSQL's TRUNCATE skips row triggers (a statement trigger guards it); SQLite has no
    # TRUNCATE, but its unqualified DELETE is the same shortcut and the row trigger must stop it.
    statement = (
        "TRUNCATE audit_events" if db.engine.dialect.name == "postgresql" else "DELETE FROM audit_events"
    )
    with pytest.raises(sa.exc.DBAPIError):
        db.session.execute(sa.text(statement))
    db.session.rollback()
    assert _event_row(event_id) is not None


def test_new_events_can_still_be_added(app, event_id):
    audit.record("sign_in", user_id=None, ip="10.0.0.8")
    db.session.commit()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == 2


def test_viewing_a_lead_writes_exactly_one_audit_event(client, login_as, frozen_clock):
    frozen_clock(T0)
    user = login_as("front_desk")
    lead = Lead(first_name="Rosalind", last_name="Achterberg", source="phone", phone="+12145550187")
    db.session.add(lead)
    db.session.commit()
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))

    response = client.get(f"/leads/{lead.id}")

    assert response.status_code == 200
    assert "Achterberg" in response.get_data(as_text=True)
    events = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.id > before)).all()
    views = [e for e in events if e.action == "lead_view"]
    assert len(views) == 1, [e.action for e in events]
    [view] = views
    assert (view.user_id, view.lead_id, view.at, view.ip_address, view.via) == (
        user.id,
        lead.id,
        T0,
        "127.0.0.1",
        "web",
    )
    assert "Achterberg" not in str(view.detail) and "5550187" not in str(view.detail)


def test_a_refused_lead_view_writes_no_view_event(client, login_as):
    login_as("surgeon")
    lead = Lead(first_name="Rosalind", last_name="Achterberg", source="phone", stage="new")
    db.session.add(lead)
    db.session.commit()
    assert client.get(f"/leads/{lead.id}").status_code == 404
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEvent.action == "lead_view")) == 0
