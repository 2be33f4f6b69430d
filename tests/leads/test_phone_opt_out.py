"""A patient who opted out of phone calls (PRODUCT §2): every page honours it, and a call we made
anyway is logged only with the reason, which the audit log keeps."""

from __future__ import annotations

import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead
from crm.models import AuditEvent, Call, Lead
from tests.conftest import csrf_token, utc


def _opted_out_lead() -> Lead:
    lead = find_or_create_lead(
        ContactIn(source="web_form", first_name="Rosa", last_name="Linares", phone="(972) 555-0177"),
        now=clock.now(),
    ).lead
    lead.consent_phone = False
    lead.consent_email = True
    lead.email = "rosa@example.com"
    db.session.commit()
    return lead


def _log(client, lead_id, **data):
    page = client.get(f"/leads/{lead_id}").get_data(as_text=True)
    return client.post(f"/leads/{lead_id}/calls", data={"csrf_token": csrf_token(page), **data})


def _calls() -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Call))


def test_no_page_offers_a_tel_link_to_a_patient_who_opted_out(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _opted_out_lead()
    login_as("front_desk")
    queue = client.get("/leads").get_data(as_text=True)
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    for html in (queue, page):
        assert "tel:+19725550177" not in html
        assert "(972) 555-0177" in html and "no calls" in html
    assert "This patient opted out of phone calls." in page and "Reach them by email" in page
    assert f"I'm calling {lead.full_name}" not in queue
    assert 'name="override_reason"' in page


def test_a_call_we_made_needs_the_reason_and_keeps_it_in_the_audit_log(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _opted_out_lead()
    login_as("front_desk")
    refused = _log(client, lead.id, direction="outbound", outcome="answered", notes="Confirmed the consult")
    html = refused.get_data(as_text=True)
    assert refused.status_code == 400
    card = html[html.index('id="logcall-h"') : html.index('id="stage-h"')]
    assert "Rosa Linares opted out of phone calls" in card  # beside the form, not only at the top
    assert ">Confirmed the consult</textarea>" in card  # what was typed is kept
    assert '<option value="answered" selected>' in card
    assert _calls() == 0

    _log(client, lead.id, direction="outbound", outcome="answered", override_reason="She asked us to call")
    assert _calls() == 1
    detail = db.session.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "call_log")).one()
    assert detail["opt_out_override"] == "She asked us to call"


def test_a_call_the_patient_made_is_logged_without_a_reason(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _opted_out_lead()
    login_as("front_desk")
    _log(client, lead.id, direction="inbound", outcome="answered", notes="calling about my MRI")
    assert _calls() == 1
    detail = db.session.scalars(sa.select(AuditEvent.detail).where(AuditEvent.action == "call_log")).one()
    assert "opt_out_override" not in detail


def test_a_patient_who_did_not_opt_out_keeps_the_tel_link(client, login_as, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    lead = _opted_out_lead()
    lead.consent_phone = None
    db.session.commit()
    login_as("front_desk")
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    assert 'href="tel:+19725550177"' in page and "no calls" not in page
    assert 'name="override_reason"' not in page
