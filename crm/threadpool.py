"""A thread pool that gives each task to the thread that went idle last (gunicorn's threaded workers).

``concurrent.futures.ThreadPoolExecutor`` wakes its idle threads in turn, so one client's
requests, one after another, each ran on another of a worker's 32 threads, whose caches had gone
cold meanwhile: a queue page took 0.8–1.3 ms longer at the median than on one thread. Here idle
threads wait on a stack: a quiet server runs its requests on one or two threads, and a busy one
on as many as it needs. ``gunicorn.conf.py`` gives it to gunicorn's ``gthread`` worker through
the worker's own hook (``get_thread_pool``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

_Task = tuple[futures.Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class _Idle:
    """One idle thread's mailbox: the task it is handed, and the event that wakes it."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.task: _Task | None = None


class LifoThreadPool(futures.Executor):
    """At most ``max_workers`` threads; a task goes to the thread that became idle last."""

    def __init__(self, max_workers: int) -> None:
        self._max = max_workers
        self._lock = threading.Lock()
        self._idle: list[_Idle] = []  # a stack: the last to go idle is handed the next task
        self._waiting: deque[_Task] = deque()  # tasks no thread was free for
        self._threads: list[threading.Thread] = []
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        task: _Task = (future, fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                idle = self._idle.pop()
                idle.task = task
                idle.wake.set()
            elif len(self._threads) < self._max:
                thread = threading.Thread(target=self._work, args=(task,), daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._waiting.append(task)
        return future

    def _work(self, task: _Task | None) -> None:
        me = _Idle()
        while task is not None:
            future, fn, args, kwargs = task
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as error:  # the future carries it to whoever waits
                    future.set_exception(error)
                else:
                    future.set_result(result)
            del future, fn, args, kwargs
            with self._lock:
                if self._waiting:
                    task = self._waiting.popleft()
                    continue
                if self._shutdown:
                    return
                me.task = None
                me.wake.clear()
                self._idle.append(me)
            me.wake.wait()
            task = me.task  # None: the pool is shutting down

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                while self._waiting:
                    self._waiting.popleft()[0].cancel()
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for waiting in idle:
            waiting.task = None
            waiting.wake.set()
        if wait:
            for thread in threads:
                thread.join()
