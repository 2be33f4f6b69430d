"""Backups of the whole database, taken while the clinic works, and their restore.

- **SQLite**: the online backup API (``sqlite3.Connection.backup``) copies the database in
  one step under a read transaction, so the file is a consistent snapshot even while
  gunicorn workers write (WAL mode lets them go on meanwhile).
- **PostgreSQL**: ``pg_dump --format=custom`` (a consistent snapshot taken in one
  repeatable-read transaction) and ``pg_restore --single-transaction``. These are for
  drills, copies and moving servers; production also keeps continuous archiving (WAL
  archiving with ``archive_command`` plus base backups, e.g. pgBackRest or WAL-G) for
  point-in-time recovery (README, "Backup and restore").

A restore goes only into an empty database: it never merges into, or overwrites, live data.
Nothing here reads the request; the ``flask backup`` / ``flask restore`` commands call it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess  # pg_dump / pg_restore: fixed programs, our own arguments  # nosec B404
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why."""


@dataclass(frozen=True)
class Summary:
    """What a backup or restore holds: rows per table that matters to a person checking it."""

    path: Path
    counts: dict[str, int] | None  # None for a pg_dump file: its rows are not counted here

    def __str__(self) -> str:
        size = self.path.stat().st_size if self.path.exists() else 0
        held = ", ".join(f"{n:,} {name.replace('_', ' ')}" for name, n in (self.counts or {}).items())
        return f"{self.path} ({size:,} bytes)" + (f": {held}" if held else "")


def backup(database_url: str, path: Path) -> Summary:
    """Write a consistent copy of the database to ``path``; refuse to overwrite a file."""
    url = make_url(database_url)
    if path.exists():
        raise BackupError(f"{path} already exists; choose a new file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "sqlite":
        _sqlite_backup(_sqlite_path(url), path)
        return _summary(f"sqlite:///{path}", path)
    if url.get_backend_name() == "postgresql":
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={path}"], url)
        return Summary(path=path, counts=None)
    raise BackupError(f"Backups of {url.get_backend_name()} databases are not supported.")


def restore(database_url: str, path: Path) -> Summary:
    """Load the backup at ``path`` into the (empty) database at ``database_url``."""
    url = make_url(database_url)
    if not path.is_file():
        raise BackupError(f"{path} is not a backup file.")
    if url.get_backend_name() == "sqlite":
        _sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    if _has_tables(database_url):
        raise BackupError(
            "The target database is not empty. Restore into a new, empty database, then point "
            "DATABASE_URL at it."
        )
    if url.get_backend_name() == "sqlite":
        _sqlite_backup(path, _sqlite_path(url))
    elif url.get_backend_name() == "postgresql":
        _run(
            [
                "pg_restore",
                f"--dbname={url.database}",
                "--no-owner",
                "--no-privileges",
                "--exit-on-error",
                "--single-transaction",
                str(path),
            ],
            url,
        )
    else:
        raise BackupError(f"Restoring {url.get_backend_name()} databases is not supported.")
    return _summary(database_url, path)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("This SQLite database lives in memory: there is no file to back up.")
    return Path(url.database)


def _sqlite_backup(source: Path, target: Path) -> None:
    """Copy one SQLite database into another with the online backup API, in a single step."""
    if not source.is_file():
        raise BackupError(f"{source} does not exist.")
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        src.backup(dst)  # pages=-1: one step, one read transaction, one consistent snapshot
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        dst.close()
        src.close()


def _run(command: list[str], url: URL) -> None:
    """Run pg_dump / pg_restore against ``url``; the password goes in the environment, not argv."""
    program = shutil.which(command[0])
    if program is None:
        raise BackupError(f"{command[0]} is not installed (Debian: apt-get install postgresql-client).")
    env = {
        **os.environ,
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.database or "",
    }
    done = subprocess.run(  # noqa: S603 - a fixed program with our own arguments, no shell  # nosec B603
        [program, *command[1:]], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-2000:]}")


def _has_tables(database_url: str) -> bool:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return bool(sa.inspect(conn).get_table_names())
    finally:
        engine.dispose()


def _summary(database_url: str, path: Path) -> Summary:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            count = {
                name: int(conn.scalar(sa.text(f"SELECT count(*) FROM {name}")) or 0)  # noqa: S608 - fixed names  # nosec B608
                for name in ("leads", "calls", "audit_events")
            }
    finally:
        engine.dispose()
    return Summary(path=path, counts=count)
