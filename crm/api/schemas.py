"""Marshmallow schemas shared by the API's views and its OpenAPI document (one declaration)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from crm import phones
from crm.authz import MAX_ID
from crm.leadedit import BIRTH_DATE_RANGE, EDITABLE_FIELDS, plausible_birth_date
from crm.models import CALL_DIRECTIONS, CALL_STATUSES, CLOSE_REASONS, IMAGING_TYPES, SOURCES, STAGES

CONTACT_METHODS = ("phone", "sms", "email")


class Strict(Schema):
    """Refuse any field the schema does not declare."""

    class Meta:
        unknown = RAISE


class StrictBool(fields.Boolean):
    """A JSON ``true``/``false`` only (not "yes", 1 or "true")."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false.")
        return value


class StrictInt(fields.Integer):
    """A JSON integer only (not "3", 3.0 or true)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError("must be an integer.")
        return int(value)


def _birth_date(value: date | None) -> None:
    if value is not None and not plausible_birth_date(value):
        raise ValidationError(BIRTH_DATE_RANGE)


def _phone(value: str) -> None:
    if value and phones.normalize(value) is None:
        raise ValidationError("is not a phone number that can be reached.")


def no_nul(value: str) -> None:
    """Refuse a NUL character: PostgreSQL cannot store one in text (it answered 500)."""
    if "\x00" in value:
        raise ValidationError("must not contain a NUL character.")


def text(limit: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=[validate.Length(max=limit), no_nul], **kwargs)


DATE_OR_DATETIME = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2}))?$"


class DateOrDateTime(fields.Field):
    """A date (clinic-local day) or an ISO 8601 date-time with an offset."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"type": "string", "pattern": DATE_OR_DATETIME, **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> date | datetime:
        if isinstance(value, str):
            try:
                if len(value) == 10:
                    return date.fromisoformat(value)
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                if parsed.tzinfo is not None:
                    return parsed
            except ValueError:
                pass
        raise ValidationError("must be a date (YYYY-MM-DD) or an ISO 8601 date-time with an offset.")


class LeadOut(Schema):
    id = fields.Integer(required=True)
    first_name = fields.String(required=True)
    last_name = fields.String(required=True)
    phone = fields.String(allow_none=True, metadata={"description": "E.164"})
    email = fields.String(allow_none=True)
    date_of_birth = fields.Date(allow_none=True)
    stage = fields.String(required=True)
    tags = fields.List(fields.String(), attribute="active_tag_codes")
    urgent = fields.Boolean()
    owner = fields.Function(lambda lead: lead.owner.email if lead.owner else None, allow_none=True)
    source = fields.String()
    campaign = fields.String(allow_none=True)
    preferred_contact = fields.String(allow_none=True)
    preferred_time = fields.String(allow_none=True)
    language = fields.String(allow_none=True)
    insurance = fields.String(allow_none=True)
    consent_phone = fields.Boolean(allow_none=True)
    consent_sms = fields.Boolean(allow_none=True)
    consent_email = fields.Boolean(allow_none=True)
    consent_detailed_voicemail = fields.Boolean(allow_none=True)
    created_at = fields.DateTime()
    version = fields.Integer(required=True)


class Paged(Schema):
    """One page of a list: how many match in all, this page's number, and how many pages."""

    total = fields.Integer(required=True)
    page = fields.Integer(required=True)
    pages = fields.Integer(required=True)


class LeadPage(Paged):
    items = fields.List(fields.Nested(LeadOut), required=True)


class LeadQuery(Schema):
    stage = fields.String(validate=validate.OneOf(STAGES))
    tag = text(80)
    source = fields.String(validate=validate.OneOf(SOURCES))
    owner = fields.Email(metadata={"description": "the owner's email"})
    q = text(200)
    created_from = DateOrDateTime(metadata={"description": "date (clinic time zone) or ISO 8601 date-time"})
    created_to = DateOrDateTime(metadata={"description": "date (clinic time zone) or ISO 8601 date-time"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))


