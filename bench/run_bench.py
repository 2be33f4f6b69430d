"""`make bench`: the pages at full data size, under gunicorn, measured from a separate client.

Builds (or reuses) the ``seed-demo --leads 100000 --calls 1000000`` data set in its own
database (SQLite in ``.bench/``, PostgreSQL database ``crm_bench``), starts gunicorn with two
workers on 127.0.0.1, signs in as each role, and requests each page a bounded number of
times. For each page it prints the client's latency and the server's own time (the app's
``Server-Timing`` header): requests, median, p95, p99, errors; then each worker's peak
memory. Results are appended to ``BENCH.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
BENCH_DIR = ROOT / ".bench"
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg://crm:crm@127.0.0.1:5432/crm")
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass
class Result:
    """Latencies of one page."""

    name: str
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: int = 0


def pct(values: list[float], q: float) -> float:
    """Return the q-th percentile (nearest rank) of a list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def env_for(db: str) -> dict[str, str]:
    """Return the environment that points the app at the benchmark database."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "TEST_DATABASE_URL"}}
    env.update(
        SECRET_KEY="bench-secret-key-not-for-production-0123456789",  # noqa: S106 - local benchmark only
        CRM_INSTANCE_PATH=str(BENCH_DIR / "sqlite"),
        FORM_RATE_LIMIT="1000000 per hour",
        LOGIN_ADDRESS_FAILURES="100000",
        PYTHONDONTWRITEBYTECODE="1",
    )
    if db == "postgresql":
        env["DATABASE_URL"] = PG_ADMIN_URL.rsplit("/", 1)[0] + "/crm_bench"
    return env


def flask(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a ``flask --app wsgi`` command against the benchmark database."""
    return subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env_for(db),
        check=True,
        text=True,
        capture_output=True,
    )


