"""The admin's clinic settings page: hours, targets, aging, routing and holidays; admin only, audited."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead
from crm.models import AuditEvent, ClinicSettings, Holiday
from crm.settings import AGING_STAGES
from tests.conftest import csrf_token, utc

NOW = utc(2026, 3, 9, 15, 0)  # Monday 10:00 in Plano (CDT)


def _form(client, **changes: str) -> dict[str, str]:
    """The settings form as the page fills it, with ``changes`` typed over it."""
    html = client.get("/admin/settings").get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "timezone": "America/Chicago", "speed_to_lead_minutes": "15"}
    data |= {"callback_attempts": "3", "callback_window_days": "5", "default_surgeon": ""}
    for day in range(5):
        data |= {f"open_{day}": "08:00", f"close_{day}": "17:00"}
    data |= {f"aging_{stage}": "7" for stage in AGING_STAGES}
    return data | changes


def _settings() -> ClinicSettings:
    db.session.expire_all()
    return db.session.get(ClinicSettings, 1) or ClinicSettings(
        business_hours={str(d): ["08:00", "17:00"] for d in range(5)}, speed_to_lead_minutes=15
    )  # not saved yet: the defaults


def test_an_admin_sets_saturday_hours_and_a_new_target_which_new_leads_then_follow(
    client, login_as, frozen_clock
):
    frozen_clock(NOW)
    login_as("admin")
    response = client.post(
        "/admin/settings", data=_form(client, open_5="09:00", close_5="12:00", speed_to_lead_minutes="30")
    )
    assert response.status_code == 302
    assert "Settings saved." in client.get("/admin/settings").get_data(as_text=True)
    row = _settings()
    assert row.business_hours["5"] == ["09:00", "12:00"] and row.speed_to_lead_minutes == 30
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "settings_change")).one()
    assert set(event.detail["fields"]) >= {"business_hours", "speed_to_lead_minutes"}
    lead = find_or_create_lead(ContactIn(source="phone", phone="+12145550177"), now=NOW).lead
    assert lead.first_contact_due_at == NOW + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"open_0": "17:00", "close_0": "08:00"}, "Monday: the clinic must close after it opens."),
        ({"open_1": "08:00", "close_1": ""}, "Tuesday: give both the opening and the closing time"),
        ({"speed_to_lead_minutes": "0"}, "Check the fields marked below."),
        ({"timezone": "Mars/Olympus_Mons"}, "Check the fields marked below."),
    ],
)
def test_a_refused_setting_says_why_and_changes_nothing(client, login_as, changes, message):
    login_as("admin")
    before = (_settings().business_hours, _settings().speed_to_lead_minutes)
    response = client.post("/admin/settings", data=_form(client, **changes))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert (_settings().business_hours, _settings().speed_to_lead_minutes) == before
    assert (
        db.session.scalar(
            sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "settings_change")
        )
        == 0
    )


def test_the_default_surgeon_must_be_an_active_surgeon(client, login_as, make_user):
    login_as("admin")
    surgeon, desk = make_user("surgeon", name="Dr. Rivera"), make_user("front_desk")
    assert client.post("/admin/settings", data=_form(client, default_surgeon=str(desk.id))).status_code == 400
    assert (
        client.post("/admin/settings", data=_form(client, default_surgeon=str(surgeon.id))).status_code == 302
    )
    assert _settings().default_surgeon_id == surgeon.id


def test_holidays_are_added_once_and_removed(client, login_as, frozen_clock):
    frozen_clock(NOW)
    login_as("admin")
    html = client.get("/admin/settings").get_data(as_text=True)
    data = {"csrf_token": csrf_token(html), "day": "2026-05-25", "name": "Memorial <b>Day</b>"}
    assert client.post("/admin/settings/holidays", data=data).status_code == 302
    again = client.post("/admin/settings/holidays", data=data)
    assert again.status_code == 400 and "May 25, 2026 is already a holiday." in again.get_data(as_text=True)
    page = client.get("/admin/settings").get_data(as_text=True)
    assert "Memorial &lt;b&gt;Day&lt;/b&gt;" in page
    holiday = db.session.scalars(sa.select(Holiday)).one()
    assert holiday.day == date(2026, 5, 25)
    response = client.post(
        "/admin/settings/holidays/remove",
        data={"csrf_token": csrf_token(page), "holiday_id": str(holiday.id)},
    )
    assert response.status_code == 302
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Holiday)) == 0
    actions = list(db.session.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions.count("holiday_add") == 1 and actions.count("holiday_remove") == 1


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager"])
def test_only_an_admin_sees_or_changes_the_settings(client, login_as, role):
    login_as(role)
    assert client.get("/admin/settings").status_code == 403
    assert client.post("/admin/settings", data={"speed_to_lead_minutes": "1"}).status_code in (400, 403)
    assert client.post("/admin/settings/holidays", data={"day": "2026-05-25", "name": "x"}).status_code in (
        400,
        403,
    )
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Holiday)) == 0
