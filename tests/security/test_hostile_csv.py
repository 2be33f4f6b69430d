"""100 hostile CSV files through the import page and ``flask import-csv``: a clear answer, never a 500.

Each file says what must become of it:

- ``refused``: the file cannot be imported at all (encoding, NUL bytes, columns, no rows): the
  page answers 400 with the reason next to the file field, the command exits non-zero with the
  same reason, and the table checksum is unchanged after both;
- ``bad``: the file is read and the preview lists its bad rows, but importing it without
  "skip bad rows" is refused (400 on the page, exit 1 from the command) and changes nothing;
- ``ok``: imported, and the preview and the result page show its cells escaped.

The 100 MB file is generated to a temporary file in chunks and given to the command, which
reads at most the size limit plus one byte: it is refused without being loaded into memory
(tracemalloc's peak is checked).
"""

from __future__ import annotations

import codecs
import io
import re
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm import imports
from tests.conftest import csrf_token
from tests.dbstate import changed_tables, table_checksums
from tests.security.hostile import FORMULAS, SQL, UNICODE, XSS_ATOMS


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    expect: str  # refused | bad | ok
    kind: str = "leads"


LEAD_HEAD = "First Name,Last Name,Phone,Email,Message\r\n"
CALL_HEAD = "Call SID,From,To,Direction,Status,Start Time,Duration,Notes\r\n"


def lead_row(
    first: str = "Maria", last: str = "Lopez", phone: str = "(469) 231-4567", message: str = ""
) -> str:
    def q(cell: str) -> str:
        return '"' + cell.replace('"', '""') + '"'

    return ",".join(q(c) for c in (first, last, phone, "", message)) + "\r\n"


def call_row(
    sid: str = "CA01", start: str = "2026-03-09 10:00", duration: str = "60", notes: str = ""
) -> str:
    return f'{sid},+19725550134,+19724995457,inbound,completed,{start},{duration},"{notes}"\r\n'


