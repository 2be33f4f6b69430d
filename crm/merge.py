"""Merging two leads of one patient (PRODUCT §2): the survivor keeps everything of both.

Staff decide that two leads are one person; ``merge_leads`` then re-points every child row
of the other lead (calls, requests, notes, tag history, tasks, stage changes, appointments,
consents, notifications) to the survivor with bulk UPDATEs, unites the complaint tags (a
tag staff removed on either side stays removed), ORs the urgent flag, and closes the other
lead as ``duplicate`` with its own ``StageChange`` — ``pipeline.move`` refuses that close
reason on purpose, so that a duplicate is only ever closed by a merge. Nothing is deleted:
the other lead keeps its row, points at the survivor (``merged_into_id``) and leaves the
queue and every metric. Audit rows are append-only and stay on the lead they were about.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from crm import audit
from crm.extensions import db
from crm.leadedit import CLINICAL_FIELDS
from crm.models import (
    Appointment,
    AppointmentRequest,
    Call,
    Consent,
    Lead,
    LeadSearchTerm,
    LeadTag,
    Note,
    Notification,
    StageChange,
    TagChange,
    Task,
    User,
)

# Child rows that simply follow the patient to the survivor.
MOVED = (Call, AppointmentRequest, Note, TagChange, Task, StageChange, Appointment, Consent, Notification)
_RANK = {"auto": 0, "patient": 1, "staff": 2}


class MergeRefused(ValueError):
    """A merge that cannot be made; the message says why, in plain words."""


def check_merge(survivor: Lead, other: Lead) -> None:
    """Refuse a merge of a lead into itself, into a closed or merged lead, or of a merged lead.

    :raises MergeRefused: with the reason.
    """
    if survivor.id == other.id:
        raise MergeRefused("A lead cannot be merged into itself.")
    if survivor.merged_into_id is not None:
        raise MergeRefused(
            f"Lead #{survivor.id} was itself merged into lead #{survivor.merged_into_id}: "
            "merge into that one."
        )
    if survivor.stage == "closed":
        raise MergeRefused(f"Lead #{survivor.id} is closed: reopen it first, or merge the other way round.")
    if other.merged_into_id is not None:
        raise MergeRefused(f"Lead #{other.id} is already merged into lead #{other.merged_into_id}.")


def merge_leads(
    survivor: Lead,
    other: Lead,
    *,
    actor: User,
    now: datetime,
    ip: str | None = None,
    via: str = "web",
) -> None:
    """Merge ``other`` into ``survivor`` in the caller's transaction (PRODUCT §2).

    :raises MergeRefused: see ``check_merge``.
    """
    check_merge(survivor, other)
    counts = {model.__tablename__: _move(model, other.id, survivor.id) for model in MOVED}
    _merge_tags(survivor, other, actor=actor, now=now)
    _merge_search_terms(survivor, other)
    # Leads that pointed at the merged-away one now point at the survivor.
    for column in (Lead.possible_duplicate_of_id, Lead.merged_into_id):
        db.session.execute(
            sa.update(Lead)
            .where(column == other.id, Lead.id != survivor.id)
            .values({column.key: survivor.id, "version": Lead.version + 1})
            .execution_options(synchronize_session=False)
        )
    _close_other(other, survivor, actor=actor, now=now)
    _unite_facts(survivor, other)
    audit.record(
        "lead_merge",
        user_id=actor.id,
        lead_id=survivor.id,
        detail={"merged_lead_id": other.id, "moved": counts},
        ip=ip,
        via=via,
    )
    audit.record(
        "lead_merged_away",
        user_id=actor.id,
        lead_id=other.id,
        detail={"survivor_id": survivor.id},
        ip=ip,
        via=via,
    )
    db.session.flush()


def _move(model: type, from_id: int, to_id: int) -> int:
    result = db.session.execute(
        sa.update(model)
        .where(model.lead_id == from_id)  # type: ignore[attr-defined]
        .values(lead_id=to_id)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _wins(a: LeadTag, b: LeadTag) -> LeadTag:
    """Decide between two rows of one tag code: a person's latest word, then removal, then rank."""
    if a.origin == "staff" and b.origin == "staff":
        return a if a.updated_at >= b.updated_at else b
    if "removed" in (a.state, b.state):
        return a if a.state == "removed" else b
    if a.origin == "staff" or b.origin == "staff":
        return a if a.origin == "staff" else b
    return a if _RANK[a.origin] >= _RANK[b.origin] else b


