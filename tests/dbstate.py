"""Table checksums: a fingerprint of every row of every table, to prove nothing changed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from crm.extensions import db


def table_checksums(skip: Iterable[str] = ()) -> dict[str, tuple[int, str]]:
    """Return {table: (row count, sha256 of its rows in primary-key order)} for every table of the models.

    ``skip`` names tables a request legitimately touches whatever it does (the sign-in
    session's last-seen time, the throttle counters a refused post adds).
    """
    skipped = set(skip)
    sums: dict[str, tuple[int, str]] = {}
    # End the test's own transaction first: on SQLite it may hold the write lock (every
    # transaction there begins IMMEDIATE) that this connection's read would wait for.
    db.session.commit()
    with db.engine.connect() as conn:  # its own connection: what is committed, not the session's view
        for table in db.metadata.sorted_tables:
            if table.name in skipped:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute(sa.select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
                digest.update(b"\n")
                count += 1
            sums[table.name] = (count, digest.hexdigest())
    return sums


def changed_tables(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    """Name the tables whose checksum differs."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))


def changes(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    """Say how each changed table changed, in row counts (for a failing assertion's message)."""
    return [
        f"{name}: {before.get(name, (0, ''))[0]} → {after.get(name, (0, ''))[0]} rows"
        for name in changed_tables(before, after)
    ]
