"""Values read from a query string, which anyone can edit: a value out of range is dropped.

Filters live in the address (PRODUCT §10), so a hand-edited or hostile one must still open the
page: an id past what an INTEGER column holds, digits Python reads but the database cannot
bind ("²", 5,000 nines), or a date at the end of the calendar (9999-12-31, one day past which
does not exist) each read as "no filter" rather than a server error.
"""

from __future__ import annotations

from datetime import date

from crm.authz import MAX_ID
from crm.text import CONTROL_CHARS

# Days a filter may name: far past any lead, and far from the calendar's ends (a day after,
# a time zone's shift) where date arithmetic overflows.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)


def whole_number(text: object, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    """Read plain ASCII digits within [minimum, maximum]; anything else is None."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text or "").strip()
        if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(maximum)):
            return None
        value = int(raw)
    return value if minimum <= value <= maximum else None


def plain_text(text: str | None, limit: int) -> str | None:
    """Read a free-text filter: control characters dropped (PostgreSQL refuses NUL), cut to fit."""
    cleaned = CONTROL_CHARS.sub("", text or "").strip()[:limit]
    return cleaned or None


def within_calendar(day: date | None) -> date | None:
    """Keep a date between FIRST_DAY and LAST_DAY; None otherwise."""
    return day if day is not None and FIRST_DAY <= day <= LAST_DAY else None


def iso_day(text: str | None) -> date | None:
    """Read a YYYY-MM-DD date within FIRST_DAY and LAST_DAY; None for anything else."""
    try:
        return within_calendar(date.fromisoformat(text)) if text else None
    except ValueError:
        return None
