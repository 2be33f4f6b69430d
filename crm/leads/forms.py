"""Forms of the lead page: edit details and clinical facts, move the stage, add a note."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, NumberRange, Optional, ValidationError

from crm import phones
from crm.leadedit import BIRTH_DATE_RANGE, EDITABLE_FIELDS, plausible_birth_date
from crm.models import CLOSE_REASON_LABELS, CLOSE_REASONS, CONTACT_METHODS, IMAGING_TYPES
from crm.settings import clinic_tz

YES_NO_UNKNOWN = [SelectChoice("", "Not recorded"), SelectChoice("yes", "Yes"), SelectChoice("no", "No")]


def _yes_no(value: Any) -> bool | None:
    """Read a yes/no/unknown choice (and the model's own True/False/None) as a bool or None."""
    if value in (True, "yes"):
        return True
    if value in (False, "no"):
        return False
    return None


def _blank_none(value: Any) -> Any:
    return value or None


def _int_or_none(value: Any) -> int | None:
    return int(value) if value not in (None, "") and str(value).isdigit() else None


def yes_no_field(label: str) -> SelectField:
    return SelectField(label, choices=YES_NO_UNKNOWN, coerce=_yes_no, validate_choice=False)


def clinic_local_to_utc(value: datetime | None) -> datetime | None:
    """Read a naive datetime-local value as the clinic's wall-clock time; return it in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=clinic_tz()).astimezone(UTC)


def _strip(value: str | None) -> str:
    return (value or "").strip()


class ContactFields(FlaskForm):
    """Name, phone and email as every staff form that creates or edits a lead reads them."""

    first_name = StringField("First name", validators=[Length(max=100)], filters=[_strip])
    last_name = StringField("Last name", validators=[Length(max=100)], filters=[_strip])
    phone = StringField("Phone", validators=[Optional(), Length(max=40)])
    email = StringField(
        "Email",
        validators=[
            Optional(),
            Email(message="Enter an email address like name@example.com."),
            Length(max=254),
        ],
        filters=[lambda v: (v or "").strip().lower() or None],
    )

    def validate_date_of_birth(self, field: DateField) -> None:
        """Refuse a date of birth in the future or before 1900 (``leadedit``'s rule)."""
        if field.data and not plausible_birth_date(field.data):
            raise ValidationError(BIRTH_DATE_RANGE)

    def validate_phone(self, field: StringField) -> None:
        """Store the phone in E.164; refuse what can't be read as a number."""
        if not field.data:
            field.data = None
            return
        normalized = phones.normalize(field.data)
        if normalized is None:
            raise ValidationError("Enter a valid phone number, e.g. (972) 499-5457.")
        field.data = normalized


class LeadEditForm(ContactFields):
    """Contact details, consent and clinical facts, saved against the version the editor saw."""

    version = HiddenField(validators=[DataRequired()])
    date_of_birth = DateField("Date of birth", validators=[Optional()])
    preferred_contact = SelectField(
        "Preferred contact",
        choices=[
            SelectChoice("", "No preference"),
            *[SelectChoice(m, {"sms": "Text (SMS)"}.get(m, m.title())) for m in CONTACT_METHODS],
        ],
    )
    preferred_time = StringField("Best time to call", validators=[Length(max=100)], filters=[_blank_none])
    language = StringField("Language", validators=[Length(max=40)], filters=[_blank_none])
    insurance = StringField("Insurance", validators=[Length(max=120)], filters=[_blank_none])

    consent_phone = yes_no_field("Consent to phone calls")
    consent_sms = yes_no_field("Consent to text messages")
    consent_email = yes_no_field("Consent to email")
    consent_detailed_voicemail = yes_no_field("OK to leave a detailed voicemail")

    imaging_type = SelectField(
        "Imaging type",
        choices=[SelectChoice("", "None recorded"), *[SelectChoice(t, t) for t in IMAGING_TYPES]],
    )
    imaging_date = DateField("Imaging date", validators=[Optional()])
    imaging_finding = TextAreaField("Imaging finding (as written)", filters=[_blank_none])
    pt_weeks = IntegerField(
        "Physical therapy (weeks)",
        validators=[
            Optional(),
            NumberRange(min=0, max=520, message="Enter a number of weeks from 0 to 520."),
        ],
    )
    pt_helped = yes_no_field("Physical therapy helped")
    medications = TextAreaField("Medications", filters=[_blank_none])
    injections = TextAreaField("Injections", filters=[_blank_none])
    chiropractic = TextAreaField("Chiropractic", filters=[_blank_none])
    conservative_care_helped = yes_no_field("Conservative care helped")

    def validate_version(self, field: HiddenField) -> None:
        if not str(field.data or "").isdigit():
            raise ValidationError("Reload the page and try again.")

    def changes(self) -> dict[str, Any]:
        """Return every editable value, normalised, keyed by the lead's column names."""
        values = {name: getattr(self, name).data for name in EDITABLE_FIELDS}
        for name in ("preferred_contact", "imaging_type"):
            values[name] = values[name] or None
        return values


class StageForm(FlaskForm):
    """Move a lead; the stage machine decides whether the move is allowed."""

    to = SelectField("Move to", choices=[], validate_choice=False)
    reason = TextAreaField(
        "Reason",
        validators=[Length(max=2000)],
        description="Needed to go back, to close, to decline, and to override the gate.",
    )
    close_reason = SelectField(
        "Close reason",
        choices=[
            SelectChoice("", "—"),
            *[SelectChoice(c, CLOSE_REASON_LABELS[c]) for c in CLOSE_REASONS if c != "duplicate"],
        ],
        validate_choice=False,  # the stage machine names the reasons it accepts
    )
    override = BooleanField("Override the surgical-review gate (manager, with a written reason)")
    surgeon = SelectField("Surgeon", choices=[], coerce=_int_or_none, validate_choice=False)
    consult_at = DateTimeLocalField("Consult date and time", validators=[Optional()], format="%Y-%m-%dT%H:%M")


class NoteForm(FlaskForm):
    """A note on the lead's timeline."""

    body = TextAreaField("Note", validators=[DataRequired(message="Write the note first."), Length(max=5000)])


class MarkReadForm(FlaskForm):
    """Mark one notification read (CSRF only)."""


# --------------------------------------------------------------------------- the queue


class QueueFilterForm(FlaskForm):
    """The queue's filters, read from the query string (bookmarkable; a GET needs no CSRF)."""

    class Meta:
        csrf = False

    q = StringField("Search", description="Name, phone (any format, or its last 4 or 7 digits) or email")
    stage = SelectField("Stage", choices=[], validate_choice=False)
    tag = SelectField("Complaint", choices=[], validate_choice=False)
    source = SelectField("Source", choices=[], validate_choice=False)
    campaign = StringField("Campaign", validators=[Optional(), Length(max=120)])
    owner = SelectField("Owner", choices=[], validate_choice=False)
    created_from = DateField("Created from", validators=[Optional()])
    created_to = DateField("Created to", validators=[Optional()])
    include = SelectField(
        "Show",
        choices=[SelectChoice("", "Open leads"), SelectChoice("closed", "Also closed and not a patient")],
        validate_choice=False,
    )


class ClaimForm(FlaskForm):
    """Claim an unassigned lead (CSRF only)."""


class CallingForm(FlaskForm):
    """Say "I'm calling this patient now", or that the call is over."""

    action = HiddenField(validators=[DataRequired()])

    def validate_action(self, field: HiddenField) -> None:
        if field.data not in ("start", "stop"):
            raise ValidationError("Choose start or stop.")


class BulkForm(FlaskForm):
    """Act on the leads ticked in the queue: reassign them, or mark them not a patient."""

    action = SelectField(
        "With the selected leads",
        choices=[
            SelectChoice("reassign", "Reassign to…"),
            SelectChoice("not_a_patient", "Mark not a patient"),
        ],
    )
    owner = SelectField("New owner", choices=[], validate_choice=False)

    def validate_owner(self, field: SelectField) -> None:
        if self.action.data == "reassign" and not (field.data == "none" or str(field.data or "").isdigit()):
            raise ValidationError("Choose the new owner.")
