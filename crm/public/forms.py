"""The public appointment form: fields, validation, and its cookie-free anti-forgery token.

This form is filled in by patients, often on a phone and often inside an iframe on the
clinic's own site, where third-party cookies are blocked. So it carries no session CSRF
token; a signed, time-limited token in a hidden field (``form_token``) takes its place,
checked together with the ``Origin`` header, a honeypot field and a per-address rate limit
(see ``crm/public/routes.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from wtforms import (
    BooleanField,
    EmailField,
    Field,
    HiddenField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TelField,
    TextAreaField,
)
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from crm import clock, phones
from crm.intake import CONSENT_TEXT_VERSION, ContactIn, WebRequestIn
from crm.text import CONTROL_CHARS  # the bytes a patient cannot type

FORM_TOKEN_SALT = "public-form"  # noqa: S105 - a salt (namespace), not a secret  # nosec B105
THANKS_TOKEN_SALT = "public-thanks"  # noqa: S105 - a salt (namespace), not a secret  # nosec B105
FORM_TOKEN_MAX_AGE = 2 * 60 * 60  # a patient may leave the page open while they find their MRI report
THANKS_TOKEN_MAX_AGE = 60 * 60
DEFAULT_MIN_FILL_SECONDS = 2  # faster than any person types: a bot

MESSAGE_MAX = 5000
LINE_BREAKS = re.compile(r"[\r\n]")
UNREADABLE = "\ufffd"  # what werkzeug puts where the browser sent bytes that are not UTF-8

WHERE_CHOICES = [
    SelectChoice("upper", "Neck / upper back"),
    SelectChoice("mid", "Mid back"),
    SelectChoice("lower", "Lower back"),
]
SIDE_CHOICES = [SelectChoice("left", "Left"), SelectChoice("right", "Right")]
PT_CHOICES = [
    SelectChoice("no", "No"),
    SelectChoice("helped", "Yes, it helped"),
    SelectChoice("did_not_help", "Yes, it did not help"),
    SelectChoice("ongoing", "I'm in PT now"),
]
CHOOSE_SHOWN = "Please choose from the options shown."
YES_NO = [SelectChoice("no", "No"), SelectChoice("yes", "Yes")]
TIME_CHOICES = [
    SelectChoice("Any time", "Any time during office hours"),
    SelectChoice("Morning", "Morning (8 am – noon)"),
    SelectChoice("Afternoon", "Afternoon (noon – 5 pm)"),
]
LANGUAGE_CHOICES = [
    SelectChoice("English", "English"),
    SelectChoice("Spanish", "Spanish (Español)"),
    SelectChoice("Vietnamese", "Vietnamese (Tiếng Việt)"),
    SelectChoice("Chinese", "Chinese (中文)"),
    SelectChoice("Other", "Another language"),
]
CONSENT_TEXT = (
    "By ticking a box you agree that Advanced Spine Center may contact you about this request "
    "in the ways you tick. Texts may carry your carrier's message and data rates. A detailed "
    "voicemail may mention your symptoms, so tick it only if nobody else listens to your "
    "messages. You can change your mind at any time: just tell us, or reply STOP to a text."
)

# Campaign fields come from the embedding page's address, not from the patient: they are
# trimmed to fit quietly rather than refused (the patient could not fix them anyway).
CAMPAIGN_LIMITS = {
    "landing_page": 500,
    "referrer": 500,
    "utm_source": 120,
    "utm_medium": 120,
    "utm_campaign": 120,
}


def clean_hidden(value: str | None, limit: int) -> str:
    """Trim a value the patient did not type: drop control characters and cut to fit."""
    if not value:
        return ""
    return CONTROL_CHARS.sub("", LINE_BREAKS.sub(" ", value)).strip()[:limit]


def readable_text(*, multiline: bool = False) -> Any:
    """Refuse NUL and other control characters, and bytes that were not UTF-8, in plain words."""

    def check(form: FlaskForm, field: Field) -> None:
        text = field.data or ""
        if CONTROL_CHARS.search(text) or (not multiline and LINE_BREAKS.search(text)):
            raise ValidationError("This contains hidden control characters. Please retype it.")
        if UNREADABLE in text:
            raise ValidationError("Some characters could not be read. Please retype them.")

    return check


def too_long(limit: int) -> str:
    return f"Please keep this under {limit:,} characters."


class MultiCheckboxField(SelectMultipleField):
    """A group of checkboxes (several answers may apply)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class AppointmentRequestForm(FlaskForm):
    """What a patient tells us to request an appointment (PRODUCT §6, item 1)."""

    class Meta:
        csrf = False  # replaced by the signed form token: no cookie needed (see module docstring)

    first_name = StringField(
        "First name",
        filters=[lambda v: v.strip() if v else v],
        validators=[
            DataRequired("Please enter your first name."),
            Length(max=100, message=too_long(100)),
            readable_text(),
        ],
    )
    last_name = StringField(
        "Last name",
        filters=[lambda v: v.strip() if v else v],
        validators=[
            DataRequired("Please enter your last name."),
            Length(max=100, message=too_long(100)),
            readable_text(),
        ],
    )
    phone = TelField(
        "Phone",
        filters=[lambda v: v.strip() if v else v],
        validators=[Length(max=40, message=too_long(40)), readable_text()],
    )
    email = EmailField(
        "Email",
        filters=[lambda v: v.strip() if v else v],
        validators=[
            Optional(),
            Length(max=254, message=too_long(254)),
            readable_text(),
            Email("Please check this email address; it should look like name@example.com."),
        ],
    )
    message = TextAreaField(
        "Describe your symptoms",
        validators=[Length(max=MESSAGE_MAX, message=too_long(MESSAGE_MAX)), readable_text(multiline=True)],
    )
    where_it_hurts = MultiCheckboxField(
        "Where does it hurt?", choices=WHERE_CHOICES, invalid_choice_message=CHOOSE_SHOWN
    )
    side = MultiCheckboxField("Which side?", choices=SIDE_CHOICES, invalid_choice_message=CHOOSE_SHOWN)
    tried_pt = RadioField(
        "Have you tried physical therapy?",
        choices=PT_CHOICES,
        validators=[Optional()],
        invalid_choice_message=CHOOSE_SHOWN,
    )
    red_flag_bladder = RadioField(
        "Since this started, any new trouble controlling your bladder or bowels, "
        "or numbness between your legs?",
        choices=YES_NO,
        invalid_choice_message="Please answer yes or no.",
    )
    red_flag_weakness = RadioField(
        "Any new weakness in a leg or foot?",
        choices=YES_NO,
        invalid_choice_message="Please answer yes or no.",
    )
    preferred_time = SelectField(
        "Best time to call", choices=TIME_CHOICES, default="Any time", invalid_choice_message=CHOOSE_SHOWN
    )
    language = SelectField(
        "Preferred language", choices=LANGUAGE_CHOICES, default="English", invalid_choice_message=CHOOSE_SHOWN
    )
    consent_phone = BooleanField("Phone calls")
    consent_sms = BooleanField("Text messages (SMS)")
    consent_email = BooleanField("Emails")
    consent_detailed_voicemail = BooleanField("OK to leave a detailed voicemail")

    # Honeypot: hidden from people by CSS and from screen readers; only a bot fills it in.
    website = StringField("Leave this field empty")

    form_token = HiddenField()
    landing_page = HiddenField()
    referrer = HiddenField()
    utm_source = HiddenField()
    utm_medium = HiddenField()
    utm_campaign = HiddenField()

    consent_errors: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consent_errors = []
        self.normalized_phone: str | None = None

    def validate_phone(self, field: Field) -> None:
        if not field.data:
            if not self.email.data:
                raise ValidationError("Please enter a phone number or an email address, so we can reach you.")
            return
        self.normalized_phone = phones.normalize(field.data)
        if self.normalized_phone is None:
            raise ValidationError(
                "We couldn't read this phone number. Please enter it with the area code, like (469) 231-4567."
            )

    def validate(self, extra_validators: Any = None) -> bool:
        ok = super().validate(extra_validators)
        channels = (self.consent_phone.data, self.consent_sms.data, self.consent_email.data)
        if not any(channels):
            self.consent_errors.append("Please tick at least one way we may contact you.")
        if (
            (self.consent_phone.data or self.consent_sms.data)
            and not self.phone.data
            and not self.phone.errors
        ):
            self.phone.errors = [*self.phone.errors, "Please add a phone number so we can call or text you."]
        if self.consent_email.data and not self.email.data and not self.email.errors:
            self.email.errors = [*self.email.errors, "Please add an email address so we can write to you."]
        return ok and not self.consent_errors and not self.phone.errors and not self.email.errors

    def scrub_for_display(self) -> None:
        """Drop control characters before the form is shown again (the message asks to retype)."""
        for field in self:
            if isinstance(field.data, str):
                field.data = CONTROL_CHARS.sub("", field.data)

    @property
    def honeypot_filled(self) -> bool:
        return bool((self.website.data or "").strip())

    @property
    def red_flag(self) -> bool:
        return self.red_flag_bladder.data == "yes" or self.red_flag_weakness.data == "yes"

    def fill_campaign(self, values: dict[str, str | None]) -> None:
        """Carry the embedding page's campaign (from the query string or headers) in hidden fields."""
        for name, limit in CAMPAIGN_LIMITS.items():
            getattr(self, name).data = clean_hidden(values.get(name), limit)

    def to_request(self, *, ip_address: str, fallback_referrer: str | None = None) -> WebRequestIn:
        """Build what intake takes from a validated form."""
        campaign = {
            name: clean_hidden(getattr(self, name).data, limit) or None
            for name, limit in CAMPAIGN_LIMITS.items()
        }
        if not campaign["referrer"] and fallback_referrer:
            campaign["referrer"] = clean_hidden(fallback_referrer, CAMPAIGN_LIMITS["referrer"]) or None
        contact = ContactIn(
            source="web_form",
            first_name=self.first_name.data,
            last_name=self.last_name.data,
            phone=self.phone.data or None,
            email=(self.email.data or "").lower() or None,
            preferred_time=self.preferred_time.data,
            language=self.language.data,
            campaign=campaign["utm_campaign"],
            consent={
                "phone": bool(self.consent_phone.data),
                "sms": bool(self.consent_sms.data),
                "email": bool(self.consent_email.data),
                "detailed_voicemail": bool(self.consent_detailed_voicemail.data),
            },
            message=self.message.data or None,
            landing_page=campaign["landing_page"],
            referrer=campaign["referrer"],
            utm_source=campaign["utm_source"],
            utm_medium=campaign["utm_medium"],
            utm_campaign=campaign["utm_campaign"],
        )
        return WebRequestIn(
            contact=contact,
            where_it_hurts=list(self.where_it_hurts.data or []),
            side=list(self.side.data or []),
            tried_pt=self.tried_pt.data or None,
            red_flag_bladder=self.red_flag_bladder.data == "yes",
            red_flag_weakness=self.red_flag_weakness.data == "yes",
            ip_address=ip_address,
            submitted_at=clock.now(),
        )


