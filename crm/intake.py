"""One intake for every channel: normalise, find the open lead or make one, store, tag, task.

The public form, the Twilio webhook, the CSV import, manual entry and the API all call the
functions here, so the duplicate rule, the tagging rule and the missed-call rule each live
in exactly one place. Functions add to the current transaction; the caller commits (and
may retry the whole call on ``IntegrityError`` / ``StaleDataError`` under heavy concurrency).

Rules kept here (PRODUCT §2, §3, §4, §6):

- **Duplicates.** An open lead (not closed, not merged) with the same E.164 phone or the
  same lower-cased email takes the contact when the names agree (same last name, same first
  name or initial, ignoring case and accents), when the contact gives no name (it joins the
  open lead with that phone that was active most recently) or when the lead itself has no
  name yet (a caller who now sends the form). A different name makes a new lead marked
  "possible duplicate of" the lead holding that phone, which keeps the phone key.
- **One lead per new caller, even at the same instant.** ``Lead.open_phone_key`` is
  UNIQUE: a lead is inserted inside a SAVEPOINT, and when another transaction won the race
  the savepoint is rolled back and the contact attaches to the winner.
- **Calls are upserted by CallSid** with ``INSERT … ON CONFLICT``: the highest
  SequenceNumber sets the status, a final status is never left, and identity columns are
  filled once. A leg (``ParentCallSid``) only marks its parent answered.
- **Missed call** (inbound, status no-answer/busy/failed/canceled, or voicemail with no
  staff leg answering): one call-back task per call, by the unique (call_id, kind).
- **First contact** (an answered inbound call at its start, an answered outbound call)
  sets ``first_contact_at`` once and clears ``first_contact_due_at`` (the model's rule: the
  queue sorts overdue leads on that column); **first attempt** is the first outbound call.
- **Urgent alerts** go out after commit (``crm.alerts.alert_after_commit``) when a lead turns
  urgent, or sends a new red flag, outside business hours; ``details["alert"]`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from crm import alerts, clock, phones, rollups, tagging
from crm.business_hours import BusinessCalendar, add_business_minutes, load_calendar
from crm.extensions import db
from crm.models import (
    CALL_STATUSES,
    CONTACT_METHODS,
    FINAL_CALL_STATUSES,
    MISSED_CALL_STATUSES,
    SOURCES,
    AppointmentRequest,
    Call,
    Consent,
    Lead,
    LeadSearchTerm,
    LeadTag,
    ReferringPractice,
    StageChange,
    TagChange,
    Task,
    User,
)
from crm.queue import set_calling
from crm.settings import get_settings
from crm.text import name_terms, search_terms
from crm.triage import ALL_TAGS, is_urgent, tag_complaint

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
    # When the contact reached the clinic, for ``receive_contacts_bulk`` (None: its ``now``).
    arrived_at: datetime | None = None


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
    # None: decided by the call's legs (the webhook). True/False: a person or a phone
    # system says whether staff spoke with the caller (manual log, API, import).
    answered: bool | None = None


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


# Twilio's placeholders for a withheld caller, and words phone systems use for one.
WITHHELD_WORDS = frozenset({"anonymous", "restricted", "unknown", "private", "unavailable", "blocked"})
WITHHELD_NUMBERS = frozenset({"266696687", "7378742833", "2562533", "86282452253", "8656696"})
ANSWERED_LEG_STATUSES = ("in-progress", "completed")
FORM_REGIONS = {"upper", "mid", "lower"}
FORM_SIDES = {"left", "right"}
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_MESSAGE_CHARS = 20_000
CONSENT_KEYS = ("phone", "sms", "email", "detailed_voicemail")
# manual outcome → (Twilio status, staff spoke with the patient)
MANUAL_OUTCOMES: dict[str, tuple[str, bool]] = {
    "answered": ("completed", True),
    "no_answer": ("no-answer", False),
    "busy": ("busy", False),
    "voicemail": ("completed", False),
}


# --------------------------------------------------------------------------- small helpers


def _clean(text: str | None, limit: int) -> str | None:
    """Strip control characters (PostgreSQL refuses NUL) and cut to the column's size."""
    if text is None:
        return None
    value = _CONTROL.sub("", str(text)).strip()[:limit]
    return value or None


def _message(text: str | None) -> str | None:
    """Keep a patient's message as written, minus what no database can store."""
    if not text:
        return None
    return text.replace("\x00", "")[:MAX_MESSAGE_CHARS] or None


def _email(text: str | None) -> str | None:
    value = _clean(text, 254)
    return value.lower() if value else None


def _is_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _insert(model: type[Any]) -> Any:
    """Return the dialect's INSERT (with ON CONFLICT support) for a model."""
    return (postgresql.insert if _is_postgres() else sqlite.insert)(model)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _first_words(text: str | None) -> tuple[str, ...]:
    return tuple(name_terms(text))


def names_agree(lead: Lead, first_name: str | None, last_name: str | None) -> bool:
    """Tell whether a contact's name matches a lead's: same last name, same first name or initial.

    Case and accents are ignored; a lead with no name yet (a caller) agrees with any name.
    """
    lead_first, lead_last = _first_words(lead.first_name), _first_words(lead.last_name)
    new_first, new_last = _first_words(first_name), _first_words(last_name)
    if not lead_first and not lead_last:
        return True
    if lead_last and new_last and lead_last != new_last:
        return False
    if not lead_last or not new_last:  # one side gave no last name: the first names must match fully
        return bool(lead_first) and lead_first == new_first
    if not lead_first or not new_first:
        return True
    a, b = lead_first[0], new_first[0]
    return a == b or (min(len(a), len(b)) == 1 and a[0] == b[0])


def _has_name(first_name: str | None, last_name: str | None) -> bool:
    return bool(name_terms(first_name, last_name))


def _caller_number(raw: str | None) -> str | None:
    """Return a caller's E.164 number, or None when it is withheld or unreadable."""
    if not raw:
        return None
    text = raw.strip()
    if text.lower() in WITHHELD_WORDS or phones.digits(text) in WITHHELD_NUMBERS:
        return None
    if text.lower().startswith(("client:", "sip:")):
        return None
    return phones.normalize(text)


def _calendar(calendar: BusinessCalendar | None) -> BusinessCalendar:
    return calendar if calendar is not None else load_calendar()


# --------------------------------------------------------------------------- leads


