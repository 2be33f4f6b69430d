"""One intake for every channel: normalise, find the open lead or make one, store, tag, task.

The public form, the Twilio webhook, the CSV import, manual entry and the API all call the
functions here, so the duplicate rule, the tagging rule and the missed-call rule each live
in exactly one place. Functions add to the current transaction; the caller commits.

(Interface fixed first so that the form, the webhook and the API can be built against it;
the bodies are filled in by the intake work, issue 5.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from crm.models import AppointmentRequest, Call, Lead, Task

CONSENT_TEXT_VERSION = "2026-11-v1"


@dataclass
class ContactIn:
    """What a channel knows about the person: all optional but source."""

    source: str
    first_name: str = ""
    last_name: str = ""
    phone: str | None = None  # as typed; normalised here
    email: str | None = None
    date_of_birth: date | None = None
    preferred_contact: str | None = None
    preferred_time: str | None = None
    language: str | None = None
    campaign: str | None = None
    landing_page: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    referring_provider: str | None = None
    insurance: str | None = None
    consent: dict[str, bool | None] = field(default_factory=dict)  # phone/sms/email/detailed_voicemail
    message: str | None = None  # the patient's own words: run through the tagger


@dataclass
class WebRequestIn:
    """One submission of the public form, with its answers kept as submitted."""

    contact: ContactIn
    where_it_hurts: list[str] = field(default_factory=list)  # "upper", "mid", "lower"
    side: list[str] = field(default_factory=list)  # "left", "right"
    tried_pt: str | None = None  # "no", "helped", "did_not_help", "ongoing"
    red_flag_bladder: bool = False
    red_flag_weakness: bool = False
    ip_address: str | None = None
    submitted_at: datetime | None = None


@dataclass
class CallEventIn:
    """One status callback (or manual/API entry) for a call."""

    call_sid: str | None
    from_number: str | None
    to_number: str | None
    direction: str  # inbound | outbound (Twilio's outbound-api / outbound-dial → outbound)
    status: str
    sequence_number: int = 0
    started_at: datetime | None = None
    duration_seconds: int = 0
    recording_url: str | None = None
    parent_call_sid: str | None = None
    notes: str | None = None
    handled_by_id: int | None = None


@dataclass
class IntakeResult:
    """What intake did: the lead (if any), whether it is new, and what else it made."""

    lead: Lead | None
    created: bool
    request: AppointmentRequest | None = None
    call: Call | None = None
    task: Task | None = None
    possible_duplicate_of: Lead | None = None
    details: dict[str, Any] = field(default_factory=dict)


class IntakeRefused(ValueError):
    """Input intake cannot take (e.g. a call on a line that is not the clinic's)."""
