"""One intake for every channel: the duplicate rule, tags, urgency, consent, calls, concurrency."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from crm import intake
from crm.extensions import db
from crm.intake import (
    CONSENT_TEXT_VERSION,
    CallEventIn,
    ContactIn,
    IntakeRefused,
    WebRequestIn,
    find_or_create_lead,
    log_manual_call,
    names_agree,
    receive_call_event,
    receive_web_request,
)
from crm.models import (
    AppointmentRequest,
    Call,
    ClinicSettings,
    Consent,
    Lead,
    LeadSearchTerm,
    LeadTag,
    StageChange,
    Task,
    User,
)
from crm.tagging import remove_staff_tag
from tests.conftest import utc

NOW = utc(2026, 3, 9, 15, 0)  # Monday 10:00 in Chicago: open
NIGHT = utc(2026, 3, 10, 4, 0)  # Monday 23:00 in Chicago: closed
LINES = {"+19724995457": "main", "+12145550100": "google-ads"}
PHONE = "+19725550134"


@pytest.fixture(autouse=True)
def clock_at_now(frozen_clock: Callable[[datetime], None]) -> None:
    frozen_clock(NOW)


def web(**overrides: Any) -> WebRequestIn:
    """A form submission with realistic answers."""
    contact_fields: dict[str, Any] = {
        "source": "web_form",
        "first_name": "María",
        "last_name": "García",
        "phone": "(972) 555-0134",
        "email": "Maria.Garcia@Example.com",
        "preferred_time": "morning",
        "language": "es",
        "campaign": "spring-back-pain",
        "landing_page": "https://www.spine.example/back-spasms",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring-back-pain",
        "consent": {"phone": True, "sms": False, "email": True, "detailed_voicemail": False},
        "message": "My low back locks up, 6 weeks of PT and no better.",
    }
    request_fields: dict[str, Any] = {
        "where_it_hurts": ["lower"],
        "side": ["left"],
        "tried_pt": "did_not_help",
        "ip_address": "203.0.113.9",
    }
    for key, value in overrides.items():
        (request_fields if key in WebRequestIn.__dataclass_fields__ else contact_fields)[key] = value
    return WebRequestIn(contact=ContactIn(**contact_fields), **request_fields)


def count(model: type[Any]) -> int:
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


def tags(lead: Lead) -> dict[str, str]:
    rows = db.session.scalars(sa.select(LeadTag).where(LeadTag.lead_id == lead.id, LeadTag.state == "active"))
    return {row.code: row.origin for row in rows}


# --------------------------------------------------------------------------- the form


def test_a_web_request_makes_a_complete_new_lead(app: Flask) -> None:
    result = receive_web_request(web())
    db.session.commit()
    lead = result.lead
    assert result.created is True
    assert (lead.first_name, lead.last_name, lead.phone, lead.email) == (
        "María",
        "García",
        PHONE,
        "maria.garcia@example.com",
    )
    assert (lead.phone_last4, lead.phone_last7, lead.open_phone_key) == ("0134", "5550134", PHONE)
    assert (lead.source, lead.campaign, lead.utm_source, lead.landing_page) == (
        "web_form",
        "spring-back-pain",
        "google",
        "https://www.spine.example/back-spasms",
    )
    assert (lead.stage, lead.in_queue, lead.urgent, lead.owner_id) == ("new", True, False, None)
    assert lead.created_at == lead.last_activity_at == NOW
    assert lead.first_contact_due_at == utc(2026, 3, 9, 15, 15)
    assert (lead.consent_phone, lead.consent_sms, lead.consent_email) == (True, False, True)
    [change] = db.session.scalars(sa.select(StageChange).where(StageChange.lead_id == lead.id)).all()
    assert (change.from_stage, change.to_stage, change.at) == (None, "new", NOW)
    terms = db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == lead.id))
    assert sorted(terms) == ["garcia", "maria"]
    consents = db.session.scalars(sa.select(Consent).where(Consent.lead_id == lead.id)).all()
    assert {(c.channel, c.granted) for c in consents} == {
        ("phone", True),
        ("sms", False),
        ("email", True),
        ("detailed_voicemail", False),
    }
    assert {(c.method, c.text_version, c.ip_address, c.at) for c in consents} == {
        ("web_form", CONSENT_TEXT_VERSION, "203.0.113.9", NOW)
    }


def test_the_request_is_kept_as_submitted(app: Flask) -> None:
    result = receive_web_request(web(red_flag_weakness=True))
    db.session.commit()
    row = db.session.scalar(sa.select(AppointmentRequest))
    assert row.lead_id == result.lead.id and result.request is row
    assert (row.first_name, row.phone, row.email) == ("María", "(972) 555-0134", "Maria.Garcia@Example.com")
    assert row.message == "My low back locks up, 6 weeks of PT and no better."
    assert row.answers["where_it_hurts"] == ["lower"]
    assert row.answers["side"] == ["left"]
    assert row.answers["tried_pt"] == "did_not_help"
    assert (row.answers["red_flag_bladder"], row.answers["red_flag_weakness"]) == (False, True)
    assert (row.answers["preferred_time"], row.answers["language"]) == ("morning", "es")
    assert (row.consent_text_version, row.ip_address, row.utm_campaign) == (
        CONSENT_TEXT_VERSION,
        "203.0.113.9",
        "spring-back-pain",
    )


def test_form_answers_are_the_patients_tags_and_the_message_the_taggers(app: Flask) -> None:
    result = receive_web_request(web(message="It shoots down my right leg", side=["left"]))
    db.session.commit()
    assert tags(result.lead) == {
        "region:lower": "patient",
        "side:left": "patient",
        "history:failed_pt": "patient",
        "radiating:leg": "auto",
        "side:right": "auto",
    }


@pytest.mark.parametrize("answer", ["red_flag_bladder", "red_flag_weakness"])
def test_a_red_flag_answer_makes_the_lead_urgent(app: Flask, answer: str) -> None:
    result = receive_web_request(web(**{answer: True}))
    db.session.commit()
    assert result.lead.urgent is True
    assert any(code.startswith("red_flag:") for code in tags(result.lead))


def test_a_red_flag_in_the_message_makes_the_lead_urgent(app: Flask) -> None:
    result = receive_web_request(web(message="Since Monday it is hard to control my bladder"))
    assert result.lead.urgent is True
    assert tags(result.lead)["red_flag:bowel_bladder"] == "auto"


def test_an_urgent_request_after_hours_asks_for_the_alert(
    app: Flask, frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(NIGHT)
    assert receive_web_request(web(red_flag_bladder=True)).details["alert"] is True
    assert (
        receive_web_request(web(first_name="Ana", last_name="Ruiz", phone=None, email="a@b.test")).details[
            "alert"
        ]
        is False
    )


def test_an_urgent_request_in_business_hours_sends_no_alert(app: Flask) -> None:
    assert receive_web_request(web(red_flag_bladder=True)).details["alert"] is False


# --------------------------------------------------------------------------- duplicates


@pytest.mark.parametrize(
    ("first", "last"),
    [("Maria", "Garcia"), ("MARÍA", "garcía"), ("M.", "Garcia"), ("M", "GARCIA"), ("", "")],
)
def test_the_same_person_again_attaches_to_the_open_lead(app: Flask, first: str, last: str) -> None:
    first_time = receive_web_request(web())
    db.session.commit()
    again = receive_web_request(web(first_name=first, last_name=last, phone="972.555.0134", email=None))
    db.session.commit()
    assert again.created is False
    assert again.lead.id == first_time.lead.id
    assert count(Lead) == 1
    assert count(AppointmentRequest) == 2


def test_the_same_email_with_agreeing_names_attaches(app: Flask) -> None:
    first_time = receive_web_request(web())
    db.session.commit()
    again = receive_web_request(web(phone=None, email="maria.garcia@example.com", first_name="M"))
    assert again.lead.id == first_time.lead.id


def test_a_different_name_on_the_same_phone_is_a_possible_duplicate(app: Flask) -> None:
    mother = receive_web_request(web()).lead
    db.session.commit()
    son = receive_web_request(web(first_name="José", email=None, message="calling for my father"))
    db.session.commit()
    assert son.created is True
    assert son.lead.id != mother.id
    assert son.lead.possible_duplicate_of_id == mother.id
    assert son.possible_duplicate_of is mother
    assert son.lead.open_phone_key is None
    assert son.lead.phone == PHONE
    assert db.session.get(Lead, mother.id).open_phone_key == PHONE


def test_a_different_last_name_is_a_different_person(app: Flask) -> None:
    receive_web_request(web())
    db.session.commit()
    other = receive_web_request(web(last_name="Lopez", phone=None))
    assert other.created is True and other.lead.possible_duplicate_of_id is not None


def test_a_nameless_contact_joins_the_most_recently_active_open_lead(
    app: Flask, make_lead: Callable[..., Lead]
) -> None:
    older = make_lead(phone=PHONE, open_phone_key=PHONE, last_activity_at=utc(2026, 3, 2))
    recent = make_lead(phone=PHONE, possible_duplicate_of_id=older.id, last_activity_at=utc(2026, 3, 6))
    result = find_or_create_lead(ContactIn(source="phone", phone=PHONE), now=NOW)
    assert result.lead.id == recent.id
    assert result.lead.last_activity_at == NOW


def test_a_named_request_fills_in_a_callers_nameless_lead(app: Flask, make_lead: Callable[..., Lead]) -> None:
    caller = make_lead(first_name="", last_name="", phone=PHONE, open_phone_key=PHONE)
    result = receive_web_request(web())
    db.session.commit()
    assert result.lead.id == caller.id
    assert (caller.first_name, caller.last_name, caller.email) == (
        "María",
        "García",
        "maria.garcia@example.com",
    )
    terms = db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == caller.id))
    assert sorted(terms) == ["garcia", "maria"]


def test_a_closed_or_merged_lead_is_not_joined(app: Flask, make_lead: Callable[..., Lead]) -> None:
    closed = make_lead(first_name="María", last_name="García", phone=PHONE, stage="closed")
    survivor = make_lead(first_name="Someone", last_name="Else")
    merged = make_lead(first_name="María", last_name="García", phone=PHONE, merged_into_id=survivor.id)
    result = receive_web_request(web())
    assert result.created is True
    assert result.lead.id not in (closed.id, merged.id)
    assert result.lead.open_phone_key == PHONE


@pytest.mark.parametrize(
    ("lead_name", "new_name", "agree"),
    [
        (("Maria", "Garcia"), ("maría", "GARCÍA"), True),
        (("Maria", "Garcia"), ("M.", "Garcia"), True),
        (("M", "Garcia"), ("Maria", "Garcia"), True),
        (("Maria", "Garcia"), ("Marta", "Garcia"), False),
        (("Maria", "Garcia"), ("Maria", "Lopez"), False),
        (("Maria", "Garcia Lopez"), ("Maria", "García-López"), True),
        (("", ""), ("Maria", "Garcia"), True),
        (("Maria", ""), ("Maria", ""), True),
        (("Maria", ""), ("Marta", ""), False),
    ],
)
def test_names_agree(app: Flask, lead_name: tuple[str, str], new_name: tuple[str, str], agree: bool) -> None:
    lead = Lead(first_name=lead_name[0], last_name=lead_name[1], source="phone")
    assert names_agree(lead, *new_name) is agree


def test_a_new_message_does_not_bring_back_a_tag_staff_removed(
    app: Flask, make_user: Callable[..., User]
) -> None:
    staff = make_user("front_desk")
    lead = receive_web_request(
        web(where_it_hurts=[], side=[], tried_pt="no", message="My low back locks up")
    ).lead
    remove_staff_tag(lead, "region:lower", staff)
    db.session.commit()
    receive_web_request(web(where_it_hurts=["lower"], message="my low back again"))
    db.session.commit()
    assert "region:lower" not in tags(lead)


def test_round_robin_assigns_front_desk_owners_in_turn(app: Flask, make_user: Callable[..., User]) -> None:
    db.session.add(ClinicSettings(id=1, round_robin=True))
    ana, ben = make_user("front_desk"), make_user("front_desk")
    make_user("front_desk", active=False)
    make_user("surgeon")
    owners = []
    for n in range(3):
        lead = find_or_create_lead(ContactIn(source="api", first_name="P", last_name=f"N{n}"), now=NOW).lead
        owners.append(lead.owner_id)
    assert owners == [ana.id, ben.id, ana.id]


def test_hostile_text_is_stored_clean_and_never_breaks_intake(app: Flask) -> None:
    long_name = "<script>alert('x')</script>\x00" + "a" * 10_000
    result = receive_web_request(
        web(
            first_name=long_name,
            last_name="O'Brien\x00",
            language="\x00" * 50,
            landing_page="https://x.test/" + "p" * 10_000,
            message="<img src=x onerror=alert(1)>\x00 low back " + "spasm " * 2000,
            where_it_hurts=["lower", "<b>everywhere</b>"],
            side=["\x00"],
        )
    )
    db.session.commit()
    lead = db.session.get(Lead, result.lead.id)
    assert lead.first_name.startswith("<script>") and len(lead.first_name) == 100
    assert "\x00" not in lead.first_name and lead.last_name == "O'Brien"
    assert lead.language is None and len(lead.landing_page) == 500
    assert "\x00" not in result.request.message
    assert tags(lead).get("region:lower") == "patient"


def test_an_unknown_source_is_refused(app: Flask) -> None:
    with pytest.raises(IntakeRefused, match="not a lead source"):
        find_or_create_lead(ContactIn(source="carrier-pigeon"), now=NOW)


# --------------------------------------------------------------------------- concurrency


def _run_together(app: Flask, work: Callable[[], Any], n: int = 2) -> list[BaseException]:
    """Run ``work`` in ``n`` threads released at once, each with its own app context and session."""
    db.session.commit()
    db.session.close()  # the test's session must hold no transaction (SQLite's BEGIN IMMEDIATE)
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run() -> None:
        with app.app_context():
            try:
                barrier.wait()
                work()
                db.session.commit()
            except BaseException as error:
                errors.append(error)
                db.session.rollback()
            finally:
                db.session.remove()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.mark.parametrize("attempt", range(3))
def test_two_intakes_of_the_same_new_phone_at_once_make_one_lead(app: Flask, attempt: int) -> None:
    phone = f"+1972555{attempt:04d}"
    find_or_create_lead(ContactIn(source="api", first_name="Warm", last_name="Up"), now=NOW)  # settings row

    def work() -> None:
        find_or_create_lead(ContactIn(source="phone", phone=phone), now=NOW)

    assert _run_together(app, work) == []
    leads = db.session.scalars(sa.select(Lead).where(Lead.phone == phone)).all()
    assert len(leads) == 1
    assert leads[0].open_phone_key == phone
    assert count(StageChange) == 2


def test_two_named_requests_of_the_same_new_patient_at_once_make_one_lead(app: Flask) -> None:
    def work() -> None:
        receive_web_request(web())

    assert _run_together(app, work) == []
    assert count(Lead) == 1
    assert count(AppointmentRequest) == 2


# --------------------------------------------------------------------------- calls


def call(**overrides: Any) -> CallEventIn:
    fields: dict[str, Any] = {
        "call_sid": "CA" + "1" * 32,
        "from_number": PHONE,
        "to_number": "+19724995457",
        "direction": "inbound",
        "status": "completed",
        "started_at": NOW,
    }
    fields.update(overrides)
    return CallEventIn(**fields)


def test_a_call_gets_the_clinics_local_hour_and_weekday(app: Flask) -> None:
    # Sunday 1 November 2026, 07:30 UTC is 01:30 CST, after the clocks went back.
    result = receive_call_event(call(started_at=utc(2026, 11, 1, 7, 30)), lines=LINES)
    assert (result.call.local_hour, result.call.local_weekday) == (1, 6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"to_number": "+14155550100"}, "The number called +14155550100 is not one of the clinic's lines"),
        ({"to_number": "garbage"}, "is not one of the clinic's lines"),
        ({"direction": "outbound-api"}, "The calling number +19725550134 is not one of the clinic's lines"),
        ({"status": "exploded"}, "not one of Twilio's call statuses"),
        ({"direction": "sideways"}, "Direction must be inbound or outbound"),
    ],
)
def test_calls_intake_cannot_take_are_refused(app: Flask, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(IntakeRefused, match=re.escape(message)):
        receive_call_event(call(**overrides), lines=LINES)


def test_an_answered_inbound_call_is_the_first_contact(app: Flask) -> None:
    result = receive_call_event(call(answered=True, duration_seconds=300), lines=LINES)
    assert result.lead.first_contact_at == NOW
    assert result.lead.first_contact_due_at is None
    assert result.call.missed is False


def test_call_notes_are_tagged(app: Flask) -> None:
    result = receive_call_event(call(notes="pulled something lifting a box, low back"), lines=LINES)
    assert {"condition:muscle_strain", "region:lower"} <= set(tags(result.lead))


def test_manual_outbound_call_records_attempt_then_contact(
    app: Flask, make_user: Callable[..., User], make_lead: Callable[..., Lead]
) -> None:
    staff = make_user("front_desk")
    lead = make_lead(phone=PHONE, open_phone_key=PHONE)
    first = log_manual_call(direction="outbound", outcome="voicemail", lines=LINES, lead=lead, actor=staff)
    assert (lead.first_attempt_at, lead.first_contact_at) == (NOW, None)
    assert first.call.direction == "outbound" and first.call.from_number == "+19724995457"
    later = utc(2026, 3, 9, 16, 0)
    second = log_manual_call(
        direction="outbound",
        outcome="answered",
        lines=LINES,
        lead=lead,
        actor=staff,
        notes="Stiff neck, numbness in my left hand",
        started_at=later,
        now=later,
    )
    db.session.commit()
    assert (lead.first_attempt_at, lead.first_contact_at) == (NOW, later)
    assert (second.call.handled_by_id, second.call.answered) == (staff.id, True)
    assert "region:upper" in tags(lead)
    assert count(Task) == 0


def test_manual_inbound_missed_call_makes_a_task(app: Flask, make_user: Callable[..., User]) -> None:
    staff = make_user("front_desk")
    result = log_manual_call(direction="inbound", outcome="voicemail", lines=LINES, phone=PHONE, actor=staff)
    db.session.commit()
    assert result.created is True and result.lead.phone == PHONE
    assert (result.call.missed, result.task.kind, result.task.lead_id) == (True, "callback", result.lead.id)


def test_manual_outcomes_are_checked(app: Flask) -> None:
    with pytest.raises(IntakeRefused, match="Outcome must be one of"):
        log_manual_call(direction="outbound", outcome="shrug", lines=LINES, phone=PHONE)
    with pytest.raises(IntakeRefused, match="needs the number"):
        log_manual_call(direction="outbound", outcome="answered", lines=LINES)


def test_twilio_directions_map_to_inbound_and_outbound() -> None:
    assert intake._direction("outbound-dial") == intake._direction("outbound-api") == "outbound"
    assert intake._direction("Inbound") == "inbound"


def test_calls_are_upserted_by_call_sid(app: Flask) -> None:
    receive_call_event(call(status="ringing", sequence_number=0), lines=LINES)
    receive_call_event(call(status="no-answer", sequence_number=1), lines=LINES)
    receive_call_event(call(status="no-answer", sequence_number=1), lines=LINES)
    db.session.commit()
    assert count(Call) == 1 and count(Task) == 1 and count(Lead) == 1


def test_the_patients_physical_therapy_answer_fills_the_clinical_fact_but_never_overwrites_staffs(
    app: Flask,
) -> None:
    first = receive_web_request(web(tried_pt="did_not_help"))
    db.session.commit()
    assert first.lead.pt_helped is False  # the lead page then says "did not help"
    first.lead.pt_helped = True  # staff learned more on the phone
    db.session.commit()
    receive_web_request(web(tried_pt="did_not_help"))  # the same patient sends the form again
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(Lead, first.lead.id).pt_helped is True
    other = receive_web_request(web(tried_pt="ongoing", phone="(972) 555-0199", email="b@example.com"))
    db.session.commit()
    assert other.lead.pt_helped is None and other.lead.id != first.lead.id
