"""Twilio's voice status callback: signed, idempotent, out-of-order safe, never a 500."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator

from crm.extensions import db
from crm.models import AuditEvent, Call, Lead, LeadTag, Task
from tests.conftest import utc

PATH = "/webhooks/twilio/voice-status"
URL = "http://crm.test" + PATH
TOKEN = "test-twilio-auth-token"
MAIN_LINE = "+19724995457"
ADS_LINE = "+12145550100"
CALLER = "+19725550134"
NOW = utc(2026, 3, 9, 15, 0)  # Monday 10:00 in Chicago (CDT): the clinic is open


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def callback(**fields: Any) -> dict[str, str]:
    """An inbound call's status callback, as Twilio sends it."""
    params = {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": new_sid(),
        "From": CALLER,
        "To": MAIN_LINE,
        "Direction": "inbound",
        "CallStatus": "completed",
        "CallDuration": "0",
        "SequenceNumber": "0",
        "Timestamp": format_datetime(NOW),
        "ApiVersion": "2010-04-01",
    }
    params.update({key: str(value) for key, value in fields.items() if value is not None})
    return {key: value for key, value in params.items() if fields.get(key, "") is not None}


def send(client: FlaskClient, params: dict[str, str], *, url: str = URL, signature: str | None = None) -> Any:
    """Post a callback signed by the twilio library itself."""
    sig = RequestValidator(TOKEN).compute_signature(url, params) if signature is None else signature
    path = PATH + (url.split(PATH, 1)[1] if "?" in url else "")
    return client.post(path, data=params, headers={"X-Twilio-Signature": sig})


def count(model: type[Any]) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def calls() -> list[Call]:
    return list(db.session.scalars(sa.select(Call).order_by(Call.id)))


@pytest.fixture(autouse=True)
def open_clinic(frozen_clock: Callable[[datetime], None]) -> None:
    frozen_clock(NOW)


def test_a_signed_callback_makes_one_call_and_one_lead(app: Flask, client: FlaskClient) -> None:
    params = callback(CallStatus="ringing", CallDuration="0")
    response = send(client, params)
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.get_data(as_text=True).endswith("<Response/>")
    [call] = calls()
    [lead] = db.session.scalars(sa.select(Lead)).all()
    assert (call.call_sid, call.status, call.direction, call.line, call.campaign) == (
        params["CallSid"],
        "ringing",
        "inbound",
        MAIN_LINE,
        "main",
    )
    assert call.lead_id == lead.id
    assert (call.local_hour, call.local_weekday) == (10, 0)
    assert (lead.source, lead.phone, lead.campaign, lead.stage, lead.in_queue) == (
        "phone",
        CALLER,
        "main",
        "new",
        True,
    )
    assert lead.first_contact_due_at == utc(2026, 3, 9, 15, 15)


def test_the_tracking_line_gives_the_campaign(app: Flask, client: FlaskClient) -> None:
    send(client, callback(To=ADS_LINE))
    [lead] = db.session.scalars(sa.select(Lead)).all()
    assert (calls()[0].campaign, lead.campaign) == ("google-ads", "google-ads")


def test_the_callback_is_audited_without_patient_data(app: Flask, client: FlaskClient) -> None:
    send(client, callback())
    [event] = db.session.scalars(sa.select(AuditEvent)).all()
    assert (event.via, event.action, event.user_id) == ("webhook", "call.status_callback", None)
    assert CALLER not in str(event.detail) and "5550134" not in str(event.detail)


def test_retries_and_out_of_order_statuses_leave_one_call_with_the_latest_status(
    app: Flask, client: FlaskClient
) -> None:
    sid = new_sid()
    for status, sequence in [
        ("ringing", 0),
        ("no-answer", 2),
        ("in-progress", 1),
        ("no-answer", 2),
        ("ringing", 0),
    ]:
        response = send(client, callback(CallSid=sid, CallStatus=status, SequenceNumber=sequence))
        assert response.status_code == 200
    [call] = calls()
    assert (call.status, call.sequence_number, call.missed) == ("no-answer", 2, True)
    assert count(Lead) == 1
    assert count(Task) == 1


