"""Tag a patient's own words with PRODUCT §3 complaint codes, and say why.

One entry point, ``tag_complaint``; ``explain_complaint`` gives the same single analysis with
the phrase behind each tag and the phrases set aside. Targets come from medspaCy's target
matcher; negation, someone else's complaint and hypotheticals come from medspaCy's ConText.
The pipeline loads once per process, lazily, under a lock. This module never imports Flask
and never logs: patients' words must not reach any log.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from crm.triage import rules
from crm.triage.durations import CHRONIC_DAYS, is_bare_date, phrase_days

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

__all__ = [
    "ALL_TAGS",
    "RED_FLAG_ADVICE",
    "TAG_LABELS",
    "Evidence",
    "Explanation",
    "SetAside",
    "explain_complaint",
    "format_explanation",
    "is_urgent",
    "tag_complaint",
    "warm_up",
]

CLINIC_TZ = ZoneInfo("America/Chicago")

TAG_LABELS: dict[str, str] = {
    "region:upper": "Upper back / neck",
    "region:mid": "Mid back",
    "region:lower": "Lower back",
    "side:left": "Left side",
    "side:right": "Right side",
    "radiating:arm": "Radiating into arm",
    "radiating:leg": "Radiating into leg",
    "condition:herniated_disc": "Herniated disc",
    "condition:stenosis": "Spinal stenosis",
    "condition:muscle_strain": "Muscle strain",
    "history:failed_pt": "Physical therapy did not help",
    "duration:acute": "Acute (under 6 weeks)",
    "duration:chronic": "Chronic (6 weeks or longer)",
    "red_flag:bowel_bladder": "RED FLAG: bowel/bladder control or saddle numbness",
    "red_flag:weakness": "RED FLAG: weakness",
    "red_flag:trauma": "RED FLAG: significant trauma",
    "nonspinal:organ": "Possible organ cause (kidney, gallbladder)",
}
ALL_TAGS: tuple[str, ...] = tuple(sorted(TAG_LABELS))

RED_FLAG_ADVICE = (
    "Red flag: new loss of bladder or bowel control, numbness between the legs, or sudden "
    "weakness in a leg or arm can be an emergency. Tell the patient to go to the nearest "
    "emergency room now or call 911 — do not wait for a clinic appointment."
)

# Work per call is capped so that no message can stall a request (PRODUCT §3).
MAX_CHARS = 100_000
CHUNK_CHARS = 1_500
_SPAN_GROUP = "medspacy_spans"
_REASON_BY_CATEGORY = {
    "NEGATED_EXISTENCE": "negated",
    "HYPOTHETICAL": "hypothetical",
    "FAMILY": "someone_else",
}


@dataclass(frozen=True)
class Evidence:
    """A phrase of the original text that produced a tag."""

    tag: str
    phrase: str
    start: int
    end: int


@dataclass(frozen=True)
class SetAside:
    """A phrase that would have given a tag but was set aside, and why."""

    tag: str
    phrase: str
    start: int
    end: int
    reason: str


@dataclass(frozen=True)
class Explanation:
    """The tags of one message with the evidence behind them and the phrases set aside."""

    tags: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    set_aside: list[SetAside] = field(default_factory=list)


_nlp: Language | None = None
_lock = threading.Lock()
# spaCy does not promise that one pipeline may run in two threads at once (gunicorn's threaded
# workers serve several requests in one process): one message at a time goes through it.
_run_lock = threading.Lock()


def _reset_lock_in_child() -> None:
    """Give a forked worker fresh locks, in case the parent forked while holding one."""
    global _lock, _run_lock
    _lock = threading.Lock()
    _run_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)


_TARGET_COMPONENT = "crm_triage_targets"
# Lower-case "pt" in staff notes means "patient"; it means physical therapy only after these.
_PT_VERBS = re.compile(
    r"(?:did|done|doing|do|tried|try|of|in|from|with|to|after|finished|completed|started|start|more|no|"
    r"weeks|months|sessions)\s+$"
)
_LOWER_PT = re.compile(r"\bpt\b")


def _analysis_text(text: str) -> str:
    """Lower-case text for the target patterns, keeping every offset, and mask "pt" meaning patient."""
    low = text.lower()
    if len(low) != len(text):
        low = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    for found in _LOWER_PT.finditer(text):
        if not _PT_VERBS.search(low[max(0, found.start() - 12) : found.start()]):
            low = low[: found.start()] + "p_" + low[found.end() :]
    return low


class _TargetFinder:
    """Mark every target phrase as a labelled span in the span group ConText reads.

    medspaCy's own target matcher recomputes the document text once per regex rule, which
    made a 1,000-character message take 12 ms; this finds the same spans from one
    lower-cased copy of the text, so spans may overlap (a side inside a radiating phrase).
    """

    def __init__(self) -> None:
        self.patterns = rules.compiled_targets()

    def __call__(self, doc: Doc) -> Doc:
        text = _analysis_text(doc.text)
        spans: list[Span] = []
        seen: set[tuple[str, int, int]] = set()
        for tag, pattern in self.patterns:
            for found in pattern.finditer(text):
                span = doc.char_span(found.start(), found.end(), label=tag, alignment_mode="expand")
                if span is not None and len(span) and (tag, span.start, span.end) not in seen:
                    seen.add((tag, span.start, span.end))
                    spans.append(span)
        doc.spans[_SPAN_GROUP] = spans
        return doc


def _build_pipeline(*, with_context: bool = True) -> Language:
    """Build the pipeline: medspaCy tokenizer, sentencizer, target finder, medspaCy ConText."""
    # PyRuSH logs every message it splits at DEBUG through loguru (STACK gotcha 2); it is not
    # in our pipeline, but medspaCy imports it, so it is silenced before anything else.
    from loguru import logger

    logger.disable("PyRuSH")
    # medspaCy's matcher module runs warnings.filterwarnings("ignore") at import, which would
    # silence every warning in the process (and defeat pytest's "error"); catch_warnings undoes it.
    with warnings.catch_warnings():
        import medspacy
        from medspacy.context import ConTextRule
        from spacy.language import Language

    if not Language.has_factory(_TARGET_COMPONENT):
        Language.factory(_TARGET_COMPONENT)(lambda nlp, name: _TargetFinder())
    nlp = medspacy.load(medspacy_enable=["medspacy_tokenizer"])
    # spaCy's sentencizer instead of PyRuSH: 7x faster and silent (STACK gotcha 2).
    nlp.add_pipe(
        "sentencizer",
        config={"punct_chars": [".", "!", "?", "\n", "\n\n", "\r\n", "…"]},
    )
    nlp.add_pipe(_TARGET_COMPONENT)
    if with_context:
        context = nlp.add_pipe(
            "medspacy_context",
            config={
                "rules": None,
                "input_span_type": "group",
                "span_group_name": _SPAN_GROUP,
            },
        )
        defaults = ConTextRule.from_json(context.DEFAULT_RULES_FILEPATH)
        context.add(rules.context_rules(defaults))
    return nlp


def _pipeline() -> Language:
    """Return the process's pipeline, building it on first use."""
    global _nlp
    if _nlp is None:
        with _lock:
            if _nlp is None:
                _nlp = _build_pipeline()
    return _nlp