# --------------------------------------------------------------------------- tokens


class ClockSigner(TimestampSigner):
    """A timestamp signer on the app's clock, so tests move time instead of sleeping."""

    def get_timestamp(self) -> int:
        return int(clock.now().timestamp())


def _serializer(salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=salt, signer=ClockSigner)


@dataclass(frozen=True)
class TokenCheck:
    """What a form token says: fine, or why not (``expired``, ``invalid``, ``too_quick``)."""

    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def new_form_token() -> str:
    """Sign a token for one showing of the form; it carries nothing about the patient."""
    return _serializer(FORM_TOKEN_SALT).dumps({"v": CONSENT_TEXT_VERSION})


def check_form_token(token: str | None) -> TokenCheck:
    """Accept a token we signed between the minimum fill time and two hours ago."""
    if not token:
        return TokenCheck("invalid")
    serializer = _serializer(FORM_TOKEN_SALT)
    try:
        _, signed_at = serializer.loads(token[:500], max_age=FORM_TOKEN_MAX_AGE, return_timestamp=True)
    except SignatureExpired:
        return TokenCheck("expired")
    except BadSignature:
        return TokenCheck("invalid")
    minimum = current_app.config.get("PUBLIC_FORM_MIN_SECONDS", DEFAULT_MIN_FILL_SECONDS)
    if (clock.now() - signed_at).total_seconds() < minimum:
        return TokenCheck("too_quick")
    return TokenCheck(None)


def thanks_token(*, urgent: bool) -> str:
    """Sign the outcome the confirmation page needs (urgent or not): no patient data."""
    return _serializer(THANKS_TOKEN_SALT).dumps({"urgent": urgent})


def read_thanks_token(token: str | None) -> bool:
    """Tell whether a confirmation token says the answers included a red flag."""
    if not token:
        return False
    try:
        data = _serializer(THANKS_TOKEN_SALT).loads(token[:500], max_age=THANKS_TOKEN_MAX_AGE)
    except BadSignature:
        return False
    return bool(isinstance(data, dict) and data.get("urgent"))
