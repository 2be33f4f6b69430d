"""Forms of the admin area: create an API token, revoke one, reset a user's two-factor sign-in."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange
from wtforms.widgets import HiddenInput

from crm.authz import MAX_ID
from crm.models import TOKEN_SCOPES


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
