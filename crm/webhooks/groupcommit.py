"""Group commit: callbacks that arrive together in one worker are recorded in one transaction.

Under gunicorn's threaded workers (``gunicorn.conf.py``) several status callbacks wait in one
process at once. The request thread that finds no group being recorded records its own
callback together with every callback queued meanwhile, in one transaction, and commits;
then the threads of that group answer, and the oldest callback still queued leads the next
group. A callback is still answered only after the transaction that holds it has committed,
so Twilio's 200 means the call is stored, as before.

What a transaction costs once (its ``BEGIN``, the clinic's calendar, the roll-ups' refresh,
the commit) is then paid once per group instead of once per callback, and the group's calls
are written set-wise (``intake.receive_call_events``).

A callback intake refuses (a line that is not the clinic's) is answered 400 and the rest of
its group is recorded. When a group fails otherwise (a race with the other worker on
PostgreSQL), it is rolled back whole and each of its callbacks is recorded again on its own,
with the retries a single callback always had: one bad callback never takes the others down
with it, and nothing is half saved.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from crm import intake
from crm.extensions import db

MAX_GROUP = 100  # callbacks in one transaction at most
RETRIES = 3


@dataclass(eq=False)
class Job:
    """One callback waiting to be recorded, and what became of it."""

    event: intake.CallEventIn
    ip: str | None
    done: bool = False
    refused: str | None = None  # intake's reason, answered 400
    error: BaseException | None = None  # raised again in the callback's own request
    # True once the transaction holding it committed (or intake refused it): only then is it
    # answered 200 (or 400); a job done without it carries an ``error`` (answered 500).
    settled: bool = False
    # Set when the job is done, or when its thread is handed the lead (``GroupCommit.submit``).
    wake: threading.Event = field(default_factory=threading.Event)


# Adds the jobs' callbacks to the current transaction, in order; sets ``refused`` on those intake refuses.
Record = Callable[[list[Job]], None]


class GroupCommit:
    """Record queued callbacks in groups, one transaction per group, one group at a time.

    One request thread at a time leads: it records its own callback with up to
    ``MAX_GROUP - 1`` queued ones, then hands the lead to the oldest callback still queued.
    Every other thread sleeps on its own job's event until its job is done or it is handed
    the lead, so a committed group wakes exactly its own threads (before, they queued on one
    lock and woke one after another, each taking the GIL in turn: 30 wake-ups per group).
    """

    def __init__(self, record: Record) -> None:
        self._record = record
        self.reset()

    def submit(self, job: Job) -> Job:
        """Record ``job`` (with whatever is queued beside it); return once its transaction has ended."""
        with self._lock:
            lead = not self._leading
            if lead:
                self._leading = True
            else:
                self._queue.append(job)
        if not lead:
            job.wake.wait()
            if job.done:
                return job
            # Handed the lead: this job was taken out of the queue for this thread to record.
        try:
            with self._lock:
                group = [job, *self._queue[: MAX_GROUP - 1]]
                self._queue = self._queue[MAX_GROUP - 1 :]
            self._run(group)
        finally:
            with self._lock:
                if self._queue:
                    self._queue.pop(0).wake.set()  # the oldest waiting callback leads next
                else:
                    self._leading = False
        return job

    def _run(self, group: list[Job]) -> None:
        try:
            self._transaction(group)
        finally:
            for job in group:
                if not job.settled and job.error is None:
                    # Something escaped before this callback's outcome was known (a rollback
                    # that failed too): its request answers 500, so Twilio sends it again.
                    job.error = RuntimeError("The callback could not be recorded.")
                job.done = True
                job.wake.set()

    def _transaction(self, group: list[Job]) -> None:
        if len(group) > 1:
            try:
                self._record(group)
                db.session.commit()
            except Exception:  # each callback is tried again alone just below
                _rollback()
                for job in group:
                    job.refused = None
            else:
                for job in group:
                    job.settled = True
                return
        for job in group:
            self._alone(job)

    def _alone(self, job: Job) -> None:
        """Record one callback in its own transaction, retrying a lost race."""
        try:
            for attempt in range(RETRIES):
                try:
                    self._record([job])
                    db.session.commit()
                    job.settled = True
                    return
                except (IntegrityError, StaleDataError, OperationalError):
                    # A concurrent callback for the same caller or call won a race: again on fresh rows.
                    _rollback()
                    job.refused = None
                    if attempt == RETRIES - 1:
                        raise
        except Exception as error:  # handed to the callback's own request
            _rollback()
            job.error = error

    def reset(self) -> None:
        """Start with an empty queue and a fresh lock (a forked child inherits none held)."""
        self._queue: list[Job] = []
        self._lock = threading.Lock()
        self._leading = False


def _rollback() -> None:
    """Roll back; a rollback that fails too (a broken connection) leaves the jobs unsettled."""
    try:
        db.session.rollback()
    except Exception:  # the jobs' requests answer 500 (``GroupCommit._run``)
        db.session.close()


_groups: list[GroupCommit] = []


def make(record: Record) -> GroupCommit:
    """Return a group commit for ``record`` whose locks are renewed in each forked worker."""
    group = GroupCommit(record)
    _groups.append(group)
    return group


def _after_fork() -> None:
    for group in _groups:
        group.reset()


os.register_at_fork(after_in_child=_after_fork)
