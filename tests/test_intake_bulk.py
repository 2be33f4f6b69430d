"""Bulk intake (the CSV import's path): the same leads as one contact at a time, written faster."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from crm import clock, imports, intake
from crm.extensions import db
from crm.intake import ContactIn, find_or_create_lead, receive_contacts_bulk
from crm.models import Lead, LeadSearchTerm, LeadTag, ReferringPractice, StageChange, TagChange
from tests.conftest import utc

NOW = utc(2026, 3, 9, 15, 0)  # Monday 10:00 in Chicago: open
LINES = {"+19724995457": "main"}
# Columns the two paths may legitimately write differently: the key itself, and the
# optimistic-lock counter and update time the per-row path bumps when its later UPDATE
# (urgent from a red-flag tag) runs on the just-inserted lead.
UNCOMPARED = {"id", "version", "updated_at", "possible_duplicate_of_id"}


@pytest.fixture(autouse=True)
def clock_at_now(frozen_clock: Callable[[datetime], None]) -> None:
    frozen_clock(NOW)


def contacts() -> list[ContactIn]:
    """A batch with every case: plain new leads, red flags, no words, and rows that must attach."""

    def c(first: str, last: str, phone: str | None, email: str | None = None, **kw: Any) -> ContactIn:
        return ContactIn(
            source=kw.pop("source", "import"),
            first_name=first,
            last_name=last,
            phone=phone,
            email=email,
            **kw,
        )

    return [
        c(
            "Ana",
            "Ruiz",
            "972 555 0101",
            "ana@example.com",
            message="Low back pain down my left leg for 6 weeks",
        ),
        c("Bo", "Lee", "(972) 555-0102", message="I can't control my bladder since Friday"),
        c("Cy", "Dunn", None, "cy@example.com", language="Spanish", insurance="Aetna"),
        c("Di", "Moss", "972.555.0104", message="stiff neck"),
        c("Ed", "Park", "972 555 0105", message="Low back pain down my left leg for 6 weeks"),
        c("A.", "Ruiz", "+1 972 555 0101", message="still hurts"),  # same phone, agreeing name: attaches
        c("Fay", "Ruiz", "972 555 0101"),  # same phone, another name: possible duplicate
        c("", "", None, "cy@example.com"),  # no name, same email: attaches to Cy
        c("Gil", "Hart", "972 555 0107", referring_provider="North Texas Ortho"),
        c("Hal", "Ng", "972 555 0108", consent={"phone": True}),
        c("Ivy", "Stone", "972 555 0199", message="numbness in both feet"),  # an existing lead's phone
        c("Jo", "Ames", "972 555 0110", source="walk_in"),
    ]


def snapshot() -> list[dict[str, Any]]:
    """Every lead with what intake wrote for it, keyed by content rather than by id."""
    db.session.flush()
    leads = list(db.session.scalars(sa.select(Lead)))
    label = {lead.id: (lead.first_name, lead.last_name, lead.phone) for lead in leads}
    out = []
    for lead in leads:
        row = {c.key: getattr(lead, c.key) for c in Lead.__table__.columns if c.key not in UNCOMPARED}
        row["possible_duplicate_of"] = label.get(lead.possible_duplicate_of_id)
        row["tags"] = sorted(
            db.session.execute(
                sa.select(LeadTag.code, LeadTag.origin, LeadTag.state, LeadTag.created_at).where(
                    LeadTag.lead_id == lead.id
                )
            ).all()
        )
        row["tag_changes"] = sorted(
            db.session.execute(
                sa.select(
                    TagChange.code, TagChange.action, TagChange.origin, TagChange.actor_id, TagChange.at
                ).where(TagChange.lead_id == lead.id)
            ).all()
        )
        row["stage_changes"] = db.session.execute(
            sa.select(
                StageChange.from_stage, StageChange.to_stage, StageChange.actor_id, StageChange.at
            ).where(StageChange.lead_id == lead.id)
        ).all()
        row["terms"] = sorted(
            db.session.scalars(sa.select(LeadSearchTerm.term).where(LeadSearchTerm.lead_id == lead.id))
        )
        out.append(row)
    return sorted(out, key=lambda r: (r["first_name"], r["last_name"], r["phone"] or "", r["email"] or ""))


def test_bulk_and_per_row_intake_make_the_same_leads(app: Flask, make_lead: Callable[..., Lead]) -> None:
    make_lead(first_name="Ivy", last_name="Stone", phone="+19725550199", open_phone_key="+19725550199")
    db.session.add(ReferringPractice(name="North Texas Ortho"))
    db.session.commit()

    rows = receive_contacts_bulk(contacts(), now=NOW)
    bulk = snapshot()
    db.session.rollback()
    for contact in contacts():
        find_or_create_lead(contact, now=NOW)
    per_row = snapshot()

    assert bulk == per_row
    assert [(r.created, r.possible_duplicate, r.refused) for r in rows] == [
        *[(True, False, None)] * 5,
        (False, False, None),
        (True, True, None),
        (False, False, None),
        (True, False, None),
        (True, False, None),
        (False, False, None),
        (True, False, None),
    ]
    urgent = {(r["first_name"], r["urgent"]) for r in bulk if r["first_name"] in {"Bo", "Di"}}
    assert urgent == {("Bo", True), ("Di", False)}
    assert all(r["first_contact_due_at"] is not None for r in bulk if r["first_name"] != "Ivy")


def test_bulk_intake_refuses_an_unknown_source_row_by_row(app: Flask) -> None:
    rows = receive_contacts_bulk(
        [
            ContactIn(source="carrier_pigeon", first_name="Al", last_name="Bee", phone="972 555 0111"),
            ContactIn(source="import", first_name="Cal", last_name="Dee", phone="972 555 0112"),
        ],
        now=NOW,
    )
    assert rows[0].refused and rows[0].lead_id is None
    assert rows[1].created and rows[1].refused is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1


def _csv(n: int, offset: int = 0) -> bytes:
    lines = ["First Name,Last Name,Phone,Email,Notes"]
    for i in range(offset, offset + n):
        lines.append(
            f"Pat{i},Doe{i},+1 972 555 {1000 + i:04d},p{i}@example.com,low back pain for {i % 3} weeks"
        )
    return ("\n".join(lines) + "\n").encode()


def test_importing_the_same_rows_again_in_another_batching_creates_no_duplicates(app: Flask) -> None:
    first = imports.import_rows(
        imports.read_csv(_csv(1500), "leads", lines=LINES), skip_bad_rows=False, lines=LINES, now=clock.now()
    )
    db.session.commit()
    # The second file overlaps the first by 1,000 rows and brings 200 new ones.
    again = imports.import_rows(
        imports.read_csv(_csv(1200, offset=500), "leads", lines=LINES),
        skip_bad_rows=False,
        lines=LINES,
        now=clock.now(),
    )
    db.session.commit()

    assert (first.leads_created, first.leads_attached) == (1500, 0)
    assert (again.leads_created, again.leads_attached, again.possible_duplicates) == (200, 1000, 0)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 1700
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StageChange)) == 1700
    notes = db.session.execute(sa.text("SELECT count(*), count(DISTINCT lead_id) FROM notes")).one()
    assert tuple(notes) == (1700, 1700)  # the same words again are not a second note


def test_a_phone_taken_by_a_concurrent_intake_sends_the_batch_the_per_row_way(
    app: Flask, make_lead: Callable[..., Lead], monkeypatch: pytest.MonkeyPatch
) -> None:
    held = make_lead(first_name="Ana", last_name="Ruiz", phone="+19725550101", open_phone_key="+19725550101")
    # As if the lead had arrived between the batch's look-up and its INSERT.
    monkeypatch.setattr(intake, "_open_keys", lambda column, values: set())

    rows = receive_contacts_bulk(
        [
            ContactIn(source="import", first_name="Ana", last_name="Ruiz", phone="972 555 0101"),
            ContactIn(source="import", first_name="Bo", last_name="Lee", phone="972 555 0102"),
        ],
        now=NOW,
    )

    assert [(r.lead_id == held.id, r.created) for r in rows] == [(True, False), (False, True)]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 2
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StageChange)) == 1  # Bo's only
