"""`make bench`: every page at full data size, under gunicorn, measured from a separate client.

Builds (or reuses) the ``seed-demo --leads 100000 --calls 1000000`` data set in its own
database (SQLite in ``.bench/sqlite/``, PostgreSQL database ``crm_bench``) and brings it to
the current schema. Each run then works on a throwaway copy of it (a copy of the SQLite file;
``CREATE DATABASE … TEMPLATE crm_bench`` on PostgreSQL), dropped at the end: pages that
write (the audit log, sessions), the form posts and the webhook calls never change the data
set, so every run starts from the same data.

On that copy it starts gunicorn (2 workers, ``--no-control-socket``) on 127.0.0.1 and:

1. requests each page sequentially, signed in as its role (server time from the app's
   ``Server-Timing`` header, SQL statement count from ``X-SQL-Statements``, which only the
   benchmark turns on with ``BENCH_SQL_COUNT``);
2. posts the public form (tokens fetched before the clock starts);
3. sends pre-signed Twilio status callbacks concurrently (new calls reported twice, retries,
   callbacks for calls already in the data set; 64 kept-alive connections by default, each
   request prepared as bytes beforehand), reads the CPU time the workers and PostgreSQL used
   meanwhile, then counts the calls in the database and compares them with what was
   answered: nothing may be lost;
4. signs each demo role in twice more (staff sign in all day, into workers that have served
   pages), reads each worker's peak memory, stops the server, and measures each page's raw SQL
   floor (``bench/inapp.py floor``: the page's own statements replayed on the driver).

The report (a table per database, the machine, the date, the command) is printed and written
to ``BENCH.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import LoadResult, build_callbacks, post_forms, send_callbacks  # noqa: E402

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://crm:crm@127.0.0.1:5432/crm")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
NEXT_LINK = re.compile(r'href="([^"]+)" rel="next"')
PUBLIC_BASE = "http://crm.bench.test"  # webhook signatures are computed for this address
TWILIO_TOKEN = "bench-twilio-auth-token"  # noqa: S105 - local benchmark only
MAIN_LINE = "+19724995457"
CLINIC_LINES = f"{MAIN_LINE}=main,+12145550100=google-ads"

# PRODUCT §9: server p95 limits per kind of page.
TARGET_MS = {"queue": 30.0, "search": 30.0, "lead": 20.0, "dashboard": 200.0}
WEBHOOK_TARGET = 500.0
MEMORY_TARGET_MB = 250.0


@dataclass
class Page:
    """One page to measure: who asks for it, where, and which target applies."""

    role: str
    name: str
    path: str
    kind: str = ""  # a TARGET_MS key, or "" when PRODUCT §9 names no target


@dataclass
class Result:
    """What one page did: latencies, statement counts, errors, client CPU, the SQL floor."""

    page: Page
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    errors: int = 0
    client_cpu_ms: float = 0.0
    floor_ms: float | None = None


@dataclass
class Run:
    """One database's results."""

    db: str
    data: str
    copy_s: float
    pages: list[Result]
    form: Result
    webhook: LoadResult
    webhook_plan: dict[str, Any]
    webhook_cpu_s: float
    webhook_server_cpu_s: tuple[float, float]  # gunicorn workers, PostgreSQL's processes
    memory_mb: list[float]