def ensure_postgres_database() -> None:
    """Start the local PostgreSQL server if needed and create ``crm_bench``."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode != 0:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", version, "main", "start"], check=False)
        for _ in range(30):
            if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode == 0:
                break
            time.sleep(1)
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(PG_ADMIN_URL)
    with psycopg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'crm_bench'").fetchone() is None:
            conn.execute("CREATE DATABASE crm_bench")


def ensure_data(db: str, leads: int, calls: int) -> str:
    """Build the data set unless a complete one of this size is already there; say which."""
    marker = BENCH_DIR / f"{db}-{leads}-{calls}.done"
    if marker.exists():
        return f"reused ({marker.name})"
    if db == "sqlite":
        (BENCH_DIR / "sqlite").mkdir(parents=True, exist_ok=True)
        for stale in (BENCH_DIR / "sqlite").glob("crm.db*"):
            stale.unlink()
    else:
        ensure_postgres_database()
    started = time.perf_counter()
    flask(db, "db", "upgrade")
    flask(db, "seed-demo", "--leads", str(leads), "--calls", str(calls))
    flask(db, "demo")
    marker.write_text(datetime.now(UTC).isoformat())
    return f"built in {time.perf_counter() - started:.0f} s"


def free_port() -> int:
    """Ask the kernel for a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(db: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Serve the app with two workers; yield its base URL and the master process."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "--no-control-socket", "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
        cwd=ROOT,
        env=env_for(db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/login", timeout=10).status_code == 200:
                    break
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def worker_pids(master: int) -> list[int]:
    """List the gunicorn workers of a master process."""
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def peak_rss_mb(pid: int) -> float:
    """Return a process's peak resident memory (VmHWM) in MB."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


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


def measure(session: requests.Session, base: str, name: str, path: str, n: int) -> Result:
    """Request one page n times (after a warm-up) and collect its timings."""
    result = Result(name)
    for _ in range(3):
        session.get(base + path, timeout=30)
    for _ in range(n):
        started = time.perf_counter()
        response = session.get(base + path, timeout=30, allow_redirects=False)
        result.client_ms.append((time.perf_counter() - started) * 1000)
        timing = re.search(r"app;dur=([\d.]+)", response.headers.get("Server-Timing", ""))
        if response.status_code != 200 or timing is None:
            result.errors += 1
            continue
        result.server_ms.append(float(timing.group(1)))
    return result


NEXT_LINK = re.compile(r'href="([^"]+)" rel="next"')


def follow_next(session: requests.Session, base: str, path: str, hops: int) -> str:
    """Follow a list's "Next" link ``hops`` times; return the address reached."""
    for _ in range(hops):
        found = NEXT_LINK.search(session.get(base + path, timeout=30).text)
        if found is None:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


def sample_ids(db: str) -> dict[str, str]:
    """Pick a lead to open, a name and phone to search, from the benchmark database."""
    script = (
        "import sqlalchemy as sa\n"
        "from crm import create_app\nfrom crm.extensions import db\nfrom crm.models import Lead\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    open_with_phone = sa.and_(Lead.in_queue.is_(True), Lead.phone.is_not(None))\n"
        "    lead = db.session.scalars(sa.select(Lead).where(open_with_phone)"
        ".order_by(Lead.id.desc()).limit(1).offset(500)).first()\n"
        "    review = db.session.scalar(sa.select(Lead.id)"
        ".where(Lead.stage == 'surgical_review').limit(1))\n"
        "    name = lead.last_name.split()[0]\n"
        "    print(lead.id, name, lead.phone, lead.phone[-4:], lead.email or '', review)\n"
    )
    out = subprocess.run(
        [str(BIN / "python"), "-c", script],
        cwd=ROOT,
        env=env_for(db),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return dict(zip(["lead", "name", "phone", "last4", "email", "review"], out, strict=False))


def run(db: str, leads: int, calls: int, n: int) -> tuple[str, list[Result], list[float]]:
    """Benchmark one database; return how its data came to be, the results and worker memory."""
    from crm.seed import DEMO_LOGINS

    how = ensure_data(db, leads, calls)
    ids = sample_ids(db)
    logins = {role: (email, password) for email, role, _name, password in DEMO_LOGINS}
    pages = [
        ("front_desk", "lead queue", "/leads"),
        ("front_desk", "lead queue, 100 pages deep", "deep:/leads"),
        ("front_desk", "lead queue, stage filter", "/leads?stage=evaluation"),
        ("front_desk", "lead queue, tag filter", "/leads?tag=red_flag:weakness"),
        ("front_desk", "search: name", f"/leads?q={ids['name']}"),
        ("front_desk", "search: phone", f"/leads?q={ids['phone']}"),
        ("front_desk", "search: last 4 digits", f"/leads?q={ids['last4']}"),
        ("front_desk", "lead page", f"/leads/{ids['lead']}"),
        ("surgeon", "referral queue", "/referrals"),
        ("manager", "dashboard", "/dashboard"),
    ]
    results: list[Result] = []
    with gunicorn(db) as (base, proc):
        sessions = {role: sign_in(base, *logins[role]) for role in {p[0] for p in pages}}
        for role, name, path in pages:
            if path.startswith("deep:"):
                path = follow_next(sessions[role], base, path.removeprefix("deep:"), 100)
            results.append(measure(sessions[role], base, name, path, n))
        memory = [peak_rss_mb(pid) for pid in worker_pids(proc.pid)]
    return how, results, memory


def table(db: str, how: str, results: list[Result], memory: list[float], leads: int, calls: int) -> str:
    """Render one database's results as a Markdown table."""
    lines = [
        f"### {db} — {leads:,} leads, {calls:,} calls (data {how})",
        "",
        "| page | requests | errors | server median ms | server p95 ms | server p99 ms "
        "| client median ms | client p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        server_median = statistics.median(r.server_ms or [float("nan")])
        lines.append(
            f"| {r.name} | {len(r.client_ms)} | {r.errors} | {server_median:.1f} | "
            f"{pct(r.server_ms, 95):.1f} | {pct(r.server_ms, 99):.1f} | "
            f"{statistics.median(r.client_ms):.1f} | {pct(r.client_ms, 95):.1f} |"
        )
    lines += ["", "Worker peak memory: " + ", ".join(f"{m:.0f} MB" for m in memory), ""]
    return "\n".join(lines)


def main() -> int:
    """Run the benchmark on the databases asked for and record the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100, help="requests per page")
    args = parser.parse_args()
    BENCH_DIR.mkdir(exist_ok=True)
    sys.path.insert(0, str(ROOT))
    header = (
        f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}\n\nCommand: `{' '.join(sys.argv)}`\n"
    )
    report = [header]
    for db in ["sqlite", "postgresql"] if args.db == "both" else [args.db]:
        how, results, memory = run(db, args.leads, args.calls, args.requests)
        text = table(db, how, results, memory, args.leads, args.calls)
        print(text, flush=True)
        report.append(text)
    with (ROOT / "BENCH.md").open("a") as out:
        out.write("\n".join(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
