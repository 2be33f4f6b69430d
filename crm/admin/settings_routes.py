"""The admin's clinic settings page: hours, holidays, targets, cadence, aging limits, routing.

The rules of what a value may be live in ``crm.settings`` (``update_settings``, ``add_holiday``,
``remove_holiday``); this page reads the form into them and shows a refusal beside the form.
"""

from __future__ import annotations

from datetime import time
from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, render_template, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import BooleanField, DateField, IntegerField, SelectField, StringField, TimeField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, NumberRange, Optional
from wtforms.widgets import HiddenInput

from crm.admin.routes import bp
from crm.authz import MAX_ID, roles
from crm.extensions import db
from crm.models import STAGE_LABELS, Holiday, User
from crm.security import client_ip
from crm.settings import (
    AGING_STAGES,
    TIMEZONES,
    WEEKDAYS,
    SettingsRefused,
    add_holiday,
    clock_time,
    get_settings,
    remove_holiday,
    update_settings,
)


class SettingsForm(FlaskForm):
    """Every setting the clinic's staff change; the weekday and stage fields are added below."""

    timezone = SelectField("Time zone", choices=[SelectChoice(tz, tz.replace("_", " ")) for tz in TIMEZONES])
    speed_to_lead_minutes = IntegerField(
        "Speed-to-lead target (business minutes)", validators=[DataRequired(), NumberRange(1, 480)]
    )
    callback_attempts = IntegerField(
        "Call-back attempts before closing", validators=[DataRequired(), NumberRange(1, 10)]
    )
    callback_window_days = IntegerField(
        "Days the call-back attempts are spread over", validators=[DataRequired(), NumberRange(1, 30)]
    )
    default_surgeon = SelectField("Default surgeon for referrals", choices=[], validate_choice=False)
    round_robin = BooleanField("Share new leads among the front desk in turn (round-robin)")


for _day, _name in enumerate(WEEKDAYS):
    setattr(SettingsForm, f"open_{_day}", TimeField(f"{_name} opens", validators=[Optional()]))
    setattr(SettingsForm, f"close_{_day}", TimeField(f"{_name} closes", validators=[Optional()]))
for _stage in AGING_STAGES:
    setattr(
        SettingsForm,
        f"aging_{_stage}",
        IntegerField(f"{STAGE_LABELS[_stage]}: days", validators=[DataRequired(), NumberRange(1, 365)]),
    )


class HolidayForm(FlaskForm):
    """Add a day the clinic is closed."""

    day = DateField("Date", validators=[DataRequired(message="Choose the date.")])
    name = StringField(
        "Name",
        validators=[DataRequired(message="Name the holiday."), Length(max=120)],
        filters=[lambda v: (v or "").strip()],
    )


class HolidayRemoveForm(FlaskForm):
    """Remove one holiday, named by its id."""

    holiday_id = IntegerField(widget=HiddenInput(), validators=[DataRequired(), NumberRange(1, MAX_ID)])


def _surgeons() -> list[User]:
    return list(
        db.session.scalars(
            sa.select(User).where(User.active.is_(True), User.role == "surgeon").order_by(User.name)
        )
    )


def _filled_form() -> SettingsForm:
    """The form holding the settings as they are."""
    s = get_settings()
    form = SettingsForm(formdata=None)
    form.timezone.data = s.timezone
    form.speed_to_lead_minutes.data = s.speed_to_lead_minutes
    form.callback_attempts.data = s.callback_attempts
    form.callback_window_days.data = s.callback_window_days
    form.default_surgeon.data = str(s.default_surgeon_id or "")
    form.round_robin.data = s.round_robin
    for day in range(7):
        span = (s.business_hours or {}).get(str(day)) or []
        if len(span) == 2:
            opens, closes = clock_time(span[0]), clock_time(span[1])
            getattr(form, f"open_{day}").data = opens
            getattr(form, f"close_{day}").data = time(0) if closes is None and opens else closes
    for stage in AGING_STAGES:
        getattr(form, f"aging_{stage}").data = (s.stage_aging_days or {}).get(stage)
    return form