def _open_leads(phone: str | None, email: str | None) -> list[Lead]:
    """Load the open leads with this phone or email, locked against a concurrent change."""
    conditions = []
    if phone:
        conditions.append(Lead.phone == phone)
    if email:
        conditions.append(Lead.email == email)
    if not conditions:
        return []
    return _locked_open_leads(sa.or_(*conditions), limit=50)


def _locked_open_leads(condition: Any, *, limit: int | None) -> list[Lead]:
    query = (
        sa.select(Lead)
        .where(condition, Lead.stage != "closed", Lead.merged_into_id.is_(None))
        .order_by(Lead.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if _is_postgres():
        query = query.with_for_update(of=Lead)
    return list(db.session.scalars(query))


def _candidates_of(contacts: list[tuple[str | None, str | None]]) -> list[list[Lead]]:
    """``_open_leads`` for each (phone, email) pair, in one query (locked the same way)."""
    wanted_phones = sorted({phone for phone, _ in contacts if phone})
    wanted_emails = sorted({email for _, email in contacts if email})
    conditions = [Lead.phone.in_(wanted_phones)] if wanted_phones else []
    conditions += [Lead.email.in_(wanted_emails)] if wanted_emails else []
    found = _locked_open_leads(sa.or_(*conditions), limit=None) if conditions else []
    return [
        [lead for lead in found if (phone and lead.phone == phone) or (email and lead.email == email)][:50]
        for phone, email in contacts
    ]


def _most_recent(leads: Iterable[Lead]) -> Lead | None:
    return max(leads, key=lambda lead: (lead.last_activity_at, lead.id), default=None)


@dataclass
class _Match:
    attach_to: Lead | None = None
    duplicate_of: Lead | None = None


def _match(
    contact: ContactIn, phone: str | None, email: str | None, candidates: list[Lead] | None = None
) -> _Match:
    """Apply PRODUCT §2's duplicate rule to the open leads sharing the phone or email.

    ``candidates``: those leads, when the caller has just read them (``_candidates_of``).
    """
    if candidates is None:
        candidates = _open_leads(phone, email)
    if not candidates:
        return _Match()
    by_phone = [lead for lead in candidates if phone and lead.phone == phone]
    if not _has_name(contact.first_name, contact.last_name):
        return _Match(attach_to=_most_recent(by_phone or candidates))
    agreeing = [lead for lead in candidates if names_agree(lead, contact.first_name, contact.last_name)]
    if agreeing:
        # Prefer the lead that shares the phone, then the most recently active.
        return _Match(attach_to=_most_recent([lead for lead in agreeing if lead in by_phone] or agreeing))
    holder = next((lead for lead in by_phone if lead.open_phone_key == phone), None)
    return _Match(duplicate_of=holder or _most_recent(by_phone or candidates))


def _try_insert(lead: Lead) -> bool:
    """Insert a lead inside a SAVEPOINT; False when another lead holds its phone key."""
    db.session.flush()  # nothing else of this transaction may ride on the savepoint
    try:
        with db.session.begin_nested():
            db.session.add(lead)
            db.session.flush()
    except IntegrityError:
        return False
    return True


def _claim_phone(lead: Lead, phone: str) -> None:
    """Give a lead that had no phone this one; it keeps the phone key unless another lead holds it."""
    lead.phone = phone
    lead.phone_last7 = phones.last_digits(phone, 7)
    lead.phone_last4 = phones.last_digits(phone, 4)
    if lead.possible_duplicate_of_id is not None:
        return
    db.session.flush()
    try:
        with db.session.begin_nested():
            lead.open_phone_key = phone
            db.session.flush()
    except IntegrityError:
        lead.open_phone_key = None


def _consents(lead: Lead, contact: ContactIn, *, now: datetime, method: str, ip: str | None) -> None:
    """Record each consent the contact states (the latest statement is the one in force)."""
    for channel, granted in contact.consent.items():
        if granted is None or channel not in CONSENT_KEYS:
            continue
        setattr(lead, f"consent_{channel}", bool(granted))
        db.session.add(
            Consent(
                lead_id=lead.id,
                channel=channel,
                granted=bool(granted),
                at=now,
                method=method,
                text_version=CONSENT_TEXT_VERSION if method == "web_form" else None,
                ip_address=_clean(ip, 64),
            )
        )


def _search_terms(lead: Lead, words: Iterable[str]) -> None:
    words = list(words)
    if not words:  # a caller with no name yet
        return
    existing = set(
        db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == lead.id))
    )
    for word in words:
        if word not in existing:
            db.session.add(LeadSearchTerm(lead_id=lead.id, term=word))
            existing.add(word)


def _referring_practice_id(name: str | None) -> int | None:
    name = _clean(name, 200)
    if not name:
        return None
    return db.session.scalar(
        sa.select(ReferringPractice.id).where(sa.func.lower(ReferringPractice.name) == name.lower()).limit(1)
    )


def _round_robin_owner() -> int | None:
    """Pick the next active front-desk user after the last one given a lead, when the setting says so."""
    settings = get_settings()
    if not settings.round_robin:
        return None
    ids = list(
        db.session.scalars(
            sa.select(User.id).where(User.role == "front_desk", User.active.is_(True)).order_by(User.id)
        )
    )
    if not ids:
        return None
    last = settings.last_round_robin_user_id
    chosen = next((user_id for user_id in ids if last is None or user_id > last), ids[0])
    settings.last_round_robin_user_id = chosen
    return chosen


def _new_lead(contact: ContactIn, phone: str | None, email: str | None, now: datetime) -> Lead:
    return Lead(
        first_name=_clean(contact.first_name, 100) or "",
        last_name=_clean(contact.last_name, 100) or "",
        phone=phone,
        phone_last7=phones.last_digits(phone, 7),
        phone_last4=phones.last_digits(phone, 4),
        email=email,
        date_of_birth=contact.date_of_birth,
        preferred_contact=contact.preferred_contact if contact.preferred_contact in CONTACT_METHODS else None,
        preferred_time=_clean(contact.preferred_time, 100),
        language=_clean(contact.language, 40),
        source=contact.source,
        campaign=_clean(contact.campaign, 120),
        landing_page=_clean(contact.landing_page, 500),
        referrer=_clean(contact.referrer, 500),
        utm_source=_clean(contact.utm_source, 120),
        utm_medium=_clean(contact.utm_medium, 120),
        utm_campaign=_clean(contact.utm_campaign, 120),
        insurance=_clean(contact.insurance, 120),
        stage="new",
        stage_entered_at=now,
        in_queue=True,
        created_at=now,
        updated_at=now,
        last_activity_at=now,
    )


