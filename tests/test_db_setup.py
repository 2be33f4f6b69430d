"""SQLite's writers take turns on a lock file beside the database, and wake as soon as it is free.

SQLite's own wait for its write lock sleeps in growing steps (up to 100 ms), so a worker that
found the lock taken slept long after a transaction of a few milliseconds had ended. Every
transaction first takes its turn (an ``flock`` on ``<database>-writer.lock``) and gives it
back when it commits or rolls back.
"""

from __future__ import annotations

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
    assert moments["began"] - moments["committed"] < 0.01  # … and began within milliseconds of its commit
    assert (tmp_path / "crm.db-writer.lock").exists()
    with engine.connect() as conn:
        assert sorted(conn.exec_driver_sql("SELECT v FROM n").scalars()) == [1, 2]


def test_a_rolled_back_transaction_gives_the_turn_back(tmp_path: Path) -> None:
    engine = engine_on(tmp_path / "crm.db")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO n VALUES (1)")
            raise RuntimeError("refused")
    except RuntimeError:
        pass
    started = time.monotonic()
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO n VALUES (2)")
    assert time.monotonic() - started < 0.1
    with engine.connect() as conn:
        assert list(conn.exec_driver_sql("SELECT v FROM n").scalars()) == [2]
