"""gunicorn settings read automatically from the project folder."""

from typing import Any


def post_worker_init(worker: Any) -> None:
    """Load the complaint tagger once per worker, before the first request instead of during it."""
    from crm.triage import warm_up  # after fork: each worker builds its own pipeline

    warm_up()