def _files() -> list[Hostile]:
    f: list[Hostile] = []
    ok_leads = LEAD_HEAD + lead_row()
    # encodings
    f += [
        Hostile("empty", b"", "refused"),
        Hostile("blank lines only", b"\r\n \r\n\t\r\n", "refused"),
        Hostile("header only", LEAD_HEAD.encode(), "refused"),
        Hostile("header only with BOM", codecs.BOM_UTF8 + LEAD_HEAD.encode(), "refused"),
        Hostile("header then blank rows", (LEAD_HEAD + ",,,,\r\n\r\n").encode(), "refused"),
        Hostile("utf-8 with BOM", codecs.BOM_UTF8 + ok_leads.encode(), "ok"),
        Hostile(
            "latin-1 (read as Windows-1252)", (LEAD_HEAD + lead_row("José", "Muñoz")).encode("latin-1"), "ok"
        ),
        Hostile(
            "bytes neither UTF-8 nor Windows-1252",
            LEAD_HEAD.encode() + b"Ana,\x81\x8d\x8f,4692314567,,\r\n",
            "refused",
        ),
        Hostile("UTF-16 LE with BOM", ok_leads.encode("utf-16"), "ok"),
        Hostile("UTF-16 BE with BOM", codecs.BOM_UTF16_BE + ok_leads.encode("utf-16-be"), "ok"),
        Hostile("UTF-16 LE without BOM", ok_leads.encode("utf-16-le"), "refused"),
        Hostile("UTF-16 BE without BOM", ok_leads.encode("utf-16-be"), "refused"),
        Hostile("UTF-32 with BOM", ok_leads.encode("utf-32"), "refused"),
        Hostile("NUL byte in a cell", (LEAD_HEAD + lead_row("Ma\x00ria")).encode(), "refused"),
        Hostile("NUL byte in the header", (b"First\x00Name,Phone\r\nA,4692314567\r\n"), "refused"),
        Hostile("a zip file (xlsx)", b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)), "refused"),
        # Read as Windows-1252: the stray byte is a row of its own ("Ã"), with no phone or email.
        Hostile("UTF-8 truncated mid-character", ok_leads.encode() + "é".encode()[:1], "bad"),
    ]
    # columns
    f += [
        Hostile("wrong columns", b"foo,bar,baz\r\n1,2,3\r\n", "refused"),
        Hostile("no phone or email column", b"First Name,Last Name\r\nMaria,Lopez\r\n", "refused"),
        Hostile("calls file imported as leads", (CALL_HEAD + call_row()).encode(), "refused"),
        Hostile("leads file imported as calls", ok_leads.encode(), "refused", "calls"),
        Hostile(
            "calls file missing Status",
            b"From,To,Start Time\r\n+19725550134,+19724995457,2026-03-09 10:00\r\n",
            "refused",
            "calls",
        ),
        Hostile("duplicate Phone column", b"Phone,Phone,First Name\r\n4692314567,4692314568,Ana\r\n", "ok"),
        Hostile("two synonyms of one column", b"Phone,Mobile,Name\r\n4692314567,bad,Ana Diaz\r\n", "ok"),
        Hostile("empty header names", b",,Phone,\r\n,,4692314567,\r\n", "ok"),
        Hostile(
            "header of 5,000 columns",
            (",".join(f"c{i}" for i in range(5000)) + ",Phone\r\n" + "," * 5000 + "4692314567\r\n").encode(),
            "ok",
        ),
        Hostile("more cells than headers", (LEAD_HEAD + lead_row().rstrip() + ",x,y,z\r\n").encode(), "ok"),
        Hostile("fewer cells than headers", (LEAD_HEAD + "Maria,Lopez,4692314567\r\n").encode(), "ok"),
        Hostile("the header again as a row", (ok_leads + LEAD_HEAD).encode(), "bad"),
        Hostile("header names with markup", (b"<script>alert(1)</script>,Phone\r\nx,4692314567\r\n"), "ok"),
        Hostile(
            "refused header names with markup",
            (b"<script>alert(1)</script>,=1+1\r\nx,y\r\n"),
            "refused",
        ),
    ]
    # delimiters and quoting
    f += [
        Hostile("semicolons", ok_leads.replace(",", ";").encode(), "ok"),
        Hostile("tabs", ok_leads.replace(",", "\t").encode(), "ok"),
        Hostile("pipes", ok_leads.replace(",", "|").encode(), "refused"),
        Hostile("spaces", b"Phone Email\r\n4692314567 a@b.io\r\n", "refused"),
        Hostile(
            "quoted newlines in a message",
            (LEAD_HEAD + lead_row(message="line one\nline two\r\nline three")).encode(),
            "ok",
        ),
        # The quote runs to the end of the file: one row, whose phone is missing.
        Hostile(
            "unclosed quote",
            (LEAD_HEAD + 'Maria,"Lopez,4692314567,,\r\nAna,Diaz,4692314568,,\r\n').encode(),
            "bad",
        ),
        Hostile("quote inside a bare cell", (LEAD_HEAD + 'Ma"ria,Lo"pez,4692314567,,\r\n').encode(), "ok"),
        Hostile("old Mac line ends (CR only)", ok_leads.replace("\r\n", "\r").encode(), "ok"),
        Hostile("Unix line ends", ok_leads.replace("\r\n", "\n").encode(), "ok"),
        Hostile("no final line end", ok_leads.rstrip().encode(), "ok"),
        Hostile(
            "a cell over the csv module's field limit",
            (LEAD_HEAD + lead_row(message="x" * 200_000)).encode(),
            "refused",
        ),
        Hostile(
            "a message over 20,000 characters", (LEAD_HEAD + lead_row(message="y" * 20_001)).encode(), "bad"
        ),
        Hostile("a name over 100 characters", (LEAD_HEAD + lead_row(first="N" * 101)).encode(), "bad"),
        Hostile("row of delimiters only", (ok_leads + ",,,,\r\n").encode(), "ok"),
    ]
    # values
    f += [
        Hostile(f"formula {i} in names and message", (LEAD_HEAD + lead_row(p, p, message=p)).encode(), "ok")
        for i, p in enumerate(FORMULAS)
    ]
    f += [
        Hostile(f"formula {i} as the phone", (LEAD_HEAD + lead_row(phone=p)).encode(), "bad")
        for i, p in enumerate(FORMULAS)
    ]
    f += [
        Hostile(f"markup {i} in names", (LEAD_HEAD + lead_row(a, a, message=a)).encode(), "ok")
        for i, a in enumerate(XSS_ATOMS)
    ]
    f += [
        Hostile(f"SQL {i} in names", (LEAD_HEAD + lead_row(s, s, message=s)).encode(), "ok")
        for i, s in enumerate(SQL[:4])
    ]
    f += [
        Hostile(f"unicode {i} in names", (LEAD_HEAD + lead_row(u + "Ana", "Diaz" + u)).encode(), "ok")
        for i, u in enumerate(UNICODE[:3])
    ]
    f += [
        Hostile("control characters in a name", (LEAD_HEAD + lead_row("Ma\x01ria\x1b[31m")).encode(), "bad"),
        Hostile(
            "control characters in a message",
            (LEAD_HEAD + lead_row(message="pain\x07\x08 here")).encode(),
            "bad",
        ),
        Hostile("phone of superscript digits", (LEAD_HEAD + lead_row(phone="²²²-²²²-²²²²")).encode(), "bad"),
        Hostile("phone of 5,000 digits", (LEAD_HEAD + lead_row(phone="9" * 5000)).encode(), "bad"),
        Hostile("birth date 9999-12-31", (b"Phone,DOB\r\n4692314567,9999-12-31\r\n"), "bad"),
        Hostile("birth date 0001-01-01", (b"Phone,DOB\r\n4692314567,0001-01-01\r\n"), "bad"),
        Hostile("birth date 2026-02-30", (b"Phone,DOB\r\n4692314567,2026-02-30\r\n"), "bad"),
        Hostile("unknown source", (b"Phone,Source\r\n4692314567,'; DROP TABLE leads;--\r\n"), "bad"),
        Hostile("email of 300 characters", (b"Email\r\n" + b"a" * 290 + b"@example.com\r\n"), "bad"),
        Hostile("a good row and a bad row", (ok_leads + lead_row(phone="123")).encode(), "bad"),
    ]
    # call logs
    f += [
        Hostile("a clean call log", (CALL_HEAD + call_row()).encode(), "ok", "calls"),
        Hostile(
            "call starting 9999-12-31 23:59",
            (CALL_HEAD + call_row(start="9999-12-31 23:59")).encode(),
            "bad",
            "calls",
        ),
        Hostile(
            "call starting 0001-01-01 00:00",
            (CALL_HEAD + call_row(start="0001-01-01 00:00")).encode(),
            "bad",
            "calls",
        ),
        Hostile(
            "call starting at +14:00",
            (CALL_HEAD + call_row(start="2026-03-09T10:00:00+14:00")).encode(),
            "ok",
            "calls",
        ),
        Hostile("call of 10^20 seconds", (CALL_HEAD + call_row(duration="9" * 20)).encode(), "bad", "calls"),
        Hostile("call of 999:59:59", (CALL_HEAD + call_row(duration="999:59:59")).encode(), "bad", "calls"),
        Hostile("call of -5 seconds", (CALL_HEAD + call_row(duration="-5")).encode(), "bad", "calls"),
        Hostile("call SID of 65 characters", (CALL_HEAD + call_row(sid="C" * 65)).encode(), "bad", "calls"),
        Hostile(
            "call SID with markup",
            (CALL_HEAD + call_row(sid="<script>alert(1)</script>")).encode(),
            "ok",
            "calls",
        ),
        Hostile("call notes with a formula", (CALL_HEAD + call_row(notes="=1+1")).encode(), "ok", "calls"),
        Hostile(
            "call status of SQL",
            (CALL_HEAD + call_row().replace("completed", "' OR 1=1--")).encode(),
            "bad",
            "calls",
        ),
        Hostile(
            "call to a line not the clinic's",
            (CALL_HEAD + call_row().replace("+19724995457", "+12145559999")).encode(),
            "bad",
            "calls",
        ),
        Hostile(
            "call direction of markup",
            (CALL_HEAD + call_row().replace("inbound", "<b>in</b>")).encode(),
            "bad",
            "calls",
        ),
        Hostile(
            "call start of 31/02/2026",
            (CALL_HEAD + call_row(start="31.02.2026 10:00")).encode(),
            "bad",
            "calls",
        ),
        Hostile("call start 1e309", (CALL_HEAD + call_row(start="1e309")).encode(), "bad", "calls"),
    ]
    return f


