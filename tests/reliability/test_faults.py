"""A failure in the middle of a CSV import or a stage move leaves nothing half-done (issue 9).

The fault is injected at the database driver: a SQLAlchemy ``before_cursor_execute`` listener
raises ``OperationalError`` (as a full disk or a dropped connection would) on a chosen
statement, after earlier statements of the same transaction have already run. The real
database takes the rest; the checksums of every table before and after must be equal.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from crm.extensions import db
from crm.models import Lead
from tests.conftest import csrf_token, utc
from tests.dbstate import changed_tables, table_checksums

pytestmark = pytest.mark.reliability

T0 = utc(2026, 3, 10, 15, 0)
ROWS = 2500  # three of the importer's 1,000-row batches: the fault strikes in the third
CANARY = "Quillfeather"


class InjectedFault(Exception):
    """Stands for the database failing under us."""


@contextmanager
def fail_on(prefix: str, occurrence: int) -> Iterator[list[str]]:
    """Make the ``occurrence``-th statement starting with ``prefix`` fail; yield the statements run."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)
        if statement.lstrip().upper().startswith(prefix):
            hits = sum(1 for s in seen if s.lstrip().upper().startswith(prefix))
            if hits == occurrence:
                raise sa.exc.OperationalError(statement, None, InjectedFault("injected: disk I/O error"))

    sa.event.listen(db.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", before)


def _csv(rows: int) -> bytes:
    lines = ["First Name,Last Name,Phone,Email,Notes"]
    for n in range(rows):
        lines.append(
            f"Imp{n},{CANARY}{n},+1469559{n:04d},imp{n}@example.com,lower back pain for {n % 9 + 2} weeks"
        )
    return ("\n".join(lines) + "\n").encode()


def _preview(client: FlaskClient, data: bytes) -> str:
    page = client.get("/leads/import").get_data(as_text=True)
    response = client.post(
        "/leads/import",
        data={"kind": "leads", "file": (io.BytesIO(data), "leads.csv"), "csrf_token": csrf_token(page)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _commit_form(preview: str, skip: bool) -> dict[str, Any]:
    import re

    token = re.search(r'name="token" type="hidden" value="([^"]+)"', preview)
    assert token, "no import token in the preview"
    data = {"token": token.group(1), "csrf_token": csrf_token(preview)}
    if skip:
        data["skip_bad_rows"] = "y"
    return data


@pytest.mark.parametrize("skip_bad_rows", [False, True], ids=["all-or-nothing", "skipping-bad-rows"])
def test_a_failure_mid_import_leaves_no_row_behind(
    client: FlaskClient, login_as: Callable[..., Any], frozen_clock: Any, skip_bad_rows: bool
) -> None:
    frozen_clock(T0)
    login_as("front_desk")
    preview = _preview(client, _csv(ROWS))
    form = _commit_form(preview, skip_bad_rows)
    before = table_checksums()

    with fail_on("INSERT INTO LEADS", 3) as statements:  # batches 1 and 2 are already written
        response = client.post("/leads/import/commit", data=form)

    body = response.get_data(as_text=True)
    inserts = sum(1 for s in statements if s.lstrip().upper().startswith("INSERT INTO LEADS"))
    print(f"\nfault after {len(statements)} statements ({inserts - 1} lead INSERTs done)")
    assert response.status_code == 500
    assert "Something went wrong" in body or "went wrong" in body.lower()
    assert CANARY not in body and "1469559" not in body  # the error page carries no patient data
    assert changed_tables(before, table_checksums()) == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == 0

    response = client.post("/leads/import/commit", data=form)  # the same upload, no fault this time
    assert response.status_code == 200
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Lead)) == ROWS


def test_a_failure_mid_stage_move_leaves_the_lead_where_it_was(
    client: FlaskClient, login_as: Callable[..., Any], make_lead: Callable[..., Lead], frozen_clock: Any
) -> None:
    frozen_clock(T0)
    login_as("front_desk")
    lead = make_lead(first_name="Stella", last_name=CANARY, stage="new")
    page = client.get(f"/leads/{lead.id}").get_data(as_text=True)
    before = table_checksums()

    # The audit row and the lead's own UPDATE are written; then the history row fails.
    with fail_on("INSERT INTO STAGE_CHANGES", 1) as statements:
        response = client.post(
            f"/leads/{lead.id}/stage", data={"to": "contacted", "csrf_token": csrf_token(page)}
        )

    ran = [" ".join(s.replace("INSERT INTO", "INSERT").split()[:2]) for s in statements[:-1]]
    print(f"\nstatements before the fault: {ran}")
    assert {"UPDATE leads", "INSERT audit_events"} <= set(ran)
    assert response.status_code == 500
    assert CANARY not in response.get_data(as_text=True)
    assert changed_tables(before, table_checksums()) == []
    db.session.expire_all()
    assert db.session.get(Lead, lead.id).stage == "new"
