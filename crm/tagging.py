"""A lead's complaint tags, and the one place for "a person's word wins" (PRODUCT §3).

Every path that tags a lead comes through here: the tagger's suggestions and the form's
own answers (``apply_auto_tags``), and staff adding or removing a tag (``set_staff_tag``,
``remove_staff_tag``). The rules:

- an automatic or patient tag is added only where the lead has no row for that code: a
  staff tag is never touched, and a tag staff removed stays removed (its row is kept with
  ``state="removed"``), so the next call note does not bring it back;
- the patient's own statement outranks the tagger: a form answer takes over an automatic
  tag of the same code (origin "patient"), never the other way round;
- any red flag that becomes active marks the lead urgent; only a person clears it
  (with a reason, elsewhere).

Each change writes a ``TagChange`` row for the timeline, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from crm import clock
from crm.extensions import db
from crm.models import Lead, LeadTag, TagChange, User
from crm.triage import ALL_TAGS, is_urgent

AUTO_ORIGINS = ("auto", "patient")
# Which origin outranks which: a person (staff) over the patient's statement over the tagger.
_RANK = {"auto": 0, "patient": 1, "staff": 2}


class UnknownTag(ValueError):
    """A tag code that is not one of the tagger's codes."""


def _check_code(code: str) -> str:
    if code not in ALL_TAGS:
        raise UnknownTag(f"“{code}” is not a complaint tag.")
    return code


def _ensure_id(lead: Lead) -> int:
    """Give a new lead its id, so tag history rows can point at it."""
    if lead.id is None:
        db.session.add(lead)
        db.session.flush()
    return lead.id


def _row(lead: Lead, code: str) -> LeadTag | None:
    return next((tag for tag in lead.tags if tag.code == code), None)


def _log(lead_id: int, code: str, action: str, origin: str, actor_id: int | None, at: datetime) -> None:
    db.session.add(
        TagChange(lead_id=lead_id, code=code, action=action, origin=origin, actor_id=actor_id, at=at)
    )


def apply_auto_tags(
    lead: Lead, codes: Iterable[str], *, origin: str = "auto", now: datetime | None = None
) -> list[str]:
    """Add the tagger's (or the patient's) tags a person has not decided on; return those added."""
    if origin not in AUTO_ORIGINS:
        raise ValueError(f"automatic tags come from the tagger or the patient, not {origin!r}")
    at = now or clock.now()
    wanted = sorted({_check_code(code) for code in codes})
    if not wanted:
        return []
    lead_id = _ensure_id(lead)
    added: list[str] = []
    for code in wanted:
        row = _row(lead, code)
        if row is None:
            lead.tags.append(LeadTag(code=code, origin=origin, state="active", created_at=at, updated_at=at))
            _log(lead_id, code, "added", origin, None, at)
            added.append(code)
        elif row.state == "active" and _RANK[origin] > _RANK[row.origin]:
            row.origin = origin  # the patient said it too: their statement, not a guess
            row.updated_at = at
        # A removed row, or one a person set, stays as the person left it.
    if is_urgent(added):
        lead.urgent = True
    return added


def new_lead_tag_rows(
    lead_id: int, codes: Iterable[str], *, origin: str = "auto", at: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the ``LeadTag`` and ``TagChange`` rows ``apply_auto_tags`` writes on a lead with no tags.

    For bulk intake, which inserts new leads with Core statements; the lead is urgent when
    ``is_urgent`` says so of the same codes.
    """
    if origin not in AUTO_ORIGINS:
        raise ValueError(f"automatic tags come from the tagger or the patient, not {origin!r}")
    wanted = sorted({_check_code(code) for code in codes})
    tags = [
        {
            "lead_id": lead_id,
            "code": code,
            "origin": origin,
            "state": "active",
            "created_at": at,
            "updated_at": at,
        }
        for code in wanted
    ]
    changes = [
        {"lead_id": lead_id, "code": code, "action": "added", "origin": origin, "actor_id": None, "at": at}
        for code in wanted
    ]
    return tags, changes


def set_staff_tag(lead: Lead, code: str, actor: User, *, now: datetime | None = None) -> LeadTag:
    """Set a tag as staff's own word (restoring one that was removed); return its row."""
    _check_code(code)
    at = now or clock.now()
    lead_id = _ensure_id(lead)
    row = _row(lead, code)
    if row is None:
        row = LeadTag(code=code, origin="staff", state="active", set_by_id=actor.id, created_at=at)
        lead.tags.append(row)
    elif row.state == "active" and row.origin == "staff":
        return row
    was_active = row.state == "active" and row.id is not None
    row.origin, row.state, row.set_by_id, row.updated_at = "staff", "active", actor.id, at
    if not was_active:
        _log(lead_id, code, "added", "staff", actor.id, at)
    if is_urgent([code]):
        lead.urgent = True
    return row


def remove_staff_tag(lead: Lead, code: str, actor: User, *, now: datetime | None = None) -> LeadTag | None:
    """Remove a tag and remember the removal, so no automatic path brings it back."""
    _check_code(code)
    at = now or clock.now()
    row = _row(lead, code)
    if row is None or row.state == "removed":
        return row
    lead_id = _ensure_id(lead)
    row.origin, row.state, row.set_by_id, row.updated_at = "staff", "removed", actor.id, at
    _log(lead_id, code, "removed", "staff", actor.id, at)
    return row
