"""The benchmark's write load: Twilio status callbacks sent concurrently, and public form posts.

Everything that costs CPU is done before the clock starts: callbacks are built, form-encoded
and signed (``twilio.RequestValidator``) up front, so during the timed run the client only
writes prepared bytes to the socket and reads the answer (plain asyncio streams, a bounded
number of kept-alive connections, loopback only, bounded in count and in time).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import requests
from twilio.request_validator import RequestValidator

WEBHOOK_PATH = "/webhooks/twilio/voice-status"
FORM_PATH = "/request-appointment"
FORM_TOKEN = re.compile(r'name="form_token"[^>]*value="([^"]+)"')
SERVER_TIMING = re.compile(r"app;dur=([\d.]+)")


@dataclass
class Callbacks:
    """Signed callbacks ready to send, and what the database must hold afterwards."""

    run_tag: str  # every new CallSid of this run starts with "CA" + run_tag
    jobs: list[tuple[bytes, str]]  # (form-encoded body, X-Twilio-Signature)
    sid_of_job: list[str]
    status_of_job: list[str]
    new_sids: set[str]
    repeats: int  # callbacks that repeat one of this run's own calls (a second status, a retry)
    existing: int  # callbacks about calls already in the data set


@dataclass
class LoadResult:
    """What a concurrent run saw: per-request latencies, statuses and its wall time."""

    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    answered_sids: set[str] = field(default_factory=set)
    answered_jobs: set[int] = field(default_factory=set)
    sent: int = 0
    errors: int = 0
    wall_s: float = 0.0


def build_callbacks(
    total: int,
    *,
    token: str,
    public_base: str,
    line: str,
    known_callers: list[str],
    existing: list[list[str]],
) -> Callbacks:
    """Plan ``total`` callbacks: new calls reported twice (ringing, completed) in random order,
    a fifth of them retried once more, and the rest re-sent for calls already in the data set.

    Half of the new calls come from callers the clinic knows (an existing lead's phone), half
    from new numbers (a new lead each).
    """
    rng = random.Random(10)
    run_tag = uuid.uuid4().hex[:10]
    distinct = max(1, int(total / 2.5))
    retries = distinct // 5
    n_existing = max(0, total - 2 * distinct - retries) if existing else 0
    validator = RequestValidator(token)
    url = public_base + WEBHOOK_PATH
    now = format_datetime(datetime.now(UTC))
    forms: list[dict[str, str]] = []
    new_sids: set[str] = set()
    for i in range(distinct):
        sid = f"CA{run_tag}{i:022x}"
        new_sids.add(sid)
        caller = (
            known_callers[i % len(known_callers)] if i % 2 and known_callers else f"+1469555{i % 10000:04d}"
        )
        base = {"AccountSid": "AC" + "0" * 32, "CallSid": sid, "From": caller, "To": line}
        base |= {"Direction": "inbound", "ApiVersion": "2010-04-01", "Timestamp": now}
        forms.append(base | {"CallStatus": "ringing", "SequenceNumber": "0", "CallDuration": "0"})
        completed = base | {"CallStatus": "completed", "SequenceNumber": "1", "CallDuration": "95"}
        forms.append(completed)
        if i < retries:
            forms.append(completed)  # Twilio retries a callback it got no answer to
    for i in range(n_existing):
        sid, caller, to_number, direction, status = existing[i % len(existing)]
        forms.append(
            {
                "AccountSid": "AC" + "0" * 32,
                "CallSid": sid,
                "From": caller or "",
                "To": to_number or line,
                "Direction": direction,
                "CallStatus": status,
                "SequenceNumber": "9",
                "CallDuration": "60",
                "ApiVersion": "2010-04-01",
                "Timestamp": now,
            }
        )
    rng.shuffle(forms)
    jobs = [(urlencode(f).encode(), validator.compute_signature(url, f)) for f in forms]
    return Callbacks(
        run_tag=run_tag,
        jobs=jobs,
        sid_of_job=[f["CallSid"] for f in forms],
        status_of_job=[f["CallStatus"] for f in forms],
        new_sids=new_sids,
        repeats=distinct + retries,
        existing=n_existing,
    )


def _request(host: str, body: bytes, signature: str) -> bytes:
    """One whole HTTP/1.1 request (kept-alive connection), ready to write."""
    head = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    """Read one response: its status, headers (lower-cased names) and whether the server closes."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, headers.get("connection", "").lower() == "close"


async def _send_all(base: str, plan: Callbacks, concurrency: int, time_limit: float) -> LoadResult:
    """Send every job over ``concurrency`` kept-alive connections.

    The requests are whole byte strings made before the clock starts; the client only writes
    them and reads the status line and headers back (no HTTP library: aiohttp's own work was
    0.4-0.5 ms of the two cores per callback, a tenth of the server's budget at 500/s).
    """
    result = LoadResult()
    host_port = base.removeprefix("http://")
    host, port = host_port.rsplit(":", 1)
    requests_ = [_request(host_port, body, signature) for body, signature in plan.jobs]
    queue = iter(range(len(plan.jobs)))
    deadline = time.perf_counter() + time_limit

    async def worker() -> None:
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for index in queue:
            if time.perf_counter() > deadline:
                break
            result.sent += 1
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = await asyncio.open_connection(host, int(port))
                reader, writer = conn
                writer.write(requests_[index])
                status, headers, closing = await asyncio.wait_for(_answer(reader), timeout=60)
            except (
                OSError,
                ConnectionError,
                asyncio.IncompleteReadError,
                TimeoutError,
                ValueError,
                IndexError,
            ):
                result.errors += 1
                result.statuses[0] = result.statuses.get(0, 0) + 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            if closing:
                conn[1].close()
                conn = None
            result.client_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.errors += 1
                continue
            result.answered_sids.add(plan.sid_of_job[index])
            result.answered_jobs.add(index)
            timing = SERVER_TIMING.search(headers.get("server-timing", ""))
            if timing:
                result.server_ms.append(float(timing.group(1)))
            if "x-sql-statements" in headers:
                result.statements.append(int(headers["x-sql-statements"]))
        if conn is not None:
            conn[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def send_callbacks(base: str, plan: Callbacks, *, concurrency: int, time_limit: float) -> LoadResult:
    """Send the planned callbacks with ``concurrency`` connections until done or ``time_limit``."""
    return asyncio.run(_send_all(base, plan, concurrency, time_limit))


def patient(n: int, run: int) -> dict[str, Any]:
    """A complete, valid appointment request for benchmark patient ``n``."""
    return {
        "first_name": f"Bench{n}",
        "last_name": f"Patient{run}",
        "phone": f"+1469556{n % 10000:04d}",
        "email": f"bench{run}.{n}@example.com",
        "message": "Low back pain shooting down my left leg for six weeks; PT did not help.",
        "where_it_hurts": ["lower"],
        "side": ["left"],
        "tried_pt": "did_not_help",
        "red_flag_bladder": "no",
        "red_flag_weakness": "no",
        "preferred_time": "Morning",
        "language": "English",
        "consent_phone": "y",
        "website": "",
    }


def post_forms(base: str, count: int) -> tuple[LoadResult, Any]:
    """Fetch ``count`` form tokens (not timed), then post the forms one after another (timed)."""
    session = requests.Session()
    run = random.randrange(10**6)
    tokens = []
    for _ in range(count):
        found = FORM_TOKEN.search(session.get(base + FORM_PATH, timeout=30).text)
        tokens.append(found.group(1) if found else "")
    result = LoadResult()
    headers = {"Origin": base}
    started_all = time.perf_counter()
    for n, token in enumerate(tokens):
        data = patient(n, run) | {"form_token": token}
        result.sent += 1
        started = time.perf_counter()
        try:
            response = session.post(
                base + FORM_PATH, data=data, headers=headers, timeout=30, allow_redirects=False
            )
        except requests.RequestException:
            result.errors += 1
            continue
        result.client_ms.append((time.perf_counter() - started) * 1000)
        result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
        timing = SERVER_TIMING.search(response.headers.get("Server-Timing", ""))
        if response.status_code != 303 or timing is None:
            result.errors += 1
            continue
        result.server_ms.append(float(timing.group(1)))
        if "X-SQL-Statements" in response.headers:
            result.statements.append(int(response.headers["X-SQL-Statements"]))
    result.wall_s = time.perf_counter() - started_all
    return result, run