def _update_attached(
    lead: Lead, contact: ContactIn, phone: str | None, email: str | None, now: datetime
) -> None:
    """Fill what the open lead lacks and take the contact's latest preferences."""
    if not _first_words(lead.first_name) and not _first_words(lead.last_name):
        lead.first_name = _clean(contact.first_name, 100) or ""
        lead.last_name = _clean(contact.last_name, 100) or ""
        _search_terms(lead, search_terms(lead.first_name, lead.last_name))
    if email and not lead.email:
        lead.email = email
    if phone and not lead.phone:
        _claim_phone(lead, phone)
    if contact.date_of_birth and not lead.date_of_birth:
        lead.date_of_birth = contact.date_of_birth
    if contact.preferred_contact in CONTACT_METHODS:
        lead.preferred_contact = contact.preferred_contact
    lead.preferred_time = _clean(contact.preferred_time, 100) or lead.preferred_time
    lead.language = _clean(contact.language, 40) or lead.language
    lead.insurance = lead.insurance or _clean(contact.insurance, 120)
    lead.last_activity_at = _later(lead.last_activity_at, now)


def find_or_create_lead(
    contact: ContactIn,
    *,
    now: datetime,
    ip_address: str | None = None,
    calendar: BusinessCalendar | None = None,
    candidates: list[Lead] | None = None,
) -> IntakeResult:
    """Attach a contact to its open lead, or make a new lead (PRODUCT §2's duplicate rule).

    ``candidates``: the open leads sharing its phone or email, locked, when the caller (bulk
    intake) has just read them for many contacts at once.

    :raises IntakeRefused: for an unknown source.
    """
    if contact.source not in SOURCES:
        raise IntakeRefused(f"“{contact.source}” is not a lead source.")
    phone = phones.normalize(_clean(contact.phone, 64))
    email = _email(contact.email)
    cal = _calendar(calendar)
    for _ in range(3):  # a lost race on the phone key means: look again, the winner is there now
        match = _match(contact, phone, email, candidates)
        candidates = None  # a lost race: read them again
        if match.attach_to is not None:
            lead = match.attach_to
            _update_attached(lead, contact, phone, email, now)
            _consents(lead, contact, now=now, method=contact.source, ip=ip_address)
            result = IntakeResult(lead=lead, created=False, details={"was_urgent": lead.urgent})
            break
        lead = _new_lead(contact, phone, email, now)
        if match.duplicate_of is not None:
            lead.possible_duplicate_of_id = match.duplicate_of.id
        else:
            lead.open_phone_key = phone
        lead.first_contact_due_at = add_business_minutes(now, cal.target_minutes, cal)
        lead.referring_practice_id = _referring_practice_id(contact.referring_provider)
        if _try_insert(lead):
            _after_insert(lead, contact, now=now, ip=ip_address)
            result = IntakeResult(
                lead=lead,
                created=True,
                possible_duplicate_of=match.duplicate_of,
                details={"was_urgent": False},
            )
            break
    else:  # pragma: no cover - three lost races in a row
        raise IntegrityError("lead intake kept losing the phone-key race", None, Exception("retry"))
    result.details["message_tags"] = _tag_message(lead, contact.message, now=now, cal=cal)
    return result


# --------------------------------------------------------------------------- many contacts at once


@dataclass(frozen=True)
class BulkRow:
    """What bulk intake did with one contact: its lead, or intake's reason for refusing it."""

    lead_id: int | None
    created: bool
    possible_duplicate: bool = False
    refused: str | None = None


def _open_keys(columns: tuple[Any, ...], values: set[str]) -> set[str]:
    """Return which of these phones or emails an open lead already has in any of ``columns``
    (one statement: a UNION of one indexed lookup per column)."""
    if not values:
        return set()
    if _is_postgres():
        # One array parameter joined by index: psycopg prepares a repeated statement, and a
        # generic plan of ``IN ($1 … $1000)`` tests every row against every value (quadratic).
        keys = sa.bindparam("keys", sorted(values), type_=postgresql.ARRAY(sa.String))
        wanted = sa.func.unnest(keys).table_valued("key").render_derived()
        lookups = [sa.select(column).join(wanted, column == wanted.c.key) for column in columns]
    else:
        lookups = [sa.select(column).where(column.in_(values)) for column in columns]
    lookups = [q.where(Lead.stage != "closed", Lead.merged_into_id.is_(None)) for q in lookups]
    query = sa.union(*lookups) if len(lookups) > 1 else lookups[0].distinct()
    return set(db.session.scalars(query))


def _lead_row(lead: Lead) -> dict[str, Any]:
    """The column values of a lead built by ``_new_lead`` (unset columns keep their defaults)."""
    columns = Lead.__table__.columns
    return {c.key: getattr(lead, c.key) for c in columns if c.key in lead.__dict__ and c.key != "id"}


