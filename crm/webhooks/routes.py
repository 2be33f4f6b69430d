"""Twilio's voice status callback (PRODUCT §6 item 2): signed, no login, idempotent.

The view checks the signature, reads the form into a ``CallEventIn``, has it recorded
(``groupcommit``: with the callbacks that arrived beside it, by ``intake.receive_call_events``),
and answers an empty TwiML document once that is committed. Refusals are
plain text (Twilio logs them in its debugger): 403 for a bad signature, 400 for a
malformed callback or a line that is not the clinic's. Nothing is stored on a refusal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from flask import Blueprint, Response, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from crm import audit, clock, intake
from crm.authz import public
from crm.extensions import csrf
from crm.models import CALL_STATUSES
from crm.security import client_ip
from crm.webhooks import groupcommit

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_FIELD_CHARS = 500
# Twilio's ids are two letters and 32 hex digits; other phone systems' ids stay short and plain.
SID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NUMBER_RE = re.compile(r"^[\w+\-.:@() ]{0,64}$")
FIRST_YEAR, LAST_YEAR = 1970, 2999  # a callback's moment outside these is not one Twilio sent


class BadCallback(ValueError):
    """A callback whose fields cannot be read; the message says which and why."""


def plain(text: str, status: int) -> Response:
    """Answer a refusal in plain text."""
    return Response(text + "\n", status=status, mimetype="text/plain")


def public_url() -> str:
    """Return the exact address Twilio called: the public base URL, the path and the query."""
    base = current_app.config.get("PUBLIC_BASE_URL") or ""
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return f"{base}{request.script_root}{request.path}" + (f"?{query}" if query else "")


def signature_ok() -> bool:
    """Check ``X-Twilio-Signature`` against the auth token, the public URL and the form."""
    signature = request.headers.get("X-Twilio-Signature", "")
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or ""
    if not signature or not token:
        return False
    return bool(RequestValidator(token).validate(public_url(), request.form, signature))


def _field(form: MultiDict[str, str], name: str, *, required: bool = False) -> str | None:
    value = form.get(name)
    if value is None or value.strip() == "":
        if required:
            raise BadCallback(f"{name} is missing.")
        return None
    if len(value) > MAX_FIELD_CHARS:
        raise BadCallback(f"{name} is too long.")
    if "\x00" in value or any(ord(ch) < 32 for ch in value):
        raise BadCallback(f"{name} contains control characters.")
    return value.strip()


def _whole_number(form: MultiDict[str, str], name: str) -> int:
    value = _field(form, name)
    if value is None:
        return 0
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise BadCallback(f"{name} must be a whole number.")
    return int(value)


def _sid(form: MultiDict[str, str], name: str, *, required: bool = False) -> str | None:
    value = _field(form, name, required=required)
    if value is not None and not SID_RE.match(value):
        raise BadCallback(f"{name} is not a call id.")
    return value


def _number(form: MultiDict[str, str], name: str) -> str | None:
    value = _field(form, name)
    if value is not None and not NUMBER_RE.match(value):
        raise BadCallback(f"{name} is not a phone number.")
    return value


def _timestamp(form: MultiDict[str, str]) -> datetime:
    value = _field(form, "Timestamp")
    if value is None:
        return clock.now()
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)  # overflows at the calendar's ends (9999-12-31 -2359)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise BadCallback("Timestamp is not a date (RFC 2822, as Twilio sends it).") from None
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise BadCallback("Timestamp is not a date (RFC 2822, as Twilio sends it).")
    return moment


def parse_voice_status(form: MultiDict[str, str]) -> intake.CallEventIn:
    """Read Twilio's callback fields; raise ``BadCallback`` naming the first bad one."""
    status = (_field(form, "CallStatus", required=True) or "").lower()
    if status not in CALL_STATUSES and status != "initiated":
        raise BadCallback("CallStatus is not one of Twilio's call statuses.")
    direction = (_field(form, "Direction", required=True) or "").lower()
    if direction != "inbound" and not direction.startswith("outbound"):
        raise BadCallback("Direction must be inbound, outbound-api or outbound-dial.")
    recording = _field(form, "RecordingUrl")
    if recording is not None and not recording.startswith(("https://", "http://")):
        raise BadCallback("RecordingUrl is not a web address.")
    duration = _whole_number(form, "CallDuration")
    # Twilio's Timestamp is when this event happened; a finished call started CallDuration earlier.
    started = _timestamp(form) - timedelta(seconds=duration)
    return intake.CallEventIn(
        call_sid=_sid(form, "CallSid", required=True),
        from_number=_number(form, "From"),
        to_number=_number(form, "To"),
        direction=direction,
        status=status,
        sequence_number=_whole_number(form, "SequenceNumber"),
        started_at=started,
        duration_seconds=duration,
        recording_url=recording,
        parent_call_sid=_sid(form, "ParentCallSid"),
    )


def _record(jobs: list[groupcommit.Job]) -> None:
    """Add callbacks to the current transaction: their calls (intake) and an audit event each."""
    events = [job.event for job in jobs]
    results = intake.receive_call_events(events, lines=current_app.config["CLINIC_LINES"], now=clock.now())
    entries = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, intake.IntakeRefused):
            job.refused = str(result)
            continue
        detail = {
            "call_id": result.call.id if result.call else None,
            "status": job.event.status,
            "leg": bool(job.event.parent_call_sid),
            "lead_created": result.created,
            "missed": bool(result.details.get("missed")),
        }
        entries.append((result.lead.id if result.lead else None, detail, job.ip))
    audit.record_many("call.status_callback", entries, via="webhook")


_group = groupcommit.make(_record)


@bp.post("/twilio/voice-status")
@public
@csrf.exempt
def voice_status() -> Response:
    """Take one voice status callback from Twilio: verify, record the call, answer empty TwiML.

    The answer comes after the commit that stores the callback; callbacks that arrive
    together in this worker share that commit (``groupcommit``).
    """
    if not signature_ok():
        return plain("The request signature is missing or wrong.", 403)
    try:
        event = parse_voice_status(request.form)
    except BadCallback as error:
        return plain(str(error), 400)
    job = _group.submit(groupcommit.Job(event, client_ip()))
    if job.error is not None:  # not recorded: a 500, and Twilio sends it again
        raise job.error
    if job.refused is not None:
        return plain(job.refused, 400)
    return Response(EMPTY_TWIML, status=200, mimetype="text/xml")