FILES = _files()


def test_there_are_a_hundred_files_of_every_outcome():
    assert len(FILES) == 100, len(FILES)
    assert len({h.name for h in FILES}) == 100
    assert {h.expect for h in FILES} == {"refused", "bad", "ok"}


def _upload(client, data: bytes, kind: str, token: str):
    return client.post(
        "/leads/import",
        data={"csrf_token": token, "kind": kind, "file": (io.BytesIO(data), "hostile.csv")},
        content_type="multipart/form-data",
    )


def _commit(client, html: str, token: str):
    upload = re.search(r'name="token" type="hidden" value="([^"]+)"', html)
    assert upload, "the preview offers no import"
    return client.post("/leads/import/commit", data={"csrf_token": token, "token": upload.group(1)})


def _outcome_of_page(client, h: Hostile, token: str) -> str:
    """Upload the file, commit it as a user would without skipping bad rows; return what happened."""
    before = table_checksums()
    preview = _upload(client, h.data, h.kind, token)
    html = preview.get_data(as_text=True)
    assert preview.status_code in (200, 400), (h.name, preview.status_code)
    for atom in XSS_ATOMS:
        assert atom not in html, (h.name, atom)
    if preview.status_code == 400:
        assert 'class="field-error"' in html or "field-error" in html, (h.name, html[:500])
        assert not changed_tables(before, table_checksums()), h.name
        return "refused"
    done = _commit(client, html, token)
    page = done.get_data(as_text=True)
    assert done.status_code in (200, 400), (h.name, done.status_code)
    for atom in XSS_ATOMS:
        assert atom not in page, (h.name, atom)
    if done.status_code == 400:
        assert "nothing was imported" in page, (h.name, page[:500])
        assert not changed_tables(before, table_checksums()), h.name
        return "bad"
    assert "row(s) imported" in page, h.name
    return "ok"


