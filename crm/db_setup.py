"""Database connection rules that the models cannot express."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def install_sqlite_rules(engine: Engine) -> None:
    """On SQLite: WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` transactions.

    WAL and a busy timeout alone still give "database is locked" under gunicorn when a
    read transaction turns into a write: the second writer cannot wait for the first, so
    SQLite fails at once. Taking the write lock at ``BEGIN`` makes every writer queue on
    the busy timeout instead. pysqlite's own transaction handling is switched off so that
    SQLAlchemy's ``begin`` event issues the ``BEGIN``. Before it, a transaction on a database
    file takes its writer turn (``_take_writer_turn``) and gives it back at its commit or
    rollback.
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
        if lock_path is not None:
            _take_writer_turn(conn.connection.info, lock_path)
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @sa.event.listens_for(engine, "close")
    def _on_close(_dbapi_connection: Any, record: Any) -> None:
        _drop_turn(record.info)

    @sa.event.listens_for(engine, "detach")
    def _on_detach(_dbapi_connection: Any, record: Any) -> None:
        _drop_turn(record.info)  # a detached connection leaves the pool's bookkeeping

    path = engine.url.database
    in_file = path and path != ":memory:" and not path.startswith("file:")
    lock_path = f"{path}-writer.lock" if in_file else None
    dialect = engine.dialect
    for name in ("do_commit", "do_rollback"):
        setattr(dialect, name, _then_give_turn(getattr(dialect, name)))


# How long a writer waits for its turn before it leaves the waiting to SQLite's busy timeout.
TURN_WAIT_S = 30.0


def _take_writer_turn(info: dict[str, Any], lock_path: str) -> None:
    """Wait for this database's writer turn: an ``flock`` on a file beside it, shared by every process.

    SQLite's own wait for its write lock (the busy timeout) sleeps in growing steps (1, 2, 5,
    10, … 100 ms): under gunicorn a worker that found the lock taken slept on long after the
    other worker's transaction of a few milliseconds had ended, and the two cores idled. The
    threads of one process first queue on a lock of their own (they wake as soon as it is
    given back); the one at its head polls the file in steps of at most half a millisecond.
    It only speeds the wait up: SQLite's lock still guards the data (a writer that does not
    take turns, e.g. the sqlite3 shell, is waited for as before). After ``TURN_WAIT_S``, or
    when the lock file cannot be opened (made by another user, say), the busy timeout takes
    over.
    """
    fd = info.get("writer_turn_fd")
    if fd is None:
        try:
            fd = info["writer_turn_fd"] = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o660)
        except OSError:
            return
    local = _LOCAL_TURNS.setdefault(lock_path, threading.Lock())
    deadline = time.monotonic() + TURN_WAIT_S
    if not local.acquire(timeout=TURN_WAIT_S):
        return
    delay = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                local.release()
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.0005)
            continue
        info["writer_turn"] = local
        return


# One in-process queue per lock file (threads of a worker wait on it, not on the file).
_LOCAL_TURNS: dict[str, threading.Lock] = {}
os.register_at_fork(after_in_child=_LOCAL_TURNS.clear)  # a child starts with none held


def _give_turn(info: dict[str, Any]) -> None:
    local = info.pop("writer_turn", None)
    if local is not None:
        fcntl.flock(info["writer_turn_fd"], fcntl.LOCK_UN)
        local.release()


def _drop_turn(info: dict[str, Any]) -> None:
    """The connection goes away: give its turn back and close its lock file."""
    _give_turn(info)
    fd = info.pop("writer_turn_fd", None)
    if fd is not None:
        os.close(fd)


def _then_give_turn(end: Any) -> Any:
    """Wrap the dialect's commit or rollback: once the transaction has ended, the turn passes on."""

    def ended(dbapi_connection: Any) -> None:
        try:
            end(dbapi_connection)
        finally:
            try:
                info = dbapi_connection.info  # the pool's record of the connection
            except (AttributeError, NotImplementedError):  # an ad-hoc one (the first connect)
                info = None
            if info is not None:
                _give_turn(info)

    return ended
