"""Forms of the admin area: staff accounts, API tokens, two-factor resets."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange
from wtforms.widgets import HiddenInput

from crm.accounts import role_choices
from crm.authz import MAX_ID
from crm.models import TOKEN_SCOPES


def _strip(value: str | None) -> str:
    return (value or "").strip()


class TokenCreateForm(FlaskForm):
    """Name a new token, choose whose it is and its scope."""

    user_id = SelectField("Acts as (staff member)", coerce=int, validators=[DataRequired()])
    name = StringField(
        "Name", validators=[DataRequired(), Length(max=80)], filters=[lambda v: (v or "").strip()]
    )
    scope = SelectField(
        "Scope",
        choices=[SelectChoice(s, {"read": "Read only", "write": "Read and write"}[s]) for s in TOKEN_SCOPES],
        default="read",
    )


class TokenRevokeForm(FlaskForm):
    """Revoke one token, named by its id."""

    token_id = IntegerField(widget=HiddenInput(), validators=[DataRequired(), NumberRange(1, MAX_ID)])


class ResetTwoFactorForm(FlaskForm):
    """Clear one staff member's two-factor setup, named by their id."""

    user_id = IntegerField(widget=HiddenInput(), validators=[DataRequired(), NumberRange(min=1, max=MAX_ID)])


class UserCreateForm(FlaskForm):
    """Add a staff member: name, email, role and a first password they change later."""

    name = StringField("Full name", validators=[DataRequired(), Length(max=120)], filters=[_strip])
    email = StringField("Email", validators=[DataRequired(), Length(max=254)], filters=[_strip])
    role = SelectField("Role", choices=[SelectChoice(r, label) for r, label in role_choices()])
    password = PasswordField(
        "First password",
        validators=[DataRequired(), Length(max=256)],
        description="At least 15 characters; tell it to them in person. They sign in with it.",
    )


class UserDeactivateForm(FlaskForm):
    """Deactivate one staff member, giving their open leads to someone (or to nobody)."""

    user_id = IntegerField(widget=HiddenInput(), validators=[DataRequired(), NumberRange(min=1, max=MAX_ID)])
    leads_to = SelectField("Give their open leads to", choices=[], validate_choice=False)


class UserPasswordForm(FlaskForm):
    """Set a new password for a staff member who lost theirs (every session of theirs ends)."""

    user_id = IntegerField(widget=HiddenInput(), validators=[DataRequired(), NumberRange(min=1, max=MAX_ID)])
    password = PasswordField("New password", validators=[DataRequired(), Length(max=256)])
