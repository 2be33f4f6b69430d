"""Hostile values for the fuzz tests: what attackers, broken clients and odd spreadsheets send.

``hostile_text()`` mixes known payloads (SQL, HTML/JS, template syntax, spreadsheet formulas,
control characters, direction overrides, numbers out of range, dates at the ends of the
calendar, huge strings) with Hypothesis' own text, alone or glued together. ``XSS_ATOMS`` are
the markup payloads whose raw form must never come back in a page: a test that sent one checks
that the HTML it got carries it only escaped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import strategies as st

XSS_ATOMS = (
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    '"><svg/onload=alert(1)>',
    "'><iframe src=javascript:alert(1)>",
    "</textarea><script>alert(2)</script>",
    "</script><script>alert(3)</script>",
    "<a href='javascript:alert(1)'>x</a>",
)
SQL = (
    "' OR '1'='1",
    "'; DROP TABLE leads; --",
    '" OR 1=1 --',
    "1; SELECT pg_sleep(5)--",
    "1 UNION SELECT password_hash FROM users--",
    "%",
    "_",
    "%%' ESCAPE '",
    "\\",
    "' ORDER BY 99--",
    "id desc; --",
)
TEMPLATES = ("{{7*7}}", "{% for x in range(9) %}", "${7*7}", "#{7*7}", "<%= 7*7 %>", "{{config}}")
FORMULAS = (
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://evil.example","x")',
    "=cmd|' /C calc'!A0",
)
CONTROL = (
    "\x00",
    "\x01",
    "\x07",
    "\x08",
    "\x0b",
    "\x0c",
    "\x1b[31m",
    "\x7f",
    "\r\n",
    "\n",
    "\r",
    "\t",
    "\x85",
)
UNICODE = (
    "\u202e",  # right-to-left override: "‮gpj.exe"
    "\u202egnp.exe",
    "\u2066\u2069",
    "\u200b",
    "\ufeff",
    "\ufffd",
    "Z\u0351\u0364\u0300\u0301\u0302",
    "\U0001f4a9",
    "ﬁ",
    "\u0130",
    "²",
    "١٢٣",
    "０１２",
    "José Müller-Ñúñez",
)
NUMBERS = (
    "0",
    "-1",
    "-0",
    "1e309",
    "NaN",
    "inf",
    "2147483648",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999",
    "0x10",
    "1_000",
    " 1",
    "1.5",
    "²",
    "١",
)
DATES = (
    "9999-12-31",
    "0001-01-01",
    "1969-12-31",
    "2026-02-30",
    "2026-13-01",
    "10000-01-01",
    "-2026-01-01",
    "2026-03-08T02:30:00",
    "99999999-1-1",
)
HUGE = ("A" * 100_000, "é" * 20_000, "<" * 10_000, "9" * 5_000, "%" * 3_000)
ATOMS = (*XSS_ATOMS, *SQL, *TEMPLATES, *FORMULAS, *CONTROL, *UNICODE, *NUMBERS, *DATES)


def hostile_text(*, huge: bool = True) -> st.SearchStrategy[str]:
    """A hostile string: a payload, random text, or several of them glued together."""
    parts = st.one_of(
        st.sampled_from(ATOMS),
        st.text(max_size=30),
        st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30),
    )
    choices = [
        st.sampled_from(ATOMS),
        st.lists(parts, min_size=1, max_size=4).map("".join),
        st.text(max_size=200),
    ]
    if huge:
        choices.append(st.sampled_from(HUGE))
    return st.one_of(*choices).map(lambda s: s.replace("\ud800", ""))  # lone surrogates cannot be sent


def xss_atoms_in(value: Any) -> list[str]:
    """The markup payloads a value carries (a string, or a list of them)."""
    values = value if isinstance(value, list | tuple) else [value]
    return [atom for atom in XSS_ATOMS for v in values if isinstance(v, str) and atom in v]


class Tally:
    """Counts the values thrown at each parameter, for the figure each test prints."""

    def __init__(self, entry_point: str) -> None:
        self.entry_point = entry_point
        self.values: Counter[str] = Counter()
        self.examples = 0
        self.outcomes: Counter[str] = Counter()

    def thrown(self, names: Any) -> None:
        self.examples += 1
        for name in names:
            self.values[name] += 1

    def report(self) -> str:
        per = ", ".join(f"{name}={count}" for name, count in sorted(self.values.items()))
        outcomes = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{self.entry_point}: {self.examples} requests; values per parameter: {per}; outcomes: {outcomes}"
        )
