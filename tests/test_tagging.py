"""A person's word wins: automatic tags never override or bring back what staff decided."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask

from crm.extensions import db
from crm.models import Lead, LeadTag, TagChange, User
from crm.tagging import UnknownTag, apply_auto_tags, remove_staff_tag, set_staff_tag
from tests.conftest import utc

NOW = utc(2026, 3, 9, 15, 0)


@pytest.fixture
def staff(make_user: Callable[..., User]) -> User:
    return make_user("front_desk")


def tags_of(lead: Lead) -> dict[str, tuple[str, str]]:
    rows = db.session.scalars(sa.select(LeadTag).where(LeadTag.lead_id == lead.id)).all()
    return {row.code: (row.origin, row.state) for row in rows}


def changes_of(lead: Lead) -> list[tuple[str, str, str]]:
    rows = db.session.scalars(sa.select(TagChange).where(TagChange.lead_id == lead.id).order_by(TagChange.id))
    return [(row.code, row.action, row.origin) for row in rows]


def test_it_adds_new_tags_with_history(app: Flask, make_lead: Callable[..., Lead]) -> None:
    lead = make_lead()
    added = apply_auto_tags(lead, ["region:lower", "side:left"], now=NOW)
    db.session.commit()
    assert added == ["region:lower", "side:left"]
    assert tags_of(lead) == {"region:lower": ("auto", "active"), "side:left": ("auto", "active")}
    assert changes_of(lead) == [("region:lower", "added", "auto"), ("side:left", "added", "auto")]


def test_it_tags_a_lead_not_yet_flushed(app: Flask) -> None:
    lead = Lead(first_name="Ana", last_name="Ruiz", source="phone")
    db.session.add(lead)
    apply_auto_tags(lead, ["region:upper"])
    db.session.commit()
    assert tags_of(lead) == {"region:upper": ("auto", "active")}


def test_an_existing_tag_is_not_added_twice(app: Flask, make_lead: Callable[..., Lead]) -> None:
    lead = make_lead(tags=["region:lower"])
    assert apply_auto_tags(lead, ["region:lower"]) == []
    db.session.commit()
    assert changes_of(lead) == []


def test_a_tag_staff_removed_is_never_brought_back(
    app: Flask, make_lead: Callable[..., Lead], staff: User
) -> None:
    lead = make_lead(tags=["condition:stenosis"])
    remove_staff_tag(lead, "condition:stenosis", staff, now=NOW)
    db.session.commit()
    for origin in ("auto", "patient"):
        assert apply_auto_tags(lead, ["condition:stenosis"], origin=origin) == []
    db.session.commit()
    assert tags_of(lead) == {"condition:stenosis": ("staff", "removed")}
    assert changes_of(lead) == [("condition:stenosis", "removed", "staff")]


def test_a_staff_tag_is_never_touched(app: Flask, make_lead: Callable[..., Lead], staff: User) -> None:
    lead = make_lead()
    set_staff_tag(lead, "side:right", staff)
    db.session.commit()
    apply_auto_tags(lead, ["side:right"], origin="patient")
    db.session.commit()
    row = db.session.scalar(sa.select(LeadTag).where(LeadTag.lead_id == lead.id))
    assert (row.origin, row.state, row.set_by_id) == ("staff", "active", staff.id)


def test_the_patients_word_outranks_the_tagger(app: Flask, make_lead: Callable[..., Lead]) -> None:
    lead = make_lead(tags=["region:lower"])
    apply_auto_tags(lead, ["region:lower"], origin="patient")
    apply_auto_tags(lead, ["region:lower"], origin="auto")
    db.session.commit()
    assert tags_of(lead) == {"region:lower": ("patient", "active")}


def test_a_red_flag_marks_the_lead_urgent(app: Flask, make_lead: Callable[..., Lead]) -> None:
    lead = make_lead()
    apply_auto_tags(lead, ["red_flag:weakness"])
    db.session.commit()
    assert db.session.get(Lead, lead.id).urgent is True


def test_a_removed_red_flag_does_not_make_the_lead_urgent_again(
    app: Flask, make_lead: Callable[..., Lead], staff: User
) -> None:
    lead = make_lead(tags=["red_flag:trauma"])
    remove_staff_tag(lead, "red_flag:trauma", staff)
    lead.urgent = False  # a person cleared it, with a reason, elsewhere
    db.session.commit()
    apply_auto_tags(lead, ["red_flag:trauma"])
    db.session.commit()
    assert db.session.get(Lead, lead.id).urgent is False


def test_removing_a_tag_does_not_clear_urgent(
    app: Flask, make_lead: Callable[..., Lead], staff: User
) -> None:
    lead = make_lead(tags=["red_flag:weakness"], urgent=True)
    remove_staff_tag(lead, "red_flag:weakness", staff)
    db.session.commit()
    assert db.session.get(Lead, lead.id).urgent is True


def test_staff_can_restore_a_tag_they_removed(
    app: Flask, make_lead: Callable[..., Lead], staff: User
) -> None:
    lead = make_lead(tags=["region:mid"])
    remove_staff_tag(lead, "region:mid", staff)
    db.session.commit()
    set_staff_tag(lead, "region:mid", staff)
    db.session.commit()
    assert tags_of(lead) == {"region:mid": ("staff", "active")}
    assert changes_of(lead) == [("region:mid", "removed", "staff"), ("region:mid", "added", "staff")]


def test_staff_setting_a_red_flag_marks_urgent(
    app: Flask, make_lead: Callable[..., Lead], staff: User
) -> None:
    lead = make_lead()
    set_staff_tag(lead, "red_flag:bowel_bladder", staff)
    db.session.commit()
    assert db.session.get(Lead, lead.id).urgent is True


def test_removing_an_absent_tag_does_nothing(app: Flask, make_lead: Callable[..., Lead], staff: User) -> None:
    lead = make_lead()
    assert remove_staff_tag(lead, "region:mid", staff) is None
    db.session.commit()
    assert tags_of(lead) == {}


@pytest.mark.parametrize("code", ["region:everywhere", "", "<script>"])
def test_unknown_codes_are_refused(
    app: Flask, make_lead: Callable[..., Lead], staff: User, code: str
) -> None:
    lead = make_lead()
    with pytest.raises(UnknownTag):
        apply_auto_tags(lead, [code])
    with pytest.raises(UnknownTag):
        set_staff_tag(lead, code, staff)


def test_staff_origin_is_not_an_automatic_origin(app: Flask, make_lead: Callable[..., Lead]) -> None:
    with pytest.raises(ValueError, match="not 'staff'"):
        apply_auto_tags(make_lead(), ["region:mid"], origin="staff")
