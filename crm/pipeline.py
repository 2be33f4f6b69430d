"""The stage machine: which moves exist, who may make them, and the gate to surgical review.

Pages, the API and the CLI all call ``move``; it decides, writes the ``StageChange`` row in
the caller's transaction, and raises ``StageRefused`` with a message for the person when a
move is not allowed. Nothing here reads the request or the signed-in user.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from crm import clock
from crm.extensions import db
from crm.models import (
    CLOSE_REASON_LABELS,
    CLOSE_REASONS,
    STAGE_LABELS,
    STAGES,
    Appointment,
    Lead,
    Notification,
    StageChange,
    Task,
    User,
)
from crm.settings import before_clinic_today, get_settings
from crm.text import in_sentence

REVIEW = "surgical_review"
ORDER = {stage: i for i, stage in enumerate(STAGES)}
OPEN_STAGES = STAGES[: ORDER["closed"]]
DISC_OR_STENOSIS = ("condition:herniated_disc", "condition:stenosis")
GATE_MESSAGE = "needs failed physical therapy, a red flag, or imaging with a disc or stenosis finding"

# PRODUCT §5, as capabilities of the moves below.
MOVERS = frozenset({"front_desk", "manager", "admin"})  # up to surgical review, close, reopen
DECIDERS = frozenset({"surgeon", "manager"})  # a referral's decision
OUTCOME_RECORDERS = frozenset({"front_desk", "surgeon", "manager"})  # consult and surgery steps
GATE_OVERRIDERS = frozenset({"manager"})


class StageRefused(ValueError):
    """A move the stage machine does not allow; the message says why, in plain words."""


@dataclass(frozen=True)
class MoveRequest:
    """A requested move, as pages and the API both describe it."""

    to: str
    reason: str | None = None
    close_reason: str | None = None
    override: bool = False
    surgeon: User | None = None
    consult_at: datetime | None = None


def label(stage: str) -> str:
    """Return a stage's name in words."""
    return STAGE_LABELS.get(stage, stage)


def gate_passed(lead: Lead) -> bool:
    """Tell whether a lead meets the clinic's criteria for surgical review (PRODUCT §4)."""
    tags = set(lead.active_tag_codes)
    if "history:failed_pt" in tags or any(t.startswith("red_flag:") for t in tags):
        return True
    if lead.conservative_care_helped is False or lead.pt_helped is False:
        return True
    return bool(tags & set(DISC_OR_STENOSIS)) and lead.imaging_type is not None


def _roles_for(current: str, to: str, lead: Lead) -> frozenset[str]:
    """Return the roles allowed to move a lead from ``current`` to ``to``."""
    if current == "closed":
        return MOVERS if to == lead.closed_from_stage else frozenset()
    if to == "closed":
        if current in (REVIEW, "consult_scheduled", "consult_completed", "surgery_scheduled"):
            return MOVERS | DECIDERS | OUTCOME_RECORDERS
        return MOVERS
    c, t = ORDER[current], ORDER[to]
    if c < ORDER[REVIEW]:
        # Up to and into review is the front desk's work; past it only a decider (with the gate).
        return MOVERS if t <= ORDER[REVIEW] else DECIDERS & GATE_OVERRIDERS
    if current == REVIEW:
        if to == "consult_scheduled" or t < c:
            return DECIDERS  # accept, or send back to conservative care with a plan
        return frozenset()
    return OUTCOME_RECORDERS | (DECIDERS if t < c else frozenset())


def allowed_targets(lead: Lead, user: User) -> list[str]:
    """List the stages this user may try to move this lead to (the gate may still refuse)."""
    current = lead.stage
    return [stage for stage in STAGES if stage != current and user.role in _roles_for(current, stage, lead)]


