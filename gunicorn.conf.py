"""gunicorn settings read automatically from the project folder."""

from typing import Any

# The access log names the path without its query string and leaves out the referrer: a
# search (``/leads?q=<a patient's name>``) or the page a user came from would otherwise put
# patient names and phone numbers into every access log line (PRODUCT §9).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms'


def post_worker_init(worker: Any) -> None:
    """Load the complaint tagger once per worker, before the first request instead of during it."""
    from crm.triage import warm_up  # after fork: each worker builds its own pipeline

    warm_up()