def receive_contacts_bulk(
    contacts: list[ContactIn],
    *,
    now: datetime,
    calendar: BusinessCalendar | None = None,
    guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> list[BulkRow]:
    """Take many contacts (a CSV import's batch) with the same rules as ``find_or_create_lead``.

    A contact whose phone and email no open lead has, and no earlier contact of the batch
    shares, would make a plain new lead: those leads, their first stage change, search terms
    and tags are written with a few multi-row INSERTs (one calendar, one tagger call per
    distinct message). Every other contact — one that may attach or be a possible
    duplicate, gives consent, names a referring practice or arrives while round-robin
    assignment is on — goes through ``find_or_create_lead`` afterwards, in order, each
    inside ``guard()`` (a SAVEPOINT when the caller skips refused rows). If a concurrent
    intake took one of the phones meanwhile, the whole batch goes the per-row way.
    """
    cal = _calendar(calendar)
    keys = [(phones.normalize(_clean(c.phone, 64)), _email(c.email)) for c in contacts]
    taken_phones = _open_keys((Lead.phone, Lead.open_phone_key), {p for p, _ in keys if p})
    taken_emails = _open_keys((Lead.email,), {e for _, e in keys if e})
    round_robin = get_settings().round_robin
    fresh: list[int] = []
    first: list[int] = []  # not plain, and neither its phone nor its email is an earlier contact's
    seen: set[str] = set()
    for index, (contact, (phone, email)) in enumerate(zip(contacts, keys, strict=True)):
        plain = (
            contact.source in SOURCES
            and not round_robin
            and not any(v is not None for v in contact.consent.values())
            and not _clean(contact.referring_provider, 200)
            and phone not in taken_phones
            and email not in taken_emails
        )
        if plain:
            fresh.append(index)
        elif contact.source in SOURCES and not ({phone, email} & seen):
            first.append(index)
        if phone:  # a later contact with this phone or email may attach: per-row rule
            taken_phones.add(phone)
            seen.add(phone)
        if email:
            taken_emails.add(email)
            seen.add(email)
    results: dict[int, BulkRow] = {}
    if fresh:
        try:
            with db.session.begin_nested():
                results = _insert_new_leads([(i, contacts[i], *keys[i]) for i in fresh], now=now, cal=cal)
        except IntegrityError:  # another intake took a phone meanwhile: let the per-row rule decide
            results = {}
    # The open leads of the contacts that go the per-row way, read at once; a contact sharing a
    # phone or email with an earlier one reads them again (that one may have changed them).
    candidates = dict(zip(first, _candidates_of([keys[i] for i in first]), strict=True)) if first else {}
    for index, contact in enumerate(contacts):
        if index in results:
            continue
        try:
            with guard():
                found = find_or_create_lead(
                    contact, now=contact.arrived_at or now, calendar=cal, candidates=candidates.get(index)
                )
        except IntakeRefused as error:
            results[index] = BulkRow(lead_id=None, created=False, refused=str(error))
            continue
        assert found.lead is not None
        results[index] = BulkRow(
            lead_id=found.lead.id,
            created=found.created,
            possible_duplicate=found.possible_duplicate_of is not None,
        )
    return [results[index] for index in range(len(contacts))]


def _insert_new_leads(
    rows: list[tuple[int, ContactIn, str | None, str | None]], *, now: datetime, cal: BusinessCalendar
) -> dict[int, BulkRow]:
    """Insert new leads with their stage change, search terms and tags as ``find_or_create_lead`` would."""
    due_at: dict[datetime, datetime] = {}
    tags_of: dict[str, list[str]] = {}
    leads, codes_per_row = [], []
    for _, contact, phone, email in rows:
        arrived = contact.arrived_at or now
        if arrived not in due_at:
            due_at[arrived] = add_business_minutes(arrived, cal.target_minutes, cal)
        lead = _new_lead(contact, phone, email, arrived)
        lead.open_phone_key = phone
        lead.first_contact_due_at = due_at[arrived]
        message = contact.message if contact.message and contact.message.strip() else None
        if message is not None and message not in tags_of:
            tags_of[message] = tag_complaint(message, today=cal.local_date(arrived))
        codes = tags_of[message] if message is not None else []
        lead.urgent = is_urgent(codes)
        leads.append(lead)
        codes_per_row.append(codes)
    table = Lead.__table__
    values = [_lead_row(lead) for lead in leads]
    keys = [(row.get("phone"), row.get("email")) for row in values]
    if (None, None) in keys or len(set(keys)) != len(keys):  # each id back in its row's place
        insert = sa.insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = list(db.session.execute(insert, values).scalars())
    else:
        # No two new leads share a phone or an email (``receive_contacts_bulk``): each id is put
        # back in its row's place by them. (``sort_by_parameter_order`` makes SQLite insert
        # one row per statement.)
        insert = sa.insert(table).returning(table.c.id, table.c.phone, table.c.email)
        place = {key: i for i, key in enumerate(keys)}
        ids = [0] * len(values)
        for lead_id, phone, email in db.session.execute(insert, values):
            ids[place[phone, email]] = lead_id
    stages, terms, tag_rows, changes = [], [], [], []
    for lead_id, lead, codes in zip(ids, leads, codes_per_row, strict=True):
        stages.append({"lead_id": lead_id, "from_stage": None, "to_stage": "new", "at": lead.created_at})
        words = search_terms(lead.first_name, lead.last_name)
        terms += [{"lead_id": lead_id, "term": word} for word in words]
        new_tags, new_changes = tagging.new_lead_tag_rows(lead_id, codes, origin="auto", at=lead.created_at)
        tag_rows += new_tags
        changes += new_changes
    for model, batch in (
        (StageChange, stages),
        (LeadSearchTerm, terms),
        (LeadTag, tag_rows),
        (TagChange, changes),
    ):
        if batch:
            db.session.execute(sa.insert(model.__table__), batch)
    # The roll-ups fold these leads' facts from what was just written instead of reading it back.
    rollups.note_new_leads(
        db.session(),
        [{**row, "id": lead_id} for row, lead_id in zip(values, ids, strict=True)],
        stages,
        tag_rows,
    )
    return {
        index: BulkRow(lead_id=lead_id, created=True) for (index, *_), lead_id in zip(rows, ids, strict=True)
    }


def _after_insert(lead: Lead, contact: ContactIn, *, now: datetime, ip: str | None) -> None:
    """Write what a new lead brings with it: owner, history, search terms, consent."""
    owner_id = _round_robin_owner()
    if owner_id is not None:  # setting None on the new row would cost an UPDATE
        lead.owner_id = owner_id
    db.session.add(StageChange(lead_id=lead.id, from_stage=None, to_stage="new", at=now))
    _search_terms(lead, search_terms(lead.first_name, lead.last_name))
    _consents(lead, contact, now=now, method=contact.source, ip=ip)


def _tag_message(lead: Lead, message: str | None, *, now: datetime, cal: BusinessCalendar) -> list[str]:
    """Run the patient's words through the tagger, store its tags as automatic; return its codes."""
    if not message or not message.strip():
        return []
    codes = tag_complaint(message, today=cal.local_date(now))
    tagging.apply_auto_tags(lead, codes, origin="auto", now=now)
    return codes


def _alert_if_after_hours(
    lead: Lead, *, was_urgent: bool, new_red_flag: bool, now: datetime, cal: BusinessCalendar
) -> bool:
    """Queue the on-call alert when a lead turns urgent (or sends a new red flag) after hours."""
    if not lead.urgent or (was_urgent and not new_red_flag) or cal.is_open(now):
        return False
    alerts.alert_after_commit(lead)
    return True


# --------------------------------------------------------------------------- the form


def _patient_tags(req: WebRequestIn) -> list[str]:
    """Turn the form's own answers into tag codes (the patient's statement)."""
    codes = [f"region:{value}" for value in req.where_it_hurts if value in FORM_REGIONS]
    for value in req.side:
        if value == "both":
            codes += ["side:left", "side:right"]
        elif value in FORM_SIDES:
            codes.append(f"side:{value}")
    if req.tried_pt == "did_not_help":
        codes.append("history:failed_pt")
    if req.red_flag_bladder:
        codes.append("red_flag:bowel_bladder")
    if req.red_flag_weakness:
        codes.append("red_flag:weakness")
    return [code for code in codes if code in ALL_TAGS]


def _answers(req: WebRequestIn) -> dict[str, Any]:
    contact = req.contact
    return {
        "where_it_hurts": [_clean(v, 40) for v in req.where_it_hurts],
        "side": [_clean(v, 40) for v in req.side],
        "tried_pt": _clean(req.tried_pt, 40),
        "red_flag_bladder": bool(req.red_flag_bladder),
        "red_flag_weakness": bool(req.red_flag_weakness),
        "preferred_time": _clean(contact.preferred_time, 100),
        "language": _clean(contact.language, 40),
        "preferred_contact": _clean(contact.preferred_contact, 10),
        "consent": {k: v for k, v in contact.consent.items() if k in CONSENT_KEYS},
    }


def receive_web_request(req: WebRequestIn, *, now: datetime | None = None) -> IntakeResult:
    """Take one submission of the public form: lead, request as submitted, tags, urgency, alert.

    An urgent lead outside business hours queues the on-call alert, sent after the caller
    commits (``details["alert"]`` is True then).
    """
    now = now or clock.now()
    cal = load_calendar()
    contact = req.contact
    result = find_or_create_lead(contact, now=now, ip_address=req.ip_address, calendar=cal)
    lead = result.lead
    assert lead is not None
    request_row = AppointmentRequest(
        lead_id=lead.id,
        submitted_at=req.submitted_at or now,
        first_name=_clean(contact.first_name, 100) or "",
        last_name=_clean(contact.last_name, 100) or "",
        phone=_clean(contact.phone, 40),
        email=_clean(contact.email, 254),
        message=_message(contact.message),
        answers=_answers(req),
        consent_text_version=CONSENT_TEXT_VERSION,
        ip_address=_clean(req.ip_address, 64),
        landing_page=_clean(contact.landing_page, 500),
        referrer=_clean(contact.referrer, 500),
        utm_source=_clean(contact.utm_source, 120),
        utm_medium=_clean(contact.utm_medium, 120),
        utm_campaign=_clean(contact.utm_campaign, 120),
    )
    db.session.add(request_row)
    tagging.apply_auto_tags(lead, _patient_tags(req), origin="patient", now=now)
    if lead.pt_helped is None and req.tried_pt in ("helped", "did_not_help"):
        lead.pt_helped = req.tried_pt == "helped"  # the patient's answer, until staff record their own
    red_flag_answer = req.red_flag_bladder or req.red_flag_weakness
    if red_flag_answer:
        # A new "yes" is new information: urgent even if staff had removed an older red-flag tag.
        lead.urgent = True
    new_red_flag = red_flag_answer or is_urgent(result.details["message_tags"])
    alert = _alert_if_after_hours(
        lead, was_urgent=result.details["was_urgent"], new_red_flag=new_red_flag, now=now, cal=cal
    )
    result.request = request_row
    result.details["alert"] = alert
    return result


# --------------------------------------------------------------------------- calls


def _direction(value: str) -> str:
    value = (value or "").strip().lower()
    if value == "inbound":
        return "inbound"
    if value == "outbound" or value.startswith("outbound-"):
        return "outbound"
    raise IntakeRefused("Direction must be inbound or outbound.")


def _clinic_line(ev: CallEventIn, direction: str, lines: Mapping[str, str]) -> str:
    """Return the clinic line of a call: inbound ``To`` or outbound ``From``."""
    raw, label = (
        (ev.to_number, "The number called")
        if direction == "inbound"
        else (ev.from_number, "The calling number")
    )
    line = phones.normalize(_clean(raw, 64))
    if line is None or line not in lines:
        shown = line or "(unreadable or missing)"
        raise IntakeRefused(f"{label} {shown} is not one of the clinic's lines.")
    return line


def _upsert_call(values: dict[str, Any]) -> Call:
    """Insert a call or merge a callback into it by CallSid; return the call as it now is."""
    return _upsert_calls([values])[0]


def _upsert_calls(rows: list[dict[str, Any]]) -> list[Call]:
    """Insert calls or merge callbacks into them by CallSid (one statement; each SID once).

    The highest SequenceNumber sets the status, and a final status is never left; identity
    columns are filled once (a leg may have made a placeholder first); ``answered`` only
    ever turns on; a recording, notes and a handler are kept once given. The rows come back
    from the statement itself (``RETURNING``), not from a second read, each in its row's place.
    """
    db.session.flush()
    dialect = "postgresql" if _is_postgres() else "sqlite"
    options = {rollups.SIDS_OPTION: tuple(row["call_sid"] for row in rows), "populate_existing": True}
    # In SID order: two transactions upserting the same new calls lock them in the same order
    # (PostgreSQL would otherwise find each waiting on the other).
    place = {row["call_sid"]: i for i, row in enumerate(rows)}
    if len(place) != len(rows):
        raise ValueError("Each CallSid may be upserted once per statement.")
    params = rows[0] if len(rows) == 1 else sorted(rows, key=lambda row: row["call_sid"])
    calls: list[Call] = [None] * len(rows)  # type: ignore[list-item]
    result = db.session.execute(_call_upsert(dialect), params, execution_options=options)
    for call, *inserted in result:
        if inserted and inserted[0]:
            rollups.note_created_call(db.session(), call.call_sid)
        calls[place[call.call_sid]] = call
    return calls


@cache
def _call_upsert(dialect: str) -> Any:
    """The upsert of ``_upsert_call``, built once per dialect (the values are bound at each call)."""
    table = Call.__table__
    stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Call)
    new, old = stmt.excluded, table.c
    # Plain comparisons, not an expanding ``NOT IN``: the statement also runs with many rows at once.
    not_final = [old.status != status for status in FINAL_CALL_STATUSES]
    wins = sa.and_(*not_final, new.sequence_number >= old.sequence_number)
    placeholder = old.line.is_(None)
    earlier = new.started_at < old.started_at

    def newer(column: str) -> Any:
        return sa.case((wins, new[column]), else_=old[column])

    def fill(column: str) -> Any:
        return sa.case((placeholder, new[column]), else_=old[column])

    return stmt.on_conflict_do_update(
        index_elements=["call_sid"],
        set_={
            "status": newer("status"),
            "sequence_number": newer("sequence_number"),
            "duration_seconds": sa.case(
                (new.duration_seconds > old.duration_seconds, new.duration_seconds),
                else_=old.duration_seconds,
            ),
            "started_at": sa.case((earlier, new.started_at), else_=old.started_at),
            # The clinic-local hour and weekday follow the start (``_settle`` sets them again).
            "local_hour": sa.case((earlier, new.local_hour), else_=old.local_hour),
            "local_weekday": sa.case((earlier, new.local_weekday), else_=old.local_weekday),
            "from_number": fill("from_number"),
            "to_number": fill("to_number"),
            "direction": fill("direction"),
            "campaign": fill("campaign"),
            "line": sa.func.coalesce(old.line, new.line),
            "recording_url": sa.func.coalesce(old.recording_url, new.recording_url),
            "notes": sa.func.coalesce(old.notes, new.notes),
            "handled_by_id": sa.func.coalesce(old.handled_by_id, new.handled_by_id),
            "answered": sa.or_(old.answered, new.answered),
            "updated_at": new.updated_at,
        },
    ).returning(
        Call,
        # PostgreSQL: whether this statement inserted the row (so the roll-ups add its own cell).
        *([sa.literal_column("(xmax = 0)").label("inserted")] if dialect == "postgresql" else []),
        # Not ``sort_by_parameter_order``: SQLite would then run one statement per row. Each
        # row names its SID, and ``_upsert_calls`` puts it back in its place by that.
    )


