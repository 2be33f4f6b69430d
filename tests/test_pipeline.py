"""The stage machine: moves, roles, reasons, the surgical-review gate, reopening."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from crm.extensions import db
from crm.models import STAGES, Appointment, Notification, StageChange, Task
from crm.pipeline import GATE_MESSAGE, MoveRequest, StageRefused, allowed_targets, move, request_more_info
from crm.settings import get_settings
from tests.conftest import utc

CONSULT_AT = utc(2026, 12, 3, 15, 0)


def changes(lead_id: int) -> list[tuple[str | None, str]]:
    rows = db.session.execute(
        sa.select(StageChange.from_stage, StageChange.to_stage)
        .where(StageChange.lead_id == lead_id)
        .order_by(StageChange.id)
    ).all()
    return [tuple(r) for r in rows]


def test_it_moves_forward_and_records_who_and_when(make_lead, make_user):
    desk = make_user("front_desk")
    lead = make_lead()
    change = move(lead, MoveRequest(to="contacted"), actor=desk, now=utc(2026, 3, 2, 15, 0))
    db.session.commit()
    assert (lead.stage, change.actor_id, change.at) == ("contacted", desk.id, utc(2026, 3, 2, 15, 0))
    assert changes(lead.id) == [("new", "contacted")]
    assert lead.first_contact_at == utc(2026, 3, 2, 15, 0)


def test_it_may_skip_stages_forward(make_lead, make_user):
    lead = make_lead()
    move(lead, MoveRequest(to="physical_therapy"), actor=make_user("front_desk"))
    db.session.commit()
    assert changes(lead.id) == [("new", "physical_therapy")]


def test_going_back_needs_a_reason(make_lead, make_user):
    desk = make_user("front_desk")
    lead = make_lead(stage="evaluation")
    with pytest.raises(StageRefused, match="Going back to Contacted needs a reason"):
        move(lead, MoveRequest(to="contacted"), actor=desk)
    db.session.rollback()
    move(lead, MoveRequest(to="contacted", reason="Imaging postponed"), actor=desk)
    db.session.commit()
    assert db.session.scalar(sa.select(StageChange.reason).where(StageChange.lead_id == lead.id)) == (
        "Imaging postponed"
    )


@pytest.mark.parametrize(
    ("tags", "facts"),
    [
        (["history:failed_pt"], {}),
        (["red_flag:weakness"], {}),
        (["condition:herniated_disc"], {"imaging_type": "MRI"}),
        (["condition:stenosis"], {"imaging_type": "CT"}),
        ([], {"conservative_care_helped": False}),
        ([], {"pt_helped": False}),
    ],
)
def test_the_gate_admits_what_the_clinic_treats(make_lead, make_user, tags, facts):
    lead = make_lead(stage="evaluation", tags=tags, **facts)
    move(lead, MoveRequest(to="surgical_review"), actor=make_user("front_desk"))
    db.session.commit()
    assert lead.stage == "surgical_review"


@pytest.mark.parametrize(
    ("tags", "facts"),
    [
        ([], {}),
        (["condition:herniated_disc"], {}),
        (["region:lower", "radiating:leg"], {"imaging_type": "MRI"}),
    ],
)
def test_the_gate_refuses_and_says_what_is_missing(make_lead, make_user, tags, facts):
    lead = make_lead(stage="evaluation", tags=tags, **facts)
    with pytest.raises(StageRefused) as refused:
        move(lead, MoveRequest(to="surgical_review"), actor=make_user("front_desk"))
    assert GATE_MESSAGE in str(refused.value)
    db.session.rollback()
    assert changes(lead.id) == []


def test_the_gate_also_guards_a_jump_past_review(make_lead, make_user):
    manager = make_user("manager")
    lead = make_lead(stage="contacted")
    with pytest.raises(StageRefused, match=GATE_MESSAGE):
        move(lead, MoveRequest(to="consult_scheduled", consult_at=CONSULT_AT), actor=manager)


def test_a_manager_overrides_the_gate_with_a_written_reason(make_lead, make_user):
    manager = make_user("manager")
    lead = make_lead(stage="evaluation")
    with pytest.raises(StageRefused, match="written reason"):
        move(lead, MoveRequest(to="surgical_review", override=True), actor=manager)
    db.session.rollback()
    change = move(
        lead, MoveRequest(to="surgical_review", override=True, reason="Referred by Dr. Lee"), actor=manager
    )
    db.session.commit()
    assert change.override is True and lead.stage == "surgical_review"


@pytest.mark.parametrize("role", ["front_desk", "admin", "surgeon"])
def test_only_a_manager_may_override(make_lead, make_user, role):
    lead = make_lead(stage="evaluation")
    with pytest.raises(StageRefused):
        move(lead, MoveRequest(to="surgical_review", override=True, reason="please"), actor=make_user(role))


def test_entering_review_assigns_the_chosen_else_the_default_surgeon(make_lead, make_user):
    desk, dr_a, dr_b = make_user("front_desk"), make_user("surgeon"), make_user("surgeon")
    chosen = make_lead(stage="evaluation", tags=["history:failed_pt"])
    move(chosen, MoveRequest(to="surgical_review", surgeon=dr_a), actor=desk)
    unassigned = make_lead(stage="evaluation", tags=["history:failed_pt"])
    move(unassigned, MoveRequest(to="surgical_review"), actor=desk)
    get_settings().default_surgeon_id = dr_b.id
    defaulted = make_lead(stage="evaluation", tags=["history:failed_pt"])
    move(defaulted, MoveRequest(to="surgical_review"), actor=desk)
    db.session.commit()
    assert (chosen.surgeon_id, unassigned.surgeon_id, defaulted.surgeon_id) == (dr_a.id, None, dr_b.id)


def test_a_surgeon_accepts_with_a_consult_and_the_owner_is_told(make_lead, make_user):
    owner, surgeon = make_user("front_desk"), make_user("surgeon")
    lead = make_lead(stage="surgical_review", owner_id=owner.id, tags=["history:failed_pt"])
    with pytest.raises(StageRefused, match="consult's date"):
        move(lead, MoveRequest(to="consult_scheduled"), actor=surgeon)
    db.session.rollback()
    move(lead, MoveRequest(to="consult_scheduled", consult_at=CONSULT_AT), actor=surgeon)
    db.session.commit()
    appointment = db.session.scalars(sa.select(Appointment).where(Appointment.lead_id == lead.id)).one()
    assert (appointment.kind, appointment.starts_at, appointment.surgeon_id) == (
        "consult",
        CONSULT_AT,
        surgeon.id,
    )
    note = db.session.scalars(sa.select(Notification).where(Notification.user_id == owner.id)).one()
    assert "accepted" in note.message


def test_a_surgeon_declines_back_to_conservative_care_with_a_plan(make_lead, make_user):
    surgeon = make_user("surgeon")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    with pytest.raises(StageRefused, match="needs a reason"):
        move(lead, MoveRequest(to="conservative_care"), actor=surgeon)
    db.session.rollback()
    move(lead, MoveRequest(to="conservative_care", reason="Try 6 weeks of PT first"), actor=surgeon)
    db.session.commit()
    assert lead.stage == "conservative_care"


def test_declining_to_closed_needs_a_close_reason_and_a_note(make_lead, make_user):
    surgeon = make_user("surgeon")
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    with pytest.raises(StageRefused, match="Closing needs a reason") as refused:
        move(lead, MoveRequest(to="closed", reason="x"), actor=surgeon)
    assert "not a candidate, " in str(refused.value) and "referred to the ER." in str(refused.value)
    with pytest.raises(StageRefused, match="note for the front desk"):
        move(lead, MoveRequest(to="closed", close_reason="not_a_candidate"), actor=surgeon)


@pytest.mark.parametrize("role", ["front_desk", "admin"])
def test_the_front_desk_and_admin_do_not_decide_referrals(make_lead, make_user, role):
    lead = make_lead(stage="surgical_review", tags=["history:failed_pt"])
    with pytest.raises(StageRefused, match="Only a surgeon or a manager"):
        move(lead, MoveRequest(to="consult_scheduled", consult_at=CONSULT_AT), actor=make_user(role))


def test_a_surgeon_cannot_move_early_stages(make_lead, make_user):
    lead = make_lead(stage="new")
    with pytest.raises(StageRefused):
        move(lead, MoveRequest(to="contacted"), actor=make_user("surgeon"))


def test_asking_for_more_information_leaves_the_lead_in_review(make_lead, make_user):
    owner, surgeon = make_user("front_desk"), make_user("surgeon")
    lead = make_lead(stage="surgical_review", owner_id=owner.id, tags=["red_flag:weakness"])
    task = request_more_info(lead, actor=surgeon, note="Need the MRI report", due_at=CONSULT_AT)
    db.session.commit()
    assert lead.stage == "surgical_review"
    assert (task.kind, task.assignee_id) == ("more_info", owner.id)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Task)) == 1


def test_closing_then_reopening_returns_to_the_stage_it_was_closed_from(make_lead, make_user):
    desk = make_user("front_desk")
    lead = make_lead(stage="physical_therapy", phone="+12145550123", open_phone_key="+12145550123")
    move(lead, MoveRequest(to="closed", close_reason="no_response"), actor=desk)
    db.session.commit()
    assert (lead.in_queue, lead.open_phone_key, lead.closed_from_stage) == (False, None, "physical_therapy")
    with pytest.raises(StageRefused, match="reopened to the stage it was closed from"):
        move(lead, MoveRequest(to="contacted"), actor=desk)
    move(lead, MoveRequest(to="physical_therapy"), actor=desk)
    db.session.commit()
    assert (lead.stage, lead.in_queue, lead.open_phone_key) == ("physical_therapy", True, "+12145550123")
    assert changes(lead.id) == [("physical_therapy", "closed"), ("closed", "physical_therapy")]


def test_closing_as_duplicate_is_done_by_merging(make_lead, make_user):
    lead = make_lead()
    with pytest.raises(StageRefused, match="merge"):
        move(lead, MoveRequest(to="closed", close_reason="duplicate"), actor=make_user("front_desk"))


def test_consult_outcomes_are_recorded_by_desk_and_surgeon_not_admin(make_lead, make_user):
    lead = make_lead(stage="consult_scheduled", tags=["history:failed_pt"])
    with pytest.raises(StageRefused):
        move(lead, MoveRequest(to="consult_completed"), actor=make_user("admin"))
    move(lead, MoveRequest(to="consult_completed"), actor=make_user("surgeon"))
    move(lead, MoveRequest(to="surgery_scheduled"), actor=make_user("front_desk"))
    db.session.commit()
    assert changes(lead.id) == [
        ("consult_scheduled", "consult_completed"),
        ("consult_completed", "surgery_scheduled"),
    ]


@pytest.mark.parametrize("role", ["front_desk", "surgeon", "manager", "admin"])
def test_allowed_targets_agree_with_move(make_lead, make_user, role):
    """Every stage offered to a role is one move() accepts from that role (gate passed)."""
    user = make_user(role)
    for stage in STAGES:
        if stage == "closed":
            continue
        lead = make_lead(stage=stage, tags=["history:failed_pt"])
        for target in allowed_targets(lead, user):
            request = MoveRequest(
                to=target,
                reason="because",
                close_reason="went_elsewhere" if target == "closed" else None,
                consult_at=CONSULT_AT,
            )
            move(lead, request, actor=user)
            db.session.rollback()
