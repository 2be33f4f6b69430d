"""The benchmark's write load: Twilio status callbacks sent concurrently, and public form posts.

Everything that costs CPU is done before the clock starts: callbacks are built, form-encoded
and signed (``twilio.RequestValidator``) up front, so during the timed run the client only
writes prepared bytes to the socket and reads the answer (asyncio + aiohttp, a bounded number
of connections, loopback only, bounded in count and in time).
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

import aiohttp
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


async def _send_all(base: str, plan: Callbacks, concurrency: int, time_limit: float) -> LoadResult:
    result = LoadResult()
    url = base + WEBHOOK_PATH
    queue = iter(range(len(plan.jobs)))
    deadline = time.perf_counter() + time_limit
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async def worker(session: aiohttp.ClientSession) -> None:
        for index in queue:
            if time.perf_counter() > deadline:
                return
            body, signature = plan.jobs[index]
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature}
            result.sent += 1
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
                    timing = SERVER_TIMING.search(response.headers.get("Server-Timing", ""))
                    count = response.headers.get("X-SQL-Statements")
            except (aiohttp.ClientError, TimeoutError):
                result.errors += 1
                result.statuses[0] = result.statuses.get(0, 0) + 1
                continue
            result.client_ms.append((time.perf_counter() - started) * 1000)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status != 200:
                result.errors += 1
                continue
            result.answered_sids.add(plan.sid_of_job[index])
            result.answered_jobs.add(index)
            if timing:
                result.server_ms.append(float(timing.group(1)))
            if count is not None:
                result.statements.append(int(count))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
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
