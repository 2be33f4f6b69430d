"""CSV import of leads and of call logs (PRODUCT §6 item 4): read, map, check, then take in.

Two steps, used by the import page and by ``flask import-csv``:

- ``read_csv(data, kind, lines=...)`` decodes the bytes (UTF-8 with or without BOM, else
  Windows-1252, said so), refuses NUL bytes and oversized files, sniffs the delimiter
  (comma, semicolon, tab), maps the columns by header name (case-insensitive, with the
  synonyms below) and checks every row, collecting errors by row number and field name —
  never by value, so no patient data reaches a message or a log.
- ``import_rows(parsed, ...)`` sends every good row through the one intake
  (``intake.receive_contacts_bulk`` for leads, a thousand rows at a time, which writes plain
  new leads with multi-row INSERTs and sends every other row through
  ``intake.find_or_create_lead``; ``intake.receive_call_event`` for calls), so the duplicate
  rule, the tagger and the missed-call rule apply as on every channel. It adds to the caller's
  transaction: the caller commits, or rolls back on ``ImportRefused`` — a file with a bad
  row changes nothing unless the user chose to skip bad rows.

Importing the same rows again creates nothing new: leads attach by phone or email with an
agreeing name; calls are upserted by their Call SID, or by a stable key made from the
caller, the line called and the start time (``import-<sha1>``) when the export has none.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from flask import g, has_app_context

from crm import audit, phones
from crm.business_hours import BusinessCalendar, load_calendar
from crm.extensions import db
from crm.intake import CallEventIn, ContactIn, IntakeRefused, receive_call_event, receive_contacts_bulk
from crm.leadedit import plausible_birth_date
from crm.models import CALL_STATUSES, SOURCES, Call, Note
from crm.settings import clinic_tz
from crm.text import CONTROL_CHARS

KINDS = ("leads", "calls")
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
PREVIEW_ROWS = 20
ERRORS_SHOWN = 200

# field → header names that mean it (compared lower-cased, with _ and - read as spaces).
LEAD_COLUMNS: dict[str, tuple[str, ...]] = {
    "first_name": ("first name", "firstname", "given name", "forename", "first"),
    "last_name": ("last name", "lastname", "surname", "family name", "last"),
    "name": ("name", "full name", "fullname", "patient", "patient name", "contact", "contact name"),
    "phone": (
        "phone",
        "phone number",
        "telephone",
        "tel",
        "mobile",
        "cell",
        "cell phone",
        "caller",
        "number",
    ),
    "email": ("email", "e mail", "email address", "e mail address"),
    "date_of_birth": ("date of birth", "dob", "birth date", "birthdate", "birthday"),
    "message": ("message", "notes", "note", "complaint", "symptoms", "comments", "comment", "reason"),
    "source": ("source", "lead source"),
    "campaign": ("campaign", "tracking line"),
    "insurance": ("insurance", "insurer", "payer"),
    "language": ("language", "preferred language"),
    "preferred_time": ("best time to call", "preferred time", "best time"),
    "referring_provider": ("referring provider", "referred by", "referring practice", "referral source"),
}
CALL_COLUMNS: dict[str, tuple[str, ...]] = {
    "call_sid": ("call sid", "callsid", "sid", "call id", "callid"),
    "from_number": ("from", "from number", "caller", "caller number", "caller id", "calling number"),
    "to_number": ("to", "to number", "called", "called number", "dialed number", "destination"),
    "direction": ("direction", "call direction", "call type"),
    "status": ("status", "call status", "callstatus", "result", "outcome", "disposition"),
    "started_at": (
        "start time",
        "starttime",
        "started at",
        "start",
        "date",
        "date time",
        "call time",
        "timestamp",
    ),
    "duration": ("duration", "duration s", "duration (s)", "call duration", "duration seconds", "seconds"),
    "recording_url": ("recording url", "recordingurl", "recording", "recording link"),
    "notes": ("notes", "note", "comments", "comment", "message"),
}
COLUMNS = {"leads": LEAD_COLUMNS, "calls": CALL_COLUMNS}
FIELD_LABELS = {
    "first_name": "first name",
    "last_name": "last name",
    "date_of_birth": "date of birth",
    "preferred_time": "best time to call",
    "referring_provider": "referring provider",
    "call_sid": "call SID",
    "from_number": "from",
    "to_number": "to",
    "started_at": "start time",
    "recording_url": "recording URL",
}

# A phone system's words for a call's outcome → (Twilio status, staff spoke with the caller).
STATUS_WORDS: dict[str, tuple[str, bool | None]] = {
    "completed": ("completed", None),
    "complete": ("completed", None),
    "answered": ("completed", True),
    "connected": ("completed", True),
    "no-answer": ("no-answer", False),
    "noanswer": ("no-answer", False),
    "not-answered": ("no-answer", False),
    "unanswered": ("no-answer", False),
    "missed": ("no-answer", False),
    "abandoned": ("canceled", False),
    "busy": ("busy", False),
    "failed": ("failed", False),
    "canceled": ("canceled", False),
    "cancelled": ("canceled", False),
    "voicemail": ("voicemail", False),
    "voice-mail": ("voicemail", False),
    **{s: (s, None) for s in CALL_STATUSES},
}
DIRECTION_WORDS = {
    "inbound": "inbound",
    "incoming": "inbound",
    "in": "inbound",
    "outbound": "outbound",
    "outgoing": "outbound",
    "out": "outbound",
    "outbound-api": "outbound",
    "outbound-dial": "outbound",
}
SOURCE_WORDS = {"web form": "web_form", "webform": "web_form", "walk in": "walk_in", "walkin": "walk_in"}
DATETIME_FORMATS = (
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%y %H:%M",
    "%m/%d/%y %I:%M %p",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
)
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
BATCH = 1000
MAX_CALL_SECONDS = 24 * 3600  # Twilio ends any call at 24 hours (its longest TimeLimit)
FIRST_YEAR, LAST_YEAR = 1900, 2999  # a call or a birth outside these is a typo, not a date
NUMBER_RE = re.compile(r"\+?\d[\d\s().-]{4,}\d")


class ImportRefused(ValueError):
    """A file that cannot be imported at all (encoding, columns, size); the message says why."""


@dataclass
class RowError:
    """One problem in one row, named by row number and field — never by value."""

    row: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.field}: {self.message}"


@dataclass
class ParsedRow:
    number: int  # the row in a spreadsheet's numbering: the header is row 1
    values: dict[str, Any]
    errors: list[RowError] = field(default_factory=list)


@dataclass
class ParsedFile:
    """A file read and checked, ready for a preview or an import."""

    kind: str
    columns: dict[str, str]  # field → the header it came from
    ignored: list[str]  # headers that map to nothing
    rows: list[ParsedRow]
    notices: list[str] = field(default_factory=list)  # file-level remarks (e.g. the encoding)

    @property
    def errors(self) -> list[RowError]:
        return [error for row in self.rows for error in row.errors]

    @property
    def good_rows(self) -> list[ParsedRow]:
        return [row for row in self.rows if not row.errors]

    @property
    def bad_row_count(self) -> int:
        return sum(1 for row in self.rows if row.errors)


@dataclass
class ImportResult:
    """What an import did, in counts (and the rows it skipped, by number)."""

    kind: str
    rows: int = 0
    imported: int = 0
    skipped: int = 0
    leads_created: int = 0
    leads_attached: int = 0
    possible_duplicates: int = 0
    calls_new: int = 0
    calls_known: int = 0
    errors: list[RowError] = field(default_factory=list)

    def summary(self) -> str:
        if self.kind == "leads":
            made = (
                f"{self.leads_created} new lead(s), {self.leads_attached} added to existing leads, "
                f"{self.possible_duplicates} marked possible duplicate"
            )
        else:
            made = (
                f"{self.calls_new} new call(s), {self.calls_known} already known, "
                f"{self.leads_created} new lead(s) from callers"
            )
        return f"{self.imported} of {self.rows} row(s) imported: {made}; {self.skipped} bad row(s) skipped."


# --------------------------------------------------------------------------- reading


def _header_key(text: str) -> str:
    text = text.replace("\ufeff", "").strip().lower()
    text = re.sub(r"[_\-./]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _decode(data: bytes) -> tuple[str, list[str]]:
    if len(data) > MAX_BYTES:
        raise ImportRefused(
            f"The file is larger than {MAX_BYTES // (1024 * 1024)} MB: split it into smaller files."
        )
    utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.startswith(
        codecs.BOM_UTF32_LE
    )
    if utf16:  # Excel's "Unicode text" and some phone systems' exports
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise ImportRefused(
                "The file starts as UTF-16 text but is not. Save it as “CSV UTF-8”."
            ) from None
        if "\x00" in text or not text.strip():
            raise ImportRefused("The file contains NUL characters or nothing at all. Save it as “CSV UTF-8”.")
        return text.lstrip("\ufeff"), ["The file is UTF-16 text: it was read as such."]
    if b"\x00" in data:
        raise ImportRefused(
            "The file contains NUL bytes, so it is not a plain CSV text file (a spreadsheet saved as "
            ".xlsx or a UTF-16 export?). Save it as “CSV UTF-8” and upload it again."
        )
    if not data.strip():
        raise ImportRefused("The file is empty.")
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise ImportRefused(
            "The file is not UTF-8 text (nor Windows-1252). Save it as “CSV UTF-8” and upload it again."
        ) from None
    return text, [
        "The file is not UTF-8: it was read as Windows-1252 (Excel's default on Windows). "
        "Check accented names in the preview; saving as “CSV UTF-8” avoids this."
    ]


def _delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    try:
        found = csv.Sniffer().sniff(text[:65536], delimiters=",;\t").delimiter
    except csv.Error:
        found = ""
    if found and found in first_line:
        return found
    counts = {d: first_line.count(d) for d in ",;\t"}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _map_columns(kind: str, header: list[str]) -> tuple[dict[str, int], dict[str, str], list[str]]:
    synonyms = {_header_key(s): name for name, words in COLUMNS[kind].items() for s in (name, *words)}
    index: dict[str, int] = {}
    source: dict[str, str] = {}
    ignored: list[str] = []
    for i, raw in enumerate(header):
        name = synonyms.get(_header_key(raw))
        if name is None or name in index:
            ignored.append(raw.strip()[:60])
            continue
        index[name], source[name] = i, raw.strip()[:60]
    return index, source, ignored


def _expected(kind: str) -> str:
    if kind == "leads":
        return "a “Phone” or an “Email” column (and names: “First Name”, “Last Name” or “Name”)"
    return "“From”, “To”, “Status” and “Start Time” columns (and “Call SID”, “Direction”, “Duration”)"


def _check_columns(kind: str, index: Mapping[str, int], header: list[str]) -> None:
    if kind == "leads":
        missing = not ({"phone", "email"} & index.keys())
    else:
        missing = not {"from_number", "to_number", "status", "started_at"} <= index.keys()
    if missing:
        found = ", ".join(f"“{h.strip()[:40]}”" for h in header if h.strip()) or "none"
        raise ImportRefused(
            f"The file's columns do not fit a {kind} import: it needs {_expected(kind)}. "
            f"Columns found: {found}. Headers are matched by name, case-insensitive (see the README)."
        )


def read_csv(data: bytes, kind: str, *, lines: Mapping[str, str], tz: Any = None) -> ParsedFile:
    """Decode, map and check a CSV file of leads or calls.

    :raises ImportRefused: for a file that cannot be imported at all.
    """
    if kind not in KINDS:
        raise ImportRefused("Choose what the file holds: leads or calls.")
    text, notices = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), quotechar='"')
    try:
        header = next(reader)
    except StopIteration:  # pragma: no cover - an empty file is refused above
        raise ImportRefused("The file is empty.") from None
    except csv.Error:
        raise ImportRefused("The file's first line is not a row of column names.") from None
    index, source, ignored = _map_columns(kind, header)
    _check_columns(kind, index, header)
    check = _check_lead if kind == "leads" else _checker_for_calls(lines, tz or clinic_tz())
    rows: list[ParsedRow] = []
    try:
        for number, record in enumerate(reader, start=2):
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= MAX_ROWS:
                raise ImportRefused(f"The file has more than {MAX_ROWS:,} rows: split it into smaller files.")
            raw = {name: record[i].strip() if i < len(record) else "" for name, i in index.items()}
            row = ParsedRow(number=number, values={})
            check(raw, row)
            rows.append(row)
    except csv.Error:
        raise ImportRefused(
            f"The file could not be read as CSV after row {len(rows) + 1} (an unclosed quote?)."
        ) from None
    if not rows:
        raise ImportRefused("The file has column names but no rows.")
    return ParsedFile(kind=kind, columns=source, ignored=ignored, rows=rows, notices=notices)


def _err(row: ParsedRow, name: str, message: str) -> None:
    row.errors.append(RowError(row.number, FIELD_LABELS.get(name, name), message))


def _text(raw: Mapping[str, str], name: str, row: ParsedRow, limit: int) -> str | None:
    value = raw.get(name) or ""
    if len(value) > limit:
        _err(row, name, f"longer than {limit:,} characters")
        return None
    if CONTROL_CHARS.search(value):
        _err(row, name, "contains control characters (retype it, or save the file again as CSV)")
        return None
    return value or None


def _parse_date(value: str) -> date | None:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    return None


def _check_lead(raw: Mapping[str, str], row: ParsedRow) -> None:
    """Check one lead row and fill ``row.values`` with what intake takes."""
    v = row.values
    first, last = _text(raw, "first_name", row, 100), _text(raw, "last_name", row, 100)
    full = _text(raw, "name", row, 200)
    if full and not (first or last):
        if "," in full:
            last, _, first = (part.strip() for part in full.partition(","))
        else:
            first, _, last = full.rpartition(" ") if " " in full else ("", "", full)
    v["first_name"], v["last_name"] = (first or "")[:100], (last or "")[:100]
    phone_raw = raw.get("phone") or ""
    v["phone"] = phones.normalize(phone_raw) if phone_raw else None
    if phone_raw and v["phone"] is None:
        _err(row, "phone", "not a valid phone number")
    email = (raw.get("email") or "").lower() or None
    if email and (len(email) > 254 or not EMAIL_RE.match(email)):
        _err(row, "email", "not an email address")
        email = None
    v["email"] = email
    if not phone_raw and not raw.get("email"):
        _err(row, "phone", "a lead needs a phone or an email")
    dob_raw = raw.get("date_of_birth") or ""
    v["date_of_birth"] = _parse_date(dob_raw) if dob_raw else None
    if dob_raw and (v["date_of_birth"] is None or not plausible_birth_date(v["date_of_birth"])):
        _err(row, "date_of_birth", "not a date of birth (use YYYY-MM-DD or MM/DD/YYYY)")
        v["date_of_birth"] = None
    source = _header_key(raw.get("source") or "")
    source = SOURCE_WORDS.get(source, source.replace(" ", "_")) or "import"
    if source not in SOURCES:
        _err(row, "source", f"not one of: {', '.join(SOURCES)}")
    v["source"] = source
    v["message"] = _text(raw, "message", row, 20_000)
    for name, limit in (
        ("campaign", 120),
        ("insurance", 120),
        ("language", 40),
        ("preferred_time", 100),
        ("referring_provider", 200),
    ):
        v[name] = _text(raw, name, row, limit)


def _parse_datetime(value: str, tz: Any) -> datetime | None:
    text = value.strip()
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        for fmt in DATETIME_FORMATS:
            try:
                parsed = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None or not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        return None
    if parsed.tzinfo is None:  # a phone system's local time is the clinic's
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def _parse_duration(value: str) -> int | None:
    text = value.strip()
    if not text:
        return 0
    seconds: int | None = None
    if re.fullmatch(r"\d{1,9}(\.\d+)?", text):
        seconds = int(float(text))
    elif re.fullmatch(r"\d{1,3}(:\d{2}){1,2}", text):
        seconds = 0
        for part in text.split(":"):
            seconds = seconds * 60 + int(part)
    return seconds if seconds is not None and seconds <= MAX_CALL_SECONDS else None


def stable_call_key(from_number: str | None, to_number: str | None, started_at: datetime) -> str:
    """Return a call's stand-in Call SID from caller, callee and start time (same call, same key)."""

    def norm(raw: str | None) -> str:
        return phones.normalize(raw) or phones.digits(raw or "") or (raw or "").strip().lower()

    basis = f"{norm(from_number)}|{norm(to_number)}|{started_at.astimezone(UTC).isoformat()}"
    return "import-" + hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()


