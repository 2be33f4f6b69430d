"""The clinic's settings row, read once per request."""

from __future__ import annotations

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
