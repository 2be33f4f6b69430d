"""The data model: typed SQLAlchemy 2 models for every record of PRODUCT §2–§5.

Enumerations are strings guarded by CHECK constraints (portable between SQLite and
PostgreSQL, and cheap to extend in a migration). Every datetime is UTC-aware through
``UTCDateTime``. Each index names the query it serves.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar, Optional

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crm.extensions import db

ROLES = ("front_desk", "surgeon", "manager", "admin")
ROLE_LABELS = {
    "front_desk": "Front desk",
    "surgeon": "Surgeon",
    "manager": "Manager",
    "admin": "Admin",
}
SOURCES = ("phone", "web_form", "referral", "walk_in", "import", "api")
SOURCE_LABELS = {
    "phone": "Phone",
    "web_form": "Web form",
    "referral": "Referral",
    "walk_in": "Walk-in",
    "import": "Import",
    "api": "API",
}
STAGES = (
    "new",
    "contacted",
    "conservative_care",
    "physical_therapy",
    "evaluation",
    "surgical_review",
    "consult_scheduled",
    "consult_completed",
    "surgery_scheduled",
    "closed",
)
STAGE_LABELS = {
    "new": "New",
    "contacted": "Contacted",
    "conservative_care": "Conservative care",
    "physical_therapy": "Physical therapy",
    "evaluation": "Evaluation",
    "surgical_review": "Surgical review",
    "consult_scheduled": "Consult scheduled",
    "consult_completed": "Consult completed",
    "surgery_scheduled": "Surgery scheduled",
    "closed": "Closed",
}
CLOSE_REASONS = (
    "not_a_candidate",
    "no_response",
    "went_elsewhere",
    "resolved_conservatively",
    "duplicate",
    "referred_to_er",
)
CLOSE_REASON_LABELS = {
    "not_a_candidate": "Not a candidate",
    "no_response": "No response",
    "went_elsewhere": "Went elsewhere",
    "resolved_conservatively": "Resolved conservatively",
    "duplicate": "Duplicate",
    "referred_to_er": "Referred to the ER",
}
CONTACT_METHODS = ("phone", "sms", "email")
CALL_DIRECTIONS = ("inbound", "outbound")
CALL_STATUSES = (
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
)
FINAL_CALL_STATUSES = ("completed", "busy", "failed", "no-answer", "canceled")
MISSED_CALL_STATUSES = ("no-answer", "busy", "failed", "canceled")
TAG_ORIGINS = ("auto", "patient", "staff")
TAG_STATES = ("active", "removed")
TASK_KINDS = ("callback", "send_records", "schedule", "more_info", "other")
APPOINTMENT_KINDS = ("consult", "surgery", "follow_up", "imaging")
APPOINTMENT_OUTCOMES = ("attended", "no_show", "canceled", "rescheduled")
IMAGING_TYPES = ("MRI", "X-ray", "CT")
CONSENT_CHANNELS = ("phone", "sms", "email", "detailed_voicemail")
TOKEN_SCOPES = ("read", "write")


def _in(column: str, values: tuple[str, ...]) -> str:
    """Build a CHECK expression that keeps a string column inside a fixed set."""
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def utcnow() -> datetime:
    """Return the current time, UTC-aware."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A datetime stored in UTC and always read back UTC-aware.

    SQLite keeps no time zone, so values are stored naive-in-UTC there; PostgreSQL keeps
    ``timestamptz``. Naive datetimes are refused: they are a bug at the call site.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # PostgreSQL's, in the session's UTC
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --------------------------------------------------------------------------- staff


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    """A staff member. Deactivated, never deleted: their history stays attributed."""

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    role: Mapped[str] = mapped_column(sa.String(20))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Two-factor sign-in (crm/twofactor.py): the TOTP secret is stored encrypted (Fernet);
    # the last accepted time step refuses a replayed code, in every worker.
    totp_secret: Mapped[Optional[str]] = mapped_column(sa.String(255))
    totp_enabled: Mapped[bool] = mapped_column(default=False)
    totp_enrolled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[Optional[int]] = mapped_column(sa.BigInteger)

    @property
    def is_active(self) -> bool:  # Flask-Login refuses inactive users
        return self.active

    @property
    def role_label(self) -> str:
        return ROLE_LABELS[self.role]

    def __repr__(self) -> str:
        return f"<User {self.id} {self.role}>"