def test_the_same_callback_five_times_makes_one_call_one_lead_one_task(
    app: Flask, client: FlaskClient
) -> None:
    params = callback(CallStatus="busy")
    for _ in range(5):
        assert send(client, params).status_code == 200
    assert (count(Call), count(Lead), count(Task)) == (1, 1, 1)


def test_a_call_never_goes_back_from_a_final_status(app: Flask, client: FlaskClient) -> None:
    sid = new_sid()
    send(client, callback(CallSid=sid, CallStatus="completed", SequenceNumber=3, CallDuration=40))
    send(client, callback(CallSid=sid, CallStatus="in-progress", SequenceNumber=4))
    [call] = calls()
    assert (call.status, call.sequence_number, call.duration_seconds) == ("completed", 3, 40)


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "bm90IGEgc2lnbmF0dXJl",  # made up
        RequestValidator("another-token").compute_signature(URL, callback(CallSid="CA1")),  # wrong key
    ],
)
def test_a_bad_signature_is_refused_and_nothing_stored(
    app: Flask, client: FlaskClient, signature: str
) -> None:
    response = send(client, callback(CallSid="CA1"), signature=signature)
    assert response.status_code == 403
    assert (count(Call), count(Lead), count(Task), count(AuditEvent)) == (0, 0, 0, 0)


def test_a_signature_for_other_values_or_another_address_is_refused(app: Flask, client: FlaskClient) -> None:
    params = callback()
    tampered = RequestValidator(TOKEN).compute_signature(URL, {**params, "From": "+12145559999"})
    assert send(client, params, signature=tampered).status_code == 403
    https = RequestValidator(TOKEN).compute_signature(URL.replace("http:", "https:"), params)
    assert send(client, params, signature=https).status_code == 403
    assert count(Call) == 0


def test_the_signed_address_includes_the_query_string(app: Flask, client: FlaskClient) -> None:
    response = send(client, callback(), url=URL + "?source=studio&x=1")
    assert response.status_code == 200
    assert count(Call) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"To": "+14155550100"},  # inbound to a number that is not the clinic's
        {"Direction": "outbound-api", "From": "+14155550100", "To": CALLER},  # outbound from a stranger
        {"To": None},
    ],
)
def test_a_call_on_another_line_is_refused(app: Flask, client: FlaskClient, fields: dict[str, Any]) -> None:
    response = send(client, callback(**fields))
    assert response.status_code == 400
    assert "is not one of the clinic's lines" in response.get_data(as_text=True)
    assert (count(Call), count(Lead), count(AuditEvent)) == (0, 0, 0)


@pytest.mark.parametrize("leg_first", [True, False])
def test_an_answered_staff_leg_marks_the_parent_answered(
    app: Flask, client: FlaskClient, leg_first: bool
) -> None:
    parent = new_sid()
    leg = callback(
        CallSid=new_sid(),
        ParentCallSid=parent,
        Direction="outbound-dial",
        From=CALLER,
        To="+14695550111",  # a staff member's phone
        CallStatus="completed",
        CallDuration=120,
    )
    parent_done = callback(CallSid=parent, CallStatus="completed", CallDuration=150, SequenceNumber=1)
    for params in [leg, parent_done] if leg_first else [parent_done, leg]:
        assert send(client, params).status_code == 200
    [call] = calls()  # the leg is no call of its own
    [lead] = db.session.scalars(sa.select(Lead)).all()
    assert (call.call_sid, call.answered, call.missed, call.voicemail) == (parent, True, False, False)
    assert (call.line, call.from_number) == (MAIN_LINE, CALLER)
    assert count(Task) == 0
    assert lead.first_contact_at == call.started_at == utc(2026, 3, 9, 14, 57, 30)
    assert lead.first_contact_due_at is None


def test_an_unanswered_leg_does_not_mark_the_parent_answered(app: Flask, client: FlaskClient) -> None:
    parent = new_sid()
    send(
        client,
        callback(CallSid=new_sid(), ParentCallSid=parent, Direction="outbound-dial", CallStatus="no-answer"),
    )
    send(
        client,
        callback(CallSid=parent, CallStatus="completed", RecordingUrl="https://api.twilio.com/rec/RE1"),
    )
    [call] = calls()
    assert (call.answered, call.voicemail, call.missed) == (False, True, True)
    assert count(Task) == 1