def _outcome_of_command(runner, h: Hostile, tmp_path: Path) -> str:
    path = tmp_path / "hostile.csv"
    path.write_bytes(h.data)
    before = table_checksums()
    result = runner.invoke(args=["import-csv", h.kind, str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (h.name, result.exception)
    if result.exit_code == 0:
        assert "row(s) imported" in result.output, (h.name, result.output)
        return "ok"
    assert result.exit_code == 1 and "Error:" in result.output, (h.name, result.output)
    assert not changed_tables(before, table_checksums()), h.name
    return "bad" if "nothing was imported" in result.output else "refused"


@pytest.mark.slow
def test_a_hundred_hostile_files_through_the_page_and_the_command(client, login_as, runner, tmp_path):
    login_as("front_desk")
    token = csrf_token(client.get("/leads/import").get_data(as_text=True))
    wrong = []
    for h in FILES:
        page, command = _outcome_of_page(client, h, token), _outcome_of_command(runner, h, tmp_path)
        if (page, command) != (h.expect, h.expect):
            wrong.append(f"{h.name}: expected {h.expect}, page {page}, command {command}")
    tally = {e: sum(1 for h in FILES if h.expect == e) for e in ("refused", "bad", "ok")}
    print(f"\n100 hostile CSV files through the page and the command: {tally}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
def test_a_100_mb_file_is_refused_without_being_read_into_memory(runner, tmp_path):
    path = tmp_path / "big.csv"
    row = lead_row(message="lorem ipsum " * 20).encode()
    with path.open("wb") as out:  # written in chunks: the test itself never holds the file
        out.write(LEAD_HEAD.encode())
        chunk = row * (1024 * 1024 // len(row) + 1)
        while out.tell() < 100 * 1024 * 1024:
            out.write(chunk)
    assert path.stat().st_size >= 100 * 1024 * 1024
    before = table_checksums()
    tracemalloc.start()
    try:
        result = runner.invoke(args=["import-csv", "leads", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 1 and "larger than 20 MB" in result.output, result.output
    assert peak < imports.MAX_BYTES * 1.5, f"peak {peak / 2**20:.0f} MiB: the file was loaded whole"
    assert not changed_tables(before, table_checksums())
    print(
        f"\n100 MB file refused by the command; peak memory {peak / 2**20:.1f} MiB (reads the limit + 1 byte)"
    )


def test_an_upload_one_byte_past_the_request_limit_is_refused_with_a_message(client, login_as, app):
    login_as("front_desk")
    token = csrf_token(client.get("/leads/import").get_data(as_text=True))
    limit = app.config["MAX_CONTENT_LENGTH"]
    boundary = "hostile-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nleads\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nPhone\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    body = head + b"4" * (limit + 1 - len(head) - len(tail)) + tail  # the limit plus one byte
    assert len(body) == limit + 1
    before = table_checksums()
    response = client.post(
        "/leads/import", data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )
    assert response.status_code == 413
    assert "Too large" in response.get_data(as_text=True)
    assert not changed_tables(before, table_checksums())
