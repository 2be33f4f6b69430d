"""The admin's audit log: a lead's whole life, filtered by user, lead and date."""

from __future__ import annotations

import pytest

from crm import audit
from crm.extensions import db
from tests.conftest import csrf_token, sign_in, utc


def test_a_leads_whole_life_is_in_the_audit_log(client, make_user, make_lead, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    desk = make_user("front_desk", name="Ana López")
    admin = make_user("admin")
    lead = make_lead(tags=["history:failed_pt"])
    other = make_lead()
    sign_in(client, desk.email)
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    token = csrf_token(page)
    client.post(f"/leads/{lead.id}/notes", data={"csrf_token": token, "body": "Called back, left message"})
    client.post(f"/leads/{lead.id}/stage", data={"csrf_token": token, "to": "contacted"})
    client.get(f"/leads/{other.id}")
    client.post("/logout", data={"csrf_token": token})

    sign_in(client, admin.email)
    html = client.get(f"/admin/audit?lead={lead.id}").get_data(as_text=True)
    for action in ("lead view", "lead note", "lead stage"):
        assert action in html
    assert html.count(f'href="/leads/{lead.id}"') == 3
    assert f'href="/leads/{other.id}"' not in html
    assert "Ana López" in html
    assert "Called back" not in html  # the log names what happened, not what the patient said


def test_it_filters_by_staff_member_and_date(client, login_as, make_user, frozen_clock):
    someone = make_user("front_desk", name="Luis Herrera")
    frozen_clock(utc(2026, 3, 2, 15, 0))
    audit.record("lead_view", user_id=someone.id, ip="10.0.0.5")
    frozen_clock(utc(2026, 3, 9, 15, 0))
    audit.record("lead_claim", user_id=someone.id, ip="10.0.0.5")
    db.session.commit()
    login_as("admin")
    html = client.get(f"/admin/audit?user={someone.id}&from=2026-03-09&to=2026-03-09").get_data(as_text=True)
    assert "lead claim" in html
    assert "lead view" not in html
    assert "sign in" not in html  # the admin's own sign-in is someone else's event


def test_older_events_are_a_click_away_and_none_repeats(client, login_as):
    admin = login_as("admin")
    for n in range(105):
        audit.record("lead_view", user_id=admin.id, lead_id=None, detail={"n": n})
    db.session.commit()
    first = client.get(f"/admin/audit?user={admin.id}").get_data(as_text=True)
    assert first.count("<tr>") == 101  # header row + 100 events
    older = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older).get_data(as_text=True)
    assert second.count("<tr>") == 1 + 6  # the other 5 views and the admin's sign-in
    assert 'rel="next"' not in second


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager"])
def test_only_an_admin_reads_the_audit_log(client, login_as, role):
    login_as(role)
    assert client.get("/admin/audit").status_code == 403
