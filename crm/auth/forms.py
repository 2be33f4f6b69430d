"""Sign-in, second-factor and account security forms."""

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Regexp

# No address has a control character; PostgreSQL would refuse the NUL in the throttle lookup.
NO_CONTROL_CHARS = Regexp(r"^[^\x00-\x1f\x7f]*\Z", message="Enter your email without hidden characters.")


class LoginForm(FlaskForm):
    """Email and password; the messages never say which one was wrong."""

    email = EmailField(
        "Email", validators=[DataRequired("Enter your email."), Length(max=254), NO_CONTROL_CHARS]
    )
    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=256)])


class LogoutForm(FlaskForm):
    """An empty form: sign-out is a POST, so it carries a CSRF token."""


class CodeForm(FlaskForm):
    """The second sign-in step: a code from the authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired("Enter the code from your app."), Length(max=40)])


class EnrolForm(FlaskForm):
    """Confirm a new authenticator: the secret being set up rides back in a signed token."""

    token = HiddenField(validators=[DataRequired("This setup has expired. Start again."), Length(max=400)])
    code = StringField(
        "6-digit code from your app",
        validators=[DataRequired("Enter the code from your app."), Length(max=40)],
    )


class RegenerateCodesForm(FlaskForm):
    """New recovery codes, after a current code."""

    code = StringField(
        "Code from your app", validators=[DataRequired("Enter the code from your app."), Length(max=40)]
    )


class DisableTwoFactorForm(FlaskForm):
    """Turning two-factor sign-in off needs both factors."""

    password = PasswordField("Password", validators=[DataRequired("Enter your password."), Length(max=256)])
    code = StringField(
        "Code from your app", validators=[DataRequired("Enter the code from your app."), Length(max=40)]
    )
