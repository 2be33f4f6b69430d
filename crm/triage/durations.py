"""Turn a patient's time phrase ("since March", "x 2 months", "started Monday") into days."""

from __future__ import annotations

import re
from datetime import date, timedelta

from dateutil.easter import easter  # type: ignore[import-untyped]

# PRODUCT §3: chronic is six weeks or longer.
CHRONIC_DAYS = 42

_WORD_NUM = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20,
    "thirty": 30, "couple": 2, "few": 3, "several": 4,
}  # fmt: skip
_UNIT_DAYS = {"h": 0, "d": 1, "w": 7, "m": 30, "y": 365}
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MONTHS = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_SEASON_START = {
    "spring": (3, 20),
    "summer": (6, 21),
    "fall": (9, 22),
    "autumn": (9, 22),
    "winter": (12, 21),
}

_AMOUNT = re.compile(
    r"(?P<num>\d{1,3}(?:\.\d)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|(?:a\s+)?couple(?:\s+of)?|(?:a\s+)?few|several)\s*-?\s*\+?\s*"
    r"(?P<unit>days?|d|wks?|weeks?|months?|mos?|mths?|yrs?|years?|decades?|hours?|hrs?)\b",
    re.IGNORECASE,
)
_CHRONIC_WORDS = re.compile(
    r"chronic|for\s+(?:years|months|ages|decades|a\s+long|many|so\s+long)|(?:past|last)\s+(?:few|several|"
    r"couple|many)|years\s+of|decades\s+of|recurr|coming\s+back|all\s+my\s+life|whole",
    re.IGNORECASE,
)


def _amount_days(match: re.Match[str]) -> int:
    """Convert "3 wks", "a couple of months" or "two years" to days."""
    raw = match["num"].lower().replace("of", "").split()[-1]
    num = float(raw) if raw[0].isdigit() else _WORD_NUM.get(raw, 1)
    unit = match["unit"].lower()
    key = "y" if unit.startswith(("y", "dec")) else ("m" if unit.startswith("m") else unit[0])
    if unit.startswith("dec"):
        num *= 10
    return int(num * _UNIT_DAYS[key])


def _last(today: date, month: int, day: int) -> date:
    """Return the latest month/day on or before today."""
    candidate = date(today.year, month, min(day, 28) if month == 2 else day)
    return candidate if candidate <= today else candidate.replace(year=today.year - 1)


def _holiday(name: str, today: date) -> date | None:
    """Return the latest occurrence of a named holiday on or before today."""
    for year in (today.year, today.year - 1):
        if "christ" in name or "xmas" in name:
            when = date(year, 12, 25)
        elif "thanksgiving" in name:
            nov1 = date(year, 11, 1)
            when = nov1 + timedelta(days=(3 - nov1.weekday()) % 7 + 21)
        elif "easter" in name:
            when = easter(year)
        elif "new year" in name:
            when = date(year, 1, 1)
        elif "halloween" in name:
            when = date(year, 10, 31)
        elif "labor" in name:
            sep1 = date(year, 9, 1)
            when = sep1 + timedelta(days=(0 - sep1.weekday()) % 7)
        elif "memorial" in name:
            may31 = date(year, 5, 31)
            when = may31 - timedelta(days=may31.weekday())
        elif "july" in name:
            when = date(year, 7, 4)
        else:
            return None
        if when <= today:
            return when
    return None


def _date_days(phrase: str, today: date) -> int | None:
    """Count the days from a calendar phrase ("Monday", "since March", "in 2019") to today."""
    p = phrase.lower()
    if re.search(r"teen|kid|child|little|young|high school|college|twenties|20s|30s", p):
        return 3650
    if "yesterday" in p or "last night" in p:
        return 1
    if re.search(r"today|tonight|this (?:morning|afternoon|evening)", p):
        return 0
    if "other day" in p:
        return 3
    if "last week" in p:
        return 7 + today.weekday()
    if "this week" in p:
        return today.weekday()
    if "last month" in p:
        return 30 + today.day
    if "last year" in p:
        return 365
    if "weekend" in p:
        back = (today.weekday() - 5) % 7 or 7
        return back + (7 if "last weekend" in p and back < 2 else 0)
    year = re.search(r"\b((?:19|20)\d\d)\b", p)
    if year:
        y = int(year[1])
        return None if y > today.year else (today - date(y, 1, 1)).days
    if re.search(r"\d{1,2}/\d{1,2}", p):
        m, d = (int(x) for x in re.findall(r"\d+", p)[:2])
        if 1 <= m <= 12 and 1 <= d <= 31:
            try:
                return (today - _last(today, m, min(d, 28))).days
            except ValueError:
                return None
        return None
    holiday = _holiday(p, today)
    if holiday:
        return (today - holiday).days
    season = re.search(r"summer|spring|fall|autumn|winter", p)
    if season:
        start = _last(today, *_SEASON_START[season[0]])
        days = (today - start).days
        return days + 365 if "last" in p and days < 92 else days
    month = re.search(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)", p)
    if month:
        m = _MONTHS.index(month[1]) + 1
        day = re.search(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", p[month.end() :])
        start = _last(today, m, int(day[1]) if day and 1 <= int(day[1]) <= 31 else 1)
        return (today - start).days
    weekday = re.search(r"\b(mon|tue|wed|thu|fri|sat|sun)", p)
    if weekday:
        wd = _WEEKDAYS.index(weekday[1])
        back = (today.weekday() - wd) % 7 or 7
        return back + (7 if p.startswith("last") and back < 3 else 0)
    return None


def phrase_days(phrase: str, today: date) -> int | None:
    """Return how many days ago a duration phrase says the complaint started, or None."""
    if _CHRONIC_WORDS.search(phrase):
        return 3650
    amount = _AMOUNT.search(phrase)
    if amount:
        return _amount_days(amount)
    return _date_days(phrase, today)


def is_bare_date(phrase: str) -> bool:
    """Tell a plain date ("Friday", "in 2018") from an explicit span ("since…", "x 2 months")."""
    p = phrase.lower().strip()
    return not (p.startswith("since") or _AMOUNT.search(p) or _CHRONIC_WORDS.search(p)) or p.endswith("ago")