def _page(
    form: SettingsForm | None = None,
    holiday_form: HolidayForm | None = None,
    refusal: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    form = form or _filled_form()
    stored = get_settings().timezone
    zones = TIMEZONES if stored in TIMEZONES else (stored, *TIMEZONES)  # never changed by a save
    form.timezone.choices = [SelectChoice(tz, tz.replace("_", " ")) for tz in zones]
    form.default_surgeon.choices = [SelectChoice("", "None: unassigned referrals show to every surgeon")] + [
        SelectChoice(str(u.id), u.name) for u in _surgeons()
    ]
    holidays = db.session.scalars(sa.select(Holiday).order_by(Holiday.day)).all()
    page = render_template(
        "admin/settings.html",
        form=form,
        weekdays=list(enumerate(WEEKDAYS)),
        aging_stages=AGING_STAGES,
        holidays=holidays,
        holiday_form=holiday_form or HolidayForm(formdata=None),
        remove_form=HolidayRemoveForm(formdata=None),
        refusal=refusal,
    )
    return page, status


@bp.route("/settings")
@roles("admin")
def settings() -> tuple[str, int]:
    """Show the clinic's settings."""
    return _page()


@bp.route("/settings", methods=["POST"])
@roles("admin")
def save_settings() -> Response | tuple[str, int]:
    """Save the clinic's settings (audited with the names of the settings changed)."""
    form = SettingsForm()
    if not form.validate_on_submit():
        check = "Check the fields marked below."
        return _page(form, refusal={"section": "settings", "message": check}, status=400)
    hours: dict[str, list[str]] = {}
    for day in range(7):
        opens, closes = getattr(form, f"open_{day}").data, getattr(form, f"close_{day}").data
        if opens or closes:
            # A close of 12:00 AM is midnight, the end of the day ("24:00" in the settings).
            shut = "24:00" if closes == time(0) and opens else closes.strftime("%H:%M") if closes else ""
            hours[str(day)] = [opens.strftime("%H:%M") if opens else "", shut]
    changes: dict[str, Any] = {
        "timezone": form.timezone.data,
        "business_hours": hours,
        "speed_to_lead_minutes": form.speed_to_lead_minutes.data,
        "callback_attempts": form.callback_attempts.data,
        "callback_window_days": form.callback_window_days.data,
        "stage_aging_days": {stage: getattr(form, f"aging_{stage}").data for stage in AGING_STAGES},
        "default_surgeon_id": int(form.default_surgeon.data)
        if (form.default_surgeon.data or "").isdigit()
        else None,
        "round_robin": bool(form.round_robin.data),
    }
    try:
        changed = update_settings(changes, actor=current_user, ip=client_ip())
    except SettingsRefused as error:
        db.session.rollback()
        return _page(form, refusal={"section": "settings", "message": str(error)}, status=400)
    db.session.commit()
    flash("Settings saved." if changed else "Nothing to save: no setting changed.", "success")
    return redirect(url_for("admin.settings"))


@bp.route("/settings/holidays", methods=["POST"])
@roles("admin")
def add_holiday_page() -> Response | tuple[str, int]:
    """Add a day the clinic is closed."""
    form = HolidayForm()
    if not form.validate_on_submit():
        first = next((errors[0] for errors in form.errors.values() if errors), "Check the holiday.")
        return _page(holiday_form=form, refusal={"section": "holiday", "message": first}, status=400)
    try:
        add_holiday(form.day.data, form.name.data or "", actor=current_user, ip=client_ip())  # type: ignore[arg-type]
    except SettingsRefused as error:
        db.session.rollback()
        return _page(holiday_form=form, refusal={"section": "holiday", "message": str(error)}, status=400)
    db.session.commit()
    flash(f"Added {form.name.data} ({form.day.data:%b %-d, %Y}).", "success")
    return redirect(url_for("admin.settings", _anchor="holidays-h"))


@bp.route("/settings/holidays/remove", methods=["POST"])
@roles("admin")
def remove_holiday_page() -> Response:
    """Remove a holiday."""
    form = HolidayRemoveForm()
    if not form.validate_on_submit():
        flash("Choose the holiday to remove.", "error")
        return redirect(url_for("admin.settings", _anchor="holidays-h"))
    holiday = db.get_or_404(Holiday, form.holiday_id.data)
    remove_holiday(holiday, actor=current_user, ip=client_ip())
    db.session.commit()
    flash("Holiday removed.", "success")
    return redirect(url_for("admin.settings", _anchor="holidays-h"))
