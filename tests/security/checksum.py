"""A checksum of every table (row count and a hash of every row), read from the models' metadata.

Used to prove that refused input changed nothing: take ``table_checksums()`` before, throw the
input, take it again, and compare. Rows are read in primary-key order and hashed from their
``repr``; ``exclude`` names the tables a refusal is *meant* to write (the throttle counters a
failed sign-in adds, for example), and a test that passes it says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa

from crm.extensions import db


def table_checksums(exclude: Iterable[str] = ()) -> dict[str, tuple[int, str]]:
    """Return {table: (row count, sha256 of its rows)} for every table of the schema."""
    skip = set(exclude)
    sums: dict[str, tuple[int, str]] = {}
    db.session.commit()  # see what the requests committed, and hold no lock while reading
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            if table.name in skip:
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            digest = hashlib.sha256()
            count = 0
            for row in conn.execute(sa.select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
                count += 1
            sums[table.name] = (count, digest.hexdigest())
    return sums


def changed_tables(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    """Name the tables whose rows differ between two checksums (with their row counts)."""
    return [
        f"{name}: {before.get(name, (0, ''))[0]} → {after.get(name, (0, ''))[0]} rows"
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]
