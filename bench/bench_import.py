"""Time a CSV import of many leads (PRODUCT §6 item 4: 50,000 rows "well under a minute").

Speed targets are checked here, by a benchmark that prints figures, not by a timed test.
Usage: ``.venv/bin/python bench/bench_import.py [--rows 50000] [--pg URL]``: a throwaway SQLite
database, or with ``--pg`` a throwaway database created on that PostgreSQL server and dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = ["my low back locks up", "stiff neck", "6 weeks of PT and no better", "", "pulled something lifting"]
LINES = {"+19724995457": "main"}


def make_csv(rows: int) -> bytes:
    """Build a leads export with distinct names, phones and emails."""
    out = ["First Name,Last Name,Phone,Email,Notes"]
    for i in range(rows):
        out.append(
            f"Pat{i},Doe{i},+1 972 {200 + i // 10000:03d} {i % 10000:04d},p{i}@example.com,{WORDS[i % 5]}"
        )
    return ("\n".join(out) + "\n").encode()


@contextlib.contextmanager
def throwaway_database(pg_url: str | None) -> Iterator[str]:
    """Yield the URL of an empty database: a SQLite file, or a new PostgreSQL database."""
    if not pg_url:
        yield ""  # the app's default: SQLite in the instance folder
        return
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    name = f"crm_import_bench_{os.getpid()}"
    admin = {"host": url.host, "port": url.port or 5432, "user": url.username, "password": url.password}
    with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(**admin, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    """Import the rows into a fresh database and print how long it took."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--pg", metavar="URL", help="a PostgreSQL server URL (postgresql+psycopg://…)")
    args = parser.parse_args()
    with throwaway_database(args.pg) as url:
        return run(args.rows, url)


def run(rows: int, url: str) -> int:
    """Import ``rows`` rows into the empty database at ``url`` and print the time."""
    instance = tempfile.mkdtemp(prefix="crm-import-bench-")
    os.environ["CRM_INSTANCE_PATH"] = instance
    os.environ["DATABASE_URL"] = url
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade

    from crm import clock, create_app, imports
    from crm.extensions import db

    app = create_app()
    with app.app_context():
        upgrade()
        data = make_csv(rows)
        engine = db.engine.dialect.name
        started = time.perf_counter()
        parsed = imports.read_csv(data, "leads", lines=LINES)
        read = time.perf_counter() - started
        result = imports.import_rows(parsed, skip_bad_rows=False, lines=LINES, now=clock.now())
        db.session.commit()
        total = time.perf_counter() - started
    print(
        f"CSV import, {rows:,} lead rows on {engine}: read {read:.1f} s, total {total:.1f} s "
        f"({total / rows * 1000:.2f} ms a row), {result.leads_created:,} leads created"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
