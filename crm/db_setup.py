"""Database connection rules that the models cannot express."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def install_sqlite_rules(engine: Engine) -> None:
    """On SQLite: WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` transactions.

    WAL and a busy timeout alone still give "database is locked" under gunicorn when a
    read transaction turns into a write: the second writer cannot wait for the first, so
    SQLite fails at once. Taking the write lock at ``BEGIN`` makes every writer queue on
    the busy timeout instead. pysqlite's own transaction handling is switched off so that
    SQLAlchemy's ``begin`` event issues the ``BEGIN``.
    """
    if engine.dialect.name != "sqlite":
        return

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