def move(
    lead: Lead,
    request: MoveRequest,
    *,
    actor: User | None,
    now: datetime | None = None,
) -> StageChange:
    """Move a lead to another stage, recording who, when and why.

    :raises StageRefused: when the move, the role, a missing reason or the gate says no.
    """
    now = now or clock.now()
    current, to = lead.stage, request.to
    reason = (request.reason or "").strip() or None
    if to not in ORDER:
        raise StageRefused(f"“{to}” is not a stage.")
    if to == current:
        raise StageRefused(f"The lead is already in {label(current)}.")
    if lead.merged_into_id is not None:
        raise StageRefused("This lead was merged into another; work on that one instead.")
    role = actor.role if actor is not None else "system"
    allowed = _roles_for(current, to, lead)
    if actor is not None and role not in allowed:
        raise StageRefused(_role_refusal(current, to, lead, allowed))
    close_reason = _check_reasons(current, to, reason, request, role)
    override = _check_gate(lead, current, to, reason, request, role)
    if current == REVIEW and to == "consult_scheduled" and request.consult_at is None:
        raise StageRefused("Accepting a referral needs the consult's date and time.")
    if (
        to == "consult_scheduled"
        and request.consult_at is not None
        and before_clinic_today(request.consult_at, now)
    ):
        raise StageRefused("The consult's date is in the past. Give a date from today on.")

    change = StageChange(
        lead_id=lead.id,
        from_stage=current,
        to_stage=to,
        actor_id=actor.id if actor else None,
        at=now,
        reason=reason,
        close_reason=close_reason,
        override=override,
    )
    db.session.add(change)
    _apply(lead, current, to, close_reason, request, actor, now)
    if current == REVIEW and actor is not None and role in DECIDERS and to != REVIEW:
        _notify_owner(lead, actor, _decision_words(to, request), now)
    return change


def _role_refusal(current: str, to: str, lead: Lead, allowed: frozenset[str]) -> str:
    if current == "closed":
        back = label(lead.closed_from_stage or "new")
        return f"A closed lead can only be reopened to the stage it was closed from ({back})."
    if not allowed:
        return f"A lead can't move from {label(current)} to {label(to)}."
    if current == REVIEW or ORDER[to] > ORDER[REVIEW]:
        return "Only a surgeon or a manager decides a referral; move the lead to Surgical review first."
    names = " or ".join(sorted(r.replace("_", " ") for r in allowed))
    return f"Only {names} staff can move a lead from {label(current)} to {label(to)}."


def _check_reasons(current: str, to: str, reason: str | None, request: MoveRequest, role: str) -> str | None:
    """Require the reasons PRODUCT §4 asks for; return the close reason, if closing."""
    if to == "closed":
        if request.close_reason not in CLOSE_REASONS:
            reasons = [CLOSE_REASON_LABELS[c] for c in CLOSE_REASONS if c != "duplicate"]
            choices = ", ".join(map(in_sentence, reasons))
            raise StageRefused(f"Closing needs a reason: {choices}.")
        if request.close_reason == "duplicate":
            raise StageRefused("To close a duplicate, merge it into the other lead instead.")
        if current == REVIEW and role in DECIDERS and not reason:
            raise StageRefused("Declining a referral needs a note for the front desk.")
        return request.close_reason
    if current != "closed" and ORDER[to] < ORDER[current] and not reason:
        raise StageRefused(f"Going back to {label(to)} needs a reason.")
    return None


def _check_gate(
    lead: Lead, current: str, to: str, reason: str | None, request: MoveRequest, role: str
) -> bool:
    """Apply the gate to surgical review and past it; return whether it was overridden."""
    # Reopening returns a lead to where it was: the gate was passed then.
    entering = current != "closed" and ORDER[current] < ORDER[REVIEW] <= ORDER[to] < ORDER["closed"]
    if not entering or gate_passed(lead):
        return False
    if not request.override:
        raise StageRefused(f"{label(to)} {GATE_MESSAGE}.")
    if role not in GATE_OVERRIDERS:
        raise StageRefused(f"Only a manager can override the gate: {label(to)} {GATE_MESSAGE}.")
    if not reason:
        raise StageRefused("Overriding the gate needs a written reason.")
    return True


