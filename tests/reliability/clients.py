"""HTTP clients for the reliability tests: staff signed in through the real form, the public
form with its token, and Twilio callbacks signed as Twilio signs them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import requests
from twilio.request_validator import RequestValidator

from tests.conftest import DEFAULT_PASSWORD

PUBLIC_BASE_URL = "http://crm.reliability.test"
TWILIO_TOKEN = "reliability-test-twilio-token"
MAIN_LINE = "+19724995457"
WEBHOOK_PATH = "/webhooks/twilio/voice-status"
FORM_PATH = "/request-appointment"
CSRF_RE = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')
FORM_TOKEN_RE = re.compile(r'name="form_token" type="hidden" value="([^"]+)"')
T0 = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)

# The server settings every reliability test uses: one clinic line, a known Twilio token, no
# minimum form-filling time and no practical rate limit (the load comes from one address).
SERVER_ENV = {
    "CLINIC_LINES": f"{MAIN_LINE}=main",
    "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    "PUBLIC_FORM_MIN_SECONDS": "0",
    "FORM_RATE_LIMIT": "1000000 per hour",
}


def phone(prefix: str, n: int) -> str:
    """Return a distinct, valid US number: ``phone("469555", 7)`` is +14695550007."""
    return f"+1{prefix}{n:04d}"


class Staff:
    """One staff member's browser: signed in through the real form, holding a CSRF token."""

    def __init__(self, url: str, email: str, password: str = DEFAULT_PASSWORD) -> None:
        self.url = url
        self.http = requests.Session()
        page = self.http.get(f"{url}/login", timeout=30).text
        response = self.http.post(
            f"{url}/login",
            data={"email": email, "password": password, "csrf_token": _match(CSRF_RE, page)},
            allow_redirects=False,
            timeout=30,
        )
        assert response.status_code == 302, response.text[:500]
        self.csrf = _match(CSRF_RE, self.http.get(f"{url}/leads", timeout=30).text)

    def post(self, path: str, data: dict[str, Any]) -> requests.Response:
        """Post a staff form with the CSRF token, not following the redirect."""
        return self.http.post(
            f"{self.url}{path}", data={**data, "csrf_token": self.csrf}, allow_redirects=False, timeout=60
        )

    def get(self, path: str, **params: Any) -> requests.Response:
        """Open a page."""
        return self.http.get(f"{self.url}{path}", params=params or None, timeout=60)

    def close(self) -> None:
        self.http.close()


def edit_values(lead: Any, version: int, **changes: Any) -> dict[str, Any]:
    """Return the lead page's edit form as the browser would post it, with ``changes`` typed in.

    Every field is sent with the lead's value, as the form shows it, so only the changed
    fields differ (a field left out would be read as cleared).
    """
    shown: dict[str, Any] = {
        "version": str(version),
        "first_name": lead.first_name or "",
        "last_name": lead.last_name or "",
        "phone": lead.phone or "",
    }
    for name in (
        "email",
        "date_of_birth",
        "preferred_contact",
        "preferred_time",
        "language",
        "insurance",
        "imaging_type",
        "imaging_date",
        "imaging_finding",
        "pt_weeks",
        "medications",
        "injections",
        "chiropractic",
    ):
        value = getattr(lead, name)
        shown[name] = "" if value is None else str(value)
    for name in (
        "consent_phone",
        "consent_sms",
        "consent_email",
        "consent_detailed_voicemail",
        "pt_helped",
        "conservative_care_helped",
    ):
        value = getattr(lead, name)
        shown[name] = "" if value is None else ("yes" if value else "no")
    return {**shown, **changes}


class PublicForm:
    """A patient's browser on the public form: one form token, reused (it needs no cookie)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.token = _match(FORM_TOKEN_RE, self.http.get(f"{url}{FORM_PATH}", timeout=30).text)

    def send(self, first: str, last: str, number: str, message: str, **extra: Any) -> requests.Response:
        """Post the form as a patient fills it in."""
        data = {
            "first_name": first,
            "last_name": last,
            "phone": number,
            "email": "",
            "message": message,
            "where_it_hurts": ["lower"],
            "side": ["left"],
            "tried_pt": "did_not_help",
            "red_flag_bladder": "no",
            "red_flag_weakness": "no",
            "preferred_time": "Morning",
            "language": "English",
            "consent_phone": "y",
            "website": "",
            "form_token": self.token,
            **extra,
        }
        return self.http.post(
            f"{self.url}{FORM_PATH}",
            data=data,
            headers={"Origin": self.url},
            allow_redirects=False,
            timeout=60,
        )

    def close(self) -> None:
        self.http.close()


def callback(
    sid: str, caller: str, status: str, sequence: int, duration: int = 0, *, at: datetime | None = None
) -> dict[str, str]:
    """Return a voice status callback as Twilio sends it.

    ``Timestamp`` is ``at``, or else a moment that moves with the sequence.
    """
    moment = at or T0 + timedelta(seconds=10 * sequence + duration)
    return {
        "AccountSid": "AC" + "0" * 32,
        "CallSid": sid,
        "From": caller,
        "To": MAIN_LINE,
        "Direction": "inbound",
        "CallStatus": status,
        "CallDuration": str(duration),
        "SequenceNumber": str(sequence),
        "Timestamp": format_datetime(moment),
        "ApiVersion": "2010-04-01",
    }


def send_callback(http: requests.Session, url: str, params: dict[str, str]) -> requests.Response:
    """Post a callback with the ``X-Twilio-Signature`` Twilio's RequestValidator computes."""
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC_BASE_URL + WEBHOOK_PATH, params)
    return http.post(
        f"{url}{WEBHOOK_PATH}", data=params, headers={"X-Twilio-Signature": signature}, timeout=60
    )


def _match(pattern: re.Pattern[str], html: str) -> str:
    found = pattern.search(html)
    assert found, f"no {pattern.pattern!r} in the page"
    return found.group(1)
