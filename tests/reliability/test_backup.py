"""A backup taken while the clinic writes restores every committed row and the audit log (issue 9).

gunicorn serves the test's database while four clients keep sending the public form and
Twilio callbacks. ``flask backup`` runs as the operator would run it, in the middle of that;
``flask restore`` loads the file into a new, empty database. Every row committed before the
backup began must be there, and the audit log must be identical, row for row, to the live one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from crm.extensions import db
from tests.conftest import PG_URL, _drop_pg_database, _pg_admin, _pg_url
from tests.reliability.clients import SERVER_ENV, PublicForm, callback, phone, send_callback
from tests.servers import ROOT, Server, gunicorn_server, server_env

pytestmark = [pytest.mark.server, pytest.mark.reliability]

CLIENTS = 4
ERRORS_RE = re.compile(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<')
KEPT = ("leads", "calls", "appointment_requests", "tasks", "audit_events")


@pytest.fixture
def server(database_url: str, tmp_path: Path, app: Any) -> Iterator[Server]:
    db.session.commit()
    with gunicorn_server(database_url, tmp_path / "server", env=SERVER_ENV) as running:
        yield running


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A new database with nothing in it: where a restore goes."""
    if PG_URL:
        name = f"crm_restore_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        yield _pg_url(name)
        _drop_pg_database(name)
    else:
        yield f"sqlite:///{tmp_path / 'restored' / 'crm.db'}"


def _flask(database_url: str, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``flask --app wsgi …`` as an operator would, against ``database_url``."""
    flask = str(Path(sys.executable).with_name("flask"))
    return subprocess.run(
        [flask, "--app", "wsgi", *args],
        cwd=ROOT,
        env=server_env(database_url, folder / "instance"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _rows(url: str, table: str) -> dict[Any, tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {row[0]: tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))}
    finally:
        engine.dispose()


def _scalar(url: str, sql: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text(sql))
    finally:
        engine.dispose()


def test_a_backup_under_write_load_restores_every_committed_row(
    server: Server, database_url: str, empty_database_url: str, tmp_path: Path
) -> None:
    stop = threading.Event()
    done: list[int] = [0] * CLIENTS
    failures: list[str] = []

    def client(c: int) -> None:
        form, calls = PublicForm(server.url), requests.Session()
        n = 0
        while not stop.is_set():
            k = c * 10_000 + n
            if n % 2:
                response = form.send(
                    f"Bea{k}", f"Backup{k}", phone(f"46956{c}", n), "Neck pain into my right arm."
                )
                ok = response.status_code == 303
                if not ok:
                    found = ERRORS_RE.findall(response.text)[:4]
                    failures.append(f"form {response.status_code}: {found}")
            else:
                params = callback("CA" + uuid.uuid4().hex, phone(f"46957{c}", n), "no-answer", 1)
                ok = send_callback(calls, server.url, params).status_code == 200
            if not ok:
                failures.append(f"client {c} write {n}")
            done[c] += 1
            n += 1
        form.close()
        calls.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        while sum(done) < 40:  # the clinic is busy before the backup starts
            time.sleep(0.05)
        before = {table: _rows(database_url, table) for table in KEPT}
        writes_at_start = sum(done)
        started = time.monotonic()
        backup_file = tmp_path / "backups" / "crm.backup"
        taken = _flask(database_url, tmp_path, "backup", str(backup_file))
        backup_seconds = time.monotonic() - started
        writes_during = sum(done) - writes_at_start
        while sum(done) < writes_at_start + writes_during + 20:  # and goes on after it
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert taken.returncode == 0, taken.stderr
    assert failures == []

    started = time.monotonic()
    restored = _flask(empty_database_url, tmp_path / "restore", "restore", str(backup_file))
    restore_seconds = time.monotonic() - started
    assert restored.returncode == 0, restored.stderr
    print(
        f"\nbackup {backup_seconds:.1f} s with {writes_during} writes during it,"
        f" restore {restore_seconds:.1f} s;"
        f" {sum(done)} writes in all. {taken.stdout.strip()} / {restored.stdout.strip()}"
    )
    assert writes_during > 0  # the backup really ran under load

    live_audit = _rows(database_url, "audit_events")
    for table in KEPT:
        kept = _rows(empty_database_url, table)
        missing = set(before[table]) - set(kept)
        assert not missing, f"{table}: {len(missing)} committed rows missing from the restore"
    restored_audit = _rows(empty_database_url, "audit_events")
    assert restored_audit == {key: live_audit[key] for key in restored_audit}  # identical, row for row
    assert len(live_audit) > len(restored_audit)  # later writes (and the backup's own event) are not in it
    backup_event = _scalar(database_url, "SELECT id FROM audit_events WHERE action = 'backup'")
    assert backup_event is not None and backup_event not in restored_audit
    version = "SELECT version_num FROM alembic_version"
    assert _scalar(empty_database_url, version) == _scalar(database_url, version)

    engine = sa.create_engine(empty_database_url)  # the restored audit log is append-only still
    try:
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text("UPDATE audit_events SET action = 'x'"))
    finally:
        engine.dispose()


def test_a_restore_refuses_a_database_that_is_not_empty(database_url: str, tmp_path: Path) -> None:
    backup_file = tmp_path / "crm.backup"
    assert _flask(database_url, tmp_path, "backup", str(backup_file)).returncode == 0
    refused = _flask(database_url, tmp_path, "restore", str(backup_file))
    assert refused.returncode != 0
    assert "The target database is not empty" in refused.stderr
    again = _flask(database_url, tmp_path, "backup", str(backup_file))
    assert again.returncode != 0 and "already exists" in again.stderr
