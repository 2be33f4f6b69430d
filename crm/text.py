"""Folding of names and words the same way on SQLite and PostgreSQL (for search)."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# The characters nobody types into a name or a note: C0 controls but tab, line feed and
# carriage return, and DEL. NUL also breaks PostgreSQL text columns.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def fold(text: str) -> str:
    """Lower-case a text and strip its accents ("José" → "jose")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def name_terms(*parts: str | None) -> list[str]:
    """Return the distinct folded words of a name, each cut to 100 characters."""
    words: list[str] = []
    for part in parts:
        for word in _WORD.findall(fold(part or "")):
            if word not in words:
                words.append(word[:100])
    return words


# A word joined to the next by an apostrophe or a hyphen: "o'brien", "o’neil", "smith-jones".
_JOINED = re.compile(r"[^\W_]+(?:['’‐-][^\W_]+)+", re.UNICODE)


def search_terms(*parts: str | None) -> list[str]:
    """Return the words a lead is found by: its name's words (``name_terms``), and each word
    joined across an apostrophe or a hyphen, as people type it without one ("O'Brien" gives
    o, brien and obrien; "Smith-Jones" gives smith, jones and smithjones)."""
    words = name_terms(*parts)
    for part in parts:
        for joined in _JOINED.findall(fold(part or "")):
            word = "".join(_WORD.findall(joined))[:100]
            if word not in words:
                words.append(word)
    return words


def in_sentence(label: str) -> str:
    """A label as it reads inside a sentence: its first letter lowered, acronyms kept ("the ER")."""
    return label[:1].lower() + label[1:]
