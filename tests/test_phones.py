"""Phone display: the fast North American path shows exactly what ``phonenumbers`` would."""

from __future__ import annotations

import phonenumbers
import pytest

from crm import phones


def by_library(e164: str) -> str:
    parsed = phonenumbers.parse(e164, "US")
    style = phonenumbers.PhoneNumberFormat
    return phonenumbers.format_number(
        parsed, style.NATIONAL if parsed.country_code == 1 else style.INTERNATIONAL
    )


@pytest.mark.parametrize(
    "e164",
    ["+12145550142", "+18005550199", "+14165550123", "+18095550111", "+11234567890", "+447911123456"],
)
def test_display_matches_the_library(e164):
    assert phones.display(e164) == by_library(e164)


def test_display_of_nothing_is_empty():
    assert phones.display(None) == ""
    assert phones.display("") == ""
