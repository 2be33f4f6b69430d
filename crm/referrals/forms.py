"""Forms of a surgeon's decision on a referral: accept, decline, ask for more, take."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateTimeLocalField, SelectField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from crm.models import CLOSE_REASON_LABELS
from crm.text import in_sentence

BACK_TO_CARE = "conservative_care"
DECLINE_CHOICES = [
    SelectChoice("not_a_candidate", "Close: " + in_sentence(CLOSE_REASON_LABELS["not_a_candidate"])),
    SelectChoice(BACK_TO_CARE, "Send back to conservative care, with a plan"),
    SelectChoice(
        "resolved_conservatively", "Close: " + in_sentence(CLOSE_REASON_LABELS["resolved_conservatively"])
    ),
    SelectChoice("went_elsewhere", "Close: " + in_sentence(CLOSE_REASON_LABELS["went_elsewhere"])),
    SelectChoice("referred_to_er", "Close: " + in_sentence(CLOSE_REASON_LABELS["referred_to_er"])),
]


class AcceptForm(FlaskForm):
    """Accept the referral and book the consult (clinic time)."""

    consult_at = DateTimeLocalField(
        "Consult date and time",
        format="%Y-%m-%dT%H:%M",
        validators=[InputRequired(message="Choose the consult's date and time.")],
    )
    note = TextAreaField("Note for the front desk (optional)", validators=[Optional(), Length(max=2000)])


class DeclineForm(FlaskForm):
    """Decline: close with a reason, or send back to conservative care with a plan."""

    outcome = SelectField("Decision", choices=DECLINE_CHOICES)
    reason = TextAreaField(
        "Reason or plan",
        validators=[
            DataRequired(message="Write the reason or the plan for the front desk."),
            Length(max=2000),
        ],
    )


class MoreInfoForm(FlaskForm):
    """Ask the lead's owner for more information; the lead stays in review."""

    needed = TextAreaField(
        "What is needed",
        validators=[DataRequired(message="Say what information is needed."), Length(max=1000)],
    )


class TakeForm(FlaskForm):
    """Take an unassigned referral (CSRF only)."""
