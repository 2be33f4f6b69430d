"""The clinic's settings row, read once per request."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from flask import g, has_app_context

from crm.extensions import db
from crm.models import ClinicSettings

DEFAULT_TZ = "America/Chicago"


def get_settings() -> ClinicSettings:
    """Return the settings row (created with defaults on first use), cached per request."""
    if has_app_context() and "clinic_settings" in g:
        cached: ClinicSettings = g.clinic_settings
        return cached
    row = db.session.scalar(sa.select(ClinicSettings).where(ClinicSettings.id == 1))
    if row is None:
        row = ClinicSettings(id=1)
        db.session.add(row)
        db.session.flush()
    if has_app_context():
        g.clinic_settings = row
    return row


def clinic_tz() -> ZoneInfo:
    """Return the clinic's time zone."""
    return ZoneInfo(get_settings().timezone or DEFAULT_TZ)


def clinic_today(now: datetime) -> date:
    """Return the clinic-local date of ``now``."""
    return now.astimezone(clinic_tz()).date()


def before_clinic_today(moment: datetime, now: datetime) -> bool:
    """Tell whether ``moment`` falls on a clinic-local day before today's (earlier today is not).

    Booking a consult or an appointment, or setting a task's due time, on a day already gone is
    a slip of the date picker (a year, a month); earlier today is kept: a task for this morning.
    """
    tz = clinic_tz()
    return moment < datetime.combine(clinic_today(now), time(0), tzinfo=tz)
