"""Staff edits of a lead's contact details, consent and clinical facts, without lost updates.

``update_lead`` refuses a save made from an outdated copy of the lead (optimistic locking on
``Lead.version``) and says, field by field, what the other person changed, so nothing is
silently overwritten (PRODUCT §4). Each save writes one audit event naming the fields changed
(names only: audit rows never hold patient words) and the version it produced; that trail is
also how a refused save learns which fields the other person changed. Consent changes add a
``Consent`` row so their history keeps who and when. Nothing here reads the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.exc import StaleDataError

from crm import audit, clock, phones
from crm.extensions import db
from crm.models import AuditEvent, Consent, Lead, LeadSearchTerm, Note, User
from crm.settings import clinic_today
from crm.text import search_terms

CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "phone",
    "email",
    "date_of_birth",
    "preferred_contact",
    "preferred_time",
    "language",
    "insurance",
)
CONSENT_FIELDS = ("consent_phone", "consent_sms", "consent_email", "consent_detailed_voicemail")
CLINICAL_FIELDS = (
    "imaging_type",
    "imaging_date",
    "imaging_finding",
    "pt_weeks",
    "pt_helped",
    "medications",
    "injections",
    "chiropractic",
    "conservative_care_helped",
)
EDITABLE_FIELDS = CONTACT_FIELDS + CONSENT_FIELDS + CLINICAL_FIELDS

FIELD_LABELS = {
    "first_name": "First name",
    "last_name": "Last name",
    "phone": "Phone",
    "email": "Email",
    "date_of_birth": "Date of birth",
    "preferred_contact": "Preferred contact",
    "preferred_time": "Best time to call",
    "language": "Language",
    "insurance": "Insurance",
    "consent_phone": "Consent to phone calls",
    "consent_sms": "Consent to text messages",
    "consent_email": "Consent to email",
    "consent_detailed_voicemail": "OK to leave a detailed voicemail",
    "imaging_type": "Imaging type",
    "imaging_date": "Imaging date",
    "imaging_finding": "Imaging finding",
    "pt_weeks": "Physical therapy (weeks)",
    "pt_helped": "Physical therapy helped",
    "medications": "Medications",
    "injections": "Injections",
    "chiropractic": "Chiropractic",
    "conservative_care_helped": "Conservative care helped",
}

EDIT_ACTION = "lead_edit"


class EditRefused(ValueError):
    """An edit the data rules do not allow; the message says why, for the person."""


class StaleVersion(Exception):
    """The lead changed since the editor loaded it; nothing was saved.

    ``changed_fields_by_other`` maps each field another person changed since that version to
    ``{"value": <value now>, "by": <their name>}``. It is empty when the lead changed in other
    ways (a stage move, a new tag): the save is refused all the same.
    """

    def __init__(self, changed_fields_by_other: dict[str, dict[str, Any]], current_version: int) -> None:
        super().__init__("The lead was changed by someone else since you opened it.")
        self.changed_fields_by_other = changed_fields_by_other
        self.current_version = current_version


@dataclass(frozen=True)
class FieldChange:
    """What another person changed: the field, its value now, and who."""

    field: str
    label: str
    value: Any
    by: str


BIRTH_DATE_RANGE = "The date of birth must be between 1900 and today."


def plausible_birth_date(day: date) -> bool:
    """Tell whether ``day`` can be a patient's date of birth: from 1900 to today, clinic time.

    A later one is a slip of the year picker; the form, the API and the CSV import all ask here.
    """
    return date(1900, 1, 1) <= day <= clinic_today(clock.now())


def update_lead(
    lead: Lead,
    changes: dict[str, Any],
    *,
    expected_version: int,
    actor: User | None,
    ip: str | None = None,
    via: str = "web",
) -> list[str]:
    """Apply an editor's values to a lead saved at ``expected_version``; return the fields changed.

    :raises StaleVersion: when the lead is no longer at ``expected_version``.
    :raises EditRefused: when a value breaks a data rule (a phone held by another open lead, a
        date of birth in the future).
    """
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise EditRefused(f"These fields can't be edited here: {', '.join(sorted(unknown))}.")
    if lead.version != expected_version:
        raise StaleVersion(changed_since(lead, expected_version), lead.version)
    changed = [name for name in EDITABLE_FIELDS if name in changes and getattr(lead, name) != changes[name]]
    if not changed:
        return []
    if (
        "date_of_birth" in changed
        and changes["date_of_birth"]
        and not plausible_birth_date(changes["date_of_birth"])
    ):
        raise EditRefused(BIRTH_DATE_RANGE)
    now = clock.now()
    if "phone" in changed:
        _set_phone(lead, changes["phone"])
    for name in changed:
        if name != "phone":
            setattr(lead, name, changes[name])
        if name in CONSENT_FIELDS and changes[name] is not None:
            db.session.add(
                Consent(
                    lead_id=lead.id,
                    channel=name.removeprefix("consent_"),
                    granted=bool(changes[name]),
                    at=now,
                    method="staff" if via == "web" else via,
                    recorded_by_id=actor.id if actor else None,
                    ip_address=ip,
                )
            )
    if "first_name" in changed or "last_name" in changed:
        _replace_search_terms(lead)
    lead.last_activity_at = now
    try:
        db.session.flush()  # the version check in the UPDATE catches a save that raced ours
    except StaleDataError as error:
        raise StaleVersion({}, expected_version + 1) from error
    audit.record(
        EDIT_ACTION,
        user_id=actor.id if actor else None,
        lead_id=lead.id,
        detail={"fields": changed, "version": lead.version},
        ip=ip,
        via=via,
    )
    return changed


def changed_since(lead: Lead, version: int) -> dict[str, dict[str, Any]]:
    """Say which editable fields others changed after ``version``, with their values now and who."""
    events = db.session.execute(
        sa.select(AuditEvent.detail, User.name)
        .outerjoin(User, User.id == AuditEvent.user_id)
        .where(AuditEvent.lead_id == lead.id, AuditEvent.action == EDIT_ACTION)
        .order_by(AuditEvent.id)
    ).all()
    result: dict[str, dict[str, Any]] = {}
    for detail, name in events:
        if not detail or int(detail.get("version", 0)) <= version:
            continue
        for field in detail.get("fields", []):
            if field in EDITABLE_FIELDS:
                result[field] = {"value": getattr(lead, field), "by": name or "the system"}
    return result


def describe_changes(changed: dict[str, dict[str, Any]]) -> list[FieldChange]:
    """Turn ``StaleVersion.changed_fields_by_other`` into rows a page can show."""
    return [
        FieldChange(field, FIELD_LABELS.get(field, field), show_value(field, info["value"]), info["by"])
        for field, info in changed.items()
    ]


def show_value(field: str, value: Any) -> str:
    """Show a field's value the way staff read it."""
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field == "phone":
        return phones.display(value)
    if isinstance(value, datetime | date):
        return value.strftime("%b %-d, %Y")
    return str(value)