def warm_up() -> None:
    """Load the pipeline now (e.g. before gunicorn forks), not on the first message."""
    _pipeline()


def clinic_today() -> date:
    """Return today's date in the clinic's time zone."""
    return datetime.now(CLINIC_TZ).date()


def is_urgent(tags: Iterable[str]) -> bool:
    """Tell whether any tag is a red flag."""
    return any(tag.startswith("red_flag:") for tag in tags)


# Control characters (NUL included), format characters and lone surrogates.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]"
)


def _sanitize(text: str) -> str:
    """Blank out control characters and lone surrogates, keeping every offset unchanged."""
    return _UNSAFE.sub(" ", text)


_BOUNDARY = re.compile(r"[.!?;\n]")


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """Split long text into pieces ending at sentence-ish boundaries, with their offsets."""
    start = 0
    while start < len(text):
        end = min(start + CHUNK_CHARS, len(text))
        if end < len(text):
            window = text[start:end]
            cut = max(
                (m.end() for m in _BOUNDARY.finditer(window, CHUNK_CHARS // 2)),
                default=-1,
            )
            if cut < 0:
                cut = window.rfind(" ", CHUNK_CHARS // 2) + 1
            if cut > 0:
                end = start + cut
        yield start, text[start:end]
        start = end


_REL_GROUPS = {
    "mom": "mother", "mum": "mother", "mommy": "mother", "momma": "mother", "mother": "mother",
    "dad": "father", "daddy": "father", "father": "father", "husband": "spouse", "wife": "spouse",
    "spouse": "spouse", "grandma": "grandmother", "granny": "grandmother", "grandpa": "grandfather",
    "kid": "child", "child": "child",
}  # fmt: skip
_REL = "|".join(sorted(rules.RELATIVES, key=len, reverse=True))
_DESIGNATIONS = [
    re.compile(
        r"\b(?:call(?:ing|ed)?|writ(?:ing|e)|e-?mail(?:ing)?|messag(?:ing|e)|text(?:ing)?|ask(?:ing)?|"
        r"inquir(?:ing|e)|reach(?:ing)?\s+out|contact(?:ing)?|request(?:ing)?|schedul(?:ing|e)|book(?:ing)?|"
        r"here|help)\s+(?:you\s+|in\s+|this\s+)?(?:for|on\s+behalf\s+of|about|regarding|re:?)\s+(?:my|our)\s+"
        rf"(?:\w+\s+)?({_REL})\b",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\b(?:appointment|appt|consult(?:ation)?|visit|evaluation|surgery)\s+for\s+(?:my|our)\s+(?:\w+\s+)?({_REL})\b",
        re.IGNORECASE,
    ),
    re.compile(
        rf"\bmy\s+({_REL})\b[^.?!]{{0,60}}?\b(?:needs|wants|would\s+like|is\s+hoping)\s+(?:to\s+(?:see|be\s+seen|"
        r"get|come)|an?\s+(?:appointment|appt|consult))",
        re.IGNORECASE,
    ),
]
_THIRD_PERSON_ASK = re.compile(
    r"\b(?:can|could|would|will)\s+(?:he|she|they)\s+(?:be\s+seen|come\s+in|get\s+(?:in|seen|an)|see|make)\b",
    re.IGNORECASE,
)
_RELATIVE_PRESENT = re.compile(
    rf"\bmy\s+({_REL})\b(?:\s*,?\s*(?:\d{{1,3}}|age\s+\d{{1,3}})\s*,?)?\s+(?:is|has|'s|keeps|can't|cannot|can\s+not|"
    r"needs|gets|got|fell|hurt|suffers|complains|can\s+barely|woke|was\s+in)\b",
    re.IGNORECASE,
)
_FIRST_PERSON_COMPLAINT = re.compile(
    r"\b(?:I|I'm|Im|I've|me|myself)\b(?!\s*(?:'m|am)?\s*(?:calling|writing|asking|his|her))|"
    r"\bmy\s+(?:own\s+)?(?:back|neck|spine|lower|low|upper|mid|left|right|legs?|arms?|hands?|feet|foot|hips?|"
    r"tailbone|shoulders?|pain|sciatica|discs?|disks?|symptoms)\b",
    re.IGNORECASE,
)


def _designated_patient(text: str) -> str | None:
    """Return the relative the message is about when someone writes for them ("calling for my mom")."""
    for pattern in _DESIGNATIONS:
        found = pattern.search(text)
        if found:
            return _rel_group(found[1])
    present = _RELATIVE_PRESENT.search(text)
    if present and (_THIRD_PERSON_ASK.search(text) or not _FIRST_PERSON_COMPLAINT.search(text)):
        return _rel_group(present[1])
    return None


def _rel_group(word: str) -> str:
    """Fold a relative's name to one group so "mom" and "mother" match."""
    word = word.lower()
    return _REL_GROUPS.get(word, word)


def _reason(span: Span, patient: str | None) -> str | None:
    """Say why ConText sets a target aside, or None when it describes the patient."""
    for modifier in span._.modifiers:
        start, end = modifier.modifier_span
        if span.start <= start and end <= span.end:
            continue  # "no" inside "PT, no help" is part of the target, not about it
        reason = _REASON_BY_CATEGORY.get(modifier.category)
        if reason is None or (reason == "negated" and span.label_ == rules.DURATION):
            continue
        if reason == "someone_else" and patient is not None:
            words = {_rel_group(t.lower_) for t in span.doc[start:end]}
            if patient in words:
                continue
        return reason
    return None


_FREQUENCY_AFTER = re.compile(r"^\s+(?:a|per|every|each)\s+(?:day|week|month|year)", re.IGNORECASE)
_FREQUENCY_BEFORE = re.compile(
    r"\b(?:a|per|every|each|once|twice|times|in|next|within|another|than)\s+$",
    re.IGNORECASE,
)
_AGE_AFTER = re.compile(r"^\s*(?:-\s*)?(?:old|of\s+age|yo\b|y/o)", re.IGNORECASE)
_PT_AFTER = re.compile(
    r"^\s+(?:of|in)\s+(?:pt|physio\w*|physical\s+therapy|therapy|rehab)\b",
    re.IGNORECASE,
)
_PT_BEFORE = re.compile(
    r"(?:pt|physio\w*|therapy|rehab)\s+(?:\w+\s+){0,3}(?:for|x)\s*(?:about\s+)?$",
    re.IGNORECASE,
)
_ONSET_CUE = re.compile(
    r"\b(?:start\w*|began|begin\w*|hurt\w*|pain\w*|ache?s?|aching|sore|spasm\w*|killing|bother\w*|throb\w*|"
    r"injur\w*|fell|fall|slipp\w*|tripp\w*|crash\w*|accident|wreck\w*|rear[- ]?ended|t[- ]?boned|tackled|"
    r"hit|kicked|pull\w*|strain\w*|tweak\w*|threw|diagnos\w*|numb\w*|tingl\w*|stiff|locked|tight|flare\w*|"
    r"came\s+on|woke\s+up|went\s+out|happened|peeing|wet|lost|weak\w*|giving\s+out|gave\s+out|drag\w*|worse)\b",
    re.IGNORECASE,
)
_NOT_ONSET_CUE = re.compile(
    r"\b(?:left\s+(?:a\s+|you\s+a\s+)?(?:voice\s*mail|message|vm)|voice\s*mail|call(?:ed|ing)?|e-?mail\w*|"
    r"text(?:ed)?|messag\w*|wrote|submitted|appointment|appt|visit|saw\s+(?:dr|the\s+doctor)|repair\w*|"
    r"surger\w*|removed|operation|fusion|out\s+in|mri|x-?rays?|ct|scan|imaging|results?|"
    r"(?:pt|physio\w*|therapy)\s+(?:starts?|begins?))\b",
    re.IGNORECASE,
)


def _duration_days(span: Span, chunk: str, today: date) -> int | None:
    """Return how long ago the complaint started by this phrase, or None if it is not an onset."""
    phrase = span.text
    days = phrase_days(phrase, today)
    if days is None:
        return None
    after, before = (
        chunk[span.end_char : span.end_char + 40],
        chunk[max(0, span.start_char - 40) : span.start_char],
    )
    if _FREQUENCY_AFTER.match(after) or _AGE_AFTER.match(after) or _PT_AFTER.match(after):
        return None
    bare = is_bare_date(phrase)
    therapy_or_frequency = _FREQUENCY_BEFORE.search(before) or _PT_BEFORE.search(before)
    if not bare and not phrase.lower().startswith("since") and therapy_or_frequency:
        return None
    if bare:
        sentence = span.sent.text.replace(phrase, " ")
        others = any(
            s.label_ != rules.DURATION and s.sent.start == span.sent.start
            for s in span.doc.spans[_SPAN_GROUP]
        )
        if _NOT_ONSET_CUE.search(sentence) or not (others or _ONSET_CUE.search(sentence)):
            return None
    return days


def _analyse(text: str, today: date) -> Explanation:
    """Run the single analysis behind both public functions."""
    clean = _sanitize(text[:MAX_CHARS])
    if not clean.strip():
        return Explanation()
    nlp = _pipeline()
    patient = _designated_patient(clean)
    evidence: dict[tuple[str, int, int], Evidence] = {}
    set_aside: dict[tuple[str, int, int], SetAside] = {}
    onset: tuple[int, Evidence] | None = None
    pieces = list(_chunks(clean))
    with _run_lock:
        docs = list(nlp.pipe(chunk for _, chunk in pieces))
    for (offset, chunk), doc in zip(pieces, docs, strict=True):
        for span in _targets(doc):
            start, end = offset + span.start_char, offset + span.end_char
            reason = _reason(span, patient)
            if span.label_ == rules.DURATION:
                days = _duration_days(span, chunk, today)
                if days is None:
                    continue
                tag = "duration:chronic" if days >= CHRONIC_DAYS else "duration:acute"
                if reason is None:
                    if onset is None or days > onset[0]:
                        onset = (days, Evidence(tag, text[start:end], start, end))
                    continue
            else:
                tag = span.label_
            key = (tag, start, end)
            if reason is None:
                evidence.setdefault(key, Evidence(tag, text[start:end], start, end))
            else:
                set_aside.setdefault(key, SetAside(tag, text[start:end], start, end, reason))
    if onset is not None:
        evidence[(onset[1].tag, onset[1].start, onset[1].end)] = onset[1]
    ordered = sorted(evidence.values(), key=lambda e: (e.start, e.tag))
    return Explanation(
        tags=sorted({e.tag for e in ordered}),
        evidence=ordered,
        set_aside=sorted(set_aside.values(), key=lambda s: (s.start, s.tag)),
    )


def _targets(doc: Doc) -> list[Any]:
    """Return the target spans the matcher found, or none when the group is missing."""
    return list(doc.spans[_SPAN_GROUP]) if _SPAN_GROUP in doc.spans else []


def explain_complaint(text: str, *, today: date | None = None) -> Explanation:
    """Tag a message and give the phrase behind each tag and each phrase set aside."""
    if not isinstance(text, str):
        return Explanation()
    return _analyse(text, today or clinic_today())


def tag_complaint(text: str, *, today: date | None = None) -> list[str]:
    """Return the sorted complaint tag codes of a patient's message."""
    return explain_complaint(text, today=today).tags


_REASON_WORDS = {
    "negated": "negated",
    "someone_else": "about someone else",
    "hypothetical": "hypothetical",
}


def format_explanation(text: str, today: date | None = None) -> str:
    """Render the tags and their evidence, then what was set aside, for the triage command."""
    result = explain_complaint(text, today=today)
    lines: list[str] = []
    if is_urgent(result.tags):
        lines += [f"URGENT — {RED_FLAG_ADVICE}", ""]
    lines.append("Tags:" if result.tags else "Tags: none")
    for tag in result.tags:
        phrases = ", ".join(f'"{e.phrase}" [{e.start}:{e.end}]' for e in result.evidence if e.tag == tag)
        lines.append(f"  {tag:<26} {TAG_LABELS[tag]} — {phrases}")
    if result.set_aside:
        lines.append("Set aside:")
        for item in result.set_aside:
            why = _REASON_WORDS.get(item.reason, item.reason)
            lines.append(f'  "{item.phrase}" [{item.start}:{item.end}] — {why} (would give {item.tag})')
    return "\n".join(lines)