class UserSession(db.Model):  # type: ignore[name-defined,misc]
    """A server-side sign-in session, so that sign-out and deactivation really end it."""

    __tablename__ = "user_sessions"
    __table_args__ = (sa.CheckConstraint(_in("pending", ("code", "enrol")), name="pending"),)

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)  # end all of a user's
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    ip_address: Mapped[Optional[str]] = mapped_column(sa.String(64))
    # None once sign-in is complete. "code": the password passed, the second factor is due;
    # "enrol": the password passed and the role requires 2FA the user has not set up yet.
    # A pending row signs nobody in (crm/security.py: load_user_for_session).
    pending: Mapped[Optional[str]] = mapped_column(sa.String(10))

    user: Mapped[User] = relationship()


class RecoveryCode(db.Model):  # type: ignore[name-defined,misc]
    """A single-use recovery code for two-factor sign-in; only its keyed hash is stored."""

    __tablename__ = "recovery_codes"
    # Serves: use one code (user_id, code_hash, used_at IS NULL); count a user's unused codes.
    __table_args__ = (sa.Index("ix_recovery_codes_user_hash", "user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    code_hash: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class ThrottleHit(db.Model):  # type: ignore[name-defined,misc]
    """One counted event (a failed sign-in, a form post) for limits shared by every worker."""

    __tablename__ = "throttle_hits"
    # Serves: count hits of one scope and key since a time (sign-in lock, form rate limit).
    __table_args__ = (sa.Index("ix_throttle_hits_scope_key_at", "scope", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(30))
    key: Mapped[str] = mapped_column(sa.String(300))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiToken(db.Model):  # type: ignore[name-defined,misc]
    """A bearer token acting as its user, narrowed by its scope. Only a hash is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "name", name="uq_api_tokens_user_name"),
        sa.CheckConstraint(_in("scope", TOKEN_SCOPES), name="scope"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(sa.String(80))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)  # bearer lookup
    scope: Mapped[str] = mapped_column(sa.String(10), default="read")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


# --------------------------------------------------------------------------- settings


class ClinicSettings(db.Model):  # type: ignore[name-defined,misc]
    """The clinic's own rules, edited by the admin (one row, id 1)."""

    __tablename__ = "clinic_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    timezone: Mapped[str] = mapped_column(sa.String(64), default="America/Chicago")
    # {"0": ["08:00", "17:00"], ... "4": [...]} keyed by ISO weekday - 1 (Monday = 0).
    business_hours: Mapped[dict[str, list[str]]] = mapped_column(
        sa.JSON,
        default=lambda: {str(d): ["08:00", "17:00"] for d in range(5)},
    )
    speed_to_lead_minutes: Mapped[int] = mapped_column(default=15)
    callback_attempts: Mapped[int] = mapped_column(default=3)
    callback_window_days: Mapped[int] = mapped_column(default=5)
    # {"new": 1, "contacted": 7, ...}: days a lead may sit in a stage before it is aging.
    stage_aging_days: Mapped[dict[str, int]] = mapped_column(
        sa.JSON,
        default=lambda: {
            "new": 1,
            "contacted": 7,
            "conservative_care": 42,
            "physical_therapy": 56,
            "evaluation": 21,
            "surgical_review": 5,
            "consult_scheduled": 30,
            "consult_completed": 14,
        },
    )
    default_surgeon_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    round_robin: Mapped[bool] = mapped_column(default=False)
    last_round_robin_user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Holiday(db.Model):  # type: ignore[name-defined,misc]
    """A day the clinic is closed: the speed-to-lead clock does not run."""

    __tablename__ = "holidays"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(sa.Date, unique=True)
    name: Mapped[str] = mapped_column(sa.String(120))


class ReferringPractice(db.Model):  # type: ignore[name-defined,misc]
    """A practice in the directory of referring providers."""

    __tablename__ = "referring_practices"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), unique=True)
    phone: Mapped[Optional[str]] = mapped_column(sa.String(20))
    fax: Mapped[Optional[str]] = mapped_column(sa.String(20))
    address: Mapped[Optional[str]] = mapped_column(sa.String(300))
    active: Mapped[bool] = mapped_column(default=True)


# --------------------------------------------------------------------------- leads


class Lead(db.Model):  # type: ignore[name-defined,misc]
    """One prospective patient, from first call to surgery or closing."""

    __tablename__ = "leads"
    __table_args__ = (
        sa.CheckConstraint(_in("source", SOURCES), name="source"),
        sa.CheckConstraint(_in("stage", STAGES), name="stage"),
        sa.CheckConstraint(
            "close_reason IS NULL OR " + _in("close_reason", CLOSE_REASONS), name="close_reason"
        ),
        sa.CheckConstraint(
            "preferred_contact IS NULL OR " + _in("preferred_contact", CONTACT_METHODS),
            name="preferred_contact",
        ),
        sa.CheckConstraint(
            "imaging_type IS NULL OR " + _in("imaging_type", IMAGING_TYPES), name="imaging_type"
        ),
        # Queue group 1: urgent leads, oldest first.
        sa.Index("ix_leads_queue_urgent", "in_queue", "urgent", "created_at"),
        # Queue group 2: overdue for first contact, most overdue first (due time stored on arrival).
        sa.Index("ix_leads_queue_due", "in_queue", "first_contact_due_at"),
        # Queue group 3: a task due today or overdue, earliest first.
        sa.Index("ix_leads_queue_task", "in_queue", "next_task_due_at"),
        # Queue group 4 and the default list: newest first.
        sa.Index("ix_leads_queue_created", "in_queue", "created_at"),
        # Filters: stage counts and stage filter; owner's leads; source/campaign; dashboard cohorts.
        sa.Index("ix_leads_stage_created", "stage", "created_at"),
        # Dashboard stage aging: stalled leads per stage, oldest first (covering its counts).
        sa.Index("ix_leads_stage_entered", "stage", "stage_entered_at", "merged_into_id", "not_a_patient"),
        sa.Index("ix_leads_owner_created", "owner_id", "created_at"),
        sa.Index("ix_leads_source_created", "source", "created_at"),
        sa.Index("ix_leads_campaign_created", "campaign", "created_at"),
        sa.Index("ix_leads_created_at", "created_at"),
        # A wide queue filter's capped count ("500+ leads"): 501 index entries, read in the index.
        # Without them PostgreSQL counts by a sequential scan whose start moves with every scan
        # (synchronized scans): 0.7 ms one time, 20 ms another.
        sa.Index("ix_leads_stage_queue", "stage", "in_queue"),
        sa.Index("ix_leads_source_queue", "source", "in_queue"),
        sa.Index("ix_leads_campaign_queue", "campaign", "in_queue"),
        sa.Index("ix_leads_owner_queue", "owner_id", "in_queue"),
        # Referral queue: leads in review, by surgeon.
        sa.Index("ix_leads_surgeon_stage", "surgeon_id", "stage"),
        # Search: by phone (E.164), its last 7 and last 4 digits, and by email.
        sa.Index("ix_leads_phone", "phone"),
        sa.Index("ix_leads_phone_last7", "phone_last7"),
        sa.Index("ix_leads_phone_last4", "phone_last4"),
        sa.Index("ix_leads_email", "email"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100), default="")
    phone: Mapped[Optional[str]] = mapped_column(sa.String(20))  # E.164
    phone_last7: Mapped[Optional[str]] = mapped_column(sa.String(7))
    phone_last4: Mapped[Optional[str]] = mapped_column(sa.String(4))
    # The intake rule "one open primary lead per phone", enforced by the database: set to the
    # phone while the lead is open and not a possible duplicate, NULL otherwise.
    open_phone_key: Mapped[Optional[str]] = mapped_column(sa.String(20), unique=True)
    email: Mapped[Optional[str]] = mapped_column(sa.String(254))  # lower-cased
    date_of_birth: Mapped[Optional[date]] = mapped_column(sa.Date)
    preferred_contact: Mapped[Optional[str]] = mapped_column(sa.String(10))
    preferred_time: Mapped[Optional[str]] = mapped_column(sa.String(100))
    language: Mapped[Optional[str]] = mapped_column(sa.String(40))

    source: Mapped[str] = mapped_column(sa.String(20))
    campaign: Mapped[Optional[str]] = mapped_column(sa.String(120))
    landing_page: Mapped[Optional[str]] = mapped_column(sa.String(500))
    referrer: Mapped[Optional[str]] = mapped_column(sa.String(500))
    utm_source: Mapped[Optional[str]] = mapped_column(sa.String(120))
    utm_medium: Mapped[Optional[str]] = mapped_column(sa.String(120))
    utm_campaign: Mapped[Optional[str]] = mapped_column(sa.String(120))
    referring_practice_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("referring_practices.id"))
    insurance: Mapped[Optional[str]] = mapped_column(sa.String(120))

    owner_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    surgeon_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))

    stage: Mapped[str] = mapped_column(sa.String(30), default="new")
    stage_entered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    close_reason: Mapped[Optional[str]] = mapped_column(sa.String(30))
    closed_from_stage: Mapped[Optional[str]] = mapped_column(sa.String(30))
    # Open, not merged away and not "not a patient": the front-desk queue shows these.
    in_queue: Mapped[bool] = mapped_column(default=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    not_a_patient: Mapped[bool] = mapped_column(default=False)
    not_a_patient_reason: Mapped[Optional[str]] = mapped_column(sa.String(200))
    merged_into_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))
    possible_duplicate_of_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))

    # Structured clinical facts the surgeon decides on.
    imaging_type: Mapped[Optional[str]] = mapped_column(sa.String(10))
    imaging_date: Mapped[Optional[date]] = mapped_column(sa.Date)
    imaging_finding: Mapped[Optional[str]] = mapped_column(sa.Text)
    pt_weeks: Mapped[Optional[int]]
    pt_helped: Mapped[Optional[bool]]
    medications: Mapped[Optional[str]] = mapped_column(sa.Text)
    injections: Mapped[Optional[str]] = mapped_column(sa.Text)
    chiropractic: Mapped[Optional[str]] = mapped_column(sa.Text)
    conservative_care_helped: Mapped[Optional[bool]]

    # Consent, as currently in force (its history is in ``consents``).
    consent_phone: Mapped[Optional[bool]]
    consent_sms: Mapped[Optional[bool]]
    consent_email: Mapped[Optional[bool]]
    consent_detailed_voicemail: Mapped[Optional[bool]]

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_attempt_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    first_contact_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Stored on arrival (PRODUCT §4) and cleared at first contact, so the queue sorts on it.
    first_contact_due_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    next_task_due_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    calling_user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    calling_since: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    version: Mapped[int] = mapped_column(default=1)
    __mapper_args__: ClassVar[dict[str, Any]] = {"version_id_col": version}  # optimistic locking

    owner: Mapped[Optional[User]] = relationship(foreign_keys=[owner_id])
    surgeon: Mapped[Optional[User]] = relationship(foreign_keys=[surgeon_id])
    calling_user: Mapped[Optional[User]] = relationship(foreign_keys=[calling_user_id])
    referring_practice: Mapped[Optional[ReferringPractice]] = relationship()
    tags: Mapped[list[LeadTag]] = relationship(
        back_populates="lead", order_by="LeadTag.code", cascade="all, delete-orphan"
    )

    @property
    def full_name(self) -> str:
        name = f"{self.first_name} {self.last_name}".strip()
        return name or "Unknown caller"

    @property
    def is_open(self) -> bool:
        return self.stage != "closed" and self.merged_into_id is None

    @property
    def active_tag_codes(self) -> list[str]:
        return sorted(t.code for t in self.tags if t.state == "active")

    def __repr__(self) -> str:  # no patient data in reprs: they end up in logs
        return f"<Lead {self.id} {self.stage}>"