class LeadIn(Strict):
    """POST /api/v1/leads: PRODUCT §6 item 6's fields, no others."""

    first_name = text(100)
    last_name = text(100)
    phone = fields.String(validate=[validate.Length(max=64), _phone], allow_none=True)
    email = fields.Email(validate=validate.Length(max=254), allow_none=True)
    date_of_birth = fields.Date(allow_none=True, validate=_birth_date)
    message = text(20_000, allow_none=True, metadata={"description": "the patient's own words (tagged)"})
    source = fields.String(load_default="api", validate=validate.OneOf(SOURCES))
    campaign = text(120, allow_none=True)
    referring_provider = text(200, allow_none=True)
    insurance = text(120, allow_none=True)
    preferred_contact = fields.String(validate=validate.OneOf(CONTACT_METHODS), allow_none=True)
    preferred_time = text(100, allow_none=True)
    language = text(40, allow_none=True)
    consent_phone = StrictBool(allow_none=True)
    consent_sms = StrictBool(allow_none=True)
    consent_email = StrictBool(allow_none=True)
    consent_detailed_voicemail = StrictBool(allow_none=True)

    @validates_schema
    def _someone(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not any(
            (data.get("first_name") or "").strip() or data.get(k) for k in ("last_name", "phone", "email")
        ):
            raise ValidationError("A lead needs a name, a phone or an email.", "_schema")


class LeadPatch(Strict):
    """PATCH /api/v1/leads/<id>: the editable fields, and the ``version`` read (or ``If-Match``)."""

    version = StrictInt(validate=validate.Range(min=1))
    first_name = text(100)
    last_name = text(100)
    phone = fields.String(validate=[validate.Length(max=64), _phone], allow_none=True)
    email = fields.Email(validate=validate.Length(max=254), allow_none=True)
    date_of_birth = fields.Date(allow_none=True, validate=_birth_date)
    preferred_contact = fields.String(validate=validate.OneOf(CONTACT_METHODS), allow_none=True)
    preferred_time = text(100, allow_none=True)
    language = text(40, allow_none=True)
    insurance = text(120, allow_none=True)
    consent_phone = StrictBool(allow_none=True)
    consent_sms = StrictBool(allow_none=True)
    consent_email = StrictBool(allow_none=True)
    consent_detailed_voicemail = StrictBool(allow_none=True)
    imaging_type = fields.String(validate=validate.OneOf(IMAGING_TYPES), allow_none=True)
    imaging_date = fields.Date(allow_none=True)
    imaging_finding = text(5000, allow_none=True)
    pt_weeks = StrictInt(validate=validate.Range(min=0, max=520), allow_none=True)
    pt_helped = StrictBool(allow_none=True)
    medications = text(5000, allow_none=True)
    injections = text(5000, allow_none=True)
    chiropractic = text(5000, allow_none=True)
    conservative_care_helped = StrictBool(allow_none=True)


assert set(LeadPatch._declared_fields) - {"version"} == set(EDITABLE_FIELDS)


class StageIn(Strict):
    """POST /api/v1/leads/<id>/stage (PRODUCT §6 item 6)."""

    to = fields.String(required=True, validate=validate.OneOf(STAGES))
    reason = text(2000, allow_none=True)
    close_reason = fields.String(validate=validate.OneOf(CLOSE_REASONS), allow_none=True)
    override = StrictBool(load_default=False)
    surgeon = fields.Email(allow_none=True, metadata={"description": "a surgeon's email"})
    consult_at = fields.AwareDateTime(allow_none=True)


class TriageIn(Strict):
    text = fields.String(required=True, validate=validate.Length(min=1, max=20_000))


class TriageOut(Schema):
    tags = fields.List(fields.String(), required=True)
    urgent = StrictBool(required=True)


class CallOut(Schema):
    id = fields.Integer(required=True)
    call_sid = fields.String(allow_none=True)
    lead_id = fields.Integer(allow_none=True)
    from_number = fields.String(allow_none=True)
    to_number = fields.String(allow_none=True)
    line = fields.String(allow_none=True)
    direction = fields.String(required=True)
    status = fields.String(required=True)
    started_at = fields.DateTime()
    duration = fields.Integer(attribute="duration_seconds")
    recording_url = fields.String(allow_none=True)
    answered = StrictBool()
    voicemail = StrictBool()
    missed = StrictBool()
    notes = fields.String(allow_none=True)


class CallPage(Paged):
    items = fields.List(fields.Nested(CallOut), required=True)


class CallQuery(Schema):
    call_sid = text(64)
    lead_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    status = fields.String(validate=validate.OneOf(CALL_STATUSES))
    from_number = text(32)
    to_number = text(32)
    started_from = DateOrDateTime(metadata={"description": "date (clinic time zone) or ISO 8601 date-time"})
    started_to = DateOrDateTime(metadata={"description": "date (clinic time zone) or ISO 8601 date-time"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=100))


class CallIn(Strict):
    """POST /api/v1/calls: as the phone system's webhook would tell it."""

    call_sid = fields.String(validate=validate.Length(min=1, max=64), allow_none=True)
    from_number = fields.String(required=True, validate=validate.Length(min=1, max=32))
    to_number = fields.String(required=True, validate=validate.Length(min=1, max=32))
    direction = fields.String(required=True, validate=validate.OneOf(CALL_DIRECTIONS))
    status = fields.String(required=True, validate=validate.OneOf(CALL_STATUSES))
    started_at = fields.AwareDateTime(allow_none=True)
    duration = StrictInt(load_default=0, validate=validate.Range(min=0, max=86_400))
    recording_url = fields.Url(validate=validate.Length(max=500), allow_none=True)
    notes = text(5000, allow_none=True)