def _checker_for_calls(lines: Mapping[str, str], tz: Any) -> Callable[[Mapping[str, str], ParsedRow], None]:
    def check(raw: Mapping[str, str], row: ParsedRow) -> None:
        """Check one call row and fill ``row.values`` with a ``CallEventIn``'s fields."""
        v = row.values
        v["from_number"] = _text(raw, "from_number", row, 32)
        v["to_number"] = _text(raw, "to_number", row, 32)
        to_line = phones.normalize(v["to_number"]) in lines if v["to_number"] else False
        from_line = phones.normalize(v["from_number"]) in lines if v["from_number"] else False
        word = _header_key(raw.get("direction") or "").replace(" ", "-")
        direction = DIRECTION_WORDS.get(word) if word else ("inbound" if to_line else "outbound")
        if direction is None:
            _err(row, "direction", "not inbound or outbound")
        elif not word and not (to_line or from_line):
            _err(row, "to_number", "neither from nor to is one of the clinic's lines")
        elif direction == "inbound" and not to_line:
            _err(row, "to_number", "not one of the clinic's lines")
        elif direction == "outbound" and not from_line:
            _err(row, "from_number", "not one of the clinic's lines")
        elif direction == "outbound" and not phones.normalize(v["to_number"]):
            _err(row, "to_number", "not a valid phone number")
        v["direction"] = direction
        status_word = _header_key(raw.get("status") or "").replace(" ", "-")
        status, answered = STATUS_WORDS.get(status_word, ("", None))
        if not status:
            _err(
                row, "status", "not a call status (completed, no-answer, busy, failed, canceled, voicemail…)"
            )
        started = _parse_datetime(raw.get("started_at") or "", tz) if raw.get("started_at") else None
        if started is None:
            _err(row, "started_at", "not a date and time (use YYYY-MM-DD HH:MM[:SS] or MM/DD/YYYY HH:MM)")
        v["started_at"] = started
        duration = _parse_duration(raw.get("duration") or "")
        if duration is None:
            _err(row, "duration", "not a number of seconds (or mm:ss), up to 24 hours")
        v["duration_seconds"] = duration or 0
        v["recording_url"] = _text(raw, "recording_url", row, 500)
        v["notes"] = _text(raw, "notes", row, 20_000)
        if status == "voicemail":  # a message left: missed when inbound, an attempt when outbound
            status = "no-answer" if direction == "inbound" else "completed"
        elif status == "completed" and answered is None and direction == "inbound":
            answered = bool(v["duration_seconds"]) and not v["recording_url"]
        v["status"], v["answered"] = status, answered
        sid = _text(raw, "call_sid", row, 64)
        if sid is None and started is not None:
            sid = stable_call_key(v["from_number"], v["to_number"], started)
        v["call_sid"] = sid

    return check


