"""SQLite's writers take turns on a lock file beside the database, and wake as soon as it is free.

SQLite's own wait for its write lock sleeps in growing steps (up to 100 ms), so a worker that
found the lock taken slept long after a transaction of a few milliseconds had ended. Every
transaction first takes its turn (an ``flock`` on ``<database>-writer.lock``) and gives it
back when it commits or rolls back.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from crm.db_setup import install_sqlite_rules


def engine_on(path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})
    install_sqlite_rules(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS n (v INTEGER)")
    return engine


def test_a_writer_waits_for_the_turn_and_takes_it_as_soon_as_it_is_given_back(tmp_path: Path) -> None:
    engine = engine_on(tmp_path / "crm.db")
    held = threading.Event()
    moments: dict[str, float] = {}

    def first() -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO n VALUES (1)")
            held.set()
            time.sleep(0.3)
        moments["committed"] = time.monotonic()

    def second() -> None:
        held.wait(5)
        moments["asked"] = time.monotonic()
        with engine.begin() as conn:
            moments["began"] = time.monotonic()
            conn.exec_driver_sql("INSERT INTO n VALUES (2)")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert moments["began"] - moments["asked"] > 0.2  # it waited for the first writer …
    assert moments["began"] - moments["committed"] < 0.02  # … and began within milliseconds of its commit
    assert (tmp_path / "crm.db-writer.lock").exists()
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT v FROM n").scalars()) == [1, 2]


def turn_is_free(path: Path) -> bool:
    """Whether another process could take the writer turn now (a descriptor of its own)."""
    fd = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # and with it the turn, if this took it
    return True


def test_the_turn_is_held_for_the_transaction_and_given_back_at_commit_or_rollback(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    engine = engine_on(path)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO n VALUES (1)")
        assert not turn_is_free(path)
    assert turn_is_free(path)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO n VALUES (2)")
            assert not turn_is_free(path)
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    assert turn_is_free(path)
    with engine.connect() as conn:
        assert list(conn.exec_driver_sql("SELECT v FROM n").scalars()) == [1]


def test_a_lock_file_that_cannot_be_opened_leaves_the_waiting_to_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    engine = engine_on(path)
    engine.dispose()
    Path(f"{path}-writer.lock").unlink()
    Path(f"{path}-writer.lock").mkdir()  # not a file: it cannot be opened (as one made by another user)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO n VALUES (3)")
    with engine.connect() as conn:
        assert list(conn.exec_driver_sql("SELECT v FROM n").scalars()) == [3]