def _call_values(
    ev: CallEventIn,
    *,
    direction: str,
    line: str | None,
    campaign: str | None,
    started: datetime,
    now: datetime,
    cal: BusinessCalendar,
) -> dict[str, Any]:
    local = cal.local(started)
    return {
        "local_hour": local.hour,
        "local_weekday": local.weekday(),
        "call_sid": _clean(ev.call_sid, 64),
        "from_number": _clean(ev.from_number, 32),
        "to_number": _clean(ev.to_number, 32),
        "line": line,
        "campaign": campaign,
        "direction": direction,
        "status": ev.status,
        "sequence_number": max(int(ev.sequence_number or 0), 0),
        "started_at": started,
        "duration_seconds": max(int(ev.duration_seconds or 0), 0),
        "recording_url": _clean(ev.recording_url, 500),
        "notes": _message(ev.notes),
        "handled_by_id": ev.handled_by_id,
        "answered": bool(ev.answered),
        "created_at": now,
        "updated_at": now,
    }


def _callback_task(call: Call, lead: Lead | None, cal: BusinessCalendar, now: datetime) -> tuple[Task, bool]:
    """Make the call's one call-back task (idempotent by call and kind); True when new."""
    return _callback_tasks([(call, lead)], cal, now)[0]


def _callback_tasks(
    missed: list[tuple[Call, Lead | None]], cal: BusinessCalendar, now: datetime
) -> list[tuple[Task, bool]]:
    """Make each missed call's one call-back task (idempotent by call and kind); True when new.

    One read of their tasks, one INSERT of those missing and a read of those; each call
    appears once.
    """
    rows, due_of = [], {}
    for call, lead in missed:
        due_of[call.id] = add_business_minutes(min(call.started_at, now), cal.target_minutes, cal)
        withheld = _caller_number(call.from_number) is None
        rows.append(
            {
                "lead_id": lead.id if lead else None,
                "call_id": call.id,
                "kind": "callback",
                "title": "Missed call from a withheld number" if withheld else "Call back: missed call",
                "due_at": due_of[call.id],
                "assignee_id": lead.owner_id if lead else None,
                "attempt": 1,
                "created_at": now,
            }
        )
    if not rows:
        return []
    call_ids = [call.id for call, _ in missed]

    def load(ids: list[int]) -> dict[int, Task]:
        query = sa.select(Task).where(Task.call_id.in_(ids), Task.kind == "callback")
        return {task.call_id: task for task in db.session.scalars(query)}

    # A callback repeated for a missed call finds its task: nothing is written (so the
    # roll-ups see no task touched, and do not count the call's day again).
    tasks = load(call_ids)
    rows = sorted((row for row in rows if row["call_id"] not in tasks), key=lambda row: row["call_id"])
    created: set[int] = set()
    if rows:
        stmt = (
            _insert(Task.__table__)  # the table's: the ORM's bulk INSERT takes no ON CONFLICT
            .on_conflict_do_nothing(index_elements=["call_id", "kind"])  # a concurrent callback's
            .returning(Task.__table__.c.call_id)
        )
        created = set(db.session.execute(stmt, rows[0] if len(rows) == 1 else rows).scalars())
        tasks |= load([row["call_id"] for row in rows])
    out = []
    for call, lead in missed:
        due = due_of[call.id]
        if call.id in created and lead is not None:
            lead.next_task_due_at = due if lead.next_task_due_at is None else min(lead.next_task_due_at, due)
        out.append((tasks[call.id], call.id in created))
    return out