# --------------------------------------------------------------------------- importing


def import_rows(
    parsed: ParsedFile,
    *,
    skip_bad_rows: bool,
    lines: Mapping[str, str],
    now: datetime,
    actor_id: int | None = None,
    via: str = "web",
    ip: str | None = None,
) -> ImportResult:
    """Send every good row through intake, in the caller's transaction.

    :raises ImportRefused: when a row is bad and ``skip_bad_rows`` is off (the caller rolls
        back: nothing of the file stays).
    """
    result = ImportResult(kind=parsed.kind, rows=len(parsed.rows), errors=list(parsed.errors))
    if result.errors and not skip_bad_rows:
        raise ImportRefused(
            f"{parsed.bad_row_count} row(s) have errors: nothing was imported. "
            "Fix them, or choose to skip the bad rows."
        )
    cal = load_calendar()
    good = parsed.good_rows
    result.skipped = len(parsed.rows) - len(good)
    run = _import_leads if parsed.kind == "leads" else _import_calls
    for batch in _batches(good, BATCH):
        run(batch, result, cal=cal, lines=lines, now=now, actor_id=actor_id, skip=skip_bad_rows)
        _release(db.session)
    if result.errors and not skip_bad_rows:  # intake refused a row the checks let through
        raise ImportRefused(f"{len(result.errors)} row(s) were refused: nothing was imported.")
    result.imported = result.rows - result.skipped
    audit.record(
        "csv_import",
        user_id=actor_id,
        detail={
            "kind": parsed.kind,
            "rows": result.rows,
            "imported": result.imported,
            "skipped": result.skipped,
            "leads_created": result.leads_created,
            "leads_attached": result.leads_attached,
            "calls_new": result.calls_new,
        },
        ip=ip,
        via=via,
    )
    return result


