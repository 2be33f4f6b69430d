"""Table checksums: a fingerprint of every row of every table, to prove nothing changed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from crm.extensions import db


def table_checksums(skip: Iterable[str] = ()) -> dict[str, str]:
    """Return {table: sha256 of its rows in primary-key order} for every table of the models.

    ``skip`` names tables a request legitimately touches whatever it does (the sign-in
    session's last-seen time).
    """
    skipped = set(skip)
    sums: dict[str, str] = {}
    with db.engine.connect() as conn:  # its own connection: what is committed, not the session's view
        for table in db.metadata.sorted_tables:
            if table.name in skipped:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            digest = hashlib.sha256()
            for row in conn.execute(sa.select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
                digest.update(b"\n")
            sums[table.name] = digest.hexdigest()
    return sums


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Name the tables whose checksum differs."""
    return sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