def test_a_voicemail_is_a_missed_call_with_one_task(app: Flask, client: FlaskClient) -> None:
    params = callback(CallDuration=35, RecordingUrl="https://api.twilio.com/2010-04-01/Recordings/RE123")
    for _ in range(3):
        send(client, params)
    [call] = calls()
    [task] = db.session.scalars(sa.select(Task)).all()
    lead = db.session.get(Lead, call.lead_id)
    assert lead is not None
    assert (call.voicemail, call.missed, call.answered) == (True, True, False)
    assert (task.kind, task.call_id, task.lead_id, task.done_at) == ("callback", call.id, lead.id, None)
    assert task.due_at == utc(2026, 3, 9, 15, 14, 25)  # 15 business minutes after the call began
    assert lead.next_task_due_at == task.due_at


def test_a_missed_call_at_night_is_due_after_opening(
    app: Flask, client: FlaskClient, frozen_clock: Callable[[datetime], None]
) -> None:
    night = utc(2026, 3, 10, 4, 0)  # 23:00 Monday in Chicago
    frozen_clock(night)
    send(client, callback(CallStatus="no-answer", Timestamp=format_datetime(night)))
    [task] = db.session.scalars(sa.select(Task)).all()
    assert task.due_at == utc(2026, 3, 10, 13, 15)  # Tuesday 8:15 CDT


@pytest.mark.parametrize("caller", ["anonymous", "+266696687", "Restricted", None])
def test_a_withheld_caller_stores_the_call_and_a_task_but_no_lead(
    app: Flask, client: FlaskClient, caller: str | None
) -> None:
    assert send(client, callback(From=caller, CallStatus="no-answer")).status_code == 200
    [call] = calls()
    [task] = db.session.scalars(sa.select(Task)).all()
    assert (call.lead_id, call.missed, task.lead_id, task.call_id) == (None, True, None, call.id)
    assert task.title == "Missed call from a withheld number"
    assert count(Lead) == 0


def test_an_outbound_call_records_the_first_attempt(
    app: Flask, client: FlaskClient, make_lead: Callable[..., Lead]
) -> None:
    lead = make_lead(phone=CALLER, open_phone_key=CALLER, created_at=utc(2026, 3, 9, 14, 0))
    params = callback(Direction="outbound-api", From=MAIN_LINE, To=CALLER, CallStatus="no-answer")
    assert send(client, params).status_code == 200
    db.session.refresh(lead)
    [call] = calls()
    assert (call.direction, call.lead_id, call.missed) == ("outbound", lead.id, False)
    assert lead.first_attempt_at == NOW
    assert lead.first_contact_at is None
    assert count(Task) == 0  # an unanswered outbound call is an attempt, not a missed call


def test_an_answered_outbound_call_is_the_first_contact(
    app: Flask, client: FlaskClient, make_lead: Callable[..., Lead]
) -> None:
    lead = make_lead(phone=CALLER, open_phone_key=CALLER, first_contact_due_at=utc(2026, 3, 9, 14, 15))
    send(client, callback(Direction="outbound-dial", From=MAIN_LINE, To=CALLER, CallDuration=90))
    db.session.refresh(lead)
    assert lead.first_attempt_at == lead.first_contact_at == utc(2026, 3, 9, 14, 58, 30)
    assert lead.first_contact_due_at is None


def test_an_outbound_call_to_an_unknown_number_makes_no_lead(app: Flask, client: FlaskClient) -> None:
    send(client, callback(Direction="outbound-api", From=MAIN_LINE, To=CALLER, CallStatus="busy"))
    assert (count(Call), count(Lead), count(Task)) == (1, 0, 0)


def test_a_nameless_call_joins_the_most_recently_active_open_lead(
    app: Flask, client: FlaskClient, make_lead: Callable[..., Lead]
) -> None:
    mother = make_lead(
        first_name="Maria", phone=CALLER, open_phone_key=CALLER, last_activity_at=utc(2026, 3, 1, 15)
    )
    son = make_lead(
        first_name="Jose", phone=CALLER, possible_duplicate_of_id=mother.id, last_activity_at=utc(2026, 3, 5)
    )
    make_lead(first_name="Old", phone=CALLER, stage="closed", last_activity_at=utc(2026, 3, 8))
    send(client, callback())
    [call] = calls()
    assert call.lead_id == son.id
    assert count(Lead) == 3


