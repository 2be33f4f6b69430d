"""Callbacks waiting in one worker at once are recorded in one transaction (group commit).

Threads stand in for gunicorn's request threads: while one group is being recorded, the
callbacks that arrive queue, and the next thread to get the writer records all of them
together. A group that fails is rolled back and each of its callbacks is recorded alone.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from flask import Flask

from crm.webhooks.groupcommit import GroupCommit, Job


def run_jobs(app: Flask, group: GroupCommit, names: list[str]) -> dict[str, Job]:
    jobs = {name: Job(name, None) for name in names}  # type: ignore[arg-type]

    def submit(job: Job) -> None:
        with app.app_context():
            group.submit(job)

    threads = [threading.Thread(target=submit, args=(jobs[name],)) for name in names[1:]]
    first = threading.Thread(target=submit, args=(jobs[names[0]],))
    first.start()
    time.sleep(0.2)  # the first job is being recorded: the others now arrive and queue
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while len(group._queue) < len(threads) and time.monotonic() < deadline:
        time.sleep(0.01)
    group.release.set()  # type: ignore[attr-defined]
    for thread in [first, *threads]:
        thread.join(10)
    return jobs


def holding_group(record: Any) -> GroupCommit:
    """A group commit whose first transaction waits until the test lets it go."""
    release = threading.Event()
    calls = 0

    def held(jobs: list[Job]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(5)
        record(jobs)

    group = GroupCommit(held)
    group.release = release  # type: ignore[attr-defined]
    return group


def test_callbacks_that_wait_together_share_one_transaction(app: Flask) -> None:
    groups: list[list[str]] = []

    def record(jobs: list[Job]) -> None:
        groups.append([str(job.event) for job in jobs])
        for job in jobs:
            if job.event == "other-line":
                job.refused = "The number called is not one of the clinic's lines."

    jobs = run_jobs(app, holding_group(record), ["a", "b", "c", "other-line", "d"])
    assert groups[0] == ["a"]
    assert len(groups) == 2 and sorted(groups[1]) == ["b", "c", "d", "other-line"]
    assert all(job.done and job.error is None for job in jobs.values())
    assert jobs["other-line"].refused and not any(jobs[n].refused for n in "abcd")


def test_a_failing_group_is_recorded_again_one_callback_at_a_time(app: Flask) -> None:
    groups: list[list[str]] = []

    def record(jobs: list[Job]) -> None:
        groups.append([str(job.event) for job in jobs])
        if any(job.event == "broken" for job in jobs):
            raise RuntimeError("this callback cannot be recorded")

    jobs = run_jobs(app, holding_group(record), ["a", "b", "broken", "c"])
    assert groups[0] == ["a"] and sorted(groups[1]) == ["b", "broken", "c"]
    assert sorted(map(tuple, groups[2:])) == [("b",), ("broken",), ("c",)]  # each alone
    assert isinstance(jobs["broken"].error, RuntimeError)
    assert all(jobs[n].done and jobs[n].error is None for n in "abc")


def test_a_rollback_that_fails_too_still_leaves_each_callback_to_be_recorded_alone(
    app: Flask, monkeypatch: Any
) -> None:
    from crm.extensions import db

    groups: list[list[str]] = []

    def record(jobs: list[Job]) -> None:
        groups.append([str(job.event) for job in jobs])
        if len(jobs) > 1:
            raise RuntimeError("the commit failed")

    def broken_rollback() -> None:
        raise ConnectionError("the connection is gone")

    group = holding_group(record)
    monkeypatch.setattr(db.session, "rollback", broken_rollback)
    jobs = run_jobs(app, group, ["a", "b", "c"])
    assert sorted(map(tuple, groups[2:])) == [("b",), ("c",)]
    assert all(job.settled and job.error is None for job in jobs.values())


class Escape(BaseException):
    """Something no ``except Exception`` catches (an interrupt, a worker being stopped)."""


def test_callbacks_whose_outcome_is_unknown_are_never_answered_as_stored(app: Flask) -> None:
    """An escape in the middle of a group: each of its requests gets an error (a 500), none a 200."""

    def record(jobs: list[Job]) -> None:
        if str(jobs[0].event) != "a":
            raise Escape

    group = holding_group(record)
    jobs = {name: Job(name, None) for name in "abc"}  # type: ignore[arg-type]

    def submit(job: Job) -> None:
        with app.app_context(), contextlib.suppress(Escape):
            group.submit(job)

    first = threading.Thread(target=submit, args=(jobs["a"],))
    first.start()
    time.sleep(0.2)
    others = [threading.Thread(target=submit, args=(jobs[n],)) for n in "bc"]
    for thread in others:
        thread.start()
    while len(group._queue) < 2:
        time.sleep(0.01)
    group.release.set()  # type: ignore[attr-defined]
    for thread in [first, *others]:
        thread.join(10)
    assert jobs["a"].settled and jobs["a"].error is None
    for name in "bc":
        assert jobs[name].done and not jobs[name].settled and jobs[name].error is not None