def _release(session: Any) -> None:
    """Write a batch and let go of its objects: a session holding 50,000 leads flushes slowly.

    Everything stays in the one transaction (a later refusal still rolls it all back); the
    settings row cached for the request is dropped too, so it is read back attached.
    """
    session.flush()
    session.expunge_all()
    if has_app_context():
        g.pop("clinic_settings", None)


def _batches(rows: list[ParsedRow], size: int) -> Iterator[list[ParsedRow]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _guarded(skip: bool) -> Any:
    """A SAVEPOINT per row when bad rows are skipped (a refused row leaves nothing behind)."""
    return db.session.begin_nested() if skip else nullcontext()


def _import_leads(
    batch: list[ParsedRow],
    result: ImportResult,
    *,
    cal: BusinessCalendar,
    lines: Mapping[str, str],
    now: datetime,
    actor_id: int | None,
    skip: bool,
) -> None:
    contacts = [ContactIn(**row.values) for row in batch]
    done = receive_contacts_bulk(contacts, now=now, calendar=cal, guard=lambda: _guarded(skip))
    notes = []
    for row, outcome in zip(batch, done, strict=True):
        if outcome.refused is not None:
            _refused(result, row, outcome.refused, skip)
            continue
        assert outcome.lead_id is not None
        message = row.values["message"]
        if message and (outcome.created or not _has_note(outcome.lead_id, message, notes)):
            notes.append(
                {"lead_id": outcome.lead_id, "author_id": actor_id, "body": message, "created_at": now}
            )
        if outcome.created:
            result.leads_created += 1
            result.possible_duplicates += outcome.possible_duplicate
        else:
            result.leads_attached += 1
    if notes:
        db.session.execute(sa.insert(Note.__table__), notes)


def _has_note(lead_id: int, body: str, pending: list[dict[str, Any]]) -> bool:
    if any(note["lead_id"] == lead_id and note["body"] == body for note in pending):
        return True
    db.session.flush()
    return (
        db.session.scalar(sa.select(Note.id).where(Note.lead_id == lead_id, Note.body == body).limit(1))
        is not None
    )


def _import_calls(
    batch: list[ParsedRow],
    result: ImportResult,
    *,
    cal: BusinessCalendar,
    lines: Mapping[str, str],
    now: datetime,
    actor_id: int | None,
    skip: bool,
) -> None:
    sids = [row.values["call_sid"] for row in batch]
    known = set(db.session.scalars(sa.select(Call.call_sid).where(Call.call_sid.in_(sids))))
    for row in batch:
        v = row.values
        event = CallEventIn(
            call_sid=v["call_sid"],
            from_number=v["from_number"],
            to_number=v["to_number"],
            direction=v["direction"],
            status=v["status"],
            started_at=v["started_at"],
            duration_seconds=v["duration_seconds"],
            recording_url=v["recording_url"],
            notes=v["notes"],
            answered=v["answered"],
        )
        try:
            with _guarded(skip):
                done = receive_call_event(event, lines=dict(lines), now=now, calendar=cal)
        except IntakeRefused as error:
            _refused(result, row, str(error), skip)
            continue
        if v["call_sid"] in known:
            result.calls_known += 1
        else:
            result.calls_new += 1
            known.add(v["call_sid"])
        result.leads_created += done.created


def _refused(result: ImportResult, row: ParsedRow, message: str, skip: bool) -> None:
    # Intake's words may quote a number: keep digits out of a report that can end up anywhere.
    result.errors.append(RowError(row.number, "row", NUMBER_RE.sub("(number)", message)))
    if skip:
        result.skipped += 1


# --------------------------------------------------------------------------- uploads kept for the commit

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
UPLOAD_MAX_AGE_SECONDS = 24 * 3600


def store_upload(directory: str, data: bytes, *, kind: str, user_id: int) -> str:
    """Keep an uploaded file under a random token until it is imported; return the token.

    Files older than a day (previews never committed) are removed on the way.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        if time.time() - old.stat().st_mtime > UPLOAD_MAX_AGE_SECONDS:
            delete_upload(directory, old.stem)
    token = secrets.token_urlsafe(32)
    (folder / f"{token}.csv").write_bytes(data)
    (folder / f"{token}.json").write_text(json.dumps({"kind": kind, "user_id": user_id}))
    return token


def load_upload(directory: str, token: str, *, user_id: int) -> tuple[bytes, str] | None:
    """Return a stored upload's bytes and kind, if it exists and belongs to this user."""
    if not TOKEN_RE.match(token or ""):
        return None
    folder = Path(directory)
    try:
        meta = json.loads((folder / f"{token}.json").read_text())
        data = (folder / f"{token}.csv").read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("user_id") != user_id or meta.get("kind") not in KINDS:
        return None
    return data, str(meta["kind"])


def delete_upload(directory: str, token: str) -> None:
    """Remove a stored upload (after its import, or when it is too old)."""
    if not TOKEN_RE.match(token or ""):
        return
    for suffix in (".csv", ".json"):
        (Path(directory) / f"{token}{suffix}").unlink(missing_ok=True)