def _first_contact(lead: Lead, at: datetime) -> None:
    if lead.first_contact_at is None:
        lead.first_contact_at = at
        lead.first_contact_due_at = None  # contacted: no longer due (the queue sorts on this column)


def _link_lead(call: Call, ev: CallEventIn, cal: BusinessCalendar, now: datetime) -> tuple[Lead | None, bool]:
    """Find the call's lead: inbound makes one for a new caller; outbound only finds one."""
    if call.lead_id is not None:
        return db.session.get(Lead, call.lead_id), False
    if call.direction == "inbound":
        caller = _caller_number(call.from_number)
        if caller is None:
            return None, False
        arrived = min(call.started_at, now)
        found = find_or_create_lead(
            ContactIn(source="phone", phone=caller, campaign=call.campaign), now=arrived, calendar=cal
        )
        lead = found.lead
        created = found.created
    else:
        callee = phones.normalize(_clean(call.to_number, 64))
        lead = (
            _most_recent(lead for lead in _open_leads(callee, None) if lead.phone == callee)
            if callee
            else None
        )
        created = False
    if lead is not None:
        call.lead_id = lead.id
    return lead, created


def _assign(row: Any, **values: Any) -> None:
    """Set the attributes whose value differs (setting an equal value still marks the row dirty)."""
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)