def test_a_caller_whose_only_lead_is_closed_becomes_a_new_lead(
    app: Flask, client: FlaskClient, make_lead: Callable[..., Lead]
) -> None:
    old = make_lead(phone=CALLER, stage="closed", close_reason="no_response")
    send(client, callback())
    [call] = calls()
    assert call.lead_id != old.id
    new_lead = db.session.get(Lead, call.lead_id)
    assert new_lead is not None and new_lead.open_phone_key == CALLER


def test_a_new_caller_keeps_staff_tags_of_their_lead(
    app: Flask, client: FlaskClient, make_lead: Callable[..., Lead]
) -> None:
    lead = make_lead(phone=CALLER, open_phone_key=CALLER, tags=["region:lower"], tag_origin="staff")
    send(client, callback())
    assert db.session.scalars(sa.select(LeadTag.origin).where(LeadTag.lead_id == lead.id)).all() == ["staff"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"CallSid": None}, "CallSid is missing"),
        ({"CallSid": "CA" + "f" * 10_000}, "CallSid is too long"),
        ({"CallSid": "CA<script>alert(1)</script>"}, "CallSid is not a call id"),
        ({"CallSid": "CA12\x0034"}, "CallSid contains control characters"),
        ({"From": "+1972555\x000134"}, "From contains control characters"),
        ({"From": "<b>" + "9" * 400 + "</b>"}, "From is not a phone number"),
        ({"From": "9" * 10_000}, "From is too long"),
        ({"CallStatus": "exploded"}, "CallStatus is not one of Twilio's call statuses"),
        ({"CallStatus": None}, "CallStatus is missing"),
        ({"Direction": "sideways"}, "Direction must be inbound"),
        ({"SequenceNumber": "-1"}, "SequenceNumber must be a whole number"),
        ({"SequenceNumber": "１２"}, "SequenceNumber must be a whole number"),
        ({"CallDuration": "99999999999999999999"}, "CallDuration must be a whole number"),
        ({"Timestamp": "yesterday"}, "Timestamp is not a date"),
        ({"RecordingUrl": "javascript:alert(1)"}, "RecordingUrl is not a web address"),
        ({"ParentCallSid": "'; DROP TABLE calls; --"}, "ParentCallSid is not a call id"),
    ],
)
def test_hostile_values_get_a_clear_400_and_nothing_is_stored(
    app: Flask, client: FlaskClient, fields: dict[str, Any], reason: str
) -> None:
    response = send(client, callback(**fields))
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert reason in response.get_data(as_text=True)
    assert (count(Call), count(Lead), count(AuditEvent)) == (0, 0, 0)


def test_unknown_and_huge_extra_fields_are_ignored(app: Flask, client: FlaskClient) -> None:
    response = send(client, callback(CallerName="<script>x</script>" * 1000, Extra="\x00" * 10))
    assert response.status_code == 200
    assert count(Call) == 1


def test_only_post_is_allowed(app: Flask, client: FlaskClient) -> None:
    assert client.get(PATH).status_code == 405


def test_two_callers_at_once_on_the_same_new_number_make_one_lead(app: Flask) -> None:
    """Two calls of one new caller arrive together: two calls, one lead (the database decides)."""
    db.session.commit()
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def post_one() -> None:
        local_client = app.test_client()
        params = callback(CallStatus="no-answer")
        barrier.wait()
        statuses.append(send(local_client, params).status_code)

    threads = [threading.Thread(target=post_one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db.session.rollback()
    assert statuses == [200, 200]
    assert (count(Call), count(Lead), count(Task)) == (2, 1, 2)
    assert len({call.lead_id for call in calls()}) == 1


def test_it_answers_quickly(app: Flask, client: FlaskClient, capsys: pytest.CaptureFixture[str]) -> None:
    timings = []
    for n in range(40):
        params = callback(From=f"+1972555{n:04d}", CallStatus="no-answer" if n % 2 else "completed")
        start = time.perf_counter()
        assert send(client, params).status_code == 200
        timings.append((time.perf_counter() - start) * 1000)
    median = statistics.median(timings)
    with capsys.disabled():
        print(f"\nvoice-status webhook: median {median:.1f} ms, max {max(timings):.1f} ms per signed request")
    assert median < 250
