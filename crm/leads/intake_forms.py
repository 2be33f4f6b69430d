"""Forms of manual intake: a new lead, a logged call, a merge, a CSV import."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
)

from crm.authz import MAX_ID
from crm.intake import MANUAL_OUTCOMES
from crm.leads.forms import ContactFields, _strip

MANUAL_SOURCES = [
    SelectChoice("phone", "Phone"),
    SelectChoice("walk_in", "Walk-in"),
    SelectChoice("referral", "Referral"),
]
OUTCOME_LABELS = {
    "answered": "Answered: we spoke",
    "no_answer": "No answer",
    "busy": "Busy",
    "voicemail": "Voicemail",
}


class NewLeadForm(ContactFields):
    """A lead the front desk types in: a walk-in, a call, a referral."""

    source = SelectField("Source", choices=MANUAL_SOURCES, default="phone")
    message = TextAreaField(
        "What the patient says (notes)",
        validators=[Length(max=5000)],
        description="Their own words: the complaint tags come from here.",
    )

    def validate(self, extra_validators: object = None) -> bool:  # type: ignore[override]
        if not super().validate(extra_validators):  # type: ignore[arg-type]
            return False
        if not self.phone.data and not self.email.data:
            self.phone.errors = [*self.phone.errors, "Give a phone or an email, so we can reach the patient."]
            return False
        if not self.first_name.data and not self.last_name.data:
            self.last_name.errors = [*self.last_name.errors, "Give the patient's first or last name."]
            return False
        return True


class CallLogForm(FlaskForm):
    """A call the front desk made or took, logged on the lead."""

    direction = SelectField(
        "Direction",
        choices=[
            SelectChoice("outbound", "We called the patient"),
            SelectChoice("inbound", "The patient called"),
        ],
        default="outbound",
    )
    outcome = SelectField("Outcome", choices=[SelectChoice(k, OUTCOME_LABELS[k]) for k in MANUAL_OUTCOMES])
    notes = TextAreaField(
        "Call notes",
        validators=[Length(max=5000)],
        description="What the patient said: the complaint tags come from here.",
    )
    override_reason = StringField(
        "Why we called despite the opt-out", validators=[Length(max=300)], filters=[_strip]
    )


class MergeForm(FlaskForm):
    """Confirm merging this lead into another (the other one survives)."""

    into = IntegerField(
        "Merge into lead number",
        validators=[
            InputRequired(message="Give the number of the lead to keep."),
            NumberRange(min=1, max=MAX_ID, message="Give the number of the lead to keep."),
        ],
    )


class ImportUploadForm(FlaskForm):
    """Upload a CSV file for a preview."""

    kind = SelectField(
        "What the file holds",
        choices=[SelectChoice("leads", "Leads"), SelectChoice("calls", "Call log (phone system export)")],
    )
    file = FileField("CSV file", validators=[FileRequired(message="Choose a CSV file.")])


class ImportCommitForm(FlaskForm):
    """Import the previewed file."""

    token = HiddenField(validators=[DataRequired(), Length(max=64)])
    skip_bad_rows = BooleanField("Skip the bad rows and import the rest")
