"""Urgent alerts: sent after commit, outside business hours, with no patient data in them."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask

import config
from crm import alerts
from crm.extensions import db
from crm.intake import ContactIn, WebRequestIn, receive_web_request
from crm.models import Lead
from tests.conftest import utc

NIGHT = utc(2026, 3, 10, 4, 0)  # Monday 23:00 in Chicago
OPEN = utc(2026, 3, 9, 15, 0)  # Monday 10:00 in Chicago
PATIENT_WORDS = ("Rosalind", "Okonkwo-Baptiste", "5550177", "555-0177", "bladder", "rosalind@", "red_flag")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Inbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:  # aiosmtpd calls it by this name
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 Message accepted for delivery"


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1, for this test only."""
    handler = Inbox()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def app_config(app_config: config.TestConfig, inbox: tuple[Inbox, int]) -> config.TestConfig:
    app_config.SMTP_URL = f"smtp://127.0.0.1:{inbox[1]}"
    app_config.MAIL_FROM = "crm@clinic.test"
    return app_config


def urgent_request() -> WebRequestIn:
    return WebRequestIn(
        contact=ContactIn(
            source="web_form",
            first_name="Rosalind",
            last_name="Okonkwo-Baptiste",
            phone="972-555-0177",
            email="rosalind@example.com",
            consent={"phone": True},
            message="Since Monday I can't control my bladder and my legs feel numb",
        ),
        red_flag_bladder=True,
    )


def body(message: Message) -> str:
    return "".join(
        str(part.get_payload(decode=True), "utf-8") for part in message.walk() if not part.is_multipart()
    )


def assert_no_patient_data(text: str) -> None:
    for word in PATIENT_WORDS:
        assert word.lower() not in text.lower(), word


def test_it_emails_the_on_call_address_with_only_the_link(app: Flask, inbox: tuple[Inbox, int]) -> None:
    assert alerts.send_urgent_alert(42) is True
    [(sender, recipients, message)] = inbox[0].messages
    assert (sender, recipients) == ("crm@clinic.test", ["oncall@clinic.test"])
    assert message["Subject"] == "Urgent lead waiting"
    text = body(message)
    assert "An urgent lead is waiting" in text
    assert "http://crm.test/leads/42" in text


def test_an_urgent_request_at_night_alerts_after_commit_without_patient_data(
    app: Flask, inbox: tuple[Inbox, int], frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(NIGHT)
    result = receive_web_request(urgent_request())
    assert result.details["alert"] is True
    assert inbox[0].messages == []  # nothing leaves before the lead is saved
    db.session.commit()
    [(_, _, message)] = inbox[0].messages
    lead = db.session.get(Lead, result.lead.id)
    assert lead is not None and lead.urgent
    text = body(message) + str(message["Subject"]) + str(message.items())
    assert f"http://crm.test/leads/{lead.id}" in text
    assert_no_patient_data(text)


def test_a_rolled_back_intake_sends_nothing(
    app: Flask, inbox: tuple[Inbox, int], frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(NIGHT)
    receive_web_request(urgent_request())
    db.session.rollback()
    db.session.commit()
    assert inbox[0].messages == []


def test_one_intake_sends_one_alert(
    app: Flask, inbox: tuple[Inbox, int], frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(NIGHT)
    receive_web_request(urgent_request())
    db.session.commit()
    db.session.commit()
    assert len(inbox[0].messages) == 1


def test_no_alert_in_business_hours(
    app: Flask, inbox: tuple[Inbox, int], frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(OPEN)
    receive_web_request(urgent_request())
    db.session.commit()
    assert inbox[0].messages == []


def test_no_alert_for_a_lead_that_is_not_urgent(
    app: Flask, inbox: tuple[Inbox, int], frozen_clock: Callable[[datetime], None]
) -> None:
    frozen_clock(NIGHT)
    request = urgent_request()
    request.red_flag_bladder = False
    request.contact.message = "My low back has been stiff for a week"
    receive_web_request(request)
    db.session.commit()
    assert inbox[0].messages == []


def test_a_failure_is_logged_without_patient_data_and_never_raises(
    app: Flask,
    caplog: pytest.LogCaptureFixture,
    frozen_clock: Callable[[datetime], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # migrations/env.py's fileConfig() disables every logger that exists when the test database
    # is migrated in this process; the alert's logger must be live to be checked.
    monkeypatch.setattr(alerts.log, "disabled", False)
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nobody listens there
    frozen_clock(NIGHT)
    with caplog.at_level(logging.INFO):
        result = receive_web_request(urgent_request())
        db.session.commit()
    assert result.lead is not None and result.lead.id is not None
    assert "urgent alert for lead" in caplog.text and "not sent" in caplog.text
    assert_no_patient_data(caplog.text)


def test_without_smtp_it_does_nothing(app: Flask) -> None:
    app.config["SMTP_URL"] = ""
    assert alerts.send_urgent_alert(7) is False


def test_the_message_is_built_from_fixed_words_only() -> None:
    settings = alerts.MailSettings(
        smtp_url="smtp://x",
        oncall_email="oncall@clinic.test",
        mail_from="crm@clinic.test",
        public_base_url="",
    )
    message = alerts.build_message(9, "https://crm.example/leads/9", settings)
    assert (
        message.get_content().strip().splitlines()[0] == "An urgent lead is waiting in the Spine Center CRM."
    )
