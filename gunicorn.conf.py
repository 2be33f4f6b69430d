"""gunicorn settings read automatically from the project folder."""

from typing import Any

# The access log names the path without its query string and leaves out the referrer: a
# search (``/leads?q=<a patient's name>``) or the page a user came from would otherwise put
# patient names and phone numbers into every access log line (PRODUCT §9).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'


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