class LeadSearchTerm(db.Model):  # type: ignore[name-defined,misc]
    """A folded word of a lead's name, so search finds "the start of any word" by index."""

    __tablename__ = "lead_search_terms"
    # Serves: WHERE term >= :prefix AND term < :prefix_next (a range scan on both databases).
    __table_args__ = (sa.Index("ix_lead_search_terms_term_lead", "term", "lead_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    term: Mapped[str] = mapped_column(sa.String(100))


class LeadTag(db.Model):  # type: ignore[name-defined,misc]
    """A complaint tag on a lead and who set it; a removal by staff is kept as ``removed``."""

    __tablename__ = "lead_tags"
    __table_args__ = (
        sa.UniqueConstraint("lead_id", "code", name="uq_lead_tags_lead_code"),
        sa.CheckConstraint(_in("origin", TAG_ORIGINS), name="origin"),
        sa.CheckConstraint(_in("state", TAG_STATES), name="state"),
        # Serves: the tag filter of the queue and dashboard (leads having an active tag).
        sa.Index("ix_lead_tags_code_state_lead", "code", "state", "lead_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(sa.String(40))
    origin: Mapped[str] = mapped_column(sa.String(10))
    state: Mapped[str] = mapped_column(sa.String(10), default="active")
    set_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lead: Mapped[Lead] = relationship(back_populates="tags")


class TagChange(db.Model):  # type: ignore[name-defined,misc]
    """One tag added or removed, by whom and from what (the timeline reads these)."""

    __tablename__ = "tag_changes"
    # Serves: a lead's timeline.
    __table_args__ = (sa.Index("ix_tag_changes_lead_at", "lead_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    code: Mapped[str] = mapped_column(sa.String(40))
    action: Mapped[str] = mapped_column(sa.String(10))  # added | removed
    origin: Mapped[str] = mapped_column(sa.String(10))
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    actor: Mapped[Optional[User]] = relationship()


class StageChange(db.Model):  # type: ignore[name-defined,misc]
    """One move of a lead through the pipeline. Dashboards are computed from these."""

    __tablename__ = "stage_changes"
    __table_args__ = (
        sa.CheckConstraint("from_stage IS NULL OR " + _in("from_stage", STAGES), name="from_stage"),
        sa.CheckConstraint(_in("to_stage", STAGES), name="to_stage"),
        # Serves: a lead's timeline and its stage history.
        sa.Index("ix_stage_changes_lead_at", "lead_id", "at"),
        # Serves: the funnel ("ever reached stage X") and staff credit by period.
        sa.Index("ix_stage_changes_to_stage_lead", "to_stage", "lead_id"),
        sa.Index("ix_stage_changes_actor_at", "actor_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    from_stage: Mapped[Optional[str]] = mapped_column(sa.String(30))
    to_stage: Mapped[str] = mapped_column(sa.String(30))
    actor_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[Optional[str]] = mapped_column(sa.Text)
    close_reason: Mapped[Optional[str]] = mapped_column(sa.String(30))
    override: Mapped[bool] = mapped_column(default=False)

    actor: Mapped[Optional[User]] = relationship()


class Consent(db.Model):  # type: ignore[name-defined,misc]
    """A consent given or withdrawn for one channel, with when, how and which text."""

    __tablename__ = "consents"
    __table_args__ = (
        sa.CheckConstraint(_in("channel", CONSENT_CHANNELS), name="channel"),
        sa.Index("ix_consents_lead_at", "lead_id", "at"),  # a lead's consent history
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    channel: Mapped[str] = mapped_column(sa.String(20))
    granted: Mapped[bool]
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    method: Mapped[str] = mapped_column(sa.String(20))  # web_form, phone, staff, api, import
    text_version: Mapped[Optional[str]] = mapped_column(sa.String(40))
    ip_address: Mapped[Optional[str]] = mapped_column(sa.String(64))
    recorded_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))


# --------------------------------------------------------------------------- intake


class Call(db.Model):  # type: ignore[name-defined,misc]
    """One call on a clinic line, upserted by Twilio's CallSid."""

    __tablename__ = "calls"
    __table_args__ = (
        sa.CheckConstraint(_in("direction", CALL_DIRECTIONS), name="direction"),
        sa.CheckConstraint(_in("status", CALL_STATUSES), name="status"),
        # Serves: a lead's calls on its page and timeline.
        sa.Index("ix_calls_lead_started", "lead_id", "started_at"),
        # Serves: the API's date filter and the dashboard's call volume by period.
        sa.Index("ix_calls_started_at", "started_at"),
        # Serves: the API's from_number filter.
        sa.Index("ix_calls_from_number", "from_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    call_sid: Mapped[Optional[str]] = mapped_column(sa.String(64), unique=True)  # the upsert key
    lead_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))
    from_number: Mapped[Optional[str]] = mapped_column(sa.String(32))
    to_number: Mapped[Optional[str]] = mapped_column(sa.String(32))
    line: Mapped[Optional[str]] = mapped_column(sa.String(20))  # the clinic line, E.164
    campaign: Mapped[Optional[str]] = mapped_column(sa.String(120))
    direction: Mapped[str] = mapped_column(sa.String(10))
    status: Mapped[str] = mapped_column(sa.String(20))
    sequence_number: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Clinic-local hour (0–23) and weekday (0 = Monday), fixed at insert: right across DST.
    local_hour: Mapped[int] = mapped_column(sa.SmallInteger, default=0)
    local_weekday: Mapped[int] = mapped_column(sa.SmallInteger, default=0)
    duration_seconds: Mapped[int] = mapped_column(default=0)
    recording_url: Mapped[Optional[str]] = mapped_column(sa.String(500))
    answered: Mapped[bool] = mapped_column(default=False)  # a staff leg picked up
    voicemail: Mapped[bool] = mapped_column(default=False)
    missed: Mapped[bool] = mapped_column(default=False)
    handled_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    disposition: Mapped[Optional[str]] = mapped_column(sa.String(40))
    notes: Mapped[Optional[str]] = mapped_column(sa.Text)
    not_a_patient: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    handled_by: Mapped[Optional[User]] = relationship()


class AppointmentRequest(db.Model):  # type: ignore[name-defined,misc]
    """One submission of the public form, kept exactly as the patient sent it."""

    __tablename__ = "appointment_requests"
    __table_args__ = (sa.Index("ix_appointment_requests_lead_at", "lead_id", "submitted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    first_name: Mapped[str] = mapped_column(sa.String(100), default="")
    last_name: Mapped[str] = mapped_column(sa.String(100), default="")
    phone: Mapped[Optional[str]] = mapped_column(sa.String(40))
    email: Mapped[Optional[str]] = mapped_column(sa.String(254))
    message: Mapped[Optional[str]] = mapped_column(sa.Text)
    answers: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    consent_text_version: Mapped[Optional[str]] = mapped_column(sa.String(40))
    ip_address: Mapped[Optional[str]] = mapped_column(sa.String(64))
    landing_page: Mapped[Optional[str]] = mapped_column(sa.String(500))
    referrer: Mapped[Optional[str]] = mapped_column(sa.String(500))
    utm_source: Mapped[Optional[str]] = mapped_column(sa.String(120))
    utm_medium: Mapped[Optional[str]] = mapped_column(sa.String(120))
    utm_campaign: Mapped[Optional[str]] = mapped_column(sa.String(120))


# --------------------------------------------------------------------------- daily work


class Task(db.Model):  # type: ignore[name-defined,misc]
    """A follow-up with a due time and an assignee (call back, send records, schedule)."""

    __tablename__ = "tasks"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", TASK_KINDS), name="kind"),
        # One call-back task per missed call, however often Twilio retries.
        sa.UniqueConstraint("call_id", "kind", name="uq_tasks_call_kind"),
        # Serves: "my tasks" (open tasks of one assignee by due time).
        sa.Index("ix_tasks_assignee_done_due", "assignee_id", "done_at", "due_at"),
        # Serves: a lead's tasks, and the lead's next due task.
        sa.Index("ix_tasks_lead_done_due", "lead_id", "done_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))
    call_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("calls.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))
    title: Mapped[str] = mapped_column(sa.String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    assignee_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    attempt: Mapped[Optional[int]]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    done_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    done_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))

    assignee: Mapped[Optional[User]] = relationship(foreign_keys=[assignee_id])
    lead: Mapped[Optional[Lead]] = relationship(foreign_keys=[lead_id], viewonly=True)
    call: Mapped[Optional[Call]] = relationship(foreign_keys=[call_id], viewonly=True)


class Note(db.Model):  # type: ignore[name-defined,misc]
    """A staff note on a lead."""

    __tablename__ = "notes"
    __table_args__ = (sa.Index("ix_notes_lead_at", "lead_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    author_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[Optional[User]] = relationship()


class Appointment(db.Model):  # type: ignore[name-defined,misc]
    """A consult or surgery booked for a lead, and its outcome."""

    __tablename__ = "appointments"
    __table_args__ = (
        sa.CheckConstraint(_in("kind", APPOINTMENT_KINDS), name="kind"),
        sa.CheckConstraint("outcome IS NULL OR " + _in("outcome", APPOINTMENT_OUTCOMES), name="outcome"),
        sa.Index("ix_appointments_lead_starts", "lead_id", "starts_at"),  # a lead's appointments
        sa.Index("ix_appointments_surgeon_starts", "surgeon_id", "starts_at"),  # a surgeon's day
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(sa.ForeignKey("leads.id"))
    kind: Mapped[str] = mapped_column(sa.String(20))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    surgeon_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    location: Mapped[Optional[str]] = mapped_column(sa.String(200))
    outcome: Mapped[Optional[str]] = mapped_column(sa.String(20))
    notes: Mapped[Optional[str]] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))

    surgeon: Mapped[Optional[User]] = relationship(foreign_keys=[surgeon_id])


class Notification(db.Model):  # type: ignore[name-defined,misc]
    """A message on a user's home page (e.g. a surgeon's decision on their lead)."""

    __tablename__ = "notifications"
    # Serves: a user's unread notifications on their home page.
    __table_args__ = (sa.Index("ix_notifications_user_read", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    lead_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))
    message: Mapped[str] = mapped_column(sa.String(300))  # no patient words: names only by link
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


# --------------------------------------------------------------------------- audit


class AuditEvent(db.Model):  # type: ignore[name-defined,misc]
    """An append-only record of a view of or change to patient data (triggers refuse edits)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_at", "at"),  # the admin's log, newest first
        sa.Index("ix_audit_events_user_at", "user_id", "at"),  # filtered by user
        sa.Index("ix_audit_events_lead_at", "lead_id", "at"),  # filtered by lead
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    user_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(sa.String(60))
    lead_id: Mapped[Optional[int]] = mapped_column(sa.ForeignKey("leads.id"))
    # For list pages and exports: the ids shown, and other non-patient details.
    detail: Mapped[Optional[dict[str, Any]]] = mapped_column(sa.JSON)
    ip_address: Mapped[Optional[str]] = mapped_column(sa.String(64))
    via: Mapped[str] = mapped_column(sa.String(10), default="web")  # web, api, cli, webhook

    user: Mapped[Optional[User]] = relationship()


# --------------------------------------------------------------------------- dashboard roll-ups
# Kept by ``crm.rollups`` in the same transaction as every write (see its docstring). Each
# aggregate row is keyed by ``grain`` ("d" day, "w" week from Monday, "m" month) and ``bucket``
# (the first clinic-local date of that day, week or month); "none" is stored as "" or 0 so that
# the key columns can form the primary key.


class RollupLeadFacts(db.Model):  # type: ignore[name-defined,misc]
    """What one lead adds to the lead roll-ups, so a change can take the old contribution back."""

    __tablename__ = "rollup_lead_facts"

    lead_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    counted: Mapped[bool]
    day: Mapped[date] = mapped_column(sa.Date)  # clinic-local day the lead was created
    source: Mapped[str] = mapped_column(sa.String(20))
    campaign: Mapped[str] = mapped_column(sa.String(120))
    landing_page: Mapped[str] = mapped_column(sa.String(500))
    practice_id: Mapped[int]
    reached: Mapped[int] = mapped_column(sa.SmallInteger)
    tags: Mapped[str] = mapped_column(sa.Text)  # active tag codes, sorted, comma-separated
    owner_id: Mapped[int] = mapped_column(server_default="0")  # the lead's owner (0: none)
    contact_by: Mapped[int]  # who made the first contact (0: nobody known)
    speed_minutes: Mapped[Optional[int]]  # whole business minutes to first contact; NULL: waiting
    moves: Mapped[list[list[Any]]] = mapped_column(sa.JSON)  # [[day, actor, moves, conversions]]


def _rollup(name: str, keys: list[sa.Column[Any]], values: list[str]) -> sa.Table:
    return sa.Table(
        name,
        db.metadata,
        sa.Column("grain", sa.String(1), primary_key=True),
        sa.Column("bucket", sa.Date, primary_key=True),
        *keys,
        *(sa.Column(v, sa.Integer, nullable=False, server_default="0") for v in values),
    )


def _key(name: str, type_: Any) -> sa.Column[Any]:
    return sa.Column(name, type_, primary_key=True, autoincrement=False)


rollup_leads = _rollup(
    "rollup_leads",
    [_key("source", sa.String(20)), _key("campaign", sa.String(120)), _key("reached", sa.SmallInteger)],
    ["leads"],
)
rollup_lead_tags = _rollup(
    "rollup_lead_tags", [_key("tag", sa.String(40)), _key("reached", sa.SmallInteger)], ["leads"]
)
rollup_lead_origins = _rollup(
    "rollup_lead_origins",
    [_key("kind", sa.String(10)), _key("value", sa.String(500)), _key("reached", sa.SmallInteger)],
    ["leads"],
)
rollup_speed = _rollup("rollup_speed", [_key("minutes", sa.Integer)], ["leads"])
rollup_speed_staff = _rollup(
    "rollup_speed_staff", [_key("contact_by", sa.Integer), _key("minutes", sa.Integer)], ["leads"]
)
rollup_calls = _rollup(
    "rollup_calls",
    [_key("weekday", sa.SmallInteger), _key("hour", sa.SmallInteger)],
    ["calls", "inbound", "missed", "callbacks", "callbacks_on_time"],
)
rollup_staff = _rollup("rollup_staff", [_key("user_id", sa.Integer)], ["contacts", "moves", "conversions"])
# The lead roll-ups again under one dashboard filter each (``filter``: "s:<source>",
# "c:<campaign>", "o:<owner id>" or "t:<tag>"): conversion rows by ``kind`` (source, campaign,
# tag, landing, practice) and ``value``, and the speed histogram by who made the first contact.
rollup_filter_leads = _rollup(
    "rollup_filter_leads",
    [
        _key("filter", sa.String(130)),
        _key("kind", sa.String(10)),
        _key("value", sa.String(500)),
        _key("reached", sa.SmallInteger),
    ],
    ["leads"],
)
rollup_filter_speed = _rollup(
    "rollup_filter_speed",
    [_key("filter", sa.String(130)), _key("contact_by", sa.Integer), _key("minutes", sa.Integer)],
    ["leads"],
)