def _settle(
    call: Call,
    lead: Lead | None,
    cal: BusinessCalendar,
    now: datetime,
    result: IntakeResult,
    *,
    said_answered: bool | None,
    make_task: bool = True,
) -> None:
    """Apply what the call's current state means: missed → task, answered → first contact, attempts.

    With ``make_task=False`` the caller makes the call-back tasks of many calls at once
    (``_callback_tasks``) for the calls left ``missed``.
    """
    local = cal.local(call.started_at)
    # Set only what differs: an unchanged call stays clean, and the flush skips it.
    _assign(call, local_hour=local.hour, local_weekday=local.weekday())
    if lead is not None:
        _assign(lead, last_activity_at=_later(lead.last_activity_at, min(call.started_at, now)))
    if call.direction == "inbound":
        _assign(call, voicemail=bool(call.recording_url) and not call.answered)
        if (call.status in MISSED_CALL_STATUSES or call.voicemail) and not call.missed:
            call.missed = True
        if call.missed and make_task:
            result.task, result.details["task_created"] = _callback_task(call, lead, cal, now)
        if call.answered and lead is not None:
            _first_contact(lead, call.started_at)
    else:
        if lead is not None and lead.first_attempt_at is None:
            lead.first_attempt_at = call.started_at
        if said_answered is None and call.status == "completed" and call.duration_seconds > 0:
            call.answered = True  # the patient picked up
        if call.answered and lead is not None:
            _first_contact(lead, call.started_at)
    result.details["missed"] = call.missed


def receive_call_event(
    ev: CallEventIn,
    *,
    lines: dict[str, str],
    now: datetime | None = None,
    calendar: BusinessCalendar | None = None,
) -> IntakeResult:
    """Record one call event (webhook, API, import): upsert by CallSid, link the lead, make tasks.

    A bulk caller (the CSV import) passes the ``calendar`` it loaded once.

    :raises IntakeRefused: for a line that is not the clinic's, or an unknown status or direction.
    """
    return _record_call(ev, lines=lines, now=now or clock.now(), cal=calendar)


def receive_call_events(
    events: Sequence[CallEventIn],
    *,
    lines: Mapping[str, str],
    now: datetime | None = None,
    calendar: BusinessCalendar | None = None,
) -> list[IntakeResult | IntakeRefused]:
    """Record many call events in order, as ``receive_call_event`` would one after another.

    The webhook's status callbacks that arrive together come here. Each result is in its
    event's place: an ``IntakeResult``, or the ``IntakeRefused`` that event got (nothing of
    it is written; the others are). A run of plain status callbacks (a CallSid, a clinic line,
    no notes, each SID once in the run) is written set-wise: one upsert of the calls, one read
    of their leads, intake's bulk path for new callers (``receive_contacts_bulk``: the same
    duplicate rule), one INSERT of the call-back tasks. Legs, outbound calls, notes and a SID
    seen again in the run go through ``_record_call``, in their place.
    """
    now = now or clock.now()
    cal = _calendar(calendar)
    out: list[IntakeResult | IntakeRefused | None] = [None] * len(events)
    run: list[tuple[int, CallEventIn, str, str]] = []
    sids: set[str] = set()

    def write_run() -> None:
        for (index, *_), result in zip(run, _record_calls(run, lines=lines, now=now, cal=cal), strict=True):
            out[index] = result
        run.clear()
        sids.clear()

    for index, event in enumerate(events):
        try:
            checked, direction, line = check_call_event(event, lines=lines)
        except IntakeRefused as refused:
            out[index] = refused
            continue
        sid = _clean(checked.call_sid, 64)
        # Outbound calls too: one finds its callee's lead, which an inbound call earlier in the
        # run may be making (the run makes its new callers' leads before settling any call).
        if line is None or not sid or (checked.notes or "").strip() or direction != "inbound":
            write_run()
            out[index] = _record_call(checked, lines=lines, now=now, cal=cal)
            continue
        if sid in sids:  # the same call again: after the run that holds its earlier callback
            write_run()
        run.append((index, checked, direction, line))
        sids.add(sid)
    write_run()
    return [result for result in out if result is not None]


def _record_calls(
    run: list[tuple[int, CallEventIn, str, str]],
    *,
    lines: Mapping[str, str],
    now: datetime,
    cal: BusinessCalendar,
) -> list[IntakeResult]:
    """``_record_call`` for checked status callbacks of distinct calls, in a few statements."""
    if not run:
        return []
    rows = [
        _call_values(
            ev,
            direction=direction,
            line=line,
            campaign=lines[line],
            started=ev.started_at or now,
            now=now,
            cal=cal,
        )
        for _, ev, direction, line in run
    ]
    calls = _upsert_calls(rows)
    results = [IntakeResult(lead=None, created=False, call=call) for call in calls]
    # The callers the clinic has no lead for yet on these calls: intake's bulk path, once each.
    contacts: dict[str, ContactIn] = {}
    for call in calls:
        caller = (
            _caller_number(call.from_number) if call.lead_id is None and call.direction == "inbound" else None
        )
        if caller is not None and caller not in contacts:
            arrived = min(call.started_at, now)
            contacts[caller] = ContactIn(
                source="phone", phone=caller, campaign=call.campaign, arrived_at=arrived
            )
    contacts = dict(sorted(contacts.items()))  # phone order: concurrent groups lock new leads alike
    found: dict[str, BulkRow] = {}
    if contacts:
        found = dict(
            zip(contacts, receive_contacts_bulk(list(contacts.values()), now=now, calendar=cal), strict=True)
        )
    wanted = {call.lead_id for call in calls if call.lead_id is not None}
    wanted |= {row.lead_id for row in found.values() if row.lead_id is not None}
    leads = (
        {lead.id: lead for lead in db.session.scalars(sa.select(Lead).where(Lead.id.in_(wanted)))}
        if wanted
        else {}
    )
    linked_callers: set[str] = set()
    missed: list[tuple[Call, Lead | None, IntakeResult]] = []
    for (_, ev, _, _), call, result in zip(run, calls, results, strict=True):
        lead: Lead | None = None
        if call.lead_id is not None:
            lead = leads.get(call.lead_id)
        elif call.direction == "inbound":
            caller = _caller_number(call.from_number)
            row = found.get(caller) if caller is not None else None
            if row is not None and row.lead_id is not None:
                lead = leads[row.lead_id]
                result.created = row.created and caller not in linked_callers  # the caller's first call
                linked_callers.add(caller)
        else:
            lead, _ = _link_lead(call, ev, cal, now)  # outbound: finds the callee's lead, makes none
        if lead is not None:
            call.lead_id = lead.id
        result.lead = lead
        _settle(call, lead, cal, now, result, said_answered=ev.answered, make_task=False)
        if call.missed:
            missed.append((call, lead, result))
    tasks = _callback_tasks([(call, lead) for call, lead, _ in missed], cal, now)
    for (_, _, result), (task, created) in zip(missed, tasks, strict=True):
        result.task, result.details["task_created"] = task, created
    return results


