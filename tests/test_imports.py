"""CSV import of leads and call logs (PRODUCT §6 item 4): preview, per-row errors, all or nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm import clock, imports
from crm.extensions import db
from crm.models import AuditEvent, Call, Lead, LeadTag, Note, StageChange, Task
from tests.conftest import csrf_token, utc

DATA = Path(__file__).parent / "data"
LINES = {"+19724995457": "main", "+12145550100": "google-ads"}


def _counts() -> dict[str, int]:
    db.session.expire_all()
    return {
        m.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(m))
        for m in (Lead, Call, Task, Note, LeadTag, StageChange)
    }


def _run(data: bytes, kind: str = "leads", *, skip: bool = False) -> imports.ImportResult:
    parsed = imports.read_csv(data, kind, lines=LINES)
    result = imports.import_rows(parsed, skip_bad_rows=skip, lines=LINES, now=clock.now())
    db.session.commit()
    return result


# --------------------------------------------------------------------------- reading


def test_headers_map_by_name_case_insensitive_with_synonyms(app):
    data = b"GIVEN NAME;surname;Phone Number;E-mail\nAna;Ruiz;972 555 0199;ANA@Example.com\n"
    parsed = imports.read_csv(data, "leads", lines=LINES)
    assert parsed.columns == {
        "first_name": "GIVEN NAME",
        "last_name": "surname",
        "phone": "Phone Number",
        "email": "E-mail",
    }
    row = parsed.rows[0]
    assert (row.number, row.errors) == (2, [])
    assert row.values["phone"] == "+19725550199" and row.values["email"] == "ana@example.com"


def test_tab_separated_with_a_bom_is_read(app):
    data = "\ufeffName\tCaller\tNotes\nLinda Nguyen\t469-555-0102\tstiff neck\n".encode()
    row = imports.read_csv(data, "leads", lines=LINES).rows[0]
    assert (row.values["first_name"], row.values["last_name"], row.values["phone"]) == (
        "Linda",
        "Nguyen",
        "+14695550102",
    )


def test_wrong_columns_get_a_clear_file_level_message(app):
    with pytest.raises(
        imports.ImportRefused, match=r"needs a “Phone” or an “Email” column.*Columns found: “Foo”, “Bar”"
    ):
        imports.read_csv(b"Foo,Bar\n1,2\n", "leads", lines=LINES)
    with pytest.raises(imports.ImportRefused, match="“From”, “To”, “Status” and “Start Time”"):
        imports.read_csv(b"Phone,Name\n972 555 0199,Ana\n", "calls", lines=LINES)


def test_nul_bytes_are_refused(app):
    with pytest.raises(imports.ImportRefused, match="NUL bytes"):
        imports.read_csv(b"Name,Phone\nAna\x00,972 555 0199\n", "leads", lines=LINES)


def test_windows_1252_is_read_and_said_so_and_other_bytes_refused(app):
    parsed = imports.read_csv("Name,Phone\nJosé Müller,972 555 0199\n".encode("cp1252"), "leads", lines=LINES)
    assert parsed.rows[0].values["first_name"] == "José" and "Windows-1252" in parsed.notices[0]
    with pytest.raises(imports.ImportRefused, match="not UTF-8"):
        imports.read_csv(b"Name,Phone\nAn\x81a,972 555 0199\n", "leads", lines=LINES)


def test_per_row_errors_name_the_row_and_field_never_the_value(app):
    parsed = imports.read_csv((DATA / "leads_bad_rows.csv").read_bytes(), "leads", lines=LINES)
    assert [str(e) for e in parsed.errors] == [
        "row 3: phone: not a valid phone number",
        "row 4: email: not an email address",
        "row 5: date of birth: not a date of birth (use YYYY-MM-DD or MM/DD/YYYY)",
    ]
    assert parsed.bad_row_count == 3 and len(parsed.good_rows) == 2


def test_call_rows_are_checked_against_the_clinic_lines(app):
    data = (
        b"From,To,Status,Start Time\n+19725550134,+18005550199,completed,2026-03-09 09:00\n"
        b"+19725550134,+19724995457,exploded,yesterday\n"
    )
    errors = [str(e) for e in imports.read_csv(data, "calls", lines=LINES).errors]
    assert errors[0] == "row 2: to: neither from nor to is one of the clinic's lines"
    assert errors[1].startswith("row 3: status:") and errors[2].startswith("row 3: start time:")


# --------------------------------------------------------------------------- importing


def test_a_clean_leads_file_makes_tagged_leads_with_their_words(app, frozen_clock):
    frozen_clock(utc(2026, 3, 9, 15, 0))
    result = _run((DATA / "leads_clean.csv").read_bytes())
    assert (result.rows, result.imported, result.leads_created) == (5, 5, 5)
    lead = db.session.scalars(sa.select(Lead).where(Lead.phone == "+19725550134")).one()
    assert (lead.source, lead.first_name, lead.email, lead.insurance) == (
        "import",
        "Maria",
        "maria.delgado@example.com",
        "Aetna",
    )
    assert {"region:lower", "radiating:leg", "side:left"} <= set(lead.active_tag_codes)
    assert db.session.scalars(sa.select(Note.body).where(Note.lead_id == lead.id)).all() == [
        "my low back locks up and shoots down my left leg"
    ]
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "csv_import")).one()
    assert event.detail["leads_created"] == 5 and "Maria" not in str(event.detail)


def test_a_bad_row_imports_nothing(app):
    before = _counts()
    parsed = imports.read_csv((DATA / "leads_bad_rows.csv").read_bytes(), "leads", lines=LINES)
    with pytest.raises(imports.ImportRefused, match=r"3 row\(s\) have errors: nothing was imported"):
        imports.import_rows(parsed, skip_bad_rows=False, lines=LINES, now=clock.now())
    db.session.rollback()
    assert _counts() == before


def test_skip_bad_rows_imports_the_good_ones(app):
    result = _run((DATA / "leads_bad_rows.csv").read_bytes(), skip=True)
    assert (result.imported, result.skipped, result.leads_created) == (2, 3, 2)
    assert _counts()["leads"] == 2


def test_the_same_rows_again_in_another_order_create_no_duplicates(app):
    clean = (DATA / "leads_clean.csv").read_bytes()
    _run(clean)
    after_first = _counts()
    header, *rows = clean.decode().strip().split("\n")
    again = _run(("\n".join([header, *reversed(rows)]) + "\n").encode())
    assert (again.leads_created, again.leads_attached) == (0, 5)
    assert _counts() == after_first


def test_a_call_log_export_is_taken_in_through_intake_once(app, frozen_clock):
    frozen_clock(utc(2026, 3, 10, 15, 0))
    export = (DATA / "calls_export.csv").read_bytes()
    result = _run(export, "calls")
    assert (result.imported, result.calls_new, result.calls_known) == (5, 5, 0)
    calls = db.session.scalars(sa.select(Call).order_by(Call.started_at)).all()
    assert [c.direction for c in calls] == ["inbound", "inbound", "outbound", "inbound", "inbound"]
    assert calls[2].call_sid.startswith("import-") and len(calls[2].call_sid) == 47
    assert [c.missed for c in calls] == [False, True, False, True, True]
    answered = db.session.scalars(sa.select(Lead).where(Lead.phone == "+19725550134")).one()
    assert answered.first_contact_at == calls[0].started_at
    assert calls[4].campaign == "google-ads"
    tasks = _counts()["tasks"]
    assert tasks == 3  # one call-back per missed inbound call
    header, *rows = export.decode().strip().split("\n")
    again = _run(("\n".join([header, *reversed(rows)]) + "\n").encode(), "calls")
    assert (again.calls_new, again.calls_known, again.leads_created) == (0, 5, 0)
    assert _counts()["calls"] == 5 and _counts()["tasks"] == tasks


def test_formula_like_cells_are_stored_as_plain_text(app):
    _run(b'First Name,Last Name,Phone,Notes\n=HYPERLINK("http://x"),@SUM(A1),972 555 0199,+cmd|calc\n')
    lead = db.session.scalars(sa.select(Lead)).one()
    assert (lead.first_name, lead.last_name) == ('=HYPERLINK("http://x")', "@SUM(A1)")
    assert db.session.scalars(sa.select(Note.body)).one() == "+cmd|calc"


# --------------------------------------------------------------------------- the page and the command


def _upload(client, data: bytes, kind: str = "leads", name: str = "file.csv"):
    token = csrf_token(client.get("/leads/import").get_data(as_text=True))
    return client.post(
        "/leads/import",
        data={"csrf_token": token, "kind": kind, "file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def _commit_token(html: str) -> str:
    import re

    return re.search(r'name="token" type="hidden" value="([^"]+)"', html).group(1)


def test_the_page_previews_then_imports_and_forgets_the_upload(client, login_as, app):
    login_as("front_desk")
    preview = _upload(client, (DATA / "leads_clean.csv").read_bytes())
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "5 good row(s)" in html and "Maria" in html
    assert _counts()["leads"] == 0  # nothing saved by a preview
    token = _commit_token(html)
    stored = Path(app.instance_path) / "imports" / f"{token}.csv"
    assert stored.exists()
    done = client.post("/leads/import/commit", data={"csrf_token": csrf_token(html), "token": token})
    assert done.status_code == 200 and "5 of 5 row(s) imported" in done.get_data(as_text=True)
    assert _counts()["leads"] == 5 and not stored.exists()


def test_the_page_refuses_a_file_with_bad_rows_unless_told_to_skip(client, login_as):
    login_as("manager")
    html = _upload(client, (DATA / "leads_bad_rows.csv").read_bytes()).get_data(as_text=True)
    assert "Row 3: phone — not a valid phone number" in html and "3 row(s) with errors" in html
    form = {"csrf_token": csrf_token(html), "token": _commit_token(html)}
    refused = client.post("/leads/import/commit", data=form)
    assert refused.status_code == 400 and "nothing was imported" in refused.get_data(as_text=True)
    assert _counts()["leads"] == 0
    done = client.post("/leads/import/commit", data={**form, "skip_bad_rows": "y"})
    assert done.status_code == 200 and _counts()["leads"] == 2


@pytest.mark.parametrize(
    "data,message", [(b"Foo,Bar\n1,2\n", "do not fit a leads import"), (b"a,b\x00\n", "NUL bytes")]
)
def test_the_page_explains_an_unusable_file(client, login_as, data, message):
    login_as("admin")
    response = _upload(client, data)
    assert response.status_code == 400 and message in response.get_data(as_text=True)


def test_another_users_upload_cannot_be_committed(client, login_as, app, make_user):
    login_as("front_desk")
    html = _upload(client, (DATA / "leads_clean.csv").read_bytes()).get_data(as_text=True)
    other = make_user("front_desk")
    assert imports.load_upload(app.instance_path + "/imports", _commit_token(html), user_id=other.id) is None


def test_upload_and_commit_without_csrf_are_refused(client, login_as):
    login_as("front_desk")
    upload = client.post(
        "/leads/import",
        data={"kind": "leads", "file": (io.BytesIO((DATA / "leads_clean.csv").read_bytes()), "f.csv")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 400
    html = _upload(client, (DATA / "leads_clean.csv").read_bytes()).get_data(as_text=True)
    commit = client.post("/leads/import/commit", data={"token": _commit_token(html)})
    assert commit.status_code == 400 and _counts()["leads"] == 0


def test_a_surgeon_may_not_import(client, login_as):
    login_as("surgeon")
    token = csrf_token(client.get("/referrals").get_data(as_text=True))
    assert client.get("/leads/import").status_code == 403
    assert (
        client.post("/leads/import/commit", data={"csrf_token": token, "token": "x" * 43}).status_code == 403
    )


def test_the_command_imports_and_prints_counts(runner, app):
    result = runner.invoke(args=["import-csv", "calls", str(DATA / "calls_export.csv")])
    assert result.exit_code == 0, result.output
    assert "5 of 5 row(s) imported: 5 new call(s)" in result.output
    assert _counts()["calls"] == 5


def test_the_command_refuses_bad_rows_with_row_numbers_and_no_patient_data(runner, app):
    result = runner.invoke(args=["import-csv", "leads", str(DATA / "leads_bad_rows.csv")])
    assert result.exit_code == 1
    assert (
        "row 3: phone: not a valid phone number" in result.output and "nothing was imported" in result.output
    )
    assert "Sam" not in result.output and "not-an-email" not in result.output
    assert _counts()["leads"] == 0
    skipped = runner.invoke(args=["import-csv", "leads", str(DATA / "leads_bad_rows.csv"), "--skip-bad-rows"])
    assert skipped.exit_code == 0 and "2 of 5 row(s) imported" in skipped.output