def _set_phone(lead: Lead, phone: str | None) -> None:
    """Change the phone and what is derived from it, keeping one open lead per phone."""
    if phone and lead.is_open and lead.possible_duplicate_of_id is None:
        holder = db.session.scalar(sa.select(Lead.id).where(Lead.open_phone_key == phone, Lead.id != lead.id))
        if holder is not None:
            raise EditRefused("Another open lead already has this phone number; merge the two leads instead.")
        lead.open_phone_key = phone
    elif not phone:
        lead.open_phone_key = None
    lead.phone = phone
    lead.phone_last7 = phones.last_digits(phone, 7)
    lead.phone_last4 = phones.last_digits(phone, 4)


def _replace_search_terms(lead: Lead) -> None:
    """Keep the folded name words search finds in step with the name."""
    db.session.execute(sa.delete(LeadSearchTerm).where(LeadSearchTerm.lead_id == lead.id))
    for term in search_terms(lead.first_name, lead.last_name):
        db.session.add(LeadSearchTerm(lead_id=lead.id, term=term))


def add_note(lead: Lead, body: str, *, actor: User, ip: str | None = None, via: str = "web") -> Note:
    """Add a staff note to a lead's timeline.

    :raises EditRefused: when the note is empty.
    """
    text = body.strip()
    if not text:
        raise EditRefused("Write the note first.")
    now = clock.now()
    note = Note(lead_id=lead.id, author_id=actor.id, body=text, created_at=now)
    db.session.add(note)
    lead.last_activity_at = now
    db.session.flush()
    audit.record("lead_note", user_id=actor.id, lead_id=lead.id, detail={"note_id": note.id}, ip=ip, via=via)
    return note


def take_referral(lead: Lead, *, surgeon: User, ip: str | None = None, via: str = "web") -> None:
    """Assign an unassigned referral to the surgeon who takes it.

    :raises EditRefused: when the lead is not in review, already has a surgeon, or the user is none.
    """
    if surgeon.role != "surgeon":
        raise EditRefused("Only a surgeon can take a referral.")
    if lead.stage != "surgical_review":
        raise EditRefused("Only a lead in surgical review can be taken.")
    if lead.surgeon_id is not None:
        if lead.surgeon_id == surgeon.id:
            raise EditRefused("This referral is already yours.")
        raise EditRefused("Another surgeon has already taken this referral.")
    lead.surgeon_id = surgeon.id
    lead.last_activity_at = clock.now()
    audit.record(
        "referral_take",
        user_id=surgeon.id,
        lead_id=lead.id,
        detail={"surgeon_id": surgeon.id},
        ip=ip,
        via=via,
    )