def check_call_event(ev: CallEventIn, *, lines: Mapping[str, str]) -> tuple[CallEventIn, str, str | None]:
    """Refuse a call event intake cannot record; return it with Twilio's ``initiated`` read as
    ``queued``, its direction (inbound | outbound) and its clinic line (None for a leg).

    Reads no database, writes nothing.

    :raises IntakeRefused: for an unknown status or direction, or a line that is not the clinic's.
    """
    status = "queued" if ev.status == "initiated" else ev.status
    if status not in CALL_STATUSES:
        raise IntakeRefused("The call status is not one of Twilio's call statuses.")
    ev = replace(ev, status=status)
    direction = _direction(ev.direction)
    if ev.parent_call_sid:
        return ev, direction, None
    return ev, direction, _clinic_line(ev, direction, lines)


def _record_call(
    ev: CallEventIn,
    *,
    lines: Mapping[str, str],
    now: datetime,
    lead: Lead | None = None,
    cal: BusinessCalendar | None = None,
) -> IntakeResult:
    ev, direction, line = check_call_event(ev, lines=lines)
    cal = _calendar(cal)
    started = ev.started_at or now
    if line is None:  # a leg of a call
        return _record_leg(ev, started=started, now=now, cal=cal)
    values = _call_values(
        ev, direction=direction, line=line, campaign=lines[line], started=started, now=now, cal=cal
    )
    if values["call_sid"]:
        call = _upsert_call(values)
    else:  # a manual entry: no provider id, nothing to merge with
        call = Call(**values)
        db.session.add(call)
        db.session.flush()
    result = IntakeResult(lead=None, created=False, call=call)
    if lead is not None and call.lead_id is None:
        call.lead_id = lead.id
    linked, created = _link_lead(call, ev, cal, now)
    result.lead, result.created = linked, created
    _settle(call, linked, cal, now, result, said_answered=ev.answered)
    if linked is not None and ev.notes:
        was_urgent = linked.urgent
        added = _tag_message(linked, ev.notes, now=now, cal=cal)
        result.details["alert"] = _alert_if_after_hours(
            linked, was_urgent=was_urgent, new_red_flag=is_urgent(added), now=now, cal=cal
        )
    return result


def _record_leg(ev: CallEventIn, *, started: datetime, now: datetime, cal: BusinessCalendar) -> IntakeResult:
    """A leg of a call (e.g. the <Dial> to a staff phone) marks its parent answered, nothing more.

    The parent may not have reported yet: a placeholder row (no line, sequence -1) holds
    ``answered`` until the parent's own callback fills it in.
    """
    answered = ev.status in ANSWERED_LEG_STATUSES
    placeholder = {
        "call_sid": _clean(ev.parent_call_sid, 64),
        "from_number": None,
        "to_number": None,
        "line": None,
        "campaign": None,
        "direction": "inbound",
        "status": "queued",
        "sequence_number": -1,
        "started_at": started,
        "local_hour": cal.local(started).hour,
        "local_weekday": cal.local(started).weekday(),
        "duration_seconds": 0,
        "recording_url": None,
        "notes": None,
        "handled_by_id": ev.handled_by_id if answered else None,
        "answered": answered,
        "created_at": now,
        "updated_at": now,
    }
    call = _upsert_call(placeholder)
    result = IntakeResult(lead=None, created=False, call=call, details={"leg": True})
    if call.line is not None and call.lead_id is not None and call.answered:
        lead = db.session.get(Lead, call.lead_id)
        if lead is not None:
            _first_contact(lead, call.started_at)
            result.lead = lead
    return result


def log_manual_call(
    *,
    direction: str,
    outcome: str,
    lines: Mapping[str, str],
    lead: Lead | None = None,
    phone: str | None = None,
    actor: User | None = None,
    notes: str | None = None,
    started_at: datetime | None = None,
    duration_seconds: int = 0,
    override_reason: str | None = None,
    now: datetime | None = None,
) -> IntakeResult:
    """Log a call the front desk made or took, through the same rules as the phone line.

    ``outcome`` is ``answered`` (a conversation: first contact), ``no_answer``, ``busy`` or
    ``voicemail`` (an outbound message left: an attempt; an inbound one: a missed call).
    Notes are the patient's words and are tagged.

    Logging the call ends the actor's "I'm calling" on the lead (the queue showed it until it
    expired).

    A call we made to a patient who opted out of phone calls (PRODUCT §2) is logged only with
    ``override_reason``, the written reason for calling anyway; the result's ``details`` carry
    it as ``opt_out_override`` for the caller's audit row.

    :raises IntakeRefused: for an unknown direction or outcome, a call with no number, or a call
        to a patient who opted out of calls without a reason.
    """
    now = now or clock.now()
    if outcome not in MANUAL_OUTCOMES:
        raise IntakeRefused(f"Outcome must be one of: {', '.join(MANUAL_OUTCOMES)}.")
    direction = _direction(direction)
    number = (lead.phone if lead is not None else None) or phones.normalize(_clean(phone, 64))
    if number is None and direction == "outbound":
        raise IntakeRefused("An outbound call needs the number that was called.")
    override = _clean(override_reason, 300)
    opted_out = lead is not None and lead.consent_phone is False and direction == "outbound"
    if opted_out and not override:
        raise IntakeRefused(
            f"{lead.full_name} opted out of phone calls. To log a call we made anyway, "
            "give the reason for calling (for example, the patient asked us to call back)."
        )
    line = next(iter(lines))
    status, answered = MANUAL_OUTCOMES[outcome]
    ev = CallEventIn(
        call_sid=None,
        from_number=number if direction == "inbound" else line,
        to_number=line if direction == "inbound" else number,
        direction=direction,
        status=status,
        started_at=started_at or now,
        duration_seconds=duration_seconds,
        recording_url=None,
        notes=notes,
        handled_by_id=actor.id if actor is not None else None,
        answered=answered,
    )
    if direction == "inbound" and outcome == "voicemail":
        ev.status, ev.answered = "no-answer", False
    result = _record_call(ev, lines=lines, now=now, lead=lead)
    if opted_out:
        result.details["opt_out_override"] = override
    if lead is not None and actor is not None:
        set_calling(lead, user=actor, calling=False, now=now)  # the call is over: logged
    return result