def _apply(
    lead: Lead,
    current: str,
    to: str,
    close_reason: str | None,
    request: MoveRequest,
    actor: User | None,
    now: datetime,
) -> None:
    """Change the lead's own columns to match the move."""
    lead.stage = to
    lead.stage_entered_at = now
    lead.last_activity_at = now
    if to == "closed":
        lead.close_reason = close_reason
        lead.closed_from_stage = current
        lead.in_queue = False
        lead.open_phone_key = None
        return
    if current == "closed":
        lead.close_reason = None
        lead.closed_from_stage = None
        lead.in_queue = not lead.not_a_patient
        _reclaim_phone(lead)
    if to == "contacted" and lead.first_contact_at is None:
        lead.first_contact_at = now
    if to == REVIEW:
        lead.surgeon_id = _surgeon_for(request.surgeon, lead)
    if to == "consult_scheduled" and request.consult_at is not None:
        surgeon_id = lead.surgeon_id or (actor.id if actor and actor.role == "surgeon" else None)
        lead.surgeon_id = surgeon_id
        db.session.add(
            Appointment(
                lead_id=lead.id,
                kind="consult",
                starts_at=request.consult_at,
                surgeon_id=surgeon_id,
                created_by_id=actor.id if actor else None,
                created_at=now,
            )
        )


def _surgeon_for(chosen: User | None, lead: Lead) -> int | None:
    """Pick the surgeon for a referral: the one chosen, else the clinic's default, else none."""
    if chosen is not None:
        if chosen.role != "surgeon" or not chosen.active:
            raise StageRefused("The surgeon chosen is not an active surgeon.")
        return chosen.id
    return get_settings().default_surgeon_id


def _reclaim_phone(lead: Lead) -> None:
    """Give a reopened lead back its phone key, unless another open lead now holds that phone."""
    if not lead.phone or lead.possible_duplicate_of_id is not None:
        return
    holder = db.session.scalar(sa.select(Lead.id).where(Lead.open_phone_key == lead.phone))
    lead.open_phone_key = lead.phone if holder is None else None


def _decision_words(to: str, request: MoveRequest) -> str:
    if to == "consult_scheduled":
        return "accepted the referral and booked a consult"
    if to == "closed":
        return "declined the referral"
    return f"sent the referral back to {label(to)}"


def _notify_owner(lead: Lead, actor: User, words: str, now: datetime) -> None:
    """Tell the lead's owner what the surgeon decided, on their home page."""
    if lead.owner_id is None or lead.owner_id == actor.id:
        return
    db.session.add(
        Notification(user_id=lead.owner_id, lead_id=lead.id, message=f"{actor.name} {words}.", created_at=now)
    )


def request_more_info(
    lead: Lead, *, actor: User, note: str, due_at: datetime, now: datetime | None = None
) -> Task:
    """Ask the owner for more information on a referral; the lead stays in review.

    :raises StageRefused: when the lead is not in review, the role may not decide, or no note.
    """
    now = now or clock.now()
    if lead.stage != REVIEW:
        raise StageRefused("Only a lead in surgical review can be sent back for more information.")
    if actor.role not in DECIDERS:
        raise StageRefused("Only a surgeon or a manager decides a referral.")
    if not note.strip():
        raise StageRefused("Say what information is needed.")
    task = Task(
        lead_id=lead.id,
        kind="more_info",
        title=f"More information for {actor.name}: {note.strip()[:150]}",
        due_at=due_at,
        assignee_id=lead.owner_id,
        created_by_id=actor.id,
        created_at=now,
    )
    db.session.add(task)
    _notify_owner(lead, actor, "asked for more information", now)
    lead.last_activity_at = now
    return task
