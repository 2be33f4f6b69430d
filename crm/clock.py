"""The one source of "now", so tests can move the clock instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime

_frozen: datetime | None = None


def now() -> datetime:
    """Return the current time, UTC-aware (or the time a test set)."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def set_now(value: datetime | None) -> None:
    """Freeze the clock at ``value`` (UTC-aware), or let it run again with ``None``."""
    if value is not None and value.tzinfo is None:
        raise ValueError("the clock takes an aware datetime")
    global _frozen
    _frozen = value