def pct(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of a list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


_T0 = time.perf_counter()


def progress(db: str, message: str) -> None:
    """Say what the run is doing, with the seconds since it started (on stderr)."""
    print(f"[{time.perf_counter() - _T0:6.1f} s] {db}: {message}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    """CPU seconds (user + system) this client process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- databases


@dataclass
class Where:
    """Where the data set lives: the SQLite folder and the PostgreSQL database name."""

    bench_dir: Path
    pg_db: str

    def url(self, db: str, name: str | None = None) -> str:
        """Return the SQLAlchemy URL of the data set (or of a copy named ``name``)."""
        if db == "sqlite":
            folder = self.bench_dir / (name or "sqlite")
            return f"sqlite:///{folder / 'crm.db'}"
        return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + (name or self.pg_db)


def server_env(url: str, instance: Path) -> dict[str, str]:
    """The app's environment for the benchmark: its database, and limits that would refuse it.

    ``PUBLIC_FORM_MIN_SECONDS=0`` (the bench posts a form as soon as it has the token) and a
    ``FORM_RATE_LIMIT`` far above what it sends (every post comes from 127.0.0.1).
    """
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TEST_DATABASE_URL"}}
    env.update(
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",  # noqa: S106 - local benchmark only
        CRM_ENV="development",
        CRM_INSTANCE_PATH=str(instance),
        DATABASE_URL=url,
        CLINIC_LINES=CLINIC_LINES,
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        PUBLIC_BASE_URL=PUBLIC_BASE,
        PUBLIC_FORM_MIN_SECONDS="0",
        FORM_RATE_LIMIT="1000000 per hour",
        LOGIN_ADDRESS_FAILURES="100000",
        FORCE_HTTPS="false",
        COOKIE_SECURE="false",
        SMTP_URL="",
        BENCH_SQL_COUNT="true",
        PYTHONDONTWRITEBYTECODE="1",
        LOGURU_LEVEL="INFO",
    )
    return env


def flask(env: dict[str, str], *args: str) -> str:
    """Run a ``flask --app wsgi`` command; return its output."""
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env, text=True, capture_output=True
    )
    if done.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def pg_admin() -> Any:
    """An autocommit connection to the PostgreSQL server's ``postgres`` database."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    return psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        autocommit=True,
    )


def ensure_postgres_server() -> None:
    """Install/start PostgreSQL with ``.ci/postgres.sh`` (the script CI uses) unless it answers."""
    ready = shutil.which("pg_isready") and (
        subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0
    )
    if not ready:
        subprocess.run([str(ROOT / ".ci" / "postgres.sh")], check=True)


def ensure_data(db: str, where: Where, leads: int, calls: int) -> str:
    """Build the data set unless a complete one of this size is there; bring it to the current
    schema either way; say which (and how long a build or an upgrade took)."""
    marker = where.bench_dir / f"{db}-{leads}-{calls}.done"
    instance = where.bench_dir / db  # SQLite's file is here; PostgreSQL's builds use it for nothing
    env = server_env(where.url(db), instance)
    started = time.perf_counter()
    if marker.exists():
        # A data set built by an older checkout: bring it to this schema; ``flask demo`` then
        # fills what a new schema adds from the existing rows (e.g. the dashboard's roll-ups).
        flask(env, "db", "upgrade")
        flask(env, "demo")
        return f"reused ({marker.name}; brought up to date in {time.perf_counter() - started:.0f} s)"
    if db == "sqlite":
        instance.mkdir(parents=True, exist_ok=True)
        for stale in instance.glob("crm.db*"):
            stale.unlink()
    else:
        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{where.pg_db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{where.pg_db}"')
    flask(env, "db", "upgrade")
    flask(env, "seed-demo", "--leads", str(leads), "--calls", str(calls))
    flask(env, "demo")
    built = time.perf_counter() - started
    marker.write_text(f"{datetime.now(UTC).isoformat()} built in {built:.0f} s\n")
    return f"built in {built:.0f} s"


@contextlib.contextmanager
def scratch_copy(db: str, where: Where) -> Iterator[tuple[str, Path, float]]:
    """Copy the data set for one run; yield its URL, an instance folder and the copy time; drop it."""
    name = f"run-{os.getpid()}" if db == "sqlite" else f"{where.pg_db}_run_{os.getpid()}"
    started = time.perf_counter()
    folder = where.bench_dir / f"run-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        # SQLite's backup API: a consistent copy even while another process uses the data set.
        source = sqlite3.connect(f"file:{where.bench_dir / 'sqlite' / 'crm.db'}?mode=ro", uri=True)
        target = sqlite3.connect(folder / "crm.db")
        with contextlib.closing(source), contextlib.closing(target):
            source.backup(target)
    else:
        import psycopg

        with pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for attempt in range(60):
                try:
                    conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{where.pg_db}" STRATEGY FILE_COPY')
                    break
                except psycopg.errors.ObjectInUse:  # another session is on the data set: wait for it
                    if attempt == 59:
                        raise
                    time.sleep(1)
    try:
        yield where.url(db, name), folder, time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if db == "postgresql":
            with pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve the app with two workers; yield its base URL and the master process."""
    port = free_port()
    command = [str(BIN / "gunicorn"), "--no-control-socket", "-w", "2", "-b", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(
        [*command, "--error-logfile", str(log), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/login", timeout=10).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        # Both workers must be up (post_worker_init loads the tagger) before anything is timed.
        while len(worker_pids(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_pids(master: int) -> list[int]:
    """List the gunicorn workers of a master process."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def process_cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) each of these processes has used so far (those still running)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds these processes used since ``before`` (one started since then: all of its own)."""
    return sum(now - before.get(pid, 0.0) for pid, now in process_cpu_s(pids).items())


def postgres_pids() -> list[int]:
    """The PostgreSQL server's processes (the backends serving the app among them)."""
    out = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def peak_rss_mb(pid: int) -> float:
    """Return a process's peak resident memory (VmHWM) in MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- the client


def sign_in(base: str, email: str, password: str) -> requests.Session:
    """Sign in through the real form; return the session."""
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=10).text
    token = CSRF.search(page)
    assert token, "no CSRF token on the sign-in page"
    response = session.post(
        f"{base}/login",
        data={"email": email, "password": password, "csrf_token": token.group(1)},
        timeout=10,
        allow_redirects=False,
    )
    assert response.status_code == 302, f"sign-in as {email} failed ({response.status_code})"
    return session


def measure(session: requests.Session, base: str, page: Page, n: int, time_limit: float) -> Result:
    """Request one page n times (after a warm-up), or as often as fits in ``time_limit`` seconds."""
    result = Result(page)
    for _ in range(3):
        session.get(base + page.path, timeout=30)
    cpu_before = cpu_s()
    deadline = time.perf_counter() + time_limit
    for _ in range(n):
        if time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        try:
            response = session.get(base + page.path, timeout=30, allow_redirects=False)
        except requests.RequestException:
            result.errors += 1
            continue
        result.client_ms.append((time.perf_counter() - started) * 1000)
        timing = re.search(r"app;dur=([\d.]+)", response.headers.get("Server-Timing", ""))
        if response.status_code != 200 or timing is None:
            result.errors += 1
            continue
        result.server_ms.append(float(timing.group(1)))
        if "X-SQL-Statements" in response.headers:
            result.statements.append(int(response.headers["X-SQL-Statements"]))
    result.client_cpu_ms = (cpu_s() - cpu_before) * 1000 / max(len(result.client_ms), 1)
    return result


def follow_next(session: requests.Session, base: str, path: str, hops: int) -> str:
    """Follow a list's "Next" link ``hops`` times; return the address reached."""
    for _ in range(hops):
        found = NEXT_LINK.search(session.get(base + path, timeout=30).text)
        if found is None:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


def in_app(env: dict[str, str], *args: str) -> Any:
    """Run ``bench/inapp.py`` with the server's environment; return its JSON."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "inapp.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench/inapp.py {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def pages_for(ids: dict[str, Any], today: date) -> list[Page]:
    """The pages PRODUCT §9 names, each filter of the queue, and each kind of search."""
    month_ago = (today - timedelta(days=30)).isoformat()
    return [
        Page("front_desk", "lead queue", "/leads", "queue"),
        Page("front_desk", "lead queue, 100 pages deep", "deep:/leads", "queue"),
        Page("front_desk", "queue filter: stage", "/leads?stage=evaluation", "queue"),
        Page("front_desk", "queue filter: tag", "/leads?tag=red_flag:weakness", "queue"),
        Page("front_desk", "queue filter: source", "/leads?source=web_form", "queue"),
        Page("front_desk", "queue filter: campaign", "/leads?campaign=google-ads", "queue"),
        Page("front_desk", "queue filter: owner (me)", "/leads?owner=me", "queue"),
        Page(
            "front_desk",
            "queue filter: created dates",
            f"/leads?created_from={month_ago}&created_to={today}",
            "queue",
        ),
        Page("front_desk", "search: name", f"/leads?q={ids['name']}", "search"),
        Page("front_desk", "search: phone", f"/leads?q={ids['phone']}", "search"),
        Page("front_desk", "search: last 4 digits", f"/leads?q={ids['last4']}", "search"),
        Page("front_desk", "search: email", f"/leads?q={ids['email']}", "search"),
        Page("front_desk", "lead page", f"/leads/{ids['lead']}", "lead"),
        Page("surgeon", "referral queue", "/referrals", "queue"),
        Page("manager", "dashboard (30 days)", "/dashboard", "dashboard"),
        Page("manager", "dashboard (12 months)", "/dashboard?range=12m", "dashboard"),
        Page("manager", "dashboard (30 days, source filter)", "/dashboard?source=web_form", "dashboard"),
        Page(
            "manager",
            "dashboard (12 months, source filter)",
            "/dashboard?range=12m&source=web_form",
            "dashboard",
        ),
        Page(
            "manager",
            "dashboard (12 months, campaign filter)",
            "/dashboard?range=12m&campaign=google-ads",
            "dashboard",
        ),
        Page(
            "manager",
            "dashboard (12 months, owner filter)",
            f"/dashboard?range=12m&owner={ids['owner']}",
            "dashboard",
        ),
        Page(
            "manager",
            "dashboard (12 months, tag filter)",
            f"/dashboard?range=12m&tag={ids['tag']}",
            "dashboard",
        ),
    ]


def count_rows(url: str, run_tag: str) -> tuple[dict[str, str], int]:
    """Return this run's calls (CallSid → status) and the number of appointment requests."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            calls = conn.execute(
                sa.text("SELECT call_sid, status FROM calls WHERE call_sid LIKE :p"), {"p": f"CA{run_tag}%"}
            ).all()
            forms = conn.execute(sa.text("SELECT count(*) FROM appointment_requests")).scalar_one()
    finally:
        engine.dispose()
    return {sid: status for sid, status in calls}, int(forms)


def prepare(dbs: list[str], where: Where, args: argparse.Namespace) -> dict[str, str]:
    """Build (or reuse) each database's data set, both at once: a build is mostly one busy
    process, so two builds share the two cores; say how each data set came to be."""
    if "postgresql" in dbs:
        ensure_postgres_server()
    for db in dbs:
        progress(db, "data set: build or reuse")
    with ThreadPoolExecutor(len(dbs)) as pool:
        futures = {db: pool.submit(ensure_data, db, where, args.leads, args.calls) for db in dbs}
        done = {db: future.result() for db, future in futures.items()}
    for db, how in done.items():
        progress(db, f"data set {how}")
    return done


def run(db: str, data: str, where: Where, args: argparse.Namespace) -> Run:
    """Benchmark one database; return its results."""
    from crm.seed import DEMO_LOGINS

    progress(db, "copying the data set for this run")
    logins = {role: (email, password) for email, role, _name, password in DEMO_LOGINS}
    with scratch_copy(db, where) as (url, instance, copy_s):
        env = server_env(url, instance)
        progress(db, f"copied in {copy_s:.1f} s; sampling ids")
        ids = in_app(env, "sample")
        pages = [] if args.only == "webhook" else pages_for(ids, datetime.now(UTC).date())
        plan = build_callbacks(
            args.webhooks,
            token=TWILIO_TOKEN,
            public_base=PUBLIC_BASE,
            line=MAIN_LINE,
            known_callers=ids["known_callers"],
            existing=ids["existing_calls"],
        )
        _, forms_before = count_rows(url, plan.run_tag)
        progress(db, "starting gunicorn")
        with gunicorn(env, instance / "gunicorn.log") as (base, proc):
            progress(db, f"measuring {len(pages)} pages x {args.requests} requests")
            sessions = {role: sign_in(base, *logins[role]) for role in {p.role for p in pages}}
            results = []
            for page in pages:
                if page.path.startswith("deep:"):
                    page.path = follow_next(sessions[page.role], base, page.path.removeprefix("deep:"), 100)
                results.append(measure(sessions[page.role], base, page, args.requests, args.page_time_limit))
            cpu_before = cpu_s()
            forms = 0 if args.only == "webhook" else args.forms
            progress(db, f"posting {forms} forms")
            form_load, _ = post_forms(base, forms)
            form = Result(Page("public", "public form post", "/request-appointment"), errors=form_load.errors)
            form.client_ms, form.server_ms, form.statements = (
                form_load.client_ms,
                form_load.server_ms,
                form_load.statements,
            )
            form.client_cpu_ms = (cpu_s() - cpu_before) * 1000 / max(args.forms, 1)
            cpu_before = cpu_s()
            workers = worker_pids(proc.pid)
            server_before = (process_cpu_s(workers), process_cpu_s(postgres_pids()))
            progress(db, f"sending {len(plan.jobs)} webhook callbacks")
            webhook = send_callbacks(base, plan, concurrency=args.concurrency, time_limit=args.time_limit)
            webhook_cpu = cpu_s() - cpu_before
            pg = postgres_pids() if db == "postgresql" else []  # backends opened meanwhile too
            server_cpu = (cpu_since(server_before[0], workers), cpu_since(server_before[1], pg))
            # Staff sign in all day long, into workers that have served pages: sign in again now
            # (a password check is the largest single allocation a request makes), then read peaks.
            for _ in range(2):
                for email, password in logins.values():
                    sign_in(base, email, password)
            memory = [peak_rss_mb(pid) for pid in worker_pids(proc.pid)]
        stored, forms_after = count_rows(url, plan.run_tag)
        expected = plan.new_sids & webhook.answered_sids
        completed = {
            plan.sid_of_job[i] for i in webhook.answered_jobs if plan.status_of_job[i] == "completed"
        } & plan.new_sids
        plan_info = {
            "callbacks": len(plan.jobs),
            "new_calls": len(plan.new_sids),
            "repeats": plan.repeats,
            "existing": plan.existing,
            "answered_new_calls": len(expected),
            "completed_new_calls": len(completed),
            "stored_new_calls": len(stored),
            "lost": len(expected - stored.keys()),
            # A call whose "completed" callback was answered must be completed, whatever came after.
            "not_completed": sum(1 for sid in completed if stored.get(sid) != "completed"),
            "forms_stored": forms_after - forms_before,
            "forms_answered": len(form.server_ms),
            "log_errors": sum(
                "Traceback" in line for line in (instance / "gunicorn.log").read_text().splitlines()
            ),
        }
        floor_pages = [{"name": r.page.name, "role": r.page.role, "path": r.page.path} for r in results]
        if args.only != "webhook":
            floor_pages.append(
                {"name": form.page.name, "role": "public", "method": "FORM", "path": form.page.path}
            )
        floor_pages.append(
            {
                "name": "webhook",
                "role": "public",
                "method": "WEBHOOK",
                "path": "/webhooks/twilio/voice-status",
            }
        )
        pages_file = instance / "floor-pages.json"
        pages_file.write_text(json.dumps(floor_pages))
        progress(db, "measuring the raw SQL floor")
        floors = in_app(env, "floor", str(pages_file), "--repeats", str(args.floor_repeats))
        for r in [*results, form]:
            r.floor_ms = floors.get(r.page.name, {}).get("floor_ms")
        plan_info["floor"] = floors.get("webhook", {})
    return Run(db, data, copy_s, results, form, webhook, plan_info, webhook_cpu, server_cpu, memory)


# --------------------------------------------------------------------------- the report


def fmt(value: float | None, digits: int = 1) -> str:
    """Format a number for the table (— when there is none)."""
    if value is None or value != value:  # None or NaN
        return "—"
    return f"{value:.{digits}f}"


def statements_text(counts: list[int]) -> str:
    """Show a page's statement count, or its range when it varied."""
    if not counts:
        return "—"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}–{high}"


def verdict(result: Result) -> str:
    """Say whether the page meets its PRODUCT §9 target (server p95)."""
    limit = TARGET_MS.get(result.page.kind)
    if limit is None:
        return "—"
    p95 = pct(result.server_ms, 95)
    return f"{'✓' if p95 <= limit and not result.errors else '✗'} ≤ {limit:.0f}"


def table(run: Run, args: argparse.Namespace) -> str:
    """Render one database's results as Markdown."""
    lines = [
        f"### {run.db} — {args.leads:,} leads, {args.calls:,} calls (data {run.data}; "
        f"throwaway copy made in {run.copy_s:.0f} s)",
        "",
        "| page | requests | errors | SQL statements | server p50 ms | server p95 ms | server p99 ms "
        "| client p50 ms | client p95 ms | client p99 ms | SQL floor ms | p50 − floor ms "
        "| client CPU ms/req | target p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in [*run.pages, run.form]:
        server_median = statistics.median(r.server_ms) if r.server_ms else float("nan")
        distance = server_median - r.floor_ms if r.floor_ms is not None else None
        lines.append(
            f"| {r.page.name} | {len(r.client_ms)} | {r.errors} | {statements_text(r.statements)} "
            f"| {fmt(server_median)} | {fmt(pct(r.server_ms, 95))} | {fmt(pct(r.server_ms, 99))} "
            f"| {fmt(statistics.median(r.client_ms) if r.client_ms else None)} | {fmt(pct(r.client_ms, 95))} "
            f"| {fmt(pct(r.client_ms, 99))} | {fmt(r.floor_ms, 2)} | {fmt(distance)} "
            f"| {fmt(r.client_cpu_ms, 2)} | {verdict(r)} |"
        )
    w, info = run.webhook, run.webhook_plan
    rate = len(w.client_ms) / w.wall_s if w.wall_s else 0.0
    ok = rate >= WEBHOOK_TARGET and info["lost"] == 0 and w.errors == 0
    floor = info.get("floor", {})
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(w.statuses.items()))
    lines += [
        "",
        f"**Webhook ingestion** ({args.concurrency} concurrent connections, pre-signed): "
        f"{len(w.client_ms):,} of {info['callbacks']:,} callbacks answered in {w.wall_s:.1f} s = "
        f"**{rate:,.0f} calls/s** ({'✓' if ok else '✗'} target ≥ {WEBHOOK_TARGET:.0f}/s, 0 lost). "
        f"Mix: {info['new_calls']:,} new CallSids (each reported `ringing` then `completed`, in random "
        f"order; {info['repeats'] - info['new_calls']:,} retried once more), {info['existing']:,} callbacks "
        f"for calls already in the data set. Statuses: {statuses}; errors {w.errors}.",
        "",
        f"- Lost: **{info['lost']}** — {info['answered_new_calls']:,} new calls answered 200, "
        f"{info['stored_new_calls']:,} in the `calls` table afterwards, "
        f"{info['not_completed']} of the {info['completed_new_calls']:,} whose `completed` callback was "
        "answered not left `completed`.",
        f"- Server p50 / p95 / p99: {fmt(statistics.median(w.server_ms) if w.server_ms else None)} / "
        f"{fmt(pct(w.server_ms, 95))} / {fmt(pct(w.server_ms, 99))} ms; client p50 / p95 / p99 "
        f"(with queueing at {args.concurrency} connections): "
        f"{fmt(statistics.median(w.client_ms) if w.client_ms else None)} / {fmt(pct(w.client_ms, 95))} / "
        f"{fmt(pct(w.client_ms, 99))} ms; SQL statements per callback: {statements_text(w.statements)}"
        f" (mean {fmt(statistics.mean(w.statements) if w.statements else None)}); "
        f"SQL floor of one new call: {fmt(floor.get('floor_ms'), 2)} ms.",
        f"- Client CPU: {run.webhook_cpu_s:.2f} s for the whole webhook run "
        f"({run.webhook_cpu_s * 1000 / max(len(w.client_ms), 1):.2f} ms per callback); "
        f"the workers' CPU {run.webhook_server_cpu_s[0]:.2f} s "
        f"({run.webhook_server_cpu_s[0] * 1000 / max(len(w.client_ms), 1):.2f} ms per callback)"
        + (
            f", PostgreSQL's {run.webhook_server_cpu_s[1]:.2f} s "
            f"({run.webhook_server_cpu_s[1] * 1000 / max(len(w.client_ms), 1):.2f} ms per callback)"
            if run.db == "postgresql"
            else ""
        )
        + ".",
        f"- Public form: {run.webhook_plan['forms_answered']} posts answered 303, "
        f"{run.webhook_plan['forms_stored']} appointment requests stored.",
        f"- Tracebacks in the server log: {info['log_errors']}.",
        "",
        "Worker peak memory (whole run, with sign-ins after the pages and the webhook): "
        + ", ".join(f"{m:.0f} MB" for m in run.memory_mb)
        + f" ({'✓' if run.memory_mb and max(run.memory_mb) < MEMORY_TARGET_MB else '✗'} "
        f"target < {MEMORY_TARGET_MB:.0f} MB each)",
        "",
    ]
    missed = [r.page.name for r in run.pages if verdict(r).startswith("✗")]
    if not ok:
        missed.append("webhook ingestion")
    if not run.memory_mb or max(run.memory_mb) >= MEMORY_TARGET_MB:
        missed.append("worker memory")
    lines += [f"**Targets missed on {run.db}: {', '.join(missed) or 'none'}.**", ""]
    return "\n".join(lines)


def machine() -> str:
    """Describe the machine: CPU, cores, memory, OS, Python, SQLite, PostgreSQL, load."""
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GB RAM"
    system = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = line.split("=", 1)[1].strip('"')
    pg = ""
    with contextlib.suppress(Exception), pg_admin() as conn:
        pg = ", PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0].split()[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {system}; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}{pg}. Load average at start: {load}."
    )


INTRO = """# Benchmark results

`make bench` runs `bench/bench_triage.py`, `bench/bench_import.py` and `bench/run_bench.py`;
this file is written by `bench/run_bench.py` (see its docstring for the method).

- Data: `seed-demo --leads 100000 --calls 1000000`, built once into `.bench/` (SQLite) and the
  PostgreSQL database `crm_bench`. Each run works on a throwaway copy of it, dropped at the end,
  so the data set is the same for every run although pages, the form and the webhook write.
- Server: `gunicorn --no-control-socket -w 2` on 127.0.0.1 (`gunicorn.conf.py`: threaded
  workers, 32 threads and 32 connections each), with `PUBLIC_FORM_MIN_SECONDS=0`
  and `FORM_RATE_LIMIT=1000000 per hour` (the form's bot and flood guards would otherwise refuse
  a client that posts at once, many times, from one address) and `BENCH_SQL_COUNT=true`.
- "server" is the app's own time per request (`Server-Timing`: first `before_request` to the
  response); "client" adds HTTP on loopback. Pages are requested one after another by one client,
  each up to `--requests` times or `--page-time-limit` seconds (a slow page shows fewer requests).
- "SQL statements": what the request sent through the database driver (`X-SQL-Statements`;
  SQLite's `BEGIN IMMEDIATE` included). "SQL floor": those same statements replayed straight
  on a driver connection on the same database (median of several runs, rows fetched, rolled back);
  "p50 − floor" is the time the application adds on top of the database.
- Targets (PRODUCT §9, server p95): queue and search ≤ 30 ms, lead page ≤ 20 ms, dashboard
  ≤ 200 ms; webhook ingestion ≥ 500 calls/s with nothing lost; each worker < 250 MB.
"""


def main() -> int:
    """Run the benchmark on the databases asked for and record the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    parser.add_argument("--page-time-limit", type=float, default=20.0, help="seconds one page may take")
    parser.add_argument("--forms", type=int, default=50, help="public form posts")
    parser.add_argument("--webhooks", type=int, default=3000, help="Twilio callbacks to send")
    parser.add_argument(
        "--only", choices=["webhook"], help="measure only this part (webhook: no pages, no form posts)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="webhook connections at once (Twilio does not wait for one call's callback before "
        "sending another's: at 500 calls/s, with answers in ~100 ms, some 50 are in flight)",
    )
    parser.add_argument("--time-limit", type=float, default=30.0, help="seconds the webhook run may take")
    parser.add_argument("--floor-repeats", type=int, default=20, help="replays per page for the SQL floor")
    parser.add_argument("--bench-dir", type=Path, default=ROOT / ".bench", help="where the SQLite data lives")
    parser.add_argument("--pg-db", default="crm_bench", help="the PostgreSQL database of the data set")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCH.md", help="the report to write")
    args = parser.parse_args()
    args.bench_dir.mkdir(parents=True, exist_ok=True)
    where = Where(args.bench_dir.resolve(), args.pg_db)
    command = shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    header = (
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n\nMachine: {machine()}\n\n"
        f"Command: `{command}` ({args.requests} requests per page, {args.forms} form posts, "
        f"{args.webhooks} webhook callbacks)\n"
    )
    print(header, flush=True)
    report = [INTRO, header]
    started = time.perf_counter()
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    data = prepare(dbs, where, args)
    for db in dbs:
        text = table(run(db, data[db], where, args), args)
        print(text, flush=True)
        report.append(text)
    report.append(f"Whole run: {time.perf_counter() - started:.0f} s.\n")
    args.out.write_text("\n".join(report))
    print(f"Written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