def _merge_tags(survivor: Lead, other: Lead, *, actor: User, now: datetime) -> None:
    """Unite the tags: codes only the other had move over; shared codes keep the winning word."""
    mine = {tag.code: tag for tag in survivor.tags}
    only_other: list[str] = []
    for theirs in other.tags:
        own = mine.get(theirs.code)
        if own is None:
            only_other.append(theirs.code)
            continue
        win = _wins(own, theirs)
        if win is theirs and (own.state, own.origin) != (theirs.state, theirs.origin):
            if own.state != theirs.state:
                action = "removed" if theirs.state == "removed" else "added"
                db.session.add(
                    TagChange(
                        lead_id=survivor.id,
                        code=own.code,
                        action=action,
                        origin=theirs.origin,
                        actor_id=actor.id,
                        at=now,
                    )
                )
            own.state, own.origin, own.set_by_id, own.updated_at = (
                theirs.state,
                theirs.origin,
                theirs.set_by_id,
                now,
            )
    if any(tag.code.startswith("red_flag:") and tag.state == "active" for tag in other.tags):
        survivor.urgent = True
    db.session.flush()
    if only_other:
        db.session.execute(
            sa.update(LeadTag)
            .where(LeadTag.lead_id == other.id, LeadTag.code.in_(only_other))
            .values(lead_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
    db.session.expire(survivor, ["tags"])
    db.session.expire(other, ["tags"])


def _merge_search_terms(survivor: Lead, other: Lead) -> None:
    """Let search find the survivor by the other lead's name words too (the other keeps its own)."""
    have = set(
        db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == survivor.id))
    )
    theirs = set(db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == other.id)))
    db.session.add_all(LeadSearchTerm(lead_id=survivor.id, term=term) for term in sorted(theirs - have))


def _close_other(other: Lead, survivor: Lead, *, actor: User, now: datetime) -> None:
    """Close the merged-away lead as a duplicate, with its history row, and free its phone key."""
    from_stage = other.stage
    db.session.add(
        StageChange(
            lead_id=other.id,
            from_stage=from_stage,
            to_stage="closed",
            actor_id=actor.id,
            at=now,
            reason=f"Merged into lead #{survivor.id}",
            close_reason="duplicate",
        )
    )
    other.closed_from_stage = other.closed_from_stage if from_stage == "closed" else from_stage
    other.stage = "closed"
    other.close_reason = "duplicate"
    other.stage_entered_at = now
    other.merged_into_id = survivor.id
    other.in_queue = False
    other.open_phone_key = None
    other.first_contact_due_at = None
    other.next_task_due_at = None
    other.updated_at = now
    db.session.flush()  # the phone key is free before the survivor may claim it


# What a merge may fill in on the survivor: contact details and the clinical facts.
FILLABLE_FIELDS = (
    "email",
    "date_of_birth",
    "preferred_contact",
    "preferred_time",
    "language",
    "insurance",
    "referring_practice_id",
    *CLINICAL_FIELDS,
)


def _unite_facts(survivor: Lead, other: Lead) -> None:
    """Fill what the survivor lacks from the other, and keep the earliest first attempt/contact."""
    survivor.urgent = survivor.urgent or other.urgent
    for name in FILLABLE_FIELDS:
        if getattr(survivor, name) is None and getattr(other, name) is not None:
            setattr(survivor, name, getattr(other, name))
    for name in ("first_attempt_at", "first_contact_at"):
        values = [v for v in (getattr(survivor, name), getattr(other, name)) if v is not None]
        setattr(survivor, name, min(values, default=None))
    if survivor.first_contact_at is not None:
        survivor.first_contact_due_at = None
    survivor.last_activity_at = max(survivor.last_activity_at, other.last_activity_at)
    survivor.next_task_due_at = db.session.scalar(
        sa.select(sa.func.min(Task.due_at)).where(Task.lead_id == survivor.id, Task.done_at.is_(None))
    )
    if survivor.possible_duplicate_of_id == other.id:
        survivor.possible_duplicate_of_id = None  # staff decided: the same person
    if not survivor.phone and other.phone:
        survivor.phone, survivor.phone_last7, survivor.phone_last4 = (
            other.phone,
            other.phone_last7,
            other.phone_last4,
        )
    if survivor.phone and survivor.open_phone_key is None and survivor.possible_duplicate_of_id is None:
        db.session.flush()
        try:
            with db.session.begin_nested():
                survivor.open_phone_key = survivor.phone
                db.session.flush()
        except IntegrityError:
            survivor.open_phone_key = None


def lead_counts(lead_id: int) -> dict[str, int]:
    """Count what a lead holds, for the merge confirmation (one query per kind, a few kinds)."""
    kinds = {
        "calls": Call,
        "requests": AppointmentRequest,
        "notes": Note,
        "tasks": Task,
        "appointments": Appointment,
    }
    return {
        name: int(
            db.session.scalar(sa.select(sa.func.count()).select_from(model).where(model.lead_id == lead_id))
            or 0  # type: ignore[attr-defined]
        )
        for name, model in kinds.items()
    }
