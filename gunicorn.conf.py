"""gunicorn settings read automatically from the project folder."""

from typing import Any

# The access log names the path without its query string and leaves out the referrer: a
# search (``/leads?q=<a patient's name>``) or the page a user came from would otherwise put
# patient names and phone numbers into every access log line (PRODUCT §9).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'

# Threaded workers: a worker serves up to 32 requests at once, so the phone line's status
# callbacks that arrive together share one transaction (``crm.webhooks.groupcommit``), and a
# slow client no longer holds a whole worker. Python runs one thread of a worker at a time;
# the complaint tagger's pipeline is used by one thread at a time (``crm.triage``).
# ``worker_connections``: a worker holds at most as many connections as it has threads, so
# kept-alive connections spread over both workers instead of piling onto the one that
# accepted first (with no cap, one worker took all 32 of a client's connections and the
# webhook ran at half speed). Two workers: 64 connections at once, idle ones closed after
# ``keepalive`` (2 s).
threads = 32
worker_connections = 32


def _threaded_worker() -> Any:
    """gunicorn's ``gthread`` worker, its requests run by the thread that went idle last."""
    from gunicorn.workers.gthread import ThreadWorker

    from crm.threadpool import LifoThreadPool

    class Worker(ThreadWorker):  # type: ignore[misc]
        def get_thread_pool(self) -> LifoThreadPool:
            return LifoThreadPool(self.cfg.threads)

    return Worker


worker_class = _threaded_worker()


def _fewer_malloc_arenas() -> None:
    """Cap glibc's malloc arenas at 2 (as ``MALLOC_ARENA_MAX=2``) before the workers fork.

    glibc gives threads their own arenas (up to 8 per core); with 32 threads a worker's
    memory grew by tens of MB of half-empty arenas. Elsewhere (not glibc) nothing changes.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        return


_fewer_malloc_arenas()


def post_worker_init(worker: Any) -> None:
    """Load the complaint tagger once per worker, then keep the garbage collector off what is loaded.

    The tagger's pipeline is some 200,000 objects that live as long as the worker. Python's
    full collection walks every one of them (about 80 ms here), and a request that happens to
    trigger it waits that long; ``gc.freeze`` moves what is loaded now out of the collector's
    view, so a full collection walks only what requests leave behind.
    """
    import gc

    from crm.triage import warm_up  # after fork: each worker builds its own pipeline

    warm_up()
    gc.collect()
    gc.freeze()
