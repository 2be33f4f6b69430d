"""Phone numbers: parsed and stored as E.164 with ``phonenumbers``, shown the US way."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

DEFAULT_REGION = "US"

# A North American number in E.164: its national form is always "(NPA) NXX-XXXX", which
# ``phonenumbers`` takes ~50 µs to parse and format; a queue page shows fifty of them.
_NANP = re.compile(r"\+1([2-9]\d{2})([2-9]\d{2})(\d{4})")


def normalize(raw: str | None, *, region: str = DEFAULT_REGION) -> str | None:
    """Return a number in E.164, or None when it cannot be read as a valid number."""
    if not raw:
        return None
    text = raw.strip()[:64]
    if not text:
        return None
    return _normalize(text, region)


@lru_cache(maxsize=8192)
def _normalize(text: str, region: str) -> str | None:
    """Parse once per distinct text: a status callback's numbers are read several times (~0.1 ms each)."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def display(e164: str | None) -> str:
    """Show a number as ``(972) 499-5457`` (international numbers in their own format)."""
    if not e164:
        return ""
    nanp = _NANP.fullmatch(e164)
    if nanp:
        return "({}) {}-{}".format(*nanp.groups())
    try:
        parsed = phonenumbers.parse(e164, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return e164
    if parsed.country_code == 1:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def digits(text: str) -> str:
    """Keep only the digits of a text."""
    return "".join(ch for ch in text if ch.isdigit())


def last_digits(e164: str | None, count: int) -> str | None:
    """Return the last ``count`` digits of a number, for search by suffix."""
    if not e164:
        return None
    only = digits(e164)
    return only[-count:] if len(only) >= count else None
