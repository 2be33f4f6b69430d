"""The patient's words behind each automatic tag, cut into segments a template can highlight.

A text becomes a list of ``Segment`` (plain text, or a phrase with the tags it produced); the
template prints each segment through autoescaping and wraps the tagged ones in ``<mark>``, so
no patient text is ever marked safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

from crm.settings import clinic_tz
from crm.triage import TAG_LABELS, Explanation, explain_complaint

SET_ASIDE_WORDS = {
    "negated": "negated",
    "hypothetical": "hypothetical",
    "someone_else": "about someone else",
}


@dataclass(frozen=True)
class Segment:
    """A run of the text; ``tags`` is empty for plain text, else the tags this phrase gave."""

    text: str
    tags: tuple[str, ...] = ()
    anchor: str = ""

    @property
    def title(self) -> str:
        return "Gave: " + "; ".join(TAG_LABELS.get(t, t) for t in self.tags)


@dataclass(frozen=True)
class Aside:
    """A phrase the tagger set aside, and why (e.g. "no numbness" — negated)."""

    phrase: str
    tag: str
    why: str


@dataclass
class Source:
    """One text of the patient's (a form message, call notes, a note) with its highlights."""

    kind: str
    label: str
    at: datetime
    segments: list[Segment]
    asides: list[Aside]
    tags: set[str] = field(default_factory=set)


@dataclass
class LeadEvidence:
    """Every source of a lead, and, per tag, the anchors of the phrases behind it."""

    sources: list[Source] = field(default_factory=list)
    anchors: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # tag → [(anchor, phrase)]

    def phrases(self, tag: str) -> list[str]:
        return [phrase for _, phrase in self.anchors.get(tag, [])]


def segments(text: str, spans: list[tuple[int, int, str]], prefix: str) -> list[Segment]:
    """Cut ``text`` at the (start, end, tag) spans, merging overlapping spans into one mark."""
    merged: list[tuple[int, int, list[str]]] = []
    for start, end, tag in sorted(spans):
        if merged and start < merged[-1][1]:
            first, last_end, tags = merged[-1]
            if tag not in tags:
                tags.append(tag)
            merged[-1] = (first, max(last_end, end), tags)
        else:
            merged.append((start, end, [tag]))
    out: list[Segment] = []
    pos = 0
    for i, (start, end, tags) in enumerate(merged):
        if start > pos:
            out.append(Segment(text[pos:start]))
        out.append(Segment(text[start:end], tuple(sorted(tags)), f"{prefix}-{i}"))
        pos = end
    if pos < len(text):
        out.append(Segment(text[pos:]))
    return out


@lru_cache(maxsize=4096)
def _explain(text: str, day: date) -> Explanation:
    """Explain a text as of a day. The tagger is a pure function of both, so a cached answer is
    never stale; queues that show the same patients' words on every refresh need not re-run it.
    """
    return explain_complaint(text, today=day)


def explain_texts(texts: list[tuple[str, str, datetime, str]]) -> LeadEvidence:
    """Explain each (kind, label, when, text) and gather the evidence of a lead, newest first.

    Durations ("since yesterday") are judged as of the day the patient said them.
    """
    tz = clinic_tz()
    result = LeadEvidence()
    for n, (kind, label, at, text) in enumerate(sorted(texts, key=lambda t: t[2], reverse=True)):
        if not text or not text.strip():
            continue
        found = _explain(text, at.astimezone(tz).date())
        prefix = f"ev{n}"
        segs = segments(text, [(e.start, e.end, e.tag) for e in found.evidence], prefix)
        for seg in segs:
            for tag in seg.tags:
                result.anchors.setdefault(tag, []).append((seg.anchor, seg.text))
        asides = [Aside(s.phrase, s.tag, SET_ASIDE_WORDS.get(s.reason, s.reason)) for s in found.set_aside]
        result.sources.append(Source(kind, label, at, segs, asides, set(found.tags)))
    return result
