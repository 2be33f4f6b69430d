"""The workers' thread pool: a task goes to the thread that went idle last; none is lost."""

from __future__ import annotations

import threading
import time

import pytest

from crm.threadpool import LifoThreadPool


def test_requests_one_after_another_run_on_the_same_warm_thread() -> None:
    pool = LifoThreadPool(32)
    try:
        burst = [pool.submit(time.sleep, 0.05) for _ in range(4)]  # four threads exist now
        for future in burst:
            future.result(5)
        threads = {pool.submit(threading.get_ident).result(5) for _ in range(20)}
        assert len(threads) == 1
    finally:
        pool.shutdown()


def test_tasks_run_at_once_up_to_the_limit_and_wait_beyond_it() -> None:
    pool = LifoThreadPool(4)
    barrier = threading.Barrier(4, timeout=5)
    running = 0
    most = 0
    lock = threading.Lock()

    def task(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if n < 4:
            barrier.wait()  # the first four must all run at once
        time.sleep(0.01)
        with lock:
            running -= 1
        return n

    try:
        futures = [pool.submit(task, n) for n in range(20)]
        assert [f.result(10) for f in futures] == list(range(20))
        assert most == 4
    finally:
        pool.shutdown()


def test_an_error_reaches_the_future_and_the_thread_goes_on() -> None:
    pool = LifoThreadPool(1)
    try:
        failed = pool.submit(int, "not a number")
        with pytest.raises(ValueError):
            failed.result(5)
        assert pool.submit(int, "7").result(5) == 7
    finally:
        pool.shutdown()


def test_shutdown_refuses_new_tasks_and_lets_the_threads_end() -> None:
    pool = LifoThreadPool(3)
    assert [pool.submit(pow, 2, n).result(5) for n in range(3)] == [1, 2, 4]
    pool.shutdown(wait=True)
    assert all(not thread.is_alive() for thread in pool._threads)
    with pytest.raises(RuntimeError):
        pool.submit(pow, 2, 3)
