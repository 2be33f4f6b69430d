"""Time a CSV import of many leads (PRODUCT §6 item 4: 50,000 rows "well under a minute").

Speed targets are checked here, by a benchmark that prints figures, not by a timed test.
Usage: ``.venv/bin/python bench/bench_import.py [--rows 50000]`` (a throwaway SQLite database).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
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


def main() -> int:
    """Import the rows into a fresh database and print how long it took."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()
    instance = tempfile.mkdtemp(prefix="crm-import-bench-")
    os.environ["CRM_INSTANCE_PATH"] = instance
    os.environ.pop("DATABASE_URL", None)
    sys.path.insert(0, str(ROOT))
    from flask_migrate import upgrade

    from crm import clock, create_app, imports
    from crm.extensions import db

    app = create_app()
    with app.app_context():
        upgrade()
        data = make_csv(args.rows)
        started = time.perf_counter()
        parsed = imports.read_csv(data, "leads", lines=LINES)
        read = time.perf_counter() - started
        result = imports.import_rows(parsed, skip_bad_rows=False, lines=LINES, now=clock.now())
        db.session.commit()
        total = time.perf_counter() - started
    print(
        f"CSV import, {args.rows:,} lead rows on SQLite: read {read:.1f} s, total {total:.1f} s "
        f"({total / args.rows * 1000:.2f} ms a row), {result.leads_created:,} leads created"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
