"""The clinic's settings row, read once per request, and the rules of changing it (admin only)."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import sqlalchemy as sa
from flask import g, has_app_context

from crm import audit, clock
from crm.extensions import db
from crm.models import STAGES, ClinicSettings, Holiday, User

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


# --------------------------------------------------------------------------- changing them

# The zones a US clinic is in; the one stored is kept on the list whatever it is.
TIMEZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# The stages a lead waits in (closed is an end, not a wait).
AGING_STAGES = tuple(stage for stage in STAGES if stage not in ("surgery_scheduled", "closed"))
SETTINGS_FIELDS = (
    "timezone",
    "business_hours",
    "speed_to_lead_minutes",
    "callback_attempts",
    "callback_window_days",
    "stage_aging_days",
    "default_surgeon_id",
    "round_robin",
)


_RANGES = (("speed_to_lead_minutes", 1, 480), ("callback_attempts", 1, 10), ("callback_window_days", 1, 30))


class SettingsRefused(ValueError):
    """A setting the rules refuse; the message says which and why."""


def clock_time(text: str) -> time | None:
    """Read a stored "HH:MM" as the business clock does ("24:00", midnight, is None); junk is None."""
    from crm.business_hours import _parse_time  # the clock's own reading of the stored shape

    try:
        return _parse_time(text)
    except (ValueError, TypeError):
        return None


def _check_hours(hours: dict[str, list[str]]) -> None:
    for key, span in hours.items():
        name = WEEKDAYS[int(key)]
        if len(span) != 2 or not span[0] or not span[1]:
            raise SettingsRefused(f"{name}: give both the opening and the closing time, or neither (closed).")
        opens, closes = clock_time(span[0]), clock_time(span[1])
        if (
            opens is None
            or (closes is not None and closes <= opens)
            or (closes is None and span[1] != "24:00")
        ):
            raise SettingsRefused(f"{name}: the clinic must close after it opens.")
    if not hours:
        raise SettingsRefused("The clinic must be open on at least one day of the week.")


def update_settings(changes: dict[str, Any], *, actor: User, ip: str | None = None) -> list[str]:
    """Apply an admin's settings; return the names of those that changed (audited by name).

    Changes count from now on: a lead already waiting keeps the first-contact due time computed
    when it arrived, and the dashboard's counts of past days keep the hours they were counted
    with until ``flask --app wsgi metrics rebuild``.

    :raises SettingsRefused: for an unknown time zone, hours that do not make a day, numbers out
        of range, or a default surgeon who is not an active surgeon.
    """
    unknown = set(changes) - set(SETTINGS_FIELDS)
    if unknown:
        raise SettingsRefused(f"These settings can't be changed here: {', '.join(sorted(unknown))}.")
    row = get_settings()
    zone = changes.get("timezone", row.timezone)
    if zone not in set(TIMEZONES) | {row.timezone} and zone not in available_timezones():
        raise SettingsRefused("Choose the clinic's time zone from the list.")
    if "business_hours" in changes:
        _check_hours(changes["business_hours"])
    for name, low, high in (
        ("speed_to_lead_minutes", 1, 480),
        ("callback_attempts", 1, 10),
        ("callback_window_days", 1, 30),
    ):
        if name in changes and not (isinstance(changes[name], int) and low <= changes[name] <= high):
            raise SettingsRefused(
                f"{name.replace('_', ' ').capitalize()} must be a whole number from {low} to {high}."
            )
    if "stage_aging_days" in changes:
        aging = changes["stage_aging_days"]
        if set(aging) != set(AGING_STAGES) or not all(
            isinstance(v, int) and 1 <= v <= 365 for v in aging.values()
        ):
            raise SettingsRefused("Each stage's aging limit must be a whole number of days from 1 to 365.")
    surgeon_id = changes.get("default_surgeon_id")
    if surgeon_id is not None:
        surgeon = db.session.get(User, surgeon_id)
        if surgeon is None or surgeon.role != "surgeon" or not surgeon.active:
            raise SettingsRefused("The default surgeon must be an active surgeon.")
    changed = [name for name in SETTINGS_FIELDS if name in changes and getattr(row, name) != changes[name]]
    for name in changed:
        setattr(row, name, changes[name])
    if changed:
        audit.record("settings_change", user_id=actor.id, detail={"fields": changed}, ip=ip)
    return changed


def add_holiday(day: date, name: str, *, actor: User, ip: str | None = None) -> Holiday:
    """Add a day the clinic is closed (the speed-to-lead clock does not run on it).

    :raises SettingsRefused: for a day already a holiday, or a day more than a year back.
    """
    name = name.strip()
    if not name:
        raise SettingsRefused("Name the holiday.")
    if db.session.scalar(sa.select(Holiday.id).where(Holiday.day == day)) is not None:
        raise SettingsRefused(f"{day:%b %-d, %Y} is already a holiday.")
    if (clinic_today(clock.now()) - day).days > 366:
        raise SettingsRefused("That day is more than a year ago; only days to come change the clock.")
    holiday = Holiday(day=day, name=name[:120])
    db.session.add(holiday)
    db.session.flush()
    audit.record("holiday_add", user_id=actor.id, detail={"day": day.isoformat()}, ip=ip)
    return holiday


def remove_holiday(holiday: Holiday, *, actor: User, ip: str | None = None) -> None:
    """Remove a holiday (audited with its date)."""
    audit.record("holiday_remove", user_id=actor.id, detail={"day": holiday.day.isoformat()}, ip=ip)
    db.session.delete(holiday)
